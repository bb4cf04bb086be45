import { ChartlogError, nullIfNotFound } from '../core/errors.js';
import { Position } from '../core/position.js';
import { withRetry } from '../core/retry.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import { checkpointKey, type HourKey } from './layout.js';
import { NO_FENCE, type WriterFence } from './lease.js';
import { newestManifestHead, sha256Hex } from './manifest.js';

/**
 * The last source position known durable in the object store, kept in the store itself so
 * `chartlog run` on a new machine resumes where the last one stopped. It only ever lags what is
 * stored (written after the objects it covers), so resuming from it may repeat changes, which
 * are dropped by position, and never skips one.
 */
export interface Checkpoint {
  version: 1;
  source: string;
  position: Position;
  commitTsUs: bigint;
  /** The base snapshot this stream continues, when it began with one. */
  snapshotId: string | null;
  /**
   * The archive this checkpoint belongs to (archive-identity.ts); absent in checkpoints written
   * before archives had ids. A checkpoint of another archive (copied between stores) is refused.
   */
  archiveId?: string;
  updatedAt: string;
  /**
   * The newest closed hour's manifest when the checkpoint was written (its sha256): the anchor
   * that makes deleting the newest hours detectable. Absent in checkpoints written before
   * archive MACs.
   */
  head?: ManifestHead | null;
  /** The stored JSON as read (its `mac` included) and the sha256 of its bytes, for authentication. */
  stored?: { object: Record<string, unknown>; sha256: string };
}

/** An hour manifest named by its hour and the sha256 of its exact bytes. */
export interface ManifestHead {
  hour: HourKey;
  sha256: string;
}

interface StoredCheckpoint {
  version: 1;
  source: string;
  position: string;
  commitTsUs: string;
  snapshotId: string | null;
  archiveId?: string;
  updatedAt: string;
  head?: ManifestHead | null;
}

/** How a writer authenticates the checkpoint (archive MACs, docs/formats.md). */
export interface CheckpointAuth {
  signer: ArchiveSigner;
  /** The newest closed hour; read from the store when not given. */
  head?: ManifestHead | null;
}

export async function readCheckpoint(store: ObjectStore, source: string): Promise<Checkpoint | null> {
  const key = checkpointKey(source);
  const bytes = await nullIfNotFound(withRetry(() => store.get(key), { maxAttempts: 8 }));
  if (!bytes) return null;
  try {
    const s = JSON.parse(Buffer.from(bytes).toString('utf8')) as StoredCheckpoint;
    const stored = { object: { ...s } as Record<string, unknown>, sha256: sha256Hex(bytes) };
    return { ...s, position: Position.parse(s.position), commitTsUs: BigInt(s.commitTsUs), stored };
  } catch (err) {
    throw new ChartlogError('integrity', `${key} is not a readable checkpoint`, {
      cause: err,
      hint: 'put back state/checkpoint.json from a copy of the store (an earlier version of it is fine: changes after it are read again and duplicates dropped); do not delete it: chartlog refuses to start an archive that holds changes but no checkpoint (docs/operations.md, "After a failure")',
    });
  }
}

/**
 * Overwrites the checkpoint. `fence` (the writer lease, lease.ts) is checked in the store before
 * every attempt, so a process whose lease was taken over never moves the checkpoint. With
 * `auth`, the checkpoint carries the newest manifest (`head`) and a MAC over all of it.
 */
export async function writeCheckpoint(
  store: ObjectStore,
  c: Pick<Checkpoint, 'source' | 'position' | 'commitTsUs' | 'snapshotId' | 'archiveId'>,
  signal?: AbortSignal,
  fence: WriterFence = NO_FENCE,
  auth?: CheckpointAuth,
): Promise<void> {
  const stored: StoredCheckpoint = {
    version: 1,
    source: c.source,
    position: Position.format(c.position),
    commitTsUs: c.commitTsUs.toString(),
    snapshotId: c.snapshotId,
    ...(c.archiveId ? { archiveId: c.archiveId } : {}),
    updatedAt: new Date().toISOString(),
  };
  let object: object = stored;
  if (auth) {
    stored.head = auth.head !== undefined ? auth.head : await newestManifestHead(store, c.source);
    object = await auth.signer.sign(checkpointKey(c.source), stored);
  }
  const body = Buffer.from(`${JSON.stringify(object, null, 2)}\n`, 'utf8');
  await withRetry(
    async () => {
      await fence.check();
      await store.put(checkpointKey(c.source), body, { contentType: 'application/json' });
    },
    { signal },
  );
}
