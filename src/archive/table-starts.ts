import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { TableStart } from '../core/table-start.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';
import { formatUs } from './layout.js';
import { committedBy } from './transaction-cut.js';
import { WriteOnceRecords } from './write-once-records.js';

/**
 * When a captured table started to exist (docs/formats.md, "Table starts"): a CREATE TABLE seen
 * after the stream began. Restore creates a table the cut holds no change of (and no base has)
 * with the version of its first later change — right for a table that existed empty, wrong for
 * one created after the moment. A start record tells the two apart. One immutable object per
 * start, written by the connector's pipeline:
 *
 *   <source>/table-starts/<schema.table>/<from position>.json
 *
 * MariaDB/MySQL write it before anything after the CREATE is published (its bounds are the
 * statement's own position and time); PostgreSQL writes it when its catalog check first finds
 * the table, bounded by the last reading without it. Archives without records (older ones, or
 * a table created while chartlog was stopped) restore as before.
 */
export interface TableStartRecord {
  format: 1;
  table: string;
  /** Position: the table did not exist at any cut before it. */
  from: string;
  /** µs, decimal: nor at any moment before it. */
  fromCommitTsUs: string;
  /** Position: the table exists at every cut at or after it. */
  seenAt: string;
  /** µs, decimal: and at every moment at or after it. */
  seenAtCommitTsUs: string;
  /** When the record was written (ISO-8601). */
  recordedAt: string;
}

const records = new WriteOnceRecords<TableStartRecord>('table-starts', {
  name: 'table-start',
  article: 'a',
  hint: 'restore cannot tell when the table started to exist without it; restore the object from a copy of the archive',
});

export function tableStartsPrefix(source: string): string {
  return records.prefix(source);
}

export function tableStartRecord(s: TableStart, now = new Date()): TableStartRecord {
  return {
    format: 1,
    table: s.table,
    from: Position.format(s.from),
    fromCommitTsUs: s.fromCommitTsUs.toString(),
    seenAt: Position.format(Position.compare(s.seenAt, s.from) < 0 ? s.from : s.seenAt),
    seenAtCommitTsUs: (s.seenAtCommitTsUs < s.fromCommitTsUs ? s.fromCommitTsUs : s.seenAtCommitTsUs).toString(),
    recordedAt: now.toISOString(),
  };
}

/** Written once (idempotent: the name is a function of table and position). */
export async function writeTableStart(store: ObjectStore, source: string, r: TableStartRecord): Promise<void> {
  await records.write(store, source, r);
}

/** One table start as restore sees it. */
export interface TableStartWindow {
  table: string;
  from: Position;
  fromCommitTsUs: bigint;
  seenAt: Position;
  seenAtCommitTsUs: bigint;
}

/** Every record of the source; an unreadable one throws (leaving it out could create a table that did not exist). */
export async function readTableStarts(store: ObjectStore, source: string, read: (o: ObjectInfo) => Promise<Uint8Array> = (o) => store.get(o.key)): Promise<TableStartWindow[]> {
  const out = await records.readAll(
    store,
    source,
    (r): TableStartWindow => ({ table: r.table, from: Position.parse(r.from), fromCommitTsUs: BigInt(r.fromCommitTsUs), seenAt: Position.parse(r.seenAt), seenAtCommitTsUs: BigInt(r.seenAtCommitTsUs) }),
    read,
  );
  return out.sort((a, b) => Position.compare(a.from, b.from));
}

/** The moment asked for: a cut position, and the time when the restore was asked by time. */
export interface StartQuestion {
  cut: Position;
  timeUs: bigint | null;
  resolutionUs?: bigint;
}

/**
 * Whether a table that the cut holds no change of and no base holds existed at the cut:
 * 'exists' (some start is at or before the cut), 'absent' (every start is after it),
 * 'unproven' (a start may or may not be before it: PostgreSQL's catalog check bounds it), or
 * 'unknown' (no record: restore keeps its older behaviour and creates it).
 */
export function tableExistedAt(starts: readonly TableStartWindow[], table: string, q: StartQuestion): 'exists' | 'absent' | 'unproven' | 'unknown' {
  const mine = starts.filter((s) => s.table === table);
  if (mine.length === 0) return 'unknown';
  const reaches = (p: Position, us: bigint): boolean =>
    Position.compare(q.cut, p) >= 0 || (q.timeUs !== null && committedBy(us, q.timeUs, q.resolutionUs ?? 1n));
  if (mine.some((s) => reaches(s.seenAt, s.seenAtCommitTsUs))) return 'exists';
  if (mine.some((s) => reaches(s.from, s.fromCommitTsUs))) return 'unproven';
  return 'absent';
}

/** The refusal of a moment between a table's last reading without it and its first with it (exit 2). */
export function unprovenStart(starts: readonly TableStartWindow[], table: string): ChartlogError {
  const s = starts.filter((x) => x.table === table).at(-1)!;
  return new ChartlogError('usage', `--to falls where the archive cannot prove whether ${table} existed yet: it was created between ${formatUs(s.fromCommitTsUs)} (position ${Position.format(s.from)}) and ${formatUs(s.seenAtCommitTsUs)} (position ${Position.format(s.seenAt)})`, {
    hint: `pick a moment before ${formatUs(s.fromCommitTsUs)} or at or after ${formatUs(s.seenAtCommitTsUs)}, or leave the table out (--tables)`,
  });
}
