import { SnapshotSchedule } from '../compactor/snapshot-schedule.js';
import { synthesisMemory } from '../compactor/snapshot-synthesiser.js';
import { Lease } from '../archive/lease.js';
import { checkSourceTopics } from '../bus/kafka-durability.js';
import { createKafka } from '../bus/kafka-topics.js';
import { runEmbeddedSourcePipeline } from './embedded-pipeline.js';
import { runKafkaSourcePipeline } from './kafka-pipeline.js';
import { runKafkaCompactRole } from './compact-pipeline.js';
import { compactorLeaseKey } from '../archive/layout.js';
import { readPendingUnproven } from '../archive/unproven-tables.js';
import type { TestHooks } from '../config/test-hooks.js';
import { checkSourceReady, claimSourceArchive, recordArchive, type SourcePipelineDeps } from './prepare-source.js';

export interface SourcePipelineOptions {
  /** The writer lease to hold (tests); otherwise one with `storage.leaseTtlMs`. */
  lease?: Lease;
  /** `chartlog run --take-over-slot`: a replication slot of another archive may be dropped (slot ownership). */
  takeOverSlot?: boolean;
  /**
   * `chartlog run --role` (docs/operations.md, "Roles"): `all` (default) runs the whole pipeline;
   * `capture` the connector and the Kafka producer, acknowledging the source by the
   * compactor's checkpoint; `compact` only the Kafka compactor. The split roles need the Kafka
   * bus (run-command.ts refuses them otherwise).
   */
  role?: PipelineRole;
  /** Test-only hooks (config/test-hooks.ts), read once by `chartlog run`; none by default. */
  testHooks?: TestHooks;
}

export type PipelineRole = 'all' | 'capture' | 'compact';
export const PIPELINE_ROLES: readonly PipelineRole[] = ['all', 'capture', 'compact'];

/**
 * One source's pipeline on the bus its configuration names, with its scheduled snapshot
 * synthesis (`snapshot.everyHours`) running beside it until the pipeline ends.
 *
 * First the source is checked (setup and PHI names, checkSourceReady), on Kafka the durability
 * settings of its existing topics (checkSourceTopics), then slot ownership
 * (claimSourceArchive: a replication slot of another archive, a checkpoint gone from an archive
 * that holds changes). Both write nothing, so a misspelt PHI name or another archive's slot
 * stops it at once with nothing written rather than after a wait for the lease. The archive's
 * identity (`state/archive.json`) is written once the lease is held.
 *
 * One writer per source archive (docs/architecture.md §1): before anything is read or written,
 * it takes the source's writer lease, waiting (and saying who holds it) while another process
 * does. Every write of shared state is fenced by the lease. Losing it stops the pipeline with
 * the fatal 'lease' error before anything else is written; a clean stop releases it, so a
 * process waiting for it (a rolling deploy) takes over at once. Aborting `signal` while
 * waiting returns without having written anything.
 */
export async function runSourcePipeline(deps: SourcePipelineDeps, signal: AbortSignal, options: SourcePipelineOptions = {}): Promise<void> {
  const role = options.role ?? 'all';
  if (role === 'compact') return await runCompactRole(deps, signal, options);
  const claimOptions = { takeOverSlot: options.takeOverSlot ?? false, refuseMissingCheckpoint: true };
  try {
    await checkSourceReady(deps);
    // Topics that could lose what Kafka acknowledged: exit 2 before the slot or the store is touched.
    const kafka = deps.config.bus.type === 'kafka' ? deps.config.bus.kafka : undefined;
    if (kafka) await checkSourceTopics(createKafka(kafka, '-check'), kafka, deps.source.name);
    await claimSourceArchive(deps, claimOptions);
  } catch (err) {
    await deps.connector.close();
    await deps.resync?.stop();
    throw err;
  }
  const lease = options.lease ?? new Lease({ store: deps.store, source: deps.source.name, ttlMs: deps.config.storage.leaseTtlMs });
  if (!(await lease.acquire(signal))) {
    await deps.connector.close();
    return;
  }
  // The claim again, now that no other writer can change the archive meanwhile (the first one
  // may be stale after a wait for the lease); then the archive's identity is recorded.
  let archiveId: string;
  try {
    archiveId = await recordArchive(deps, await claimSourceArchive(deps, claimOptions), AbortSignal.any([signal, lease.signal]));
  } catch (err) {
    await lease.release();
    await deps.connector.close();
    throw lease.lost ?? err;
  }
  // The pipeline stops on the caller's signal or when the lease is lost.
  const run = new AbortController();
  const stop = () => run.abort();
  signal.addEventListener('abort', stop, { once: true });
  lease.signal.addEventListener('abort', stop, { once: true });
  if (signal.aborted) run.abort();

  const fenced: SourcePipelineDeps = { ...deps, fence: lease, archiveId };
  // Resync requests recorded before this start whose new base was never stored (a kill -9
  // mid-resync): run again beside the stream (unproven-tables.ts).
  if (deps.resync) {
    try {
      deps.resync.resume(await readPendingUnproven(deps.store, deps.source.name));
    } catch (err) {
      await lease.release();
      await deps.connector.close();
      await deps.resync.stop();
      throw err;
    }
  }
  // Scheduled snapshot synthesis reads the stored archive: the compact process's work when split.
  const every = role === 'capture' ? undefined : deps.source.snapshot.everyHours;
  const scheduleStop = new AbortController();
  const stopSchedule = () => scheduleStop.abort();
  run.signal.addEventListener('abort', stopSchedule, { once: true });
  const scheduled = every
    ? new SnapshotSchedule({ store: deps.store, source: deps.source, everyHours: every, fence: lease, memory: synthesisMemory(deps.config), ...(deps.signer ? { signer: deps.signer } : {}) }).run(scheduleStop.signal)
    : Promise.resolve();
  try {
    if (deps.config.bus.type === 'kafka') await runKafkaSourcePipeline(fenced, run.signal, {
        ...(role === 'capture' ? { compactor: false, acknowledge: 'checkpoint' as const } : {}),
        ...(options.testHooks?.lostAfterMs !== undefined ? { lostAfterMs: options.testHooks.lostAfterMs } : {}),
        ...(options.testHooks?.kafkaDropGroup ? { testDropGroup: options.testHooks.kafkaDropGroup } : {}),
      });
    else await runEmbeddedSourcePipeline(fenced, run.signal);
  } catch (err) {
    // A lost lease makes the pipeline's last writes fail: the lease says why.
    throw lease.lost ?? err;
  } finally {
    signal.removeEventListener('abort', stop);
    lease.signal.removeEventListener('abort', stop);
    run.signal.removeEventListener('abort', stopSchedule);
    scheduleStop.abort();
    await scheduled;
    // A resync cut short leaves no manifest; the tables it leaves are logged with the command.
    await deps.resync?.stop();
    await lease.release();
  }
  if (lease.lost) throw lease.lost;
}

/**
 * `--role compact`: the source database is not opened (its connector is closed unused); the
 * Kafka topics' durability settings are checked as for `all`; then the compactor lease
 * (`<source>/state/compactor-lease.json`) is taken — a second compact process of the source
 * waits on it as a standby and takes over when the holder stops or dies — and the compactor
 * runs under it (compact-pipeline.ts), with the scheduled snapshot synthesis beside it.
 */
async function runCompactRole(deps: SourcePipelineDeps, signal: AbortSignal, options: SourcePipelineOptions): Promise<void> {
  const snapshotExpected = deps.source.snapshot.initial && deps.connector.capabilities.snapshot;
  await deps.connector.close();
  const kafka = deps.config.bus.kafka;
  if (kafka) await checkSourceTopics(createKafka(kafka, '-check'), kafka, deps.source.name);
  const lease = options.lease ?? new Lease({ store: deps.store, source: deps.source.name, ttlMs: deps.config.storage.leaseTtlMs, key: compactorLeaseKey(deps.source.name) });
  if (kafka?.scaleOut) return await runScaleOutCompactRole(deps, signal, lease, snapshotExpected);
  if (!(await lease.acquire(signal))) return;
  const run = new AbortController();
  const stop = () => run.abort();
  signal.addEventListener('abort', stop, { once: true });
  lease.signal.addEventListener('abort', stop, { once: true });
  if (signal.aborted) run.abort();
  const every = deps.source.snapshot.everyHours;
  const scheduleStop = new AbortController();
  const scheduled = every
    ? new SnapshotSchedule({ store: deps.store, source: deps.source, everyHours: every, fence: lease, memory: synthesisMemory(deps.config), ...(deps.signer ? { signer: deps.signer } : {}) }).run(scheduleStop.signal)
    : Promise.resolve();
  try {
    await runKafkaCompactRole({ ...deps, fence: lease }, run.signal, { snapshotExpected });
  } catch (err) {
    throw lease.lost ?? err;
  } finally {
    signal.removeEventListener('abort', stop);
    lease.signal.removeEventListener('abort', stop);
    scheduleStop.abort();
    await scheduled;
    await lease.release();
  }
  if (lease.lost) throw lease.lost;
}

/**
 * `--role compact` with `bus.kafka.scaleOut` (docs/architecture.md §1, "Several active
 * compactors"): a worker — a share of the table partitions into parts, with progress records —
 * runs at once, without a lease: parts are immutable and content-named, and count only once the
 * settler counts them. Beside it the process waits for the compactor lease; its holder also runs
 * the settler (transactions and progress topics, checkpoint, hour closing) and the scheduled
 * snapshot synthesis, all fenced by the lease. A lost lease, or either part failing, stops both.
 */
async function runScaleOutCompactRole(deps: SourcePipelineDeps, signal: AbortSignal, lease: Lease, snapshotExpected: boolean): Promise<void> {
  const run = new AbortController();
  const stop = () => run.abort();
  signal.addEventListener('abort', stop, { once: true });
  lease.signal.addEventListener('abort', stop, { once: true });
  if (signal.aborted) run.abort();
  let failure: unknown = null;
  const failed = (err: unknown) => {
    failure ??= err;
    run.abort();
  };
  const worker = runKafkaCompactRole({ ...deps, fence: undefined }, run.signal, { snapshotExpected, mode: 'worker' }).catch(failed);
  const settler = (async () => {
    if (!(await lease.acquire(run.signal))) return;
    const every = deps.source.snapshot.everyHours;
    const scheduleStop = new AbortController();
    const scheduled = every
      ? new SnapshotSchedule({ store: deps.store, source: deps.source, everyHours: every, fence: lease, ...(deps.signer ? { signer: deps.signer } : {}) }).run(scheduleStop.signal)
      : Promise.resolve();
    try {
      await runKafkaCompactRole({ ...deps, fence: lease }, run.signal, { snapshotExpected, mode: 'settler' });
    } finally {
      scheduleStop.abort();
      await scheduled;
      await lease.release();
    }
  })().catch(failed);
  try {
    await Promise.all([worker, settler]);
  } finally {
    signal.removeEventListener('abort', stop);
    lease.signal.removeEventListener('abort', stop);
  }
  if (lease.lost) throw lease.lost;
  if (failure) throw failure;
}
