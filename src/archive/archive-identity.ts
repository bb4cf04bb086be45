import { randomBytes } from 'node:crypto';
import { ChartlogError, nullIfNotFound } from '../core/errors.js';
import { withRetry } from '../core/retry.js';
import type { ObjectStore } from '../storage/object-store.js';
import { archiveIdentityKey } from './layout.js';

/**
 * Who an archive is: `<source>/state/archive.json`, written once when the archive is created
 * (create-if-absent) and never replaced. Its id tells two archives of one source apart — a
 * copied configuration with another `storage.url` makes a second archive, not the same one —
 * so the connector can record which archive owns server-side state such as a PostgreSQL
 * replication slot (docs/architecture.md §1, "Slot ownership"; docs/formats.md).
 */
export interface ArchiveIdentity {
  version: 1;
  source: string;
  /** 16 lowercase hex digits, random (64 bits). */
  archiveId: string;
  createdAt: string;
}

const ID = /^[0-9a-f]{16}$/;

export function newArchiveId(): string {
  return randomBytes(8).toString('hex');
}

export function isArchiveId(s: unknown): s is string {
  return typeof s === 'string' && ID.test(s);
}

/** The archive's identity, or null when the archive has none yet (new, or from before ids). */
export async function readArchiveIdentity(store: ObjectStore, source: string): Promise<ArchiveIdentity | null> {
  const key = archiveIdentityKey(source);
  const bytes = await nullIfNotFound(withRetry(() => store.get(key), { maxAttempts: 8 }));
  if (!bytes) return null;
  return parseIdentity(bytes, key, source);
}

/**
 * The archive's identity, creating it with `archiveId` when absent. When another process
 * created it first, that one is returned (it is never replaced).
 */
export async function ensureArchiveIdentity(store: ObjectStore, source: string, archiveId: string, signal?: AbortSignal): Promise<ArchiveIdentity> {
  if (!isArchiveId(archiveId)) throw new ChartlogError('internal', `archive id ${archiveId} is not 16 hex digits`);
  const identity: ArchiveIdentity = { version: 1, source, archiveId, createdAt: new Date().toISOString() };
  const body = Buffer.from(`${JSON.stringify(identity, null, 2)}\n`, 'utf8');
  const created = await withRetry(() => store.putIfAbsent(archiveIdentityKey(source), body, { contentType: 'application/json' }), { signal });
  if (created) return identity;
  const existing = await readArchiveIdentity(store, source);
  if (!existing) throw new ChartlogError('storage', `${archiveIdentityKey(source)} exists but cannot be read back`, { retriable: true });
  return existing;
}

function parseIdentity(bytes: Uint8Array, key: string, source: string): ArchiveIdentity {
  let parsed: Partial<ArchiveIdentity>;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<ArchiveIdentity>;
  } catch (err) {
    throw unreadable(key, err);
  }
  if (parsed.version !== 1 || parsed.source !== source || !isArchiveId(parsed.archiveId) || typeof parsed.createdAt !== 'string') throw unreadable(key);
  return parsed as ArchiveIdentity;
}

function unreadable(key: string, cause?: unknown): ChartlogError {
  return new ChartlogError('integrity', `${key} is not a readable archive identity`, {
    ...(cause === undefined ? {} : { cause }),
    hint: 'put it back from a copy of the store: it names the archive that owns the source\'s replication slot, and chartlog will not start this archive without it',
  });
}
