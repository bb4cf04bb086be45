import type { Config, SourceConfig } from '../config/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { BatchEncoder } from '../codec/batch-encoder.js';
import { readCheckpoint, writeCheckpoint, type Checkpoint } from '../archive/checkpoint.js';
import type { EnvelopeReader } from '../archive/envelope-reader.js';
import type { FlushResult } from '../compactor/part-writer.js';
import { writeSnapshot } from '../compactor/snapshot-builder.js';
import { listSnapshots, type SnapshotManifest } from '../archive/snapshot-manifest.js';
import { logger } from '../core/logger.js';
import type { WriterFence } from '../archive/lease.js';
import { Position } from '../core/position.js';
import type { SourceConnector } from '../core/source-connector.js';

/** Everything one source's pipeline works with (source-runtime.ts builds it from the configuration). */
export interface SourcePipelineDeps {
  config: Readonly<Config>;
  source: Readonly<SourceConfig>;
  connector: SourceConnector;
  encoder: BatchEncoder;
  envelopes: EnvelopeReader;
  store: ObjectStore;
  /** Called after each durable flush (metrics, tests). */
  onDurable?: (r: FlushResult) => void;
  /**
   * The writer lease this process holds for the source (runSourcePipeline takes it): every
   * write of shared state is fenced by it. Absent only in tests of a single writer.
   */
  fence?: WriterFence;
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
    ...(deps.fence ? { fence: deps.fence } : {}),
  });
  const position = Position.parse(snap.position);
  const current = await readCheckpoint(store, source.name);
  if (!current || Position.compare(current.position, position) < 0) {
    await writeCheckpoint(store, { source: source.name, position, commitTsUs: BigInt(snap.commitTsUs), snapshotId: snap.id }, signal, deps.fence);
  }
  await connector.acknowledge(position);
  return snap;
}
