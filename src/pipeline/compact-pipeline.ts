import { hostname } from 'node:os';
import { KafkaCompactor, type CompactorMode } from '../compactor/kafka-compactor.js';
import { readArchiveIdentity } from '../archive/archive-identity.js';
import { readCheckpoint } from '../archive/checkpoint.js';
import { listSnapshots } from '../archive/snapshot-manifest.js';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { sleep } from '../core/retry.js';
import type { SourcePipelineDeps } from './prepare-source.js';

/** How often a compact process looks for the capture process's first state (identity, snapshot checkpoint). */
const WAIT_POLL_MS = 500;

/**
 * `chartlog run --role compact`: this source's Kafka topics into the object store, and nothing
 * else — the source database is never opened (docs/architecture.md §1, "Roles"). The capture
 * process (`--role capture`) owns the source, the snapshot and the writer lease; this process
 * holds the compactor lease (`deps.fence`) and writes parts, hours and the checkpoint, which is
 * what the capture process acknowledges the source by.
 *
 * It first waits for the archive's identity and, when the source takes an initial snapshot, for
 * the checkpoint the snapshot writes: settling before it would name no base snapshot, and the
 * capture process could then write a snapshot checkpoint over a later one. Aborting `signal`
 * while waiting returns without having written anything.
 */
export async function runKafkaCompactRole(deps: SourcePipelineDeps, signal: AbortSignal, options: { snapshotExpected: boolean; mode?: CompactorMode }): Promise<void> {
  const mode = options.mode ?? 'single';
  const { config, source, store, envelopes } = deps;
  const settings = config.bus.kafka;
  if (!settings) throw new ChartlogError('config', 'bus.type is kafka but bus.kafka is missing', { hint: 'add bus.kafka.brokers' });
  const log = logger().child({ source: source.name, bus: 'kafka', role: 'compact', ...(mode === 'single' ? {} : { mode }) });
  let waitedLogAt = Date.now();
  let archiveId: string | null = null;
  for (;;) {
    if (signal.aborted) return;
    archiveId ??= (await readArchiveIdentity(store, source.name))?.archiveId ?? null;
    const checkpoint = archiveId ? await readCheckpoint(store, source.name) : null;
    if (archiveId && (checkpoint || !options.snapshotExpected)) break;
    if (Date.now() - waitedLogAt >= 10_000) {
      waitedLogAt = Date.now();
      log.info({ archive: archiveId !== null, checkpoint: false }, 'waiting for the capture process (chartlog run --role capture) to record the archive and its snapshot');
    }
    await sleep(WAIT_POLL_MS, signal);
  }
  const checkpoint = await readCheckpoint(store, source.name);
  const snapshotId = checkpoint?.snapshotId ?? (await listSnapshots(store, source.name)).at(-1)?.id ?? null;
  log.info({ from: checkpoint ? Position.format(checkpoint.position) : null }, 'compacting from the checkpoint in the object store');
  const compactor = new KafkaCompactor(store, source.name, envelopes, {
    settings,
    flushIntervalMs: config.segments.flushIntervalMs,
    maxPartBytes: config.segments.maxPartBytes,
    closeGraceMs: 120_000,
    snapshotId,
    archiveId,
    ...(deps.fence ? { fence: deps.fence } : {}),
    ...(deps.signer ? { signer: deps.signer } : {}),
    mode,
    member: `${hostname()}/${process.pid}`,
  });
  await compactor.start();
  await compactor.run(signal);
  const settled = compactor.settledPosition;
  if (mode === 'worker') log.info({ settled: settled ? Position.format(settled) : null }, 'compactor worker stopped; parts flushed, progress published, offsets committed');
  else log.info({ settled: settled ? Position.format(settled) : null }, 'compactor stopped; parts flushed, checkpoint written, offsets committed');
}
