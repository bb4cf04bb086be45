import type { ChangeBatch } from '../core/change-event.js';
import { logger } from '../core/logger.js';
import { qualifiedName, type Row, type TableSchema, type ValueKind } from '../core/table-schema.js';
import { detectValue, GUARD_DETECTORS, type PhiDetector } from './phi-detectors.js';

/**
 * The PHI guard in the stream: values of columns that are NOT sealed are checked by the value
 * detectors specific enough for live traffic (`GUARD_DETECTORS`: SSN, e-mail, phone, MRN,
 * street address), so a column that should be PHI is noticed within minutes. It is sampled:
 * per column at most one value every `intervalMs` (the first non-empty text value after the
 * interval), so its cost does not grow with the stream's rate. A hit is reported by table,
 * column and detector — never the value — through `onHit` (default: a warning log line, at most
 * one per column and detector every `warnEveryMs`, with the number of hits since the last), and
 * counted in `hits()` (a counter per table, column and detector, for metrics and tests).
 * It only reads: the batch goes on to the codec unchanged.
 */

export interface PhiGuardHit {
  readonly table: string;
  readonly column: string;
  readonly detector: PhiDetector;
  /** Hits of this column and detector since the previous report (1 for the first). */
  readonly count: number;
}

export interface PhiGuardOptions {
  /** The columns of a table version that are sealed (the codec's policy); throwing means "skip the table". */
  readonly sealedOf: (table: TableSchema) => ReadonlySet<string>;
  /** At most one value per column is checked in this many milliseconds. Default 1000. */
  readonly intervalMs?: number;
  /** At most one report per column and detector in this many milliseconds. Default 10 minutes. */
  readonly warnEveryMs?: number;
  readonly now?: () => number;
  readonly onHit?: (hit: PhiGuardHit) => void;
}

/** Kinds whose values are text that can spell an identifier. */
const TEXT_KINDS: ReadonlySet<ValueKind> = new Set<ValueKind>(['string', 'text', 'json', 'enum']);

interface GuardedColumn {
  readonly name: string;
  /** Next time a value of it may be checked. */
  nextAt: number;
}

interface GuardedTable {
  readonly name: string;
  readonly columns: readonly GuardedColumn[];
  /** The earliest nextAt of its columns: before it, an event of this table is not looked at. */
  nextAt: number;
}

interface Reported {
  lastAt: number;
  pending: number;
}

export class PhiGuard {
  private readonly tables = new WeakMap<TableSchema, GuardedTable | null>();
  /** Per table name, the columns' state, shared by the table's versions. */
  private readonly columnState = new Map<string, Map<string, GuardedColumn>>();
  private readonly counters = new Map<string, number>();
  private readonly reported = new Map<string, Reported>();
  private readonly intervalMs: number;
  private readonly warnEveryMs: number;
  private readonly now: () => number;
  private readonly onHit: (hit: PhiGuardHit) => void;

  constructor(private readonly options: PhiGuardOptions) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.warnEveryMs = options.warnEveryMs ?? 10 * 60_000;
    this.now = options.now ?? Date.now;
    this.onHit = options.onHit ?? logHit;
  }

  /** Looks at a few values of the batch's clear columns; never throws for what it finds. */
  inspect(batch: ChangeBatch): void {
    const now = this.now();
    for (const e of batch.events) {
      const t = this.table(e.schema);
      if (t === null || now < t.nextAt) continue;
      this.inspectRow(t, e.after ?? e.before, now);
    }
  }

  /** Hits so far per "table.column detector". */
  hits(): ReadonlyMap<string, number> {
    return this.counters;
  }

  private inspectRow(t: GuardedTable, row: Row | null, now: number): void {
    if (!row) return;
    let next = Infinity;
    for (const c of t.columns) {
      if (now >= c.nextAt) {
        const v = row[c.name];
        if (typeof v === 'string' && v.trim() !== '') {
          c.nextAt = now + this.intervalMs;
          for (const d of detectValue(v)) if (GUARD_DETECTORS.includes(d)) this.hit(t.name, c.name, d, now);
        }
      }
      next = Math.min(next, c.nextAt);
    }
    t.nextAt = next;
  }

  private hit(table: string, column: string, detector: PhiDetector, now: number): void {
    const key = `${table}.${column} ${detector}`;
    this.counters.set(key, (this.counters.get(key) ?? 0) + 1);
    const r = this.reported.get(key);
    if (!r) {
      this.reported.set(key, { lastAt: now, pending: 0 });
      this.onHit({ table, column, detector, count: 1 });
    } else if (now - r.lastAt >= this.warnEveryMs) {
      this.onHit({ table, column, detector, count: r.pending + 1 });
      r.lastAt = now;
      r.pending = 0;
    } else {
      r.pending++;
    }
  }

  private table(schema: TableSchema): GuardedTable | null {
    let t = this.tables.get(schema);
    if (t !== undefined) return t;
    let sealed: ReadonlySet<string>;
    try {
      sealed = this.options.sealedOf(schema);
    } catch {
      // A strict table's unclassified column: the codec stops the table; nothing to guard.
      this.tables.set(schema, null);
      return null;
    }
    const name = qualifiedName(schema);
    let state = this.columnState.get(name);
    if (!state) this.columnState.set(name, (state = new Map()));
    const columns: GuardedColumn[] = [];
    for (const c of schema.columns) {
      if (sealed.has(c.name) || !TEXT_KINDS.has(c.type.kind)) continue;
      let s = state.get(c.name);
      if (!s) state.set(c.name, (s = { name: c.name, nextAt: 0 }));
      columns.push(s);
    }
    t = columns.length === 0 ? null : { name, columns, nextAt: 0 };
    this.tables.set(schema, t);
    return t;
  }
}

/** The default report: a warning naming table, column and detector, never the value. */
function logHit(h: PhiGuardHit): void {
  logger().warn(
    { phiTable: h.table, phiColumn: h.column, detector: h.detector, hits: h.count },
    `PHI guard: a value of clear column ${h.table}.${h.column} looks like ${h.detector} (${h.count} sampled hit${h.count === 1 ? '' : 's'} since the last report); if the column holds PHI, list it under phi.columns and restart`,
  );
}
