import type { EventEmitter } from 'node:events';
import type { Connection } from 'mysql2/promise';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { Logger } from '../../src/core/logger.js';
import type { TableSchema } from '../../src/core/table-schema.js';
import { qualifiedName } from '../../src/core/table-schema.js';
import { mariadbPosition, mariadbStart, mysqlCommit, mysqlSnapshotGtid, parseMariadbGtidList } from './binlog-position.js';
import { cellDecoder } from './cell-decoder.js';
import { decodeRow } from './rows-event-converter.js';
import { loadTableSchemas } from './schema-loader.js';
import { quoteIdent } from './setup-check.js';

export interface SnapshotSettings {
  readonly source: string;
  /** Whether the server is MariaDB; MySQL 8 takes the other path (see `snapshotPosition`). */
  readonly mariadb: boolean;
  readonly captures: (schema: string, table: string) => boolean;
  /** "schema.table" subset to read; all captured tables when absent. */
  readonly tables?: readonly string[];
  readonly chunkRows: number;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
}

/** The consistent point a snapshot was read at. */
export interface SnapshotPoint {
  readonly position: Position;
  /** Server time when the snapshot transaction started, µs since the epoch. */
  readonly timeUs: bigint;
  /** Binlog coordinates of the point, for the operator's log (positions are GTIDs). */
  readonly file: string;
  readonly offset: number;
}

/**
 * A consistent snapshot without a global lock (MariaDB), as batches of op 'r' events:
 *
 * 1. `START TRANSACTION WITH CONSISTENT SNAPSHOT` opens an InnoDB read view; in the same
 *    instant MariaDB records the binlog coordinates that match it, readable as
 *    `binlog_snapshot_file/position` for the life of the transaction. `BINLOG_GTID_POS()` turns
 *    them into the GTID position (not `@@gtid_binlog_pos`, which keeps moving). The snapshot
 *    holds every transaction up to that position and none after it, so streaming from it gives
 *    every row exactly once.
 * 2. Each table is read in primary-key order in chunks of `chunkRows` rows (keyset pagination,
 *    so memory stays bounded and no chunk rescans the ones before). A table without a primary
 *    key is read by one streamed query, paused whenever a chunk is full.
 * 3. Every batch carries the snapshot position; event seqs run 0, 1, 2, … across the whole
 *    snapshot so no two events share a position. The first batch of each table lists its
 *    version in `schemaChanges` (an empty table still yields that one batch).
 *
 * Values are read with mysql2's binary protocol and decoded by the same cell decoders as the
 * binlog (cell-decoder.ts), so a row reads the same whichever way it arrives.
 */
export async function* readSnapshot(conn: Connection, settings: SnapshotSettings): AsyncGenerator<ChangeBatch> {
  await conn.query("SET SESSION time_zone = '+00:00'");
  await conn.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
  const point = await snapshotPosition(conn, settings.mariadb);
  settings.log?.info({ position: Position.format(point.position), binlogFile: point.file, binlogOffset: point.offset }, 'consistent snapshot opened');
  try {
    const all = await loadTableSchemas(conn, settings.captures);
    const wanted = settings.tables ? settings.tables.filter((t) => all.has(t)) : [...all.keys()].sort();
    const missing = (settings.tables ?? []).filter((t) => !all.has(t));
    if (missing.length > 0) {
      throw new ChartlogError('not_found', `tables not found or not captured: ${missing.join(', ')}`, {
        hint: 'check the names in sources[].tables ("database.table") and the CDC user\'s SELECT grant',
      });
    }
    let seq = 0;
    for (const name of wanted) {
      const schema = all.get(name)!;
      let first = true;
      for await (const rows of tableChunks(conn, schema, settings.chunkRows, settings.signal)) {
        const d = { names: schema.columns.map((c) => c.name), decode: schema.columns.map((c) => cellDecoder(c)) };
        const events: ChangeEvent[] = rows.map((r) => {
          if (seq >= COMMIT_SEQ) throw new ChartlogError('internal', 'snapshot has more rows than event positions can number');
          return { op: 'r', schema, before: null, after: decodeRow(d, r), position: Position.of(point.position.commit, seq++) };
        });
        yield {
          source: settings.source,
          txId: null,
          position: point.position,
          commitTsUs: point.timeUs,
          snapshot: true,
          events,
          ...(first ? { schemaChanges: [schema] } : {}),
        };
        first = false;
      }
    }
  } finally {
    await conn.query('ROLLBACK').catch(() => undefined);
  }
}

/**
 * Opens the snapshot transaction and returns its position.
 *
 * MariaDB: lock-free (see readSnapshot). MySQL 8 has no binlog_snapshot_* status, so the
 * position is read under FLUSH TABLES WITH READ LOCK, held only for the three statements that
 * open the read view and read @@gtid_executed, then released; the ordinal of that set is the
 * position (binlog-position.ts). Where performance_schema.log_status exists it is used for the
 * operator's binlog coordinates. MySQL 8 cannot be run on this machine: this path is untested.
 */
export async function snapshotPosition(conn: Connection, mariadb: boolean): Promise<SnapshotPoint> {
  if (mariadb) {
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
    const [status] = await conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'");
    const s = new Map((status as { Variable_name: string; Value: string }[]).map((r) => [r.Variable_name.toLowerCase(), r.Value]));
    const file = s.get('binlog_snapshot_file') ?? '';
    const offset = Number(s.get('binlog_snapshot_position') ?? '0');
    if (!file) {
      throw new ChartlogError('source_setup', 'the server reports no binlog snapshot coordinates', { hint: 'enable the binary log (log_bin) on the source' });
    }
    const [rows] = await conn.query('SELECT BINLOG_GTID_POS(?, ?) AS pos, @@gtid_domain_id AS domain, UNIX_TIMESTAMP(NOW(6)) AS now', [file, offset]);
    const r = (rows as { pos: string | null; domain: number | string; now: string }[])[0]!;
    const gtids = parseMariadbGtidList(r.pos ?? '');
    if (gtids.length > 1) {
      throw new ChartlogError('source_setup', `the snapshot position spans GTID domains ${gtids.map((g) => g.domain).join(', ')}`, {
        hint: 'capture a server whose writes use a single gtid_domain_id',
      });
    }
    const position = gtids[0] ? mariadbPosition(gtids[0]) : mariadbStart(Number(r.domain));
    return { position, timeUs: microsOf(r.now), file, offset };
  }
  await conn.query('FLUSH TABLES WITH READ LOCK');
  try {
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
    const [rows] = await conn.query('SELECT @@GLOBAL.gtid_executed AS gtids, @@server_uuid AS uuid, UNIX_TIMESTAMP(NOW(6)) AS now');
    const r = (rows as { gtids: string; uuid: string; now: string }[])[0]!;
    let file = '';
    let offset = 0;
    try {
      const [ls] = await conn.query('SELECT LOCAL AS l FROM performance_schema.log_status');
      const local = (ls as { l: string | { binary_log_file?: string; binary_log_position?: number } }[])[0]?.l;
      const parsed = typeof local === 'string' ? (JSON.parse(local) as { binary_log_file?: string; binary_log_position?: number }) : local;
      file = parsed?.binary_log_file ?? '';
      offset = Number(parsed?.binary_log_position ?? 0);
    } catch {
      // log_status needs BACKUP_ADMIN; the coordinates are informational only.
    }
    const position = Position.of(mysqlCommit(mysqlSnapshotGtid(r.gtids, r.uuid)), COMMIT_SEQ);
    return { position, timeUs: microsOf(r.now), file, offset };
  } finally {
    await conn.query('UNLOCK TABLES');
  }
}

function microsOf(text: string | number): bigint {
  const [s, f = ''] = String(text).split('.');
  return BigInt(s!) * 1_000_000n + BigInt((f + '000000').slice(0, 6));
}

/** Rows of one table in primary-key chunks (keyset pagination), or streamed when it has no key. */
async function* tableChunks(
  conn: Connection,
  schema: TableSchema,
  chunkRows: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Record<string, unknown>[]> {
  const table = `${quoteIdent(schema.schema)}.${quoteIdent(schema.table)}`;
  const list = schema.columns.map((c) => quoteIdent(c.name)).join(', ');
  const pk = schema.primaryKey;
  if (pk.length === 0) {
    yield* streamedChunks((conn as unknown as { connection: StreamingConnection }).connection, `SELECT ${list} FROM ${table}`, chunkRows, signal);
    return;
  }
  const order = pk.map((k) => quoteIdent(k)).join(', ');
  // (k1 > ?) OR (k1 = ? AND k2 > ?) OR …: the keyset condition in a form every server turns into
  // an index range.
  const after = pk
    .map((_, i) => `(${pk.slice(0, i + 1).map((k, j) => `${quoteIdent(k)} ${j === i ? '>' : '='} ?`).join(' AND ')})`)
    .join(' OR ');
  let last: unknown[] | null = null;
  for (;;) {
    if (signal?.aborted) throw new ChartlogError('internal', `snapshot of ${qualifiedName(schema)} aborted`, { retriable: true });
    const sql = last === null
      ? `SELECT ${list} FROM ${table} ORDER BY ${order} LIMIT ${chunkRows}`
      : `SELECT ${list} FROM ${table} WHERE ${after} ORDER BY ${order} LIMIT ${chunkRows}`;
    const params = last === null ? [] : pk.flatMap((_, i) => last!.slice(0, i + 1));
    const [rows] = await conn.execute(sql, params as Parameters<Connection['execute']>[1]);
    const chunk = rows as Record<string, unknown>[];
    if (chunk.length > 0 || last === null) yield chunk;
    if (chunk.length < chunkRows) return;
    const end = chunk[chunk.length - 1]!;
    last = pk.map((k) => end[k]);
  }
}

/** The callback connection under mysql2/promise's wrapper, as far as streaming needs it. */
interface StreamingConnection {
  execute(sql: string, values: unknown[]): EventEmitter;
  pause(): void;
  resume(): void;
}

/** One binary-protocol query, its rows handed out `chunkRows` at a time; reading pauses in between. */
async function* streamedChunks(
  raw: StreamingConnection,
  sql: string,
  chunkRows: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<Record<string, unknown>[]> {
  let buffer: Record<string, unknown>[] = [];
  let done = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const cmd = raw.execute(sql, []);
  cmd.on('result', (row: unknown) => {
    buffer.push(row as Record<string, unknown>);
    if (buffer.length >= chunkRows) {
      raw.pause();
      notify();
    }
  });
  cmd.on('error', (err: unknown) => {
    failure = err;
    notify();
  });
  cmd.on('end', () => {
    done = true;
    notify();
  });
  let first = true;
  for (;;) {
    if (signal?.aborted) throw new ChartlogError('internal', 'snapshot aborted', { retriable: true });
    if (failure) throw failure;
    if (buffer.length >= chunkRows || (done && (buffer.length > 0 || first))) {
      const chunk = buffer;
      buffer = [];
      first = false;
      yield chunk;
      raw.resume();
      continue;
    }
    if (done) return;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
}
