import type { SourceConfig } from '../config/schema.js';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ArchiveIndex } from '../archive/archive-index.js';
import type { SnapshotManifest } from '../archive/snapshot-manifest.js';
import type { UnprovenWindow } from '../archive/unproven-tables.js';
import { UnknownOlderRowsError } from './schema-evolution.js';

/**
 * How a replica follows table resyncs (pure): a new base of a table read from the source
 * (`chartlog resync`, or the automatic resync after a DDL that rewrote rows without row events,
 * or a table renamed to a captured name), stored under table-snapshots/ at a known position.
 *
 * The replica records, per table, the position of the base it was last built from (the `marks`,
 * kept in the target's REPLICA_BASES_TABLE, moved in the same target transaction as the rebuild;
 * `*` is the load's position: restore took every base up to it). Then:
 * - a base of a table newer than its mark is pending: the table is rebuilt from it at once, with
 *   the table's changes after the base up to the replica's position (none when the replica is
 *   still before the base);
 * - a change of a table at or before its mark is dropped: the base holds it already;
 * - an open unproven window (a rewrite whose base is still being read) holds the replica before
 *   the window's first position: the archived changes after it may hold the old values, so the
 *   replica applies nothing from there on until the base closes the window.
 */
export type BaseMarks = ReadonlyMap<string, Position>;

/** The mark key of the load: every base at or before it was taken by the initial load. */
export const LOAD_MARK = '*';

/** The position a table's rows are known from (its base's, or the load's, whichever is newer); null: none recorded. */
export function markOf(marks: BaseMarks, table: string): Position | null {
  const own = marks.get(table) ?? null;
  const load = marks.get(LOAD_MARK) ?? null;
  if (!own) return load;
  if (!load) return own;
  return Position.max(own, load);
}

/** Whether a change is already in the table's base (at or before its mark): not applied again. */
export function inBase(marks: BaseMarks, table: string, position: Position): boolean {
  const m = markOf(marks, table);
  return m !== null && Position.compare(position, m) <= 0;
}

/** For each table in scope, its newest table base newer than its mark (the one to rebuild it from), in position order. */
export function pendingBases(bases: readonly SnapshotManifest[], marks: BaseMarks, inScope: (t: string) => boolean): { table: string; base: SnapshotManifest }[] {
  const newest = new Map<string, SnapshotManifest>();
  for (const b of bases) {
    for (const table of Object.keys(b.tables)) {
      if (!inScope(table)) continue;
      const p = Position.parse(b.position);
      const m = markOf(marks, table);
      if (m && Position.compare(p, m) <= 0) continue;
      const have = newest.get(table);
      if (!have || Position.compare(p, Position.parse(have.position)) > 0) newest.set(table, b);
    }
  }
  return [...newest].map(([table, base]) => ({ table, base })).sort((a, b) => Position.compare(Position.parse(a.base.position), Position.parse(b.base.position)));
}

/** The open unproven window of a table in scope that starts first: the replica applies nothing at or after its `from`. */
export function holdingWindow(windows: readonly UnprovenWindow[], inScope: (t: string) => boolean): UnprovenWindow | null {
  let first: UnprovenWindow | null = null;
  for (const w of windows) {
    if (w.closedBy || !inScope(w.table)) continue;
    if (!first || Position.compare(w.from, first.from) < 0) first = w;
  }
  return first;
}

/** The stop of a replica whose target cannot rebuild a table (fatal: never a silently diverging replica). */
export function cannotRebuild(table: string, base: SnapshotManifest, target: string): ChartlogError {
  return new ChartlogError('integrity', `${table} has a new base at ${base.position} (a table resync: \`chartlog resync\`, or the automatic one after a DDL that rewrote its rows or renamed it), and the replica ${target} cannot rebuild a table from a base; nothing of it was applied`, {
    hint: `rebuild the replica into an empty database (it loads ${table} from that base), or leave ${table} out with --tables`,
  });
}

/** How long a change that may be waiting for its table's base waits when no resync is seen under way. */
export const BASE_WAIT_MS = 60_000;

/**
 * The table whose new base may still come when a transaction failed with `err` (the replica
 * then waits for it, nothing of the transaction applied), or null (a real stop). Two such errors:
 * - a change meeting no row of the replica in a table whose start the archive recorded
 *   (table-starts.ts: created or renamed while the source streamed: a PostgreSQL RENAME TO,
 *   whose new name's changes come before its base);
 * - a column added with values chartlog could not capture (UnknownOlderRowsError: a volatile
 *   default, a rewrite). The PostgreSQL connector decides a rewrite after the commit whose
 *   catalog reading found it has been handed on, so the change bringing the column can be
 *   durable a moment before the table's unproven window is recorded; the replica that meets it
 *   in that moment waits, then holds before the window and rebuilds the table from its new base
 *   (replicate-resync met it at load 37).
 */
export function tableAwaitingBase(err: ChartlogError, index: Pick<ArchiveIndex, 'tableStarts'> | null): string | null {
  if (err instanceof UnknownOlderRowsError) return err.table;
  const m = /^(\S+): the change at \S+ does not meet exactly one row/.exec(err.message);
  const table = m?.[1];
  return err.code === 'integrity' && table && index?.tableStarts?.some((s) => s.table === table) ? table : null;
}

/**
 * How long `err` may wait for its table's base with no resync seen under way: BASE_WAIT_MS, and
 * for a column whose older rows were not captured at least two catalog readings of a PostgreSQL
 * source (the reading that finds a rewrite is what records the table's window).
 */
export function baseWaitMs(source: Pick<SourceConfig, 'type' | 'postgres'>, err: ChartlogError): number {
  if (!(err instanceof UnknownOlderRowsError) || source.type !== 'postgres') return BASE_WAIT_MS;
  return Math.max(BASE_WAIT_MS, 2 * source.postgres.catalogCheckIntervalMs + 30_000);
}
