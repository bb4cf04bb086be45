import { createHash, webcrypto } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { MacField } from '../phi/archive-mac.js';
import { hourOfManifestKey, manifestKey, manifestsPrefix, type HourKey } from './layout.js';

/** One object of a closed hour as its hour's manifest lists it. */
export interface ManifestObject {
  key: string;
  /** "schema.table", or TRANSACTIONS_TABLE for the transaction log. */
  table: string;
  fingerprint: string;
  sha256: string;
  bytes: number;
  records: number;
  firstPos: string;
  lastPos: string;
  /** Commit-time range of the records, microseconds since the epoch, as decimal strings. */
  minCommitTsUs: string;
  maxCommitTsUs: string;
}

/**
 * The hour's manifest: what the hour holds, with hashes, and the previous manifest's hash, so the
 * manifests form a chain a missing or altered hour breaks (`chartlog verify`).
 */
export interface HourManifest {
  version: 1;
  source: string;
  hour: HourKey;
  /** When the hour was closed (the field keeps its first name: archives written before stay readable). */
  sealedAt: string;
  previous: { hour: HourKey; sha256: string } | null;
  transactions: number;
  events: number;
  firstPos: string | null;
  lastPos: string | null;
  objects: ManifestObject[];
  /** The archive MAC (docs/formats.md); absent in manifests written before archive MACs. */
  mac?: MacField;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * `sha256Hex` computed on libuv's thread pool (Web Crypto's digest is an asynchronous job; the
 * input is copied first, a memcpy): for the flush parts written on the pipeline's main thread,
 * whose hashing there was ≈ 4 % of that thread at a 200k-row backlog (cdc-postgres profile).
 */
export async function sha256HexOffThread(data: Uint8Array): Promise<string> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data)).toString('hex');
}

/** The manifest's bytes as stored (sign it first: ArchiveSigner.sign). */
export function encodeManifest(m: HourManifest): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`, 'utf8');
}

export function parseManifest(bytes: Uint8Array, key: string): HourManifest {
  try {
    const m = JSON.parse(Buffer.from(bytes).toString('utf8')) as HourManifest;
    if (m.version !== 1 || !Array.isArray(m.objects)) throw new Error('unexpected shape');
    return m;
  } catch (err) {
    throw new ChartlogError('integrity', `manifest ${key} is not readable: ${(err as Error).message}`, { cause: err });
  }
}

/** Hours that have a manifest, in order. */
export async function listManifestHours(store: ObjectStore, source: string): Promise<HourKey[]> {
  const hours: HourKey[] = [];
  for await (const o of store.listAll(manifestsPrefix(source))) {
    const h = hourOfManifestKey(source, o.key);
    if (h) hours.push(h);
  }
  return hours.sort();
}

/** The manifest of `hour` with its own sha256 (what the next manifest's `previous` holds). */
export async function readManifest(store: ObjectStore, source: string, hour: HourKey): Promise<{ manifest: HourManifest; sha256: string }> {
  const key = manifestKey(source, hour);
  const bytes = await store.get(key);
  return { manifest: parseManifest(bytes, key), sha256: sha256Hex(bytes) };
}

/** The newest closed hour and its manifest's sha256, or null when no hour is closed. */
export async function newestManifestHead(store: ObjectStore, source: string): Promise<{ hour: HourKey; sha256: string } | null> {
  const newest = (await listManifestHours(store, source)).at(-1);
  return newest ? { hour: newest, sha256: (await readManifest(store, source, newest)).sha256 } : null;
}
