import type { EnumLabels, VersionColumns } from './catalog-memory.js';
import { replacedColumns } from './column-renames.js';
import type { ReadingStamp } from './rewrite-watch.js';

/**
 * Changes of stored values that carry neither row events nor a new column name, found by reading
 * the captured tables' columns from the catalog (at relation messages and on the catalog timer):
 *
 * - a column dropped and added again under its name (`ALTER TABLE … DROP COLUMN c, ADD COLUMN c
 *   …`): the relation message lists the same names, but `c` has a new attnum, and the rows not
 *   changed since read its missing value (NULL or the default) where the archive holds the old
 *   column's values;
 * - an enum value renamed (`ALTER TYPE … RENAME VALUE 'a' TO 'b'`): every stored 'a' of every
 *   column of that type reads 'b' from then on, with no row event and no relation message. A
 *   pg_enum row keeps its OID through a rename, so a known label OID under a new label is one.
 *   (ADD VALUE gives a new OID and changes no stored value: not a change here.)
 *
 * Neither can be made exact from the stream: the table is re-read (an automatic resync) with its
 * window, from the newest reading that showed the table as known, so a restore inside it is
 * refused rather than given the old values. Pure state: no I/O, no clock.
 */

/**
 * Parameters: $1 the table OIDs. One row per live column, with the reading's clock and WAL
 * position. Generated columns are left out: pgoutput does not send them nor do snapshots read
 * them, so no table version has them.
 */
export const COLUMN_READING_SQL = `
  SELECT a.attrelid, a.attname, a.attnum,
         (SELECT json_object_agg(e.oid::text, json_build_array(e.enumtypid::text, e.enumlabel))::text
            FROM pg_type t JOIN pg_enum e ON e.enumtypid IN (t.oid, t.typelem, t.typbasetype)
           WHERE t.oid = a.atttypid) AS labels,
         (extract(epoch FROM statement_timestamp()) * 1000000)::int8::text AS ts_us,
         pg_current_wal_lsn() AS lsn
    FROM pg_attribute a
   WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
   ORDER BY a.attrelid, a.attnum`;

/** One captured table's columns now. */
export interface ColumnReading {
  readonly oid: number;
  /** Column name → attnum. */
  readonly attnums: VersionColumns;
  /** Enum label OID → [enum type OID, label], for every enum its columns use (directly, as array elements, or under a domain). */
  readonly labels: EnumLabels;
}

/** The rows of COLUMN_READING_SQL, per table, with the statement's time and WAL position (null: no rows). */
export function columnReadings(rows: readonly Record<string, string | null | undefined>[]): { readings: ColumnReading[]; timeUs: bigint; atLsn: string } | null {
  if (rows.length === 0) return null;
  const byOid = new Map<number, { attnums: Map<string, number>; labels: Map<string, readonly [number, string]> }>();
  for (const r of rows) {
    const oid = Number(r.attrelid);
    let t = byOid.get(oid);
    if (!t) byOid.set(oid, (t = { attnums: new Map(), labels: new Map() }));
    t.attnums.set(r.attname ?? '', Number(r.attnum));
    if (r.labels) for (const [labelOid, [typeOid, label]] of Object.entries(JSON.parse(r.labels) as Record<string, [string, string]>)) t.labels.set(labelOid, [Number(typeOid), label]);
  }
  return { readings: [...byOid].map(([oid, t]) => ({ oid, ...t })), timeUs: BigInt(rows[0]!.ts_us!), atLsn: rows[0]!.lsn! };
}

/** Column name → attnum, per table OID, of some readings. */
export function attnumsOf(readings: readonly ColumnReading[]): Map<number, VersionColumns> {
  return new Map(readings.map((r) => [r.oid, r.attnums]));
}

/** What one reading found for one table. */
export interface ColumnVerdict {
  readonly oid: number;
  /** Columns whose name now stands for another column (a new attnum). */
  readonly replaced: readonly string[];
  /** Enum values renamed, with their type's OID. */
  readonly relabelled: readonly { readonly typeOid: number; readonly from: string; readonly to: string }[];
  /** The newest reading that showed the table as known: the change committed after it (absent: none stamped). */
  readonly since?: ReadingStamp;
}

export class ColumnWatch {
  /** oid → the enum labels its columns use, as last read (or recorded in the archive). */
  private readonly labels = new Map<number, EnumLabels>();
  /** oid → the stamp of the newest reading that found nothing changed. */
  private readonly seen = new Map<number, ReadingStamp>();
  /** "oid:name:attnum" of replaced columns already reported (a later reading, or a relation message, sees the same). */
  private readonly reported = new Set<string>();

  /**
   * A reading taken with `stamp`. `known(oid)`: the columns (name → attnum) of the table's version
   * the archive has. A table read for the first time takes its labels as they are.
   */
  observe(readings: readonly ColumnReading[], known: (oid: number) => VersionColumns | undefined, stamp: ReadingStamp): ColumnVerdict[] {
    const out: ColumnVerdict[] = [];
    for (const r of readings) {
      const columns = known(r.oid);
      const replaced = columns ? replacedColumns(columns, r.attnums).filter((n) => !this.reported.has(`${r.oid}:${n}:${r.attnums.get(n)}`)) : [];
      for (const n of replaced) this.reported.add(`${r.oid}:${n}:${r.attnums.get(n)}`);
      const before = this.labels.get(r.oid);
      const relabelled: ColumnVerdict['relabelled'][number][] = [];
      if (before) {
        for (const [labelOid, [typeOid, label]] of r.labels) {
          const was = before.get(labelOid)?.[1];
          if (was !== undefined && was !== label) relabelled.push({ typeOid, from: was, to: label });
        }
      }
      this.labels.set(r.oid, r.labels);
      const since = this.seen.get(r.oid);
      this.seen.set(r.oid, stamp);
      if (replaced.length > 0 || relabelled.length > 0) out.push({ oid: r.oid, replaced, relabelled, ...(since ? { since } : {}) });
    }
    return out;
  }

  /**
   * The labels and stamp the archive recorded for a table when the last run stopped
   * (catalog-memory.ts format 3): the next reading compares with them, so a label renamed while
   * stopped is found, its window from that stamp.
   */
  recall(oid: number, labels: EnumLabels, seen: ReadingStamp): void {
    this.labels.set(oid, labels);
    this.seen.set(oid, seen);
  }

  /** The labels of the table's columns as last read: what the catalog record keeps. */
  labelsOf(oid: number): EnumLabels | undefined {
    return this.labels.get(oid);
  }

  /** Columns already re-read for (recalled at start: column-renames.ts versionBeforeStop). */
  reportedAlready(oid: number, attnums: VersionColumns, names: readonly string[]): void {
    for (const n of names) this.reported.add(`${oid}:${n}:${attnums.get(n)}`);
  }

  /** The table is gone from the catalog: forget it. */
  forget(oid: number): void {
    this.labels.delete(oid);
    this.seen.delete(oid);
  }
}

