import { tmpdir } from 'node:os';
import type { RecordTableStart } from '../../src/core/table-start.js';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import type { ConnectionOptions } from 'mysql2';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { type Logger, logger as rootLogger } from '../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import { Backoff, gaveUp, sleep, type ReconnectPolicy } from '../../src/core/retry.js';
import type { ConnectorCapabilities, SampledRow, SnapshotOptions, SourceConnector, StreamOptions } from '../../src/core/source-connector.js';
import type { RequestResync, ResyncRequest } from '../../src/core/resync-request.js';
import { qualifiedName, type TableSchema } from '../../src/core/table-schema.js';
import { TlsPreference, type TlsSettings } from '../../src/core/tls-settings.js';
import { committedBy, formatMariadbGtid, mariadbGtidOf, MYSQL_COMMIT_TIME_RESOLUTION_US, mysqlGtidOf, mysqlResumeSet } from './binlog-position.js';
import { BinlogReader } from './binlog-reader.js';
import { connectionOptions, serverHasNoTls, sourceError } from './connection-settings.js';
import { EventSpill } from './event-spill.js';
import { type Completed, RowsEventConverter, isSchemaStatement } from './rows-event-converter.js';
import { loadColumnDefaults, withMissingValues } from './added-columns.js';
import { createdTable, ddlEffects, namesOnlyOtherSchemas, tablesNamed } from './ddl-effect.js';
import { loadTableSchemas, tableFilter } from './schema-loader.js';
import { type ServerInfo, checkSource, defaultServerId } from './setup-check.js';
import { sampleRows } from './sample-rows.js';
import { readSnapshot } from './snapshot.js';
import { sameTableSchema } from './table-version.js';

/** The slice of a source's configuration (src/config/schema.ts) this connector reads. */
export interface MysqlSourceSettings {
  readonly name: string;
  readonly url: string;
  readonly tables?: readonly string[];
  readonly tls?: TlsSettings;
  readonly mysql?: { readonly serverId?: number; readonly watchdogMs?: number; readonly spillThresholdBytes?: number };
  readonly snapshot?: { readonly chunkRows?: number };
  /** Backoff between binlog reconnects, and attempts in a row before giving up (default: never). */
  readonly reconnect?: ReconnectPolicy;
}

export interface MysqlConnectorDeps {
  /** Records a captured table's start (CREATE TABLE) in the archive (src/core/table-start.ts). */
  readonly recordTableStart?: RecordTableStart;
  readonly log?: Logger;
  /** Rows buffered unread before the binlog is paused. Default 10 000. */
  readonly highWater?: number;
  /** Directory for spilled transactions. Default: <tmpdir>/chartlog-spill. */
  readonly spillDir?: string;
  /** Events per delivered batch before a transaction is split into partial batches. Default MAX_BATCH_EVENTS. */
  readonly maxBatchEvents?: number;
  /** How a table a DDL rewrote is re-read (src/core/source-connector.ts ConnectorOptions). */
  readonly requestResync?: RequestResync;
}

/**
 * Events an open transaction collects before they are taken out into its EventSpill: small
 * transactions never pay for serialisation, large ones hold at most this many decoded events.
 */
const SPILL_GROUP_EVENTS = 1000;

/**
 * Events per piece of a large transaction. Every stage holds a piece or two at once (the
 * decoded events, their encoding and sealing, the bus, the part writer), so the piece size
 * multiplies the peak memory of a large transaction: with 10,000 events the 1M-row transaction
 * of benchmarks/memory.bench.ts peaked at 413 MiB, with 2,500 (and the lower reader high-water
 * and crypto-thread limits) at 383 MiB (benchmarks/results/memory-mariadb.json). Smaller
 * pieces cost one transaction-log record each.
 */
const MAX_BATCH_EVENTS = 2_500;

/**
 * Rows the binlog reader queues before it pauses the connection (binlog-reader.ts). Rows that
 * wait long enough survive two scavenges and are promoted to V8's old generation, where they
 * stay as garbage until a full collection: a short queue keeps them young. The server (the
 * socket) holds the rest; reading resumes at half.
 */
const READER_HIGH_WATER = 2_000;

/**
 * MySQL/MariaDB as a SourceConnector: a lock-free consistent snapshot (snapshot.ts) and the
 * binlog as whole transactions (binlog-reader.ts → rows-event-converter.ts), positioned by GTID
 * (binlog-position.ts) so a promoted replica continues the same stream.
 *
 * Faults: a lost, refused or silent binlog connection (watchdog) is retried inside `stream()`
 * with the source's backoff (`reconnect`: 0.25 s doubling to 30 s by default, src/core/retry.ts)
 * by a NEW zongji instance that resumes after the last transaction this stream already yielded,
 * so nothing repeats and nothing is skipped. It retries for as long as it takes unless
 * `reconnect.maxAttempts` is set: after that many failures in a row (no binlog record in
 * between) the last error is thrown, no longer retriable. Fatal errors (setup, a server-id
 * clash, a purged binlog) stop at once with a hint.
 *
 * MySQL has no server-side acknowledgement: `acknowledge()` records the checkpoint in memory
 * (`acknowledged`); the pipeline persists it and passes it back as `from`.
 *
 * Large transactions (docs/architecture.md, "Large transactions"): the binlog shows a
 * transaction's end only after all its rows, so rows are taken out of the converter every
 * SPILL_GROUP_EVENTS events into an EventSpill (the shared TransactionBuffer: in memory up to
 * `mysql.spillThresholdBytes`, then an encrypted file). At its commit the transaction is
 * delivered like PostgreSQL's: batches of at most `maxBatchEvents` events, every one but the
 * last `partial` with the position of its last event, the last with the transaction's position.
 * `stream({ from })` with a partial position reads that transaction again and resumes after
 * the given event.
 *
 * XA: a prepared transaction's rows are in the binlog at XA PREPARE but committed only at its
 * XA COMMIT, a later group; they wait (spilled like any transaction) in this process only. So
 * that a restart can read them again, nothing after the oldest pending XA PREPARE is delivered
 * while it is pending: later transactions are held, and delivered in order once no XA
 * transaction is prepared any more. The durable checkpoint therefore never passes a PREPARE
 * whose rows are not durable; a restart re-reads the PREPARE group. The cost is freshness while
 * an XA transaction stays prepared (a warning names it).
 *
 * MySQL 8 cannot be run on this machine: its paths (snapshot under a brief FLUSH TABLES WITH
 * READ LOCK, uuid:gno GTIDs with ordinals, the resume set rebuilt from gtid_executed) are
 * written to the protocol and unit-tested where pure, but were never run against a server.
 */
export class MysqlConnector implements SourceConnector {
  /** Whole seconds: see MYSQL_COMMIT_TIME_RESOLUTION_US. */
  static readonly commitTimeResolutionUs = MYSQL_COMMIT_TIME_RESOLUTION_US;
  readonly name: string;
  readonly capabilities: ConnectorCapabilities = Object.freeze({
    beforeImage: 'full',
    truncate: true,
    snapshot: true,
    unchangedValues: false,
  });
  readonly serverId: number;
  private readonly tls: TlsPreference;
  private readonly captures: (schema: string, table: string) => boolean;
  private readonly log: Logger;
  private info: ServerInfo | null = null;
  private readonly readers = new Set<BinlogReader>();
  private readonly conns = new Set<mysql.Connection>();
  private acked: Position | null = null;
  private closed = false;
  private closedPauses = 0;
  private closedMaxQueued = 0;
  /** Binlog reconnects so far (lost connections and watchdog expiries). */
  reconnects = 0;
  /** Transactions delivered in partial batches so far, and how many of them went to disk. */
  readonly large = { split: 0, spilled: 0 };
  private readonly maxBatchEvents: number;
  private readonly spillDir: string;

  constructor(
    private readonly settings: MysqlSourceSettings,
    private readonly deps: MysqlConnectorDeps = {},
  ) {
    this.name = settings.name;
    this.serverId = settings.mysql?.serverId ?? defaultServerId(settings.name);
    connectionOptions(settings.url, settings.tls); // a bad URL fails here, at construction
    this.captures = tableFilter(settings.tables);
    this.log = (deps.log ?? rootLogger()).child({ source: settings.name, connector: 'mysql' });
    this.tls = new TlsPreference(settings.name, settings.tls?.mode ?? 'disable', this.log);
    this.maxBatchEvents = deps.maxBatchEvents ?? MAX_BATCH_EVENTS;
    this.spillDir = deps.spillDir ?? join(tmpdir(), 'chartlog-spill');
  }

  /** Backpressure pauses of the binlog connection so far (observability, tests). */
  get pauses(): number {
    return this.closedPauses + [...this.readers].reduce((n, r) => n + r.pauses, 0);
  }

  /** Most binlog rows ever buffered unread: the memory bound backpressure keeps. */
  get maxQueued(): number {
    return Math.max(this.closedMaxQueued, ...[...this.readers].map((r) => r.maxQueued));
  }

  /** The last position acknowledged: the checkpoint to resume from after a restart. */
  get acknowledged(): Position | null {
    return this.acked;
  }

  async check(): Promise<void> {
    await this.serverInfo(true);
  }

  async tables(): Promise<readonly TableSchema[]> {
    const configured = this.settings.tables;
    const schemas = configured && configured.length > 0 ? [...new Set(configured.map((t) => t.slice(0, t.indexOf('.'))))] : undefined;
    try {
      return [...(await this.withConnection((c) => loadTableSchemas(c, this.captures, schemas))).values()];
    } catch (err) {
      throw sourceError(err);
    }
  }

  async sample(table: TableSchema, limit: number): Promise<readonly SampledRow[]> {
    try {
      return await this.withConnection((c) => sampleRows(c, table, limit));
    } catch (err) {
      throw sourceError(err);
    }
  }

  async *snapshot(options: SnapshotOptions = {}): AsyncIterable<ChangeBatch> {
    const info = await this.serverInfo(false);
    const conn = await this.open();
    try {
      yield* readSnapshot(conn, {
        source: this.name,
        mariadb: info.mariadb,
        captures: this.captures,
        ...(options.tables ? { tables: options.tables } : {}),
        chunkRows: options.chunkRows ?? this.settings.snapshot?.chunkRows ?? 10_000,
        ...(options.signal ? { signal: options.signal } : {}),
        log: this.log,
      });
    } catch (err) {
      throw sourceError(err);
    } finally {
      await this.release(conn);
    }
  }

  /**
   * Transactions committed after `options.from` (a position this source produced: a snapshot's
   * or a batch's). With `from: null` the stream starts at the oldest binlog the server still has.
   */
  async *stream(options: StreamOptions): AsyncIterable<ChangeBatch> {
    const info = await this.serverInfo(false);
    if (options.from && (info.mariadb ? !mariadbGtidOf(options.from.commit) : !mysqlGtidOf(options.from.commit))) {
      throw new ChartlogError('usage', `position ${Position.format(options.from)} is not a ${info.mariadb ? 'MariaDB' : 'MySQL'} GTID position`, {
        hint: 'resume from a position this source produced (chartlog timeline)',
      });
    }
    const tables = await this.withConnection((c) => loadTableSchemas(c, this.captures)).catch((err: unknown) => {
      throw sourceError(err);
    });
    // What the server had committed when those columns were read (read after them): a DDL
    // statement within it may already show in them (see resyncRewritten, `ahead`).
    let catalogHead = await this.binlogHead(info);
    const converter = new RowsEventConverter({ source: this.name, from: options.from, tables, captures: this.captures });
    const watchdogMs = this.settings.mysql?.watchdogMs ?? 30_000;
    const backoff = new Backoff(this.settings.reconnect);
    // Taken events of open and prepared groups, by group; completions held behind a pending XA PREPARE.
    const spills = new Map<string, EventSpill>();
    const held: Completed[] = [];
    let heldSince = 0;
    try {
    while (!options.signal?.aborted && !this.closed) {
      let reader: BinlogReader | null = null;
      const onAbort = (): void => reader?.close();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const start = await this.resumePoint(info, converter.resumeFrom);
        // tls.mode prefer: zongji's connections follow what the server offers now.
        if (this.tls.mode === 'prefer') await this.withConnection(async () => undefined);
        reader = new BinlogReader({
          connection: this.connection(this.tls.lastUsedTls),
          serverId: this.serverId,
          gtidPosition: start.gtids,
          ...(start.ordinal !== undefined ? { mysqlOrdinal: start.ordinal } : {}),
          ...this.schemaFilter(),
          watchdogMs,
          highWater: this.deps.highWater ?? READER_HIGH_WATER,
          log: this.log,
        });
        this.readers.add(reader);
        for await (const record of reader) {
          backoff.reset(); // the connection works again
          let r = record;
          if (r.type === 'statement' && isSchemaStatement(r.query) && !namesOnlyOtherSchemas(r.query, r.schema, this.capturedSchemas)) {
            const refreshed = await this.withConnection((c) => loadTableSchemas(c, this.captures));
            const group = converter.openGroup;
            // The versions compared with were read after this statement committed: they may show it already.
            const ahead = group === null || committedBy(group, catalogHead);
            catalogHead = await this.binlogHead(info);
            const unknownMissing = await this.noteMissingValues(refreshed, converter.tables, r.query, r.schema);
            // Durable before (a group read again): its resync, if any, was asked for then.
            // The statement's own position and (whole-second) time open the tables' unproven window.
            const window = group ? { from: Position.of(group, 0), fromCommitTsUs: BigInt(r.timestampMs) * 1000n, seenAt: Position.of(group) } : undefined;
            if (!converter.skipping) this.resyncRewritten(r.query, r.schema, converter.tables, refreshed, unknownMissing, window, ahead);
            await this.recordStart(r.query, r.schema, converter.tables, refreshed, group, BigInt(r.timestampMs) * 1000n);
            const all = new Map<string, TableSchema | null>(refreshed);
            for (const name of converter.tables.keys()) if (!refreshed.has(name)) all.set(name, null);
            r = { ...r, refreshed: all };
          }
          const done = converter.pushRecord(r);
          if (converter.collected >= SPILL_GROUP_EVENTS) {
            const group = converter.openGroup!;
            let spill = spills.get(group);
            if (!spill) {
              spill = new EventSpill({ spillThresholdBytes: this.settings.mysql?.spillThresholdBytes ?? 8 * 1024 * 1024, spillDir: this.spillDir });
              spills.set(group, spill);
            }
            await spill.add(converter.takeEvents());
          }
          for (const group of converter.takeDropped()) {
            await spills.get(group)?.discard();
            spills.delete(group);
          }
          if (!done) continue;
          if (converter.preparedCount > 0) {
            // Delivered only once no XA PREPARE is pending (see the class comment).
            if (held.length === 0) {
              heldSince = Date.now();
              this.log.warn({ position: Position.format(done.batch.position), prepared: converter.preparedCount }, 'an XA transaction is prepared: later transactions are held until it commits or rolls back');
            }
            held.push(done);
            continue;
          }
          if (held.length > 0) {
            this.log.info({ transactions: held.length, heldMs: Date.now() - heldSince }, 'no XA transaction prepared any more: delivering the held transactions');
            for (const h of held.splice(0)) yield* this.deliver(h, spills);
          }
          yield* this.deliver(done, spills);
        }
        if (options.signal?.aborted || this.closed) return;
        throw new ChartlogError('connection', 'the binlog stream ended', { retriable: true });
      } catch (err) {
        const e = sourceError(err);
        if (options.signal?.aborted || this.closed) return;
        if (!e.retriable) {
          if (e.code === 'source_setup' && /server id/.test(e.message) && reader) throw await this.nameClash(e, reader);
          throw e;
        }
        const delay = backoff.next();
        if (delay === null) throw gaveUp(e, backoff.attempts);
        this.reconnects++;
        this.log.warn({ err: e, attempt: backoff.attempts, delayMs: delay, resumeFrom: converter.resumeFrom ? Position.format(converter.resumeFrom) : null }, 'binlog connection lost; reconnecting');
        await sleep(delay, options.signal);
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        if (reader) {
          this.closedPauses += reader.pauses;
          this.closedMaxQueued = Math.max(this.closedMaxQueued, reader.maxQueued);
          reader.close();
          this.readers.delete(reader);
        }
        converter.abandonTransaction();
        for (const group of converter.takeDropped()) {
          await spills.get(group)?.discard();
          spills.delete(group);
        }
      }
    }
    } finally {
      for (const spill of spills.values()) await spill.discard();
    }
  }

  /**
   * One completed transaction as batches: the events taken out while it was read (its spill)
   * first, then the rest; at most `maxBatchEvents` per batch, all but the last `partial`.
   */
  private async *deliver(done: Completed, spills: Map<string, EventSpill>): AsyncGenerator<ChangeBatch> {
    const b = done.batch;
    const t = done.taken;
    if (!t && b.events.length <= this.maxBatchEvents) {
      yield b;
      return;
    }
    let spill: EventSpill | undefined;
    if (t) {
      spill = spills.get(t.group);
      spills.delete(t.group);
      if (!spill || spill.size !== t.count) {
        await spill?.discard();
        throw new ChartlogError('internal', `the spilled events of ${Position.format(b.position)} are missing (${spill?.size ?? 0} of ${t.count})`, {
          hint: 'report this; restarting reads the transaction again',
          retriable: true,
        });
      }
    }
    // An XA transaction is delivered whole: a restart inside it would start reading after its
    // PREPARE group, whose rows it needs (the PREPARE precedes the XA COMMIT's position), so its
    // pieces could never be completed. XA transactions are small as a rule; a large one costs
    // memory here rather than risk the stream.
    const max = t?.renumber ? Number.POSITIVE_INFINITY : this.maxBatchEvents;
    if (t?.renumber && t.count > this.maxBatchEvents) {
      this.log.warn({ position: Position.format(b.position), events: t.count + b.events.length }, 'large XA transaction delivered whole (not in pieces)');
    }
    const { events: tail, schemaChanges, ...base } = b;
    let events: ChangeEvent[] = [];
    let delivered = 0;
    const spilled = spill?.spilled ?? false;
    const piece = (): ChangeBatch => ({ ...base, position: events[events.length - 1]!.position, events, partial: true });
    try {
      if (spill && t) {
        for await (const group of spill.drain(b.position.commit, t.renumber)) {
          for (const e of group) {
            if (t.renumber && e.position.seq <= t.skipThrough) continue;
            if (events.length >= max) {
              yield piece();
              delivered += events.length;
              events = [];
            }
            events.push(e);
          }
        }
      }
      for (const e of tail) {
        if (events.length >= max) {
          yield piece();
          delivered += events.length;
          events = [];
        }
        events.push(e);
      }
    } finally {
      await spill?.discard();
    }
    if (delivered === 0) {
      yield { ...b, events, ...(schemaChanges ? { schemaChanges } : {}) };
      return;
    }
    this.large.split++;
    if (spilled) this.large.spilled++;
    this.log.info({ position: Position.format(b.position), events: delivered + events.length, spilled }, 'large transaction delivered in partial batches');
    yield { ...b, events, ...(schemaChanges ? { schemaChanges } : {}) };
  }

  /**
   * After a DDL statement: each refreshed version gets what rows older than its columns read
   * (added-columns.ts) — kept from the version before for columns it had, from the catalogue's
   * default (checked against the statement) for columns the statement added.
   */
  /**
   * CREATE TABLE of a captured table this stream did not have: its start is recorded (exactly:
   * the statement's own position and whole-second time) before anything after it is handed on,
   * so a restore to an earlier moment leaves the table out (src/core/table-start.ts). A table
   * the catalogue already showed when the stream started (created while chartlog was stopped)
   * gets no record: restore creates it as before.
   */
  private async recordStart(statement: string, defaultSchema: string, tracked: ReadonlyMap<string, TableSchema>, refreshed: ReadonlyMap<string, TableSchema>, group: string | null, timeUs: bigint): Promise<void> {
    const created = createdTable(statement, defaultSchema);
    if (!created || !group || !this.deps.recordTableStart) return;
    const name = qualifiedName(created);
    if (tracked.has(name) || !refreshed.has(name)) return;
    await this.deps.recordTableStart({ table: name, from: Position.of(group, 0), fromCommitTsUs: timeUs, seenAt: Position.of(group), seenAtCommitTsUs: timeUs });
    this.log.info({ table: name, position: Position.format(Position.of(group)) }, 'table created (CREATE TABLE): its start recorded');
  }

  private async noteMissingValues(refreshed: Map<string, TableSchema>, tracked: ReadonlyMap<string, TableSchema>, statement: string, defaultSchema: string): Promise<Map<string, string>> {
    const unknown = new Map<string, string>();
    // Column renames by table: rows older than the rename hold the value under the old name.
    const renames = new Map<string, ReadonlyMap<string, string>>();
    const effects = ddlEffects(statement, defaultSchema);
    for (const e of effects) if (e.table && e.renamedColumns) renames.set(qualifiedName(e.table), e.renamedColumns);
    // The tables whose columns this statement can change (ddl-effect.ts tablesNamed).
    const named = tablesNamed(effects);
    for (const [name, next] of refreshed) {
      const previous = tracked.get(name);
      if (!previous) continue;
      // The catalogue is read when the statement is processed: behind a backlog it may already
      // show a later ALTER of a table this statement does not name (e.g. a replica's DDL in
      // another database, binlogged before that ALTER). That change is left to its own
      // statement, which then reads it with the statement's text (a constant default it spells).
      if (named && !named.has(name) && !sameColumnNames(previous, next)) {
        refreshed.set(name, previous);
        continue;
      }
      const known = new Set(previous.columns.map((c) => c.name));
      const added = next.columns.some((c) => !known.has(c.name));
      const defaults = added ? await this.withConnection((c) => loadColumnDefaults(c, next.schema, next.table)) : new Map<string, string | null>();
      const version = withMissingValues(previous, next, defaults, statement, renames.get(name));
      for (const c of version.columns) {
        if (!known.has(c.name) && c.missing && 'unknown' in c.missing) {
          this.log.warn({ table: name, column: c.name, reason: c.missing.unknown },
            `rows of ${name} older than column ${c.name} cannot be restored past this change until the table is re-read: chartlog resync --tables ${name}`);
          if (!unknown.has(name)) unknown.set(name, c.missing.unknown);
        }
      }
      refreshed.set(name, version);
    }
    return unknown;
  }

  /**
   * After a DDL statement: each captured table whose existing rows may now hold values no row
   * event carries (ddl-effect.ts: a type change, a generated column, a conversion, a clause not
   * proven harmless; added-columns.ts: an added column whose value for older rows is unknown) is
   * re-read by an automatic resync. A statement whose table cannot be read re-reads every
   * captured table whose version it changed. Always logged with the reason.
   *
   * `ahead`: the versions the statement is compared with were read from INFORMATION_SCHEMA after
   * it committed — it was made while chartlog was stopped (the start reads the columns as they
   * are then), or behind a backlog — so they may already show what it did: an instant ADD COLUMN
   * … DEFAULT would look like no change, and older rows would read NULL in the column. What the
   * statement changed cannot be told, so every captured table it names (all, when it cannot be
   * read) is re-read, with the statement's window. Needless for a statement that changed no row
   * values (an index), never missing one that did.
   */
  private resyncRewritten(
    statement: string,
    defaultSchema: string,
    tracked: ReadonlyMap<string, TableSchema>,
    refreshed: ReadonlyMap<string, TableSchema>,
    unknownMissing: ReadonlyMap<string, string>,
    window?: ResyncRequest['window'],
    ahead = false,
  ): void {
    const reasons = new Map<string, string>(unknownMissing);
    for (const e of ddlEffects(statement, defaultSchema)) {
      if (e.table && e.renamedTo) {
        // The archive ends the old name's history (op x); the table's rows are read again
        // under the new name, so a restore after the rename has them all.
        const from = qualifiedName(e.table);
        const to = qualifiedName(e.renamedTo);
        if (refreshed.has(to)) reasons.set(to, `renamed from ${from}: its rows are read again under the new name`);
        else if (tracked.has(from)) this.log.warn({ table: from, renamedTo: to }, `table ${from} was renamed to ${to}, which this source does not capture: its history ends here`);
        continue;
      }
      if (!e.resync) continue;
      if (e.table) {
        const name = qualifiedName(e.table);
        if (tracked.has(name) && refreshed.has(name) && !reasons.has(name)) reasons.set(name, e.resync);
        continue;
      }
      for (const [name, before] of tracked) {
        const after = refreshed.get(name);
        if (after && !sameTableSchema(before, after) && !reasons.has(name)) reasons.set(name, `${e.resync}; its columns changed`);
      }
    }
    // After the statement's own reasons, which say more.
    if (ahead) {
      const named = tablesNamed(ddlEffects(statement, defaultSchema));
      for (const name of refreshed.keys()) {
        if (!tracked.has(name) || (named !== null && !named.has(name)) || reasons.has(name)) continue;
        reasons.set(name, 'the statement committed before chartlog read the table\'s columns (made while chartlog was stopped, or read behind a backlog): what it changed cannot be told from them');
      }
    }
    for (const [table, reason] of reasons) {
      if (this.deps.requestResync) {
        this.log.warn({ table, reason }, `a DDL statement may have changed rows of ${table} without row events: re-reading the table (automatic resync)`);
        this.deps.requestResync({ tables: [table], reason, ...(window ? { window } : {}) });
      } else {
        this.log.warn({ table, reason }, `a DDL statement may have changed rows of ${table} without row events; re-read it: chartlog resync --tables ${table}`);
      }
    }
  }

  async acknowledge(position: Position): Promise<void> {
    if (!this.acked || Position.compare(position, this.acked) > 0) this.acked = position;
    this.log.debug({ position: Position.format(position) }, 'checkpoint acknowledged');
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.readers) r.close();
    this.readers.clear();
    await Promise.all([...this.conns].map((c) => this.release(c)));
  }

  /**
   * What the binlog dump starts from. MariaDB: the position's GTID. MySQL: the executed GTID set
   * up to the position, rebuilt from the server's gtid_executed (binlog-position.ts), and its size.
   */
  private async resumePoint(info: ServerInfo, from: Position | null): Promise<{ gtids: string; ordinal?: bigint }> {
    // A partial position (a piece of a large transaction): that transaction is read again, from
    // the GTID before it (the converter drops the events up to the position).
    const inside = from !== null && from.seq !== COMMIT_SEQ;
    if (info.mariadb) {
      const g = from ? mariadbGtidOf(from.commit) : null;
      if (g && inside) return { gtids: g.seq > 1n ? formatMariadbGtid({ ...g, seq: g.seq - 1n }) : '' };
      return { gtids: g ? formatMariadbGtid(g) : '' };
    }
    const found = from ? mysqlGtidOf(from.commit) : null;
    const at = found && inside ? { ...found, ordinal: found.ordinal - 1n, gno: found.gno - 1n } : found;
    if (!at || at.ordinal === 0n) return { gtids: '', ordinal: 0n };
    const executed = await this.withConnection(async (c) => {
      const [rows] = await c.query('SELECT @@GLOBAL.gtid_executed AS g');
      return String((rows as { g: string }[])[0]?.g ?? '');
    });
    return { gtids: mysqlResumeSet(executed, at), ordinal: at.ordinal };
  }

  /** The server's committed GTIDs now: MariaDB @@gtid_binlog_pos, MySQL @@gtid_executed (binlog-position.ts committedBy). */
  private async binlogHead(info: ServerInfo): Promise<string> {
    return this.withConnection(async (c) => {
      const [rows] = await c.query(info.mariadb ? 'SELECT @@GLOBAL.gtid_binlog_pos AS g' : 'SELECT @@GLOBAL.gtid_executed AS g');
      return String((rows as { g: string }[])[0]?.g ?? '');
    }).catch((err: unknown) => {
      throw sourceError(err);
    });
  }

  /** The schemas the `tables` setting names (lower case); null when it names none (every schema may be captured). */
  private get capturedSchemas(): ReadonlySet<string> | null {
    const tables = this.settings.tables;
    if (!tables || tables.length === 0) return null;
    return new Set(tables.map((t) => t.slice(0, t.indexOf('.')).toLowerCase()));
  }

  private schemaFilter(): { includeSchema?: Record<string, string[]>; excludeSchema?: Record<string, true> } {
    const tables = this.settings.tables;
    if (!tables || tables.length === 0) {
      return { excludeSchema: { mysql: true, information_schema: true, performance_schema: true, sys: true } };
    }
    const include: Record<string, string[]> = {};
    for (const t of tables) {
      const dot = t.indexOf('.');
      const db = t.slice(0, dot);
      (include[db] ??= []).push(t.slice(dot + 1));
    }
    return { includeSchema: include };
  }

  private async serverInfo(force: boolean): Promise<ServerInfo> {
    if (this.info && !force) return this.info;
    try {
      this.info = await this.withConnection((c) =>
        checkSource(c, { serverId: this.serverId, tables: this.settings.tables ?? [], log: this.log }),
      );
    } catch (err) {
      throw sourceError(err);
    }
    return this.info;
  }

  /** A server-id clash, with the other binlog readers named from the processlist. */
  private async nameClash(e: ChartlogError, reader: BinlogReader): Promise<ChartlogError> {
    try {
      const others = await this.withConnection(async (c) => {
        const [rows] = await c.query(
          "SELECT ID AS id, USER AS user, HOST AS host, TIME AS secs FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' ORDER BY TIME",
        );
        return (rows as { id: number; user: string; host: string; secs: number }[]).filter((r) => r.id !== reader.threadId);
      });
      if (others.length === 0) return e;
      const names = others.map((o) => `thread ${o.id} (${o.user}@${o.host}, connected ${o.secs} s)`).join(', ');
      return new ChartlogError('source_setup', `${e.message}; binlog readers connected now: ${names}`, { hint: e.hint, cause: e });
    } catch {
      return e;
    }
  }

  private async open(): Promise<mysql.Connection> {
    try {
      const c = await this.tls.connect((useTls) => mysql.createConnection(this.connection(useTls)), serverHasNoTls);
      this.conns.add(c);
      return c;
    } catch (err) {
      throw sourceError(err);
    }
  }

  /** mysql2 options, with TLS or without (tls.mode prefer: TlsPreference decides). */
  private connection(useTls: boolean): ConnectionOptions {
    return connectionOptions(this.settings.url, this.settings.tls, useTls);
  }

  private async release(c: mysql.Connection): Promise<void> {
    if (!this.conns.delete(c)) return;
    await c.end().catch(() => c.destroy());
  }

  private async withConnection<T>(f: (c: mysql.Connection) => Promise<T>): Promise<T> {
    const c = await this.open();
    try {
      return await f(c);
    } finally {
      await this.release(c);
    }
  }
}

/** Whether two versions of a table have the same column names in the same order. */
function sameColumnNames(a: TableSchema, b: TableSchema): boolean {
  return a.columns.length === b.columns.length && a.columns.every((c, i) => c.name === b.columns[i]!.name);
}
