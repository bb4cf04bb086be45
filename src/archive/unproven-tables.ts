import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';
import { formatUs } from './layout.js';
import { snapshotsPrefix, tableSnapshotsPrefix, type SnapshotManifest } from './snapshot-manifest.js';
import { WriteOnceRecords } from './write-once-records.js';

/**
 * A table the archive cannot prove for a while (docs/formats.md, "Unproven windows"): a DDL
 * changed its stored rows without row events (a PostgreSQL table rewrite, a MariaDB MODIFY or
 * a non-constant default…), so the archived changes hold the old values from the DDL on until
 * a new base of the table is read from the source (an automatic or manual `chartlog resync`,
 * or a source snapshot). One immutable object per request, written before the stream position
 * that carries the DDL is published (so before it can be acknowledged or checkpointed):
 *
 *   <source>/unproven/<schema.table>/<from position>.json
 *
 * It is never deleted: it is both the durable resync request (pending while no base closes it:
 * `chartlog run` re-runs it at start) and the evidence by which restore refuses a moment inside
 * the window.
 */
export interface UnprovenRecord {
  format: 1;
  /** "schema.table" */
  table: string;
  /**
   * The earliest position the DDL may have committed at: every cut at or after it may hold old
   * values. Exact on MariaDB/MySQL (the statement's own position); on PostgreSQL, just after the
   * last commit the stream had processed when the catalog last showed the table unrewritten.
   */
  from: string;
  /** The earliest commit time of the DDL (µs, decimal): a time at or after it is inside the window. */
  fromCommitTsUs: string;
  /** A position at or after the DDL's commit: only a base at or after it holds the DDL's effect. */
  seenAt: string;
  /** Why, for the operator (never a row value). */
  reason: string;
  /** When the request was recorded (ISO-8601). */
  requestedAt: string;
  /** What the connector read that showed the change (ResyncRequest window `catalog`); absent in records before it. */
  catalog?: string;
}

/** One unproven window, as restore and timeline see it. */
export interface UnprovenWindow {
  table: string;
  from: Position;
  fromCommitTsUs: bigint;
  seenAt: Position;
  reason: string;
  /** The first base read from the source at or after `seenAt` that holds the table; null while pending. */
  closedBy: { id: string; position: Position; commitTsUs: bigint } | null;
}

const records = new WriteOnceRecords<UnprovenRecord>('unproven', {
  name: 'unproven-table',
  article: 'an',
  hint: 'restore cannot tell which moments of the table are proven without it; restore the object from a copy of the archive',
});

export function unprovenPrefix(source: string): string {
  return records.prefix(source);
}

export function unprovenKey(source: string, table: string, from: Position): string {
  return records.key(source, table, Position.format(from));
}

/** The record for a connector's request; `from` ≤ `seenAt`. */
export function unprovenRecord(o: { table: string; from: Position; fromCommitTsUs: bigint; seenAt: Position; reason: string; catalog?: string; now?: Date }): UnprovenRecord {
  return {
    format: 1,
    table: o.table,
    from: Position.format(o.from),
    fromCommitTsUs: o.fromCommitTsUs.toString(),
    seenAt: Position.format(Position.compare(o.seenAt, o.from) < 0 ? o.from : o.seenAt),
    reason: o.reason,
    requestedAt: (o.now ?? new Date()).toISOString(),
    ...(o.catalog !== undefined ? { catalog: o.catalog } : {}),
  };
}

/** Written once (idempotent: the name is a function of table and position). */
export async function writeUnprovenRecord(store: ObjectStore, source: string, r: UnprovenRecord): Promise<void> {
  await records.write(store, source, r, Position.format(Position.parse(r.from)));
}

/** Every record of the source, in position order; an unreadable one throws (a window must never be skipped). */
export async function readUnprovenRecords(store: ObjectStore, source: string, read: (o: ObjectInfo) => Promise<Uint8Array> = (o) => store.get(o.key)): Promise<UnprovenRecord[]> {
  const out = await records.readAll(
    store,
    source,
    (r) => {
      Position.parse(r.from);
      Position.parse(r.seenAt);
      BigInt(r.fromCommitTsUs);
      return r;
    },
    read,
  );
  return out.sort((a, b) => Position.compare(Position.parse(a.from), Position.parse(b.from)));
}

/**
 * The windows the records open, each closed by the first base read from the source (a
 * `chartlog resync` table base, or a source snapshot — never a synthesised one, which is built
 * from the archive's own old values) that holds the table at or after the record's `seenAt`.
 */
export function unprovenWindows(records: readonly UnprovenRecord[], bases: readonly SnapshotManifest[]): UnprovenWindow[] {
  const fromSource = bases
    .filter((b) => b.origin !== 'synthesised')
    .map((b) => ({ b, p: Position.parse(b.position) }))
    .sort((x, y) => Position.compare(x.p, y.p));
  return records.map((r) => {
    const seenAt = Position.parse(r.seenAt);
    const closing = fromSource.find((x) => x.b.tables[r.table] && Position.compare(x.p, seenAt) >= 0);
    return {
      table: r.table,
      from: Position.parse(r.from),
      fromCommitTsUs: BigInt(r.fromCommitTsUs),
      seenAt,
      reason: r.reason,
      closedBy: closing ? { id: closing.b.id, position: closing.p, commitTsUs: BigInt(closing.b.commitTsUs) } : null,
    };
  });
}

/** The tables whose window no base has closed yet, read from the store alone (what `chartlog run` re-runs at start). */
export async function readPendingUnproven(store: ObjectStore, source: string): Promise<string[]> {
  const records = await readUnprovenRecords(store, source);
  if (records.length === 0) return [];
  const bases: SnapshotManifest[] = [];
  for (const prefix of [snapshotsPrefix(source), tableSnapshotsPrefix(source)]) {
    for await (const o of store.listAll(prefix)) {
      if (o.key.endsWith('/manifest.json')) bases.push(JSON.parse(Buffer.from(await store.get(o.key)).toString('utf8')) as SnapshotManifest);
    }
  }
  return pendingTables(unprovenWindows(records, bases));
}

/** Tables with a window no base has closed yet: the resyncs still owed. */
export function pendingTables(windows: readonly UnprovenWindow[]): string[] {
  return [...new Set(windows.filter((w) => !w.closedBy).map((w) => w.table))].sort();
}

/**
 * Whether a restore cut falls inside a window: the cut includes the DDL (by position, or the
 * moment asked for is at or after its earliest commit time — a DDL without row events may have
 * no transaction of its own in the archive) and does not reach the base that closes it (restore
 * starts the table from that base only for cuts at or after it).
 */
export function insideWindow(w: UnprovenWindow, cut: Position, timeUs: bigint | null): boolean {
  const includesDdl = Position.compare(cut, w.from) >= 0 || (timeUs !== null && timeUs >= w.fromCommitTsUs);
  if (!includesDdl) return false;
  return !w.closedBy || Position.compare(cut, w.closedBy.position) < 0;
}

/**
 * Refuses a restore whose cut is inside a window of one of `tables` (exit 2: the moment is the
 * caller's choice), naming the table, the window and the moments that can be restored.
 */
export function refuseUnproven(windows: readonly UnprovenWindow[], tables: readonly string[], cut: Position, timeUs: bigint | null): void {
  const wanted = new Set(tables);
  const hit = windows.filter((w) => wanted.has(w.table) && insideWindow(w, cut, timeUs));
  if (hit.length === 0) return;
  const lines = hit.map((w) => `${w.table}: ${describeWindow(w)} (${w.reason})`);
  const first = hit[0]!;
  throw new ChartlogError('usage', `--to falls where the archive cannot prove these tables: ${lines.join('; ')}`, {
    hint: first.closedBy
      ? `pick a moment before ${formatUs(first.fromCommitTsUs)} (before the DDL), or one after the resync whose cut reaches position ${Position.format(first.closedBy.position)} (a change stored after ${formatUs(first.closedBy.commitTsUs)}); or leave these tables out (--tables); \`chartlog timeline\` shows the windows`
      : `pick a moment before ${formatUs(first.fromCommitTsUs)} (before the DDL), or re-read the table and restore after it: chartlog resync --tables ${hit.map((w) => w.table).join(',')}; or leave these tables out (--tables)`,
  });
}

/** "unproven from <time> (position P) until <time> (resync base X at Q)" or "… until a resync (pending)". */
export function describeWindow(w: UnprovenWindow): string {
  const start = `unproven from ${formatUs(w.fromCommitTsUs)} (position ${Position.format(w.from)})`;
  return w.closedBy
    ? `${start} until ${formatUs(w.closedBy.commitTsUs)} (new base ${w.closedBy.id} at position ${Position.format(w.closedBy.position)})`
    : `${start} until a resync of the table stores its new base (pending)`;
}
