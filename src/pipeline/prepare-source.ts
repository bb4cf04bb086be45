import type { Config, SourceConfig } from '../config/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { BatchEncoder } from '../codec/batch-encoder.js';
import { readCheckpoint, writeCheckpoint, type Checkpoint } from '../archive/checkpoint.js';
import type { EnvelopeReader } from '../archive/envelope-reader.js';
import type { FlushResult } from '../compactor/part-writer.js';
import { writeSnapshot } from '../compactor/snapshot-builder.js';
import { listSnapshots, type SnapshotManifest } from '../archive/snapshot-manifest.js';
import { ensureArchiveIdentity, newArchiveId, readArchiveIdentity } from '../archive/archive-identity.js';
import { configError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import type { WriterFence } from '../archive/lease.js';
import { Position } from '../core/position.js';
import type { ArchiveClaim, SourceConnector } from '../core/source-connector.js';
import type { TableSchema } from '../core/table-schema.js';
import { checkPhiNames, sourcesToConsult } from '../phi/phi-names.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import type { ResyncQueue } from './resync-queue.js';

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
  /** The archive's id (`state/archive.json`), once recorded (recordArchive); written into the checkpoint. */
  archiveId?: string;
  /**
   * The table resyncs the connector asks for (its `requestResync`), run beside the stream;
   * runSourcePipeline stops it with the run. Absent when `sources[].resync.automatic` is false.
   */
  resync?: ResyncQueue;
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

export interface ClaimOptions {
  /** `--take-over-slot`: a slot of another archive may be dropped and replaced (ArchiveClaim). */
  readonly takeOverSlot: boolean;
  /**
   * Refuse an archive that holds stored changes but no checkpoint (`chartlog run`). Not for
   * `chartlog snapshot --from-source`, which starts a new base on purpose.
   */
  readonly refuseMissingCheckpoint: boolean;
}

/**
 * Slot ownership (docs/architecture.md §1), checked before the writer lease is taken or
 * anything is written, so a refusal leaves the store untouched. Reads the archive's id (or
 * proposes a new one for a new archive), refuses a checkpoint of another archive and, for
 * `chartlog run`, a checkpoint gone from an archive that holds changes (a new snapshot would
 * drop this archive's slot and leave a hole in its history that nothing shows); then asks the
 * connector whether its server-side state is this archive's (`SourceConnector.claim`). Refusals
 * are 'config' errors: exit 2.
 */
export async function claimSourceArchive(deps: Pick<SourcePipelineDeps, 'source' | 'connector' | 'store'>, options: ClaimOptions): Promise<ArchiveClaim> {
  const { source, connector, store } = deps;
  const identity = await readArchiveIdentity(store, source.name);
  const checkpoint = await readCheckpoint(store, source.name);
  if (identity && checkpoint?.archiveId && checkpoint.archiveId !== identity.archiveId) {
    throw configError(
      `source ${source.name}: state/checkpoint.json in ${store.description} belongs to archive ${checkpoint.archiveId}, but this archive is ${identity.archiveId}; nothing was written`,
      "the checkpoint was copied from another archive's store: put back this archive's own state/checkpoint.json from a copy of this store",
    );
  }
  if (!checkpoint && options.refuseMissingCheckpoint && (await holdsChanges(store, source.name))) {
    throw configError(
      `source ${source.name}: the archive in ${store.description} holds stored changes but no state/checkpoint.json; starting over would take a new snapshot and drop this archive's replication slot, leaving a hole in its history that restore and verify could not see. Nothing was written`,
      'put back state/checkpoint.json from a copy of the store (an earlier version is fine: later changes are read again and duplicates dropped); or, to start a new base snapshot on purpose, run `chartlog snapshot --from-source` (changes between the last stored one and the new snapshot are then missing from the archive), then `chartlog run`',
    );
  }
  const claim: ArchiveClaim = {
    archiveId: identity?.archiveId ?? checkpoint?.archiveId ?? newArchiveId(),
    adoptLegacy: checkpoint !== null,
    takeOver: options.takeOverSlot,
  };
  try {
    await connector.claim?.(claim);
  } catch (err) {
    // A new archive's first writer may have recorded the id and created its slot after the
    // identity was read here (two processes starting at once): that slot is this archive's.
    const recorded = identity ? null : await readArchiveIdentity(store, source.name);
    if (!recorded || recorded.archiveId === claim.archiveId) throw err;
    const again: ArchiveClaim = { ...claim, archiveId: recorded.archiveId, adoptLegacy: (await readCheckpoint(store, source.name)) !== null };
    await connector.claim?.(again);
    return again;
  }
  return claim;
}

/**
 * Once the writer lease is held: writes the archive's identity when it has none yet (once,
 * create-if-absent). When another process created it first, the connector is claimed again
 * under the id it wrote. Returns the archive's id.
 */
export async function recordArchive(deps: Pick<SourcePipelineDeps, 'source' | 'connector' | 'store'>, claim: ArchiveClaim, signal?: AbortSignal): Promise<string> {
  const identity = await ensureArchiveIdentity(deps.store, deps.source.name, claim.archiveId, signal);
  if (identity.archiveId !== claim.archiveId) await deps.connector.claim?.({ ...claim, archiveId: identity.archiveId });
  return identity.archiveId;
}

/** Parts or closed hours: changes stored beside (or after) any snapshot. */
async function holdsChanges(store: ObjectStore, source: string): Promise<boolean> {
  for (const prefix of [`${source}/parts/`, `${source}/manifests/`]) {
    if ((await store.list(prefix, { limit: 1 })).objects.length > 0) return true;
  }
  return false;
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
    await writeCheckpoint(store, { source: source.name, position, commitTsUs: BigInt(snap.commitTsUs), snapshotId: snap.id, archiveId: deps.archiveId }, signal, deps.fence, deps.signer ? { signer: deps.signer } : undefined);
  }
  await connector.acknowledge(position);
  return snap;
}
