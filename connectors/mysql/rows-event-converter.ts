import type { ChangeBatch, ChangeEvent, Op } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { CellValue, Row, TableSchema } from '../../src/core/table-schema.js';
import { qualifiedName } from '../../src/core/table-schema.js';
import { type MariadbGtid, mariadbCommit, mariadbGtidOf, mysqlGtidOf } from './binlog-position.js';
import { type CellDecoder, cellDecoder } from './cell-decoder.js';
import { ddlEffects } from './ddl-effect.js';
import { RowImages, rowImagesReader } from './row-images.js';
import { type TablemapColumn, sameTableSchema, versionFor } from './table-version.js';

/**
 * Binlog events as the converter sees them: plain data, already parsed by zongji and stripped of
 * its classes, so the converter can be driven by captured or constructed records in tests.
 */
export type BinlogRecord =
  /**
   * A GTID event: a transaction (standalone=false) or a standalone statement (DDL) starts.
   * `commit` is its commit position (binlog-position.ts); `lane` names the sequence it belongs
   * to (a MariaDB domain, or 'mysql'): positions only order within one lane.
   */
  | {
      readonly type: 'gtid';
      readonly commit: string;
      readonly txId: string;
      readonly lane: string;
      readonly standalone: boolean;
      readonly timestampMs: number;
      /** An XA group: the prepare (completed=false) or the XA COMMIT/ROLLBACK (completed=true) of XA id `key`. */
      readonly xa?: { readonly key: string; readonly completed: boolean };
    }
  /** The end of an XA PREPARE group; one-phase means it committed right there. */
  | { readonly type: 'xaprepare'; readonly key: string; readonly onePhase: boolean; readonly timestampMs: number }
  /** MySQL's BEGIN query: the group that started is a transaction, not a standalone statement. */
  | { readonly type: 'begin' }
  | { readonly type: 'tablemap'; readonly tableId: number; readonly schema: string; readonly table: string; readonly columns: readonly TablemapColumn[] }
  /**
   * Row images keyed by column name (for 'u' each row is { before, after }), or, from
   * BinlogReader, one RowImages holding the event's row area as bytes (row-images.ts).
   */
  | { readonly type: 'rows'; readonly op: 'c' | 'u' | 'd'; readonly tableId: number; readonly rows: readonly unknown[] }
  /** The transaction's end: an XID event, or a COMMIT query for non-transactional engines. */
  | { readonly type: 'commit'; readonly timestampMs: number }
  /**
   * A statement of its own (standalone GTID group): DDL or TRUNCATE. `refreshed` holds the
   * captured tables as INFORMATION_SCHEMA shows them after the statement (read by the caller,
   * the converter does no I/O); null for a table that no longer exists.
   */
  | {
      readonly type: 'statement';
      readonly schema: string;
      readonly query: string;
      readonly timestampMs: number;
      readonly refreshed?: ReadonlyMap<string, TableSchema | null>;
    };

export interface ConverterOptions {
  readonly source: string;
  /** Transactions at or before this position are dropped (already durable downstream). */
  readonly from: Position | null;
  /** Current versions of the captured tables, keyed "schema.table". */
  readonly tables: ReadonlyMap<string, TableSchema>;
  /** Whether a table is captured. */
  readonly captures: (schema: string, table: string) => boolean;
}

interface OpenTransaction {
  readonly txId: string;
  readonly commit: string;
  readonly skip: boolean;
  /** Events with seq at or below this were delivered before (`from` inside this transaction); -1: none. */
  readonly skipThrough: number;
  standalone: boolean;
  /** The events collected and not yet taken (takeEvents). */
  events: ChangeEvent[];
  /** The next event's seq (events taken or skipped included). */
  seq: number;
  /** Events taken out so far (takeEvents): they come before `events`. */
  taken: number;
  readonly xa?: { readonly key: string; readonly completed: boolean };
}

/** The rows of an XA transaction between its PREPARE and its XA COMMIT/ROLLBACK. */
interface PreparedRows {
  /** The prepare group's commit: names the events taken from it (takeEvents). */
  readonly group: string;
  readonly taken: number;
  readonly events: ChangeEvent[];
}

/**
 * A completed transaction. When events of it were taken out while it was read (takeEvents, a
 * large transaction), `taken` says which: they come before `batch.events`, in the order taken.
 */
export interface Completed {
  readonly batch: ChangeBatch;
  readonly taken?: {
    /** The group the events were taken from (the commit of the group being read then). */
    readonly group: string;
    readonly count: number;
    /**
     * XA: the taken events carry the prepare group's positions; they become the events
     * 0..count-1 of `batch.position.commit`. Plain transactions: their positions are final.
     */
    readonly renumber: boolean;
    /** Renumbered events with seq at or below this are dropped (delivered before); -1: none. */
    readonly skipThrough: number;
  };
}

/** The GTID record of a MariaDB GTID event. */
export function mariadbGtidRecord(gtid: MariadbGtid, standalone: boolean, timestampMs: number): BinlogRecord {
  return { type: 'gtid', commit: mariadbCommit(gtid), txId: `${gtid.domain}-${gtid.server}-${gtid.seq}`, lane: String(gtid.domain), standalone, timestampMs };
}

/** The lane of a commit position, or null for a start position (which belongs to no lane yet). */
export function laneOf(commit: string): string | null {
  const m = mariadbGtidOf(commit);
  if (m) return m.seq > 0n ? String(m.domain) : null;
  const y = mysqlGtidOf(commit);
  return y ? 'mysql' : null;
}

/**
 * Turns the binlog into whole transactions, the pure step between zongji and the pipeline:
 * `push(record)` returns the ChangeBatch a record completes, or null. No I/O, no clock.
 *
 * - One batch per GTID group: an XID (or COMMIT) closes a transaction; a DDL or TRUNCATE is a
 *   standalone group and becomes a batch of its own (TRUNCATE → op 't'; DDL → schemaChanges).
 * - Rows are decoded with the table version in force when they were written (see
 *   table-version.ts); every event carries the version it was decoded with.
 * - Positions: the GTID (binlog-position.ts); events get seq 0, 1, … in binlog order.
 * - Groups at or before `from` are dropped, so a resumed or reconnected stream never repeats one.
 *   A group in another GTID domain stops the stream: domains have no order between them, and
 *   dropping by a cross-domain comparison could lose data silently.
 */
export class RowsEventConverter {
  private readonly source: string;
  private readonly captures: (schema: string, table: string) => boolean;
  private readonly tracked = new Map<string, TableSchema>();
  private readonly byTableId = new Map<number, TableSchema | null>();
  private readonly decoders = new WeakMap<TableSchema, { names: string[]; decode: CellDecoder[] }>();
  private readonly versions = new Map<string, { tracked: TableSchema | undefined; version: TableSchema }>();
  private from: Position | null;
  private lane: string | null;
  private txn: OpenTransaction | null = null;
  /** Rows of XA transactions prepared but not yet committed or rolled back, by XA id. */
  private readonly prepared = new Map<string, PreparedRows>();
  /** Groups whose taken events are no longer needed (rolled back, abandoned); see takeDropped. */
  private dropped: string[] = [];

  constructor(options: ConverterOptions) {
    this.source = options.source;
    this.captures = options.captures;
    this.from = options.from;
    this.lane = options.from ? laneOf(options.from.commit) : null;
    for (const [name, t] of options.tables) this.tracked.set(name, t);
  }

  /** The last position dropped or emitted: where a reconnect resumes. */
  get resumeFrom(): Position | null {
    return this.from;
  }

  /** The tracked (current) table versions. */
  get tables(): ReadonlyMap<string, TableSchema> {
    return this.tracked;
  }

  /** True while a transaction's events are being collected. */
  get inTransaction(): boolean {
    return this.txn !== null;
  }

  /**
   * Forgets a transaction whose end never arrived (the connection dropped mid-way): it is read
   * again whole after the reconnect, which resumes after the last completed one.
   */
  abandonTransaction(): void {
    if (this.txn && this.txn.taken > 0) this.dropped.push(this.txn.commit);
    this.txn = null;
  }

  /** The open group is at or before `from`: already durable downstream, dropped when it ends. */
  get skipping(): boolean {
    return this.txn?.skip ?? false;
  }

  /** Events collected in the open transaction and not yet taken. */
  get collected(): number {
    return this.txn?.events.length ?? 0;
  }

  /** The commit of the group being read (the `group` of events taken now), or null. */
  get openGroup(): string | null {
    return this.txn?.commit ?? null;
  }

  /** XA transactions prepared and not yet committed or rolled back. */
  get preparedCount(): number {
    return this.prepared.size;
  }

  /**
   * Takes the events collected so far out of the open transaction, so a large one need not be
   * held here (the caller spills them); its completion says they come first (Completed.taken).
   */
  takeEvents(): ChangeEvent[] {
    const txn = this.txn;
    if (!txn) return [];
    const out = txn.events;
    txn.events = [];
    txn.taken += out.length;
    return out;
  }

  /** Groups whose taken events the caller may forget (rolled back or abandoned), once each. */
  takeDropped(): string[] {
    const out = this.dropped;
    this.dropped = [];
    return out;
  }

  push(record: BinlogRecord): ChangeBatch | null {
    return this.pushRecord(record)?.batch ?? null;
  }

  /** Like push, with what the caller needs to put a transaction's taken events back in front. */
  pushRecord(record: BinlogRecord): Completed | null {
    switch (record.type) {
      case 'gtid':
        return this.begin(record.commit, record.txId, record.lane, record.standalone, record.xa);
      case 'xaprepare':
        return this.xaPrepare(record.key, record.onePhase, record.timestampMs);
      case 'begin':
        if (this.txn) this.txn.standalone = false;
        return null;
      case 'tablemap':
        this.tablemap(record.tableId, record.schema, record.table, record.columns);
        return null;
      case 'rows':
        this.rows(record.op, record.tableId, record.rows);
        return null;
      case 'commit':
        return this.end(record.timestampMs, []);
      case 'statement':
        return this.statement(record);
    }
  }

  private begin(commit: string, txId: string, lane: string, standalone: boolean, xa?: { key: string; completed: boolean }): Completed | null {
    if (this.txn) {
      // Every group ends with XID, COMMIT, XA PREPARE or its statement; one that does not has
      // lost its end. Guessing whether its rows committed could invent or lose rows, and
      // retrying would meet the same group again, so the stream stops and says so.
      throw new ChartlogError('decode', `binlog group ${this.txn.txId} ended without a commit`, {
        hint: 'report this binlog sequence; the connector cannot tell whether the group committed',
      });
    }
    if (this.lane === null) this.lane = lane;
    if (lane !== this.lane) {
      throw new ChartlogError('source_setup', `the binlog holds transactions in GTID domains ${this.lane} and ${lane}; positions of different domains have no order`, {
        hint: 'capture a source whose writes use one gtid_domain_id (SET GLOBAL gtid_domain_id on every writer to the same value)',
      });
    }
    // A `from` inside a transaction (a piece of a large one was the last durable) reads that
    // transaction again and drops the events up to it.
    const f = this.from;
    const skip = f !== null && (commit < f.commit || (commit === f.commit && f.seq === COMMIT_SEQ));
    const skipThrough = f !== null && commit === f.commit && f.seq !== COMMIT_SEQ ? f.seq : -1;
    this.txn = { txId, commit, skip, skipThrough, standalone, events: [], seq: 0, taken: 0, ...(xa ? { xa } : {}) };
    return null;
  }

  /**
   * XA, two-phase: the prepare group's rows wait here, in memory, until the group that commits
   * them (XA COMMIT, its own GTID, which is where they become visible and so where they are
   * emitted) or drops them (XA ROLLBACK). One-phase XA commits at its prepare event.
   */
  private xaPrepare(key: string, onePhase: boolean, timestampMs: number): Completed | null {
    const txn = this.txn;
    if (!txn) return null;
    if (onePhase) return this.end(timestampMs, []);
    this.txn = null;
    this.from = Position.of(txn.commit, COMMIT_SEQ);
    if (!txn.skip) this.prepared.set(key, { group: txn.commit, taken: txn.taken, events: txn.events });
    return null;
  }

  private xaComplete(txn: OpenTransaction, key: string, query: string, timestampMs: number): Completed | null {
    const rows = this.prepared.get(key);
    this.prepared.delete(key);
    if (/^\s*XA\s+ROLLBACK\b/i.test(query) || txn.skip) {
      if (rows && rows.taken > 0) this.dropped.push(rows.group);
      return this.end(timestampMs, []);
    }
    if (!rows) {
      throw new ChartlogError('decode', `XA transaction committed in ${txn.txId} was prepared before the stream's start position; its rows were not read`, {
        hint: 'take a new base snapshot from the source (chartlog snapshot --from-source): the rows of that XA transaction are not in the archive',
      });
    }
    // The rows become this group's: seq continues after the taken ones, which the caller renumbers.
    txn.seq = rows.taken;
    txn.taken = rows.taken;
    for (const e of rows.events) {
      const seq = txn.seq++;
      if (seq > txn.skipThrough) txn.events.push({ ...e, position: Position.of(txn.commit, seq) });
    }
    const done = this.end(timestampMs, []);
    if (!done || rows.taken === 0) return done;
    return { batch: done.batch, taken: { group: rows.group, count: rows.taken, renumber: true, skipThrough: txn.skipThrough } };
  }

  private tablemap(tableId: number, schema: string, table: string, columns: readonly TablemapColumn[]): void {
    if (!this.captures(schema, table)) {
      this.byTableId.set(tableId, null);
      return;
    }
    const name = qualifiedName({ schema, table });
    const tracked = this.tracked.get(name);
    const key = `${name}\u0000${columns.map((c) => `${c.name}\u0001${c.columnType}\u0001${(c.values ?? []).join('\u0002')}`).join('\u0000')}`;
    const cached = this.versions.get(key);
    let version: TableSchema;
    if (cached && cached.tracked === tracked) {
      version = cached.version;
    } else {
      version = versionFor(tracked, schema, table, columns);
      this.versions.set(key, { tracked, version });
    }
    this.byTableId.set(tableId, version);
  }

  private rows(op: 'c' | 'u' | 'd', tableId: number, rows: readonly unknown[]): void {
    const txn = this.txn;
    const schema = this.byTableId.get(tableId);
    if (schema === undefined) {
      throw new ChartlogError('decode', `row event for table id ${tableId} without its table map`, { retriable: true });
    }
    if (!txn || txn.skip || schema === null) return;
    if (rows.length === 1 && rows[0] instanceof RowImages) {
      // Read straight from the packet bytes (row-images.ts); UPDATE: before, after, before, …
      const images = rows[0];
      const decoded = rowImagesReader(images, schema)(images);
      const step = op === 'u' ? 2 : 1;
      if (decoded.length % step !== 0) throw new ChartlogError('decode', `update rows event of ${qualifiedName(schema)} ends after a before image`, { retriable: true });
      for (let i = 0; i < decoded.length; i += step) {
        const seq = txn.seq++;
        if (seq <= txn.skipThrough) continue;
        const before = op === 'c' ? null : decoded[i]!;
        const after = op === 'd' ? null : op === 'u' ? decoded[i + 1]! : decoded[i]!;
        txn.events.push({ op, schema, before, after, position: Position.of(txn.commit, seq) });
      }
      return;
    }
    const d = this.decoderOf(schema);
    for (const r of rows) {
      let before: Row | null = null;
      let after: Row | null = null;
      if (op === 'u') {
        const pair = r as { before: Record<string, unknown>; after: Record<string, unknown> };
        before = decodeRow(d, pair.before);
        after = decodeRow(d, pair.after);
      } else if (op === 'c') {
        after = decodeRow(d, r as Record<string, unknown>);
      } else {
        before = decodeRow(d, r as Record<string, unknown>);
      }
      const seq = txn.seq++;
      if (seq > txn.skipThrough) txn.events.push({ op, schema, before, after, position: Position.of(txn.commit, seq) });
    }
  }

  private statement(record: Extract<BinlogRecord, { type: 'statement' }>): Completed | null {
    const txn = this.txn;
    if (!txn) return null;
    if (/^\s*XA\s+(START|BEGIN|END)\b/i.test(record.query)) {
      txn.standalone = false; // MySQL's XA prepare group: rows follow, XA PREPARE ends it
      return null;
    }
    if (/^\s*XA\s+(COMMIT|ROLLBACK)\b/i.test(record.query)) {
      const key = txn.xa?.key ?? xaKeyOfQuery(record.query);
      if (key === null) {
        throw new ChartlogError('decode', `cannot read the XA id of the statement in ${txn.txId}`, { hint: 'report this binlog sequence' });
      }
      return this.xaComplete(txn, key, record.query, record.timestampMs);
    }
    if (!txn.standalone) {
      // SAVEPOINT and the like inside a transaction: nothing to capture.
      if (/^\s*(COMMIT|ROLLBACK)\b/i.test(record.query)) return this.end(record.timestampMs, []);
      return null;
    }
    const changes: TableSchema[] = [];
    // DROP TABLE: each captured table it names ends here (op x), under the version it had.
    for (const d of droppedTables(record.query, record.schema)) {
      const schema = this.tracked.get(qualifiedName(d));
      if (schema && this.captures(d.schema, d.table) && !txn.skip) {
        txn.events.push({ op: 'x', schema, before: null, after: null, position: Position.of(txn.commit, txn.events.length) });
      }
    }
    // The tables this statement ends (DROP TABLE, a rename's old name).
    const ended = new Set(droppedTables(record.query, record.schema).map(qualifiedName));
    // RENAME TABLE (or ALTER … RENAME TO): the old name's history ends here, as with DROP TABLE;
    // the table goes on under its new name, which the connector has re-read (automatic resync).
    for (const e of ddlEffects(record.query, record.schema)) {
      if (!e.table || !e.renamedTo) continue;
      ended.add(qualifiedName(e.table));
      const schema = this.tracked.get(qualifiedName(e.table));
      if (schema && this.captures(e.table.schema, e.table.table) && !txn.skip) {
        const seq = txn.seq++;
        if (seq > txn.skipThrough) txn.events.push({ op: 'x', schema, before: null, after: null, position: Position.of(txn.commit, seq) });
      }
    }
    for (const [name, t] of record.refreshed ?? []) {
      const before = this.tracked.get(name);
      if (t === null) {
        // The catalogue is read when the statement is, which on a backlog is after later DDL: a
        // table gone by a later RENAME or DROP stays tracked until that statement comes (it ends
        // the table's history there). Other statements (DROP DATABASE, …) forget it as before.
        if (ended.has(name) || !/^\s*(?:\/\*.*?\*\/\s*)*(ALTER|CREATE|RENAME)\b/is.test(record.query)) this.tracked.delete(name);
      } else if (!before || !sameTableSchema(before, t)) {
        this.tracked.set(name, t);
        changes.push(t);
      }
    }
    const truncated = truncatedTable(record.query, record.schema);
    if (truncated && this.captures(truncated.schema, truncated.table) && !txn.skip) {
      const schema = this.tracked.get(qualifiedName(truncated));
      if (schema) {
        const seq = txn.seq++;
        if (seq > txn.skipThrough) txn.events.push({ op: 't', schema, before: null, after: null, position: Position.of(txn.commit, seq) });
      }
    }
    return this.end(record.timestampMs, changes);
  }

  private end(timestampMs: number, schemaChanges: TableSchema[]): Completed | null {
    const txn = this.txn;
    if (!txn) return null;
    this.txn = null;
    if (txn.skip) return null;
    const position = Position.of(txn.commit, COMMIT_SEQ);
    this.from = position;
    if (txn.events.length === 0 && txn.taken === 0 && schemaChanges.length === 0) return null;
    const batch: ChangeBatch = {
      source: this.source,
      txId: txn.txId,
      position,
      commitTsUs: BigInt(timestampMs) * 1000n,
      snapshot: false,
      events: txn.events,
      ...(schemaChanges.length > 0 ? { schemaChanges } : {}),
    };
    if (txn.taken === 0) return { batch };
    return { batch, taken: { group: txn.commit, count: txn.taken, renumber: false, skipThrough: txn.skipThrough } };
  }

  private decoderOf(schema: TableSchema): { names: string[]; decode: CellDecoder[] } {
    let d = this.decoders.get(schema);
    if (!d) {
      d = { names: schema.columns.map((c) => c.name), decode: schema.columns.map((c) => cellDecoder(c)) };
      this.decoders.set(schema, d);
    }
    return d;
  }
}

/** A decoded row in the table version's column order. */
export function decodeRow(d: { names: string[]; decode: CellDecoder[] }, raw: Record<string, unknown>): Row {
  const row: Record<string, CellValue> = {};
  for (let i = 0; i < d.names.length; i++) {
    const name = d.names[i]!;
    row[name] = d.decode[i]!(raw[name]);
  }
  return row;
}

/** The table a TRUNCATE statement names, or null for any other statement. */
export function truncatedTable(query: string, defaultSchema: string): { schema: string; table: string } | null {
  const ident = '(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$\\u0080-\\uffff]+))';
  const re = new RegExp(`^\\s*(?:/\\*.*?\\*/\\s*)*TRUNCATE\\s+(?:TABLE\\s+)?${ident}(?:\\s*\\.\\s*${ident})?`, 'is');
  const m = re.exec(query);
  if (!m) return null;
  const first = (m[1] ?? m[2] ?? '').replace(/``/g, '`');
  const second = m[3] ?? m[4];
  if (second === undefined) return { schema: defaultSchema, table: first };
  return { schema: first, table: second.replace(/``/g, '`') };
}

/** The tables a `DROP TABLE` statement names (none for any other statement, or a TEMPORARY table). */
export function droppedTables(query: string, defaultSchema: string): { schema: string; table: string }[] {
  const m = /^\s*(?:\/\*.*?\*\/\s*)*DROP\s+TABLES?\s+(?:IF\s+EXISTS\s+)?(.*)$/is.exec(query);
  if (!m) return [];
  const ident = '(?:`((?:[^`]|``)+)`|([A-Za-z0-9_$\\u0080-\\uffff]+))';
  const one = new RegExp(`^\\s*${ident}(?:\\s*\\.\\s*${ident})?\\s*(,|$|/\\*|\\s(?:RESTRICT|CASCADE|WAIT|NOWAIT)\\b)`, 'is');
  const out: { schema: string; table: string }[] = [];
  let rest = m[1]!;
  for (;;) {
    const t = one.exec(rest);
    if (!t) return out;
    const first = (t[1] ?? t[2] ?? '').replace(/``/g, '`');
    const second = t[3] ?? t[4];
    out.push(second === undefined ? { schema: defaultSchema, table: first } : { schema: first, table: second.replace(/``/g, '`') });
    if (t[5] !== ',') return out;
    rest = rest.slice(t[0].length);
  }
}

/**
 * The XA id an XA COMMIT/ROLLBACK statement names, as MySQL logs it (X'gtrid',X'bqual',format),
 * in the form the binlog reader builds from XA events; null when the text has another form.
 */
export function xaKeyOfQuery(query: string): string | null {
  const m = /^\s*XA\s+(?:COMMIT|ROLLBACK)\s+X'([0-9a-f]*)'\s*,\s*X'([0-9a-f]*)'\s*,\s*(\d+)/i.exec(query);
  return m ? `${m[3]}.${m[1]!.toLowerCase()}.${m[2]!.toLowerCase()}` : null;
}

/** Records whose statement may change a table's shape (so the caller refreshes its versions). */
export function isSchemaStatement(query: string): boolean {
  return /^\s*(?:\/\*.*?\*\/\s*)*(ALTER|CREATE|DROP|RENAME|TRUNCATE)\b/is.test(query);
}

export type { Op };
