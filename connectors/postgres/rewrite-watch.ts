import type { Lsn } from './lsn.js';

/**
 * Table rewrites that logical decoding does not carry (ALTER COLUMN … TYPE … USING, ADD COLUMN
 * … DEFAULT volatile()): the rows get new values, or a new column is filled, with no row events
 * (VACUUM FULL and CLUSTER rewrite too, keeping the values: told apart by classifyRelfileChange). Every rewrite gives the table a new `pg_class.relfilenode`, so the
 * connector reads the captured tables' relfilenodes (when a relation message arrives and on a
 * timer) and hands each reading to this watch. Pure state: no I/O, no clock.
 *
 * TRUNCATE gives a new relfilenode too, but the stream carries it (op 't'), so it needs no
 * resync. The two are told apart by the pg_class row's `xmin`: the transaction that last
 * rewrote the row (a rewrite, a truncate, or another ALTER). When it is the xid of a
 * transaction in which the stream delivered a TRUNCATE of that table, with no row change of the
 * table after the truncate in that transaction, the truncate explains the new relfilenode: the
 * table was emptied and every row after it is in the stream. Anything else (a rewrite after the
 * truncate, a later ALTER, a truncate the stream did not show) cannot be proved harmless, and the
 * table is re-read: a needless resync costs time, a missed one a wrong restore.
 *
 * Timing: the catalog is read ahead of the stream (the stream may lag). A reading taken when
 * the server's WAL was at L is decided only once the stream has processed everything before L
 * (`passed(L)`), so a truncate committed before the reading has been seen by then.
 *
 * Made while chartlog was stopped: the connector seeds the watch with the readings the archive
 * recorded (`seed`, catalog-memory.ts), so the first reading of a start is compared with them.
 */

/** One captured table in the catalog now. */
export interface RelfileReading {
  readonly oid: number;
  /** "schema.table" */
  readonly table: string;
  /** pg_class.relfilenode as text ("0" for a partitioned table: no storage). */
  readonly relfilenode: string;
  /** pg_class.xmin as text: the transaction that last wrote the table's pg_class row. */
  readonly xmin: string;
  /**
   * Every pg_attribute row of the table (dropped columns included) as `attnum:xmin`, in attnum
   * order — an ordinary table whose publication sends TRUNCATE only (see classifyRelfileChange).
   */
  readonly attrs?: string;
}

/**
 * What the caller knew when it took a reading, carried to the verdict: `streamLsn`, the newest
 * commit the stream had processed when the reading was asked for, and `timeUs`, the server's
 * statement time of the reading. A change the reading did not see committed after both.
 */
export interface ReadingStamp {
  readonly streamLsn: Lsn;
  readonly timeUs: bigint;
}

export type RewriteVerdict = {
  readonly kind: 'rewrite' | 'truncate' | 'kept';
  readonly oid: number;
  readonly table: string;
  /** The table's relfilenode (a root: its partition tree) in the reading that decided it. */
  readonly relfilenode: string;
  /** The reading that decided it was taken when the WAL was here: the change committed before it. */
  readonly atLsn: Lsn;
  /** The newest reading that still showed the old relfilenode: the change committed after it (absent: not stamped). */
  readonly since?: ReadingStamp;
};

/** How many truncating transactions are remembered per table (xids of the stream). */
const TRUNCATES_KEPT = 64;

/**
 * The decision for one table whose relfilenode changed: a truncate the stream carried, a rewrite
 * that kept every value, or a rewrite that may not have. `truncateXids`: transactions in which the
 * stream delivered a TRUNCATE of the table that no row change of it followed in the same
 * transaction. `prior`: the newest reading that still showed the old relfilenode.
 *
 * `kept` (VACUUM FULL, CLUSTER, SET TABLESPACE, SET ACCESS METHOD, SET LOGGED/UNLOGGED: the same
 * rows in a new file): no pg_attribute row of the table was written since `prior`. Every rewrite
 * that gives rows new values is an ALTER TABLE of a column's type (it rewrites that column's
 * pg_attribute row, USING or not) or an added column filled in (a volatile default, a generated or
 * identity column: a new pg_attribute row), so either changes `attrs`. The one other new file with
 * other rows is a TRUNCATE, which the stream carries when the publication sends truncates (`attrs`
 * is read only then). Anything else — no `attrs` on either side (a partitioned root, a publication
 * without truncates, a recorded state from before) — is a rewrite: a needless resync costs time,
 * a missed one a wrong restore.
 */
export function classifyRelfileChange(reading: RelfileReading, truncateXids: ReadonlySet<string>, prior?: RelfileReading): RewriteVerdict['kind'] {
  if (truncateXids.has(reading.xmin)) return 'truncate';
  return reading.attrs !== undefined && reading.attrs === prior?.attrs ? 'kept' : 'rewrite';
}

interface Pending {
  readonly reading: RelfileReading;
  readonly atLsn: Lsn;
  readonly stamp?: ReadingStamp;
}

export class RewriteWatch {
  /** oid → last relfilenode taken as known (baseline or decided). */
  private readonly known = new Map<number, string>();
  /** oid → the reading that made it known (what the archive records: `known()`). */
  private readonly knownReadings = new Map<number, RelfileReading>();
  /** oid → the newest reading not yet decided (a later one replaces it: it covers both). */
  private readonly pending = new Map<number, Pending>();
  private readonly truncates = new Map<number, string[]>();
  /** oid → the stamp of the newest reading that showed the known relfilenode. */
  private readonly lastSeen = new Map<number, ReadingStamp>();

  /**
   * Readings of the catalog taken when the server's WAL was at `atLsn`. A table seen for the
   * first time becomes known as it is; a changed relfilenode waits for `passed(atLsn)`.
   */
  observe(readings: readonly RelfileReading[], atLsn: Lsn, stamp?: ReadingStamp): void {
    for (const r of readings) {
      const known = this.known.get(r.oid);
      if (known === undefined) {
        this.known.set(r.oid, r.relfilenode);
        this.knownReadings.set(r.oid, r);
        if (stamp) this.lastSeen.set(r.oid, stamp);
      } else if (known !== r.relfilenode || this.pending.has(r.oid)) {
        this.pending.set(r.oid, { reading: r, atLsn, ...(stamp ? { stamp } : {}) });
      } else {
        this.knownReadings.set(r.oid, r);
        if (stamp) this.lastSeen.set(r.oid, stamp);
      }
    }
  }

  /**
   * The readings a previous run recorded (catalog-memory.ts), each with the stamp of the newest
   * reading that showed it: the baseline the next readings are compared with.
   */
  seed(readings: readonly (RelfileReading & { readonly seen: ReadingStamp })[]): void {
    for (const r of readings) {
      this.known.set(r.oid, r.relfilenode);
      this.knownReadings.set(r.oid, r);
      this.lastSeen.set(r.oid, r.seen);
    }
  }

  /** The known readings with their stamps, or null while a change waits for its verdict (nothing to record yet). */
  knownWithStamps(): (RelfileReading & { readonly seen: ReadingStamp })[] | null {
    if (this.pending.size > 0) return null;
    const out: (RelfileReading & { readonly seen: ReadingStamp })[] = [];
    for (const [oid, r] of this.knownReadings) {
      const seen = this.lastSeen.get(oid);
      if (!seen) return null;
      out.push({ ...r, seen });
    }
    return out;
  }

  /** The stamp of the newest reading that showed the table as known (absent: not stamped). */
  seenAt(oid: number): ReadingStamp | undefined {
    return this.lastSeen.get(oid);
  }

  /** The stream delivered, in transaction `xid`, a TRUNCATE of `oid` not followed by its rows. */
  truncated(oid: number, xid: string): void {
    const list = this.truncates.get(oid) ?? [];
    list.push(xid);
    if (list.length > TRUNCATES_KEPT) list.shift();
    this.truncates.set(oid, list);
  }

  /** The table is gone from the catalog (dropped): forget it. */
  forget(oid: number): void {
    this.known.delete(oid);
    this.knownReadings.delete(oid);
    this.pending.delete(oid);
    this.truncates.delete(oid);
    this.lastSeen.delete(oid);
  }

  /**
   * The stream has processed everything before `lsn`: readings taken at or before it are
   * decided. Returns the tables whose relfilenode changed, each with its verdict.
   */
  passed(lsn: Lsn): RewriteVerdict[] {
    const out: RewriteVerdict[] = [];
    for (const [oid, p] of this.pending) {
      if (p.atLsn > lsn) continue;
      this.pending.delete(oid);
      const known = this.known.get(oid);
      const prior = this.knownReadings.get(oid);
      this.known.set(oid, p.reading.relfilenode);
      this.knownReadings.set(oid, p.reading);
      if (known === p.reading.relfilenode) continue;
      const kind = classifyRelfileChange(p.reading, new Set(this.truncates.get(oid) ?? []), prior);
      const since = this.lastSeen.get(oid);
      out.push({ kind, oid, table: p.reading.table, relfilenode: p.reading.relfilenode, atLsn: p.atLsn, ...(since ? { since } : {}) });
      // The new relfilenode is known from that reading on: a later rewrite committed after it.
      if (p.stamp) this.lastSeen.set(oid, p.stamp);
    }
    return out;
  }

  /** OIDs known: the tables the periodic check reads. */
  oids(): number[] {
    return [...this.known.keys()];
  }
}
