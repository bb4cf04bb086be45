import ZongJi from '@vlasky/zongji';
import type { ConnectionOptions } from 'mysql2';
import { ChartlogError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/logger.js';
import { mysqlCommit } from './binlog-position.js';
import { ROW_IMAGES, RowImages } from './row-images.js';
import { type BinlogRecord, mariadbGtidRecord } from './rows-event-converter.js';
import type { TablemapColumn } from './table-version.js';

export interface BinlogReaderOptions {
  readonly connection: ConnectionOptions;
  readonly serverId: number;
  /**
   * Where to resume: a MariaDB GTID position ('0-1-42') or a MySQL executed GTID set
   * ('uuid:1-42'); '' for the oldest binlog.
   */
  readonly gtidPosition: string;
  /** MySQL only: how many transactions `gtidPosition` holds (the ordinal of the next is one more). */
  readonly mysqlOrdinal?: bigint;
  /** zongji schema filter: the captured tables, or every database but the system ones. */
  readonly includeSchema?: Record<string, string[] | true>;
  readonly excludeSchema?: Record<string, string[] | true>;
  /** The connection is declared dead after this long without any packet (heartbeats included). */
  readonly watchdogMs: number;
  /** Rows (row images; other records count one) buffered before the binlog connection is paused. */
  readonly highWater: number;
  readonly log: Logger;
}

type Item = { record: BinlogRecord; weight: number } | { error: ChartlogError; weight: number };

/**
 * One binlog connection (one zongji instance) as an async iterable of BinlogRecords.
 *
 * zongji neither reconnects nor notices a silent connection, so:
 * - the server is asked for heartbeats (@master_heartbeat_period, a third of the watchdog time)
 *   and a watchdog ends the iteration with a retriable error when nothing at all has arrived
 *   for `watchdogMs` while reading was not paused;
 * - every connection error ends the iteration; the caller makes a new reader and resumes from
 *   its last position. A reader is never restarted.
 * Backpressure: when `highWater` records wait unread, the connection's socket is paused, so the
 * server holds the binlog, not this process; it resumes when the buffer is half drained.
 */
export class BinlogReader implements AsyncIterable<BinlogRecord> {
  private readonly z: ZongJi;
  private readonly queue: Item[] = [];
  private head = 0;
  private wake: (() => void) | null = null;
  private paused = false;
  /** Weight (rows) of the records waiting unread. */
  private queued = 0;
  private lastActivity = Date.now();
  private watchdog: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly mapper: RecordMapper;
  /** Times the binlog connection was paused for backpressure (for tests and metrics). */
  pauses = 0;
  /** Most rows ever waiting unread (bounded by highWater plus what one socket read holds). */
  maxQueued = 0;

  constructor(private readonly options: BinlogReaderOptions) {
    this.z = new ZongJi(options.connection);
    (this.z as unknown as Record<symbol, boolean>)[ROW_IMAGES] = true; // rows as bytes: row-images.ts
    this.mapper = new RecordMapper(options.mysqlOrdinal ?? 0n);
    this.z.on('binlog', (e) => this.onEvent(e as unknown as ZongjiEvent));
    this.z.on('error', (err) => this.push({ error: classify(err, options.serverId), weight: 0 }));
    this.z.start({
      serverId: options.serverId,
      gtidSet: options.gtidPosition,
      includeEvents: ['mariadbgtid', 'gtid', 'xaprepare', 'tablemap', 'writerows', 'updaterows', 'deleterows', 'xid', 'query', 'heartbeat', 'rotate'],
      ...(options.includeSchema ? { includeSchema: options.includeSchema } : {}),
      ...(options.excludeSchema ? { excludeSchema: options.excludeSchema } : {}),
    });
    // Queued on the binlog connection before zongji's dump command (which waits for its own
    // preamble queries), so the server sends heartbeats on this dump.
    const periodNs = BigInt(Math.max(1000, Math.floor(options.watchdogMs / 3))) * 1_000_000n;
    this.z.connection?.query(`SET @master_heartbeat_period = ${periodNs}`, () => undefined);
    this.z.connection?.on('end', () => this.push({ error: new ChartlogError('connection', 'the binlog connection was closed by the server', { retriable: true }), weight: 0 }));
    this.watchdog = setInterval(() => this.checkSilence(), Math.max(250, Math.floor(options.watchdogMs / 4)));
    this.watchdog.unref();
  }

  /** The thread id of the binlog connection on the server (to tell it apart in the processlist). */
  get threadId(): number | null {
    return this.z.connection?.threadId ?? null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    this.z.removeAllListeners('binlog');
    this.z.on('error', () => undefined);
    this.z.stop();
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<BinlogRecord> {
    try {
      for (;;) {
        if (this.head < this.queue.length) {
          const item = this.queue[this.head]!;
          this.queue[this.head++] = undefined as unknown as Item;
          if (this.head > 4096 && this.head * 2 > this.queue.length) {
            this.queue.splice(0, this.head);
            this.head = 0;
          }
          this.queued -= item.weight;
          if (this.paused && this.queued <= this.options.highWater / 2) {
            this.paused = false;
            this.lastActivity = Date.now();
            this.z.connection?.resume();
          }
          if ('error' in item) throw item.error;
          yield item.record;
          continue;
        }
        if (this.closed) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      this.close();
    }
  }

  private push(item: Item): void {
    if (this.closed) return;
    this.queue.push(item);
    this.queued += item.weight;
    if (this.queued > this.maxQueued) this.maxQueued = this.queued;
    if (!this.paused && this.queued >= this.options.highWater) {
      this.paused = true;
      this.pauses++;
      this.z.connection?.pause();
    }
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private checkSilence(): void {
    if (this.paused || this.closed) return;
    const silent = Date.now() - this.lastActivity;
    if (silent > this.options.watchdogMs) {
      this.options.log.warn({ silentMs: silent, watchdogMs: this.options.watchdogMs }, 'binlog connection silent past the watchdog limit; reconnecting');
      this.push({ error: new ChartlogError('connection', `no binlog event or heartbeat for ${silent} ms`, { retriable: true }), weight: 0 });
    }
  }

  private onEvent(e: ZongjiEvent): void {
    this.lastActivity = Date.now();
    const record = this.mapper.toRecord(e);
    if (record) this.push({ record, weight: record.type === 'rows' ? rowsWeight(record.rows) : 1 });
  }
}

/**
 * Rows of a rows event for backpressure. Row images are not counted until they are read (in the
 * converter), so their bytes stand in: one row per 64 bytes, about half the smallest row of the
 * benchmark's 12-column table, so the queue never holds more rows than the count says by much.
 */
function rowsWeight(rows: readonly unknown[]): number {
  let w = 0;
  for (const r of rows) w += r instanceof RowImages ? Math.ceil(r.bytes.length / 64) : 1;
  return Math.max(1, w);
}

/** The parts of zongji's event objects the reader reads (zongji's classes are not exported). */
interface ZongjiEvent {
  getEventName(): string;
  timestamp: number;
  // gtid (MySQL)
  sid?: string;
  gno?: number | string;
  tag?: string;
  // mariadbgtid
  domainId?: number;
  serverId?: number;
  seqNo?: number | string;
  standalone?: boolean;
  preparedXa?: boolean;
  completedXa?: boolean;
  // mariadbgtid (XA) and xaprepare
  xidFormatId?: number;
  xidGtrid?: Uint8Array;
  xidBqual?: Uint8Array;
  onePhase?: boolean;
  // tablemap / rows
  tableId?: number;
  schemaName?: string;
  tableName?: string;
  tableMap?: Record<number, { columnSchemas: { COLUMN_NAME: string; COLUMN_TYPE: string; ENUM_VALUES?: string[]; SET_VALUES?: string[] }[] }>;
  rows?: unknown[];
  // query
  query?: string;
  schema?: string;
}

/**
 * zongji events → BinlogRecords (null for events the converter does not need). MySQL GTIDs get
 * their ordinal here: the server skips what the resume set holds, so each GTID event it sends
 * is the next transaction after it.
 */
export class RecordMapper {
  constructor(private ordinal: bigint = 0n) {}

  toRecord(e: ZongjiEvent): BinlogRecord | null {
    if (e.getEventName() === 'gtid') {
      if (e.tag) {
        throw new ChartlogError('source_setup', 'tagged GTIDs (MySQL 8.3+) are not supported', { hint: 'write captured tables without GTID tags (gtid_next=AUTOMATIC)' });
      }
      this.ordinal++;
      const gno = BigInt(e.gno!);
      return {
        type: 'gtid',
        commit: mysqlCommit({ ordinal: this.ordinal, gno, uuid: e.sid! }),
        txId: `${e.sid!}:${gno}`,
        lane: 'mysql',
        standalone: true, // until its BEGIN says otherwise
        timestampMs: e.timestamp,
      };
    }
    if (e.getEventName() === 'query' && /^\s*BEGIN\b/i.test(e.query ?? '')) return { type: 'begin' };
    return toRecord(e);
  }
}

/** zongji event → BinlogRecord for everything but MySQL's GTID and BEGIN (see RecordMapper). */
export function toRecord(e: ZongjiEvent): BinlogRecord | null {
  switch (e.getEventName()) {
    case 'mariadbgtid': {
      const r = mariadbGtidRecord({ domain: e.domainId!, server: e.serverId!, seq: BigInt(e.seqNo!) }, Boolean(e.standalone), e.timestamp);
      return e.preparedXa || e.completedXa ? { ...r, xa: { key: xaKey(e), completed: Boolean(e.completedXa) } } as BinlogRecord : r;
    }
    case 'xaprepare':
      return { type: 'xaprepare', key: xaKey(e), onePhase: Boolean(e.onePhase), timestampMs: e.timestamp };
    case 'tablemap': {
      const entry = e.tableMap?.[e.tableId!];
      const columns: TablemapColumn[] = (entry?.columnSchemas ?? []).map((c) => ({
        name: c.COLUMN_NAME,
        columnType: c.COLUMN_TYPE,
        ...(c.ENUM_VALUES ? { values: c.ENUM_VALUES } : c.SET_VALUES ? { values: c.SET_VALUES } : {}),
      }));
      return { type: 'tablemap', tableId: e.tableId!, schema: e.schemaName!, table: e.tableName!, columns };
    }
    case 'writerows':
      return { type: 'rows', op: 'c', tableId: e.tableId!, rows: e.rows ?? [] };
    case 'updaterows':
      return { type: 'rows', op: 'u', tableId: e.tableId!, rows: e.rows ?? [] };
    case 'deleterows':
      return { type: 'rows', op: 'd', tableId: e.tableId!, rows: e.rows ?? [] };
    case 'xid':
      return { type: 'commit', timestampMs: e.timestamp };
    case 'query': {
      const q = e.query ?? '';
      if (/^\s*BEGIN\b/i.test(q)) return null;
      return { type: 'statement', schema: e.schema ?? '', query: q, timestampMs: e.timestamp };
    }
    default:
      return null; // heartbeat, rotate: liveness only
  }
}

/** An XA id (format id, gtrid, bqual) as one string key. */
function xaKey(e: ZongjiEvent): string {
  const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '');
  return `${e.xidFormatId ?? 0}.${hex(e.xidGtrid)}.${hex(e.xidBqual)}`;
}

/**
 * zongji/mysql2 errors → ChartlogError. mysql2 names MariaDB's "same server_id" error after an
 * unrelated MySQL code (ER_INVALID_MFA_PLUGIN_SPECIFIED, errno 4052), so the message decides.
 */
export function classify(err: unknown, serverId: number): ChartlogError {
  const e = err as { errno?: number; code?: string; message?: string };
  const message = e.message ?? String(err);
  if (/same server_uuid\/server_id|same server_id/i.test(message)) {
    return new ChartlogError('source_setup', `another binlog reader connected with server id ${serverId} and the server dropped this one`, {
      hint: 'give each binlog reader its own id: set source.mysql.serverId to a value no server, replica or other chartlog source uses',
      cause: err,
    });
  }
  if (e.errno === 1236) {
    return new ChartlogError('source_setup', `the server cannot send the binlog from the requested position: ${message}`, {
      hint: 'the binlog holding that position was purged or belongs to another history; take a new base snapshot from the source (chartlog snapshot --from-source, then chartlog run) and keep binlogs longer (binlog_expire_logs_seconds)',
      cause: err,
    });
  }
  if (e.errno === 1045 || e.errno === 1227 || e.errno === 1044) {
    return new ChartlogError('auth', `the server refused the binlog connection: ${message}`, {
      hint: 'grant the CDC user REPLICATION SLAVE, REPLICATION CLIENT and SELECT',
      cause: err,
    });
  }
  return new ChartlogError('connection', `binlog connection failed: ${e.code ?? ''} ${message}`.replace(/\s+/g, ' ').trim(), { retriable: true, cause: err });
}
