import { Position } from '../core/position.js';

/**
 * Object names under `<root>/<source>/` (docs/architecture.md §4). Every name is a pure function of what
 * the object holds, so a retried or repeated write lands on the same name and is idempotent.
 *
 * Parts are keyed hour-first so that closing an hour lists one prefix:
 *   parts/<yyyy-mm-dd>/<hh>/~flush/<firstPos>-<lastPos>.<sha256 prefix>.avro   (every table of one flush)
 *   parts/<yyyy-mm-dd>/<hh>/<schema.table>/<firstPos>-<lastPos>.<sha256 prefix>.avro   (written before flush parts; read)
 *   segments/<schema.table>/<yyyy-mm-dd>/<hh>/<firstPos>-<lastPos>.avro
 *   manifests/<yyyy-mm-dd>T<hh>.json
 *   snapshots/<snapshotId>/manifest.json, snapshots/<snapshotId>/<schema.table>/part-00000.avro
 *   state/checkpoint.json
 *   state/lease.json
 *   state/archive.json
 */

/** The reserved table name of the per-transaction log (no real table has a '~'). */
export const TRANSACTIONS_TABLE = '~transactions';

/**
 * The reserved folder of flush parts under an hour's parts (flush-part.ts): one object per flush
 * holding every table's records and the transaction log. No real table has a '~'.
 */
export const FLUSH_PARTS = '~flush';

/** An hour, UTC, as 'YYYY-MM-DDTHH'. String order is time order. */
export type HourKey = string;

const US_PER_HOUR = 3_600_000_000n;

export function hourOf(tsUs: bigint): HourKey {
  const ms = Number((tsUs / US_PER_HOUR) * US_PER_HOUR / 1000n);
  return new Date(ms).toISOString().slice(0, 13);
}

export function hourStartUs(hour: HourKey): bigint {
  return BigInt(Date.parse(`${hour}:00:00.000Z`)) * 1000n;
}

export function nextHour(hour: HourKey): HourKey {
  return hourOf(hourStartUs(hour) + US_PER_HOUR);
}

export function hourPath(hour: HourKey): string {
  return `${hour.slice(0, 10)}/${hour.slice(11, 13)}`;
}

export function sourcePrefix(source: string): string {
  return `${source}/`;
}

export function partsPrefix(source: string, hour: HourKey): string {
  return `${source}/parts/${hourPath(hour)}/`;
}

/**
 * A part's name: its position range, then the first 32 hex digits of its sha256, so a part —
 * which no manifest lists until its hour is closed — can still be checked by anyone reading it.
 * Without `sha256` it gives the name's stem (what the container's sync marker is derived from).
 */
export function partKey(source: string, hour: HourKey, table: string, first: Position, last: Position, sha256?: string): string {
  const stem = `${partsPrefix(source, hour)}${table}/${Position.format(first)}-${Position.format(last)}`;
  return sha256 ? `${stem}.${sha256.slice(0, PART_HASH_HEX)}.avro` : stem;
}

/** Hex digits of a part's sha256 kept in its name (128 bits). */
export const PART_HASH_HEX = 32;

export function segmentKey(source: string, hour: HourKey, table: string, first: Position, last: Position): string {
  return `${source}/segments/${table}/${hourPath(hour)}/${Position.format(first)}-${Position.format(last)}.avro`;
}

export function manifestsPrefix(source: string): string {
  return `${source}/manifests/`;
}

export function manifestKey(source: string, hour: HourKey): string {
  return `${manifestsPrefix(source)}${hour}.json`;
}

/** The hour a manifest key names, or null for anything else under manifests/. */
export function hourOfManifestKey(source: string, key: string): HourKey | null {
  const m = key.slice(manifestsPrefix(source).length).match(/^(\d{4}-\d{2}-\d{2}T\d{2})\.json$/);
  return m ? m[1]! : null;
}

/** The writer lease: which process may write this source's archive (lease.ts). */
export function leaseKey(source: string): string {
  return `${source}/state/lease.json`;
}

/**
 * The compactor lease (`chartlog run --role compact`): which compact process stores this source's
 * Kafka topics into the archive — parts, hours, the checkpoint. Same record as the writer lease;
 * the capture process holds `leaseKey` beside it (docs/architecture.md §1, "Roles").
 */
export function compactorLeaseKey(source: string): string {
  return `${source}/state/compactor-lease.json`;
}

/** The archive's identity, written once when the archive is created (archive-identity.ts). */
export function archiveIdentityKey(source: string): string {
  return `${source}/state/archive.json`;
}

export function checkpointKey(source: string): string {
  return `${source}/state/checkpoint.json`;
}

export function schemaKey(source: string, fingerprint: string): string {
  return `${source}/schemas/${fingerprint}.json`;
}

/**
 * Parses `<first>-<last>[.<sha256 prefix>].avro` at the end of a part or segment key; the hash
 * prefix is there on parts.
 */
export function rangeOfKey(key: string): { first: Position; last: Position; sha256?: string } | null {
  const m = key.match(/\/([0-9a-f-]+\.[0-9a-f]{8})-([0-9a-f-]+\.[0-9a-f]{8})(?:\.([0-9a-f]{32}))?\.avro$/);
  if (!m) return null;
  const range = { first: Position.parse(m[1]!), last: Position.parse(m[2]!) };
  return m[3] ? { ...range, sha256: m[3] } : range;
}

/** Microseconds since the epoch as ISO-8601 with all six fraction digits, UTC. */
export function formatUs(us: bigint | string): string {
  const n = BigInt(us);
  const frac = ((n % 1_000_000n) + 1_000_000n) % 1_000_000n;
  const seconds = (n - frac) / 1_000_000n; // floor, also before 1970
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${frac.toString().padStart(6, '0')}Z`;
}
