import type { Config, SourceConfig } from '../config/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { EmbeddedBus } from '../bus/embedded-bus.js';
import type { BatchEncoder } from '../codec/batch-encoder.js';
import { readCheckpoint, writeCheckpoint, type Checkpoint } from '../archive/checkpoint.js';
import { Compactor } from '../compactor/compactor.js';
import type { EnvelopeReader } from '../archive/envelope-reader.js';
import type { FlushResult } from '../compactor/part-writer.js';
import { writeSnapshot } from '../compactor/snapshot-builder.js';
import { listSnapshots, type SnapshotManifest } from '../archive/snapshot-manifest.js';
import { SnapshotSchedule } from '../compactor/snapshot-schedule.js';
import type { ChartlogError} from '../core/errors.js';
import { isRetriable, toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import type { SourceConnector } from '../core/source-connector.js';
import { runKafkaSourcePipeline } from './kafka-pipeline.js';
import { PublishAhead } from './publish-ahead.js';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SourcePipelineDeps {
  config: Readonly<Config>;
  source: Readonly<SourceConfig>;
  connector: SourceConnector;
  encoder: BatchEncoder;
  envelopes: EnvelopeReader;
  store: ObjectStore;
  /** Called after each durable flush (metrics, tests). */
  onDurable?: (r: FlushResult) => void;
}

/**
 * What both buses do first: check the source, take a consistent snapshot when the store has no
 * checkpoint (and the source wants one), and say where the stream resumes.
 */
export async function prepareSource(deps: SourcePipelineDeps, signal: AbortSignal): Promise<{ checkpoint: Checkpoint | null; snapshotId: string | null }> {
  const { source, connector, store } = deps;
  const log = logger().child({ source: source.name });
  await connector.check();

  let checkpoint = await readCheckpoint(store, source.name);
  if (!checkpoint && source.snapshot.initial && connector.capabilities.snapshot) {
    log.info('no checkpoint in the object store: taking a consistent snapshot');
    await takeSourceSnapshot(deps, signal);
    checkpoint = await readCheckpoint(store, source.name);
  } else if (checkpoint) {
    log.info({ from: Position.format(checkpoint.position) }, 'resuming from the checkpoint in the object store');
  }
  const snapshotId = checkpoint?.snapshotId ?? (await listSnapshots(store, source.name)).at(-1)?.id ?? null;
  return { checkpoint, snapshotId };
}

/**
 * A connector's consistent snapshot, written to the store; then the checkpoint moves to its
 * position (forward only) and the position is acknowledged, so the stream continues with what
 * committed after it. For `chartlog run` on a fresh store and `chartlog snapshot --from-source`.
 */
export async function takeSourceSnapshot(deps: SourcePipelineDeps, signal: AbortSignal): Promise<SnapshotManifest> {
  const { source, connector, encoder, envelopes, store } = deps;
  const snap = await writeSnapshot({
    store,
    source: source.name,
    batches: connector.snapshot({ chunkRows: source.snapshot.chunkRows, signal }),
    encoder,
    schemas: envelopes,
    signal,
  });
  const position = Position.parse(snap.position);
  const current = await readCheckpoint(store, source.name);
  if (!current || Position.compare(current.position, position) < 0) {
    await writeCheckpoint(store, { source: source.name, position, commitTsUs: BigInt(snap.commitTsUs), snapshotId: snap.id }, signal);
  }
  await connector.acknowledge(position);
  return snap;
}

/**
 * One source's pipeline on the bus its configuration names, with its scheduled snapshot
 * synthesis (`snapshot.everyHours`) running beside it until the pipeline ends.
 */
export async function runSourcePipeline(deps: SourcePipelineDeps, signal: AbortSignal): Promise<void> {
  const every = deps.source.snapshot.everyHours;
  const scheduleStop = new AbortController();
  const stopSchedule = () => scheduleStop.abort();
  signal.addEventListener('abort', stopSchedule, { once: true });
  const scheduled = every ? new SnapshotSchedule({ store: deps.store, source: deps.source, everyHours: every }).run(scheduleStop.signal) : Promise.resolve();
  try {
    if (deps.config.bus.type === 'kafka') return await runKafkaSourcePipeline(deps, signal);
    return await runEmbeddedSourcePipeline(deps, signal);
  } finally {
    signal.removeEventListener('abort', stopSchedule);
    scheduleStop.abort();
    await scheduled;
  }
}

/**
 * One source, end to end on the embedded bus (docs/architecture.md §1); with bus.type kafka, see
 * kafka-pipeline.ts:
 *
 *   connector ─► encoder (seal + Avro) ─► bounded bus ─► compactor ─► object store
 *        ▲                                                    │
 *        └──────── acknowledge(position) once durable ◄───────┘
 *
 * On start it resumes from the checkpoint in the object store (taking a consistent snapshot
 * first when the source has none). Retriable failures of the stream restart it from the last
 * published position with backoff; the compactor, still running, makes everything published
 * durable. Aborting `signal` stops reading, flushes, acknowledges, and returns.
 */
async function runEmbeddedSourcePipeline(deps: SourcePipelineDeps, signal: AbortSignal): Promise<void> {
  const { config, source, connector, encoder, envelopes, store } = deps;
  const log = logger().child({ source: source.name });
  const { checkpoint, snapshotId } = await prepareSource(deps, signal);

  const bus = new EmbeddedBus(config.bus.maxBufferedBatches, config.bus.maxBufferedBytes);
  const compactor = new Compactor(
    store,
    source.name,
    envelopes,
    {
      flushIntervalMs: config.segments.flushIntervalMs,
      maxPartBytes: config.segments.maxPartBytes,
      closeGraceMs: 120_000,
      snapshotId,
    },
    async (r) => {
      await connector.acknowledge(r.upTo);
      deps.onDurable?.(r);
    },
    signal,
  );
  await compactor.start();
  const compacting = compactor.run(bus);
  // A failed compactor must stop the reader too, or publish() would wait forever on a full bus.
  const compactorFailed = compacting.then(
    () => null,
    (err: unknown) => {
      bus.close();
      return toChartlogError(err);
    },
  );

  let last: Position | null = checkpoint?.position ?? null;
  let failure: ChartlogError | null = null;
  const ahead = new PublishAhead(last, source.name, (b) => encoder.encode(b), (b) => bus.publish(b));
  log.info({ from: last ? Position.format(last) : null }, 'pipeline streaming');
  for (let attempt = 0; !signal.aborted; ) {
    try {
      for await (const batch of connector.stream({ from: last, signal })) {
        // Redelivered after a reconnect: already on its way to the store.
        if (last && Position.compare(batch.position, last) <= 0) continue;
        await ahead.push(batch, last);
        last = batch.position;
        attempt = 0;
      }
      await ahead.drain();
      break;
    } catch (err) {
      const e = toChartlogError(err);
      if (signal.aborted) break;
      if (!isRetriable(e)) {
        failure = e;
        break;
      }
      // A batch read but not published is read again.
      last = await ahead.recover();
      attempt++;
      const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
      log.warn({ err: e, attempt, delayMs: delay }, 'source stream failed; reconnecting from the last published position');
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    }
  }

  // What was read before the stop is published before the bus closes.
  const unpublished = await ahead.drain().then(
    () => null,
    (err: unknown) => toChartlogError(err),
  );
  bus.close();
  const compactorError = await compactorFailed;
  await connector.close();
  // A publish fails when the compactor closed the bus: the compactor's error says why.
  const err = failure ?? compactorError ?? unpublished;
  if (err) throw err;
  log.info({ upTo: last ? Position.format(last) : null }, 'stopped; everything read is durable and acknowledged');
}
