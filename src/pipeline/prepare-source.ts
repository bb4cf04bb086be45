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
import type { TableSchema } from '../core/table-schema.js';
import { checkPhiNames, sourcesToConsult } from '../phi/phi-names.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';

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
   * The captured tables of another configured source, for the PHI name check when a PHI table
   * may be in another source that captures every table (src/phi/phi-names.ts). Absent: such a
   * table counts as captured by no other source, and the check refuses it.
   */
  peerTables?: (source: Readonly<SourceConfig>) => Promise<readonly TableSchema[]>;
  /**
   * The writer lease this process holds for the source (runSourcePipeline takes it): every
   * write of shared state is fenced by it. Absent only in tests of a single writer.
   */
  fence?: WriterFence;
  /**
   * Authenticates what this source writes: manifests, snapshot manifests, schemas, the
   * checkpoint (archive MACs, docs/formats.md). source-runtime.ts always makes one.
   */
  signer?: ArchiveSigner;
}

/**
 * Everything checked before a source is read or anything is written: the source's CDC setup
 * (`connector.check()`), then that every table and column named in `phi.columns`,
 * `phi.publicColumns` and `phi.strict` is one it captures (a misspelt PHI name would seal
 * nothing). Fails with the connector's 'source_setup' error or a 'config' error (exit 2).
 */
export async function checkSourceReady(deps: Pick<SourcePipelineDeps, 'config' | 'source' | 'connector' | 'peerTables'>): Promise<void> {
  await deps.connector.check();
  await checkSourcePhiNames(deps, await deps.connector.tables());
}

/**
 * The PHI name check of one source against the tables it captures (`captured`), reading other
 * sources' catalogs only when a PHI table may be theirs (see checkPhiNames for the rule with
 * several sources).
 */
export async function checkSourcePhiNames(
  deps: Pick<SourcePipelineDeps, 'config' | 'source' | 'peerTables'>,
  captured: readonly TableSchema[],
): Promise<void> {
  const { config, source } = deps;
  const others = config.sources.filter((s) => s.name !== source.name);
  const check = { phi: config.phi, source, captured, others };
  const othersCaptured = new Map<string, readonly TableSchema[]>();
  if (deps.peerTables) {
    for (const name of sourcesToConsult(check)) {
      const other = others.find((s) => s.name === name);
      if (other) othersCaptured.set(name, await deps.peerTables(other));
    }
  }
  const { pending } = checkPhiNames({ ...check, othersCaptured });
  const log = logger().child({ source: source.name });
  for (const p of pending) log.warn({ phiName: p }, 'a PHI name of a strict table names no column yet: kept for a column still to come');
  log.debug({ tables: captured.length }, 'PHI names match the captured tables');
}

/**
 * What both buses do first, once runSourcePipeline has checked the source (checkSourceReady)
 * and holds its lease: take a consistent snapshot when the store has no checkpoint (and the
 * source wants one), and say where the stream resumes.
 */
export async function prepareSource(deps: SourcePipelineDeps, signal: AbortSignal): Promise<{ checkpoint: Checkpoint | null; snapshotId: string | null }> {
  const { source, connector, store } = deps;
  const log = logger().child({ source: source.name });
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
    ...(deps.signer ? { signer: deps.signer } : {}),
  });
  const position = Position.parse(snap.position);
  const current = await readCheckpoint(store, source.name);
  if (!current || Position.compare(current.position, position) < 0) {
    await writeCheckpoint(store, { source: source.name, position, commitTsUs: BigInt(snap.commitTsUs), snapshotId: snap.id }, signal, deps.fence, deps.signer ? { signer: deps.signer } : undefined);
  }
  await connector.acknowledge(position);
  return snap;
}
