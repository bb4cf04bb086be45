import mysql from 'mysql2/promise';
import { ChartlogError, usageError } from '../core/errors.js';
import { maskUrl } from '../core/mask-url.js';
import { Position } from '../core/position.js';
import { UNCHANGED, hasRowKey, identityColumns, type CellValue, type ColumnSchema, type Row } from '../core/table-schema.js';
import { MYSQL_SESSION, checkWarnings, createTableSqlMysql } from '../restore/targets/mysql-target.js';
import { mysqlColumnType, mysqlLiteral, mysqlString, quoteMysqlIdent } from '../restore/targets/mysql-text.js';
import { scrubMessage, type SourceEngine } from '../restore/targets/restore-target.js';
import { batchChanges, keyImage, type ChangeBatch } from './change-batches.js';
import { olderRowsValue, sameColumns, shapeSteps } from './schema-evolution.js';
import { REPLICA_BASES_TABLE, REPLICA_TABLE, logApplied, type PhiMode, type ReplicaChange, type ReplicaRecord, type ReplicaTarget, type ReplicaTransaction, type TargetInspection } from './replica-target.js';

const POSITION_TABLE = quoteMysqlIdent(REPLICA_TABLE);
const BASES_TABLE = quoteMysqlIdent(REPLICA_BASES_TABLE);

/** One statement of an applied transaction and the rows it must meet (null: any number). */
interface Step {
  sql: string;
  expect: number | null;
  /** The statement is a `SELECT COUNT(*) AS n`: `expect` is checked against `n`, not the rows it changed. */
  count?: boolean;
  /** What a wrong count means: the position moved, or the replica diverged at this change. */
  failure: 'position' | { table: string; position: Position };
}

/**
 * A MariaDB/MySQL database as a replica (the ReplicaTarget contract in replica-target.ts): the
 * database named in the URL, tables named after the source table (its schema dropped, as restore
 * into MySQL does), created with restore's type mapping (mysql-text.ts) and written with its
 * literals, so values are exactly what a restore writes. The position row lives in
 * `chartlog_replica` of the same database.
 *
 * Each source transaction is one InnoDB transaction: the position row moved first (locking it, so
 * a second replicator waits and then finds it moved), then the changes batched as on PostgreSQL
 * (multi-row INSERT, DELETE … WHERE key IN (…), UPDATEs by key), sent with START TRANSACTION in one
 * multi-statement round trip; the rows each statement met are checked (FOUND_ROWS: matched, not changed, rows) before
 * COMMIT, and any warning (a value the server changed) rolls the transaction back. MySQL commits
 * implicitly around DDL, so what needs DDL happens before the transaction, idempotently: a missing
 * table or column is created, and a table the transaction drops is dropped first (its earlier
 * changes in the transaction are skipped: they die with it). TRUNCATE, DDL too, is applied as
 * DELETE FROM inside the transaction.
 */
export class MysqlReplicaTarget implements ReplicaTarget {
  readonly description: string;
  private conn: mysql.Connection | null = null;
  private readonly uri: string;
  /** Columns of each target table, as far as known ("schema.table" → names). */
  private readonly columns = new Map<string, Set<string>>();

  constructor(
    url: string,
    private readonly engine: SourceEngine,
  ) {
    this.description = maskUrl(url);
    const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
    if (u.pathname.replace(/^\//, '') === '') {
      throw usageError(`--target ${this.description} names no database`, 'add the (empty) database to the URL: mysql://user@host:3306/replica');
    }
    this.uri = u.toString();
  }

  private async connect(): Promise<mysql.Connection> {
    if (this.conn) return this.conn;
    let conn: mysql.Connection;
    try {
      conn = await mysql.createConnection({ uri: this.uri, charset: 'utf8mb4', supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, timezone: 'Z', connectTimeout: 15_000, multipleStatements: true });
    } catch (err) {
      throw new ChartlogError('connection', `cannot connect to the replica ${this.description}: ${scrubMessage((err as Error).message)}`, {
        retriable: true,
        hint: 'check --target; the database must exist and be reachable',
      });
    }
    conn.on('error', () => undefined); // a dropped connection surfaces on the next query
    for (const s of MYSQL_SESSION) await conn.query(s);
    await conn.query('SET explicit_defaults_for_timestamp = 1').catch(() => undefined);
    this.conn = conn;
    return conn;
  }

  private async drop(): Promise<void> {
    const c = this.conn;
    this.conn = null;
    this.columns.clear();
    await c?.end().catch(() => undefined);
  }

  async inspect(): Promise<TargetInspection> {
    let conn: mysql.Connection;
    try {
      conn = await this.connect();
    } catch (err) {
      throw usageError((err as Error).message, 'check --target; the database must exist (CREATE DATABASE …) and be reachable');
    }
    const [tables] = await conn.query('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1');
    const names = (tables as { name: string }[]).map((t) => t.name);
    const hasReplicaTable = names.includes(REPLICA_TABLE);
    const replicas: ReplicaRecord[] = [];
    if (hasReplicaTable) {
      const [rows] = await conn.query(`SELECT source, state, position, CAST(commit_ts_us AS CHAR) AS commit_ts_us, phi, tables FROM ${POSITION_TABLE}`);
      for (const r of rows as { source: string; state: string; position: string; commit_ts_us: string; phi: string; tables: string | null }[]) {
        replicas.push({
          source: r.source,
          state: r.state === 'following' ? 'following' : 'loading',
          position: Position.parse(r.position),
          commitTsUs: BigInt(r.commit_ts_us),
          phi: r.phi as PhiMode,
          tables: r.tables === null ? null : r.tables.split(','),
        });
      }
    }
    return { tables: names.filter((n) => n !== REPLICA_TABLE && n !== REPLICA_BASES_TABLE), hasReplicaTable, replicas };
  }

  async takenBases(source: string): Promise<Map<string, Position>> {
    const conn = await this.connect();
    const [has] = await conn.query('SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?', [REPLICA_BASES_TABLE]);
    if ((has as unknown[]).length === 0) return new Map();
    const [rows] = await conn.query(`SELECT table_name, position FROM ${BASES_TABLE} WHERE source = ?`, [source]);
    return new Map((rows as { table_name: string; position: string }[]).map((r) => [r.table_name, Position.parse(r.position)]));
  }

  /** Records base positions (no table rebuild here: this target has no replaceTable, so only the load's mark). */
  async recordBases(source: string, bases: ReadonlyMap<string, Position>): Promise<void> {
    const conn = await this.connect();
    await conn.query(`CREATE TABLE IF NOT EXISTS ${BASES_TABLE} (source varchar(255) NOT NULL, table_name varchar(255) NOT NULL, position varchar(255) NOT NULL, PRIMARY KEY (source, table_name))`);
    for (const [table, p] of bases) await conn.query(`REPLACE INTO ${BASES_TABLE} (source, table_name, position) VALUES (?, ?, ?)`, [source, table, Position.format(p)]);
  }

  async beginLoad(r: ReplicaRecord): Promise<void> {
    const conn = await this.connect();
    try {
      // DDL commits on its own in MySQL: a stop between the two leaves a position table without
      // this source's row, which the next start refuses (startDecision) rather than guess.
      await conn.query(
        `CREATE TABLE ${POSITION_TABLE} (
          source varchar(255) NOT NULL PRIMARY KEY,
          state varchar(16) NOT NULL,
          position varchar(255) NOT NULL,
          commit_ts_us bigint NOT NULL,
          phi varchar(16) NOT NULL,
          tables longtext NULL,
          transactions bigint NOT NULL DEFAULT 0,
          updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
      );
      await conn.query(`INSERT INTO ${POSITION_TABLE} (source, state, position, commit_ts_us, phi, tables) VALUES (?, 'loading', ?, ?, ?, ?)`, [
        r.source,
        Position.format(r.position),
        r.commitTsUs.toString(),
        r.phi,
        r.tables === null ? null : r.tables.join(','),
      ]);
    } catch (err) {
      throw describe(err, 'recording the replica');
    }
  }

  async finishLoad(source: string, position: Position, commitTsUs: bigint): Promise<void> {
    const conn = await this.connect();
    const [res] = await conn.query(`UPDATE ${POSITION_TABLE} SET state = 'following', position = ?, commit_ts_us = ?, updated_at = CURRENT_TIMESTAMP(6) WHERE source = ? AND state = 'loading'`, [
      Position.format(position),
      commitTsUs.toString(),
      source,
    ]);
    if ((res as mysql.ResultSetHeader).affectedRows !== 1) throw new ChartlogError('internal', `the replica row of ${source} was not in state loading after the load`);
  }

  async apply(source: string, tx: ReplicaTransaction, from: Position, phi: PhiMode): Promise<{ rows: number }> {
    const started = Date.now();
    const conn = await this.connect();
    const rows = tx.changes.filter((c) => c.op !== 't').length;
    let open = false;
    try {
      // Before the transaction (DDL commits implicitly): drops, then missing tables and columns.
      const dropped = new Map<string, number>();
      tx.changes.forEach((c, i) => c.op === 'x' && dropped.set(c.table, i));
      for (const table of dropped.keys()) {
        const c = tx.changes[dropped.get(table)!]!;
        await conn.query(`DROP TABLE IF EXISTS ${quoteMysqlIdent(c.schema.table)}`);
        this.columns.delete(table);
      }
      const changes = tx.changes.filter((c, i) => c.op !== 'x' && !(i < (dropped.get(c.table) ?? -1)));
      for (const c of changes) if (!sameColumns(this.columns.get(c.table), c.schema)) await this.ensureShape(conn, c, phi);

      const steps: Step[] = [
        {
          sql: `UPDATE ${POSITION_TABLE} SET position = ${mysqlString(Position.format(tx.position))}, commit_ts_us = ${tx.commitTsUs.toString()}, transactions = transactions + ${Math.trunc(tx.transactions ?? 1)}, updated_at = CURRENT_TIMESTAMP(6) WHERE source = ${mysqlString(source)} AND position = ${mysqlString(Position.format(from))} AND state = 'following'`,
          expect: 1,
          failure: 'position',
        },
        ...batchChanges(changes).flatMap((b) => batchSteps(b, phi, this.engine)),
      ];
      // START TRANSACTION goes in the same round trip as the statements (its result first): one
      // round trip fewer per transaction, and nothing else waits between the two.
      open = true;
      const [results] = await conn.query(`START TRANSACTION;\n${steps.map((s) => s.sql).join(';\n')}`);
      const list = (results as unknown as mysql.ResultSetHeader[]).slice(1);
      steps.forEach((s, i) => {
        const met = s.count ? Number((list[i] as unknown as { n: unknown }[] | undefined)?.[0]?.n) : list[i]?.affectedRows;
        if (s.expect !== null && met !== s.expect) throw stepFailure(s, source, tx.position, from, this.description);
      });
      if (list.some((r) => r?.warningStatus)) await checkWarnings(conn, `transaction ${Position.format(tx.position)}`, emptyEnumColumns(changes));
      await conn.query('COMMIT');
      open = false;
      logApplied(this.description, tx, rows, steps.length, started);
      return { rows };
    } catch (err) {
      if (open) await conn.query('ROLLBACK').catch(() => undefined);
      const e = describe(err, `applying transaction ${Position.format(tx.position)}`);
      if (e.retriable) await this.drop();
      else this.columns.clear();
      throw e;
    }
  }

  /** Creates a table the target lacks, or adds the columns it lacks (DDL, before the transaction). */
  private async ensureShape(conn: mysql.Connection, change: ReplicaChange, phi: PhiMode): Promise<void> {
    let known = this.columns.get(change.table);
    const name = change.schema.table;
    if (!known) {
      const [rows] = await conn.query('SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?', [name]);
      if ((rows as unknown[]).length > 0) known = new Set((rows as { c: string }[]).map((r) => r.c));
    }
    const sealed = phi === 'sealed' ? change.phiColumns : new Set<string>();
    if (!known) {
      const table = { ...change.schema, columns: change.schema.columns.map((c) => (change.phiColumns.has(c.name) && phi === 'omit' ? { ...c, nullable: true } : c)) };
      await conn.query(createTableSqlMysql({ name: change.table, table, sealed, sourceEngine: this.engine }).replace(/^CREATE TABLE /, 'CREATE TABLE IF NOT EXISTS '));
      known = new Set(change.schema.columns.map((c) => c.name));
    } else {
      const key = new Set(change.schema.primaryKey);
      for (const step of shapeSteps(known, change.schema)) {
        if (step.kind === 'rename') {
          // Renamed at the source (renamedFrom): the same column, its values kept.
          await conn.query(`ALTER TABLE ${quoteMysqlIdent(name)} RENAME COLUMN ${quoteMysqlIdent(step.from)} TO ${quoteMysqlIdent(step.column)}`);
          known.delete(step.from);
          known.add(step.column);
        } else if (step.kind === 'drop') {
          await conn.query(`ALTER TABLE ${quoteMysqlIdent(name)} DROP COLUMN IF EXISTS ${quoteMysqlIdent(step.column)}`);
          known.delete(step.column);
        } else {
          // Added at the source: added here, nullable (rows before it hold NULL, as at the source).
          // Rows it already holds read what the source's older rows read (the version's `missing`),
          // set by the ADD itself: one statement, so a stop after it leaves nothing half done.
          const c = change.schema.columns.find((col) => col.name === step.column)!;
          const older = replicaLiteral(olderRowsValue(change.table, c), c, change.phiColumns, phi, this.engine);
          const column = quoteMysqlIdent(c.name);
          await conn.query(`ALTER TABLE ${quoteMysqlIdent(name)} ADD COLUMN IF NOT EXISTS ${column} ${mysqlColumnType(c, sealed.has(c.name), this.engine, key.has(c.name))} NULL${older === 'NULL' ? '' : ` DEFAULT ${older}`}`);
          if (older !== 'NULL') await conn.query(`ALTER TABLE ${quoteMysqlIdent(name)} ALTER COLUMN ${column} DROP DEFAULT`);
          known.add(c.name);
        }
      }
    }
    this.columns.set(change.table, known);
  }

  async close(): Promise<void> {
    await this.drop();
  }
}

/** The literal a replica column receives (pure): PHI per mode, everything else exactly as restore writes it. */
export function replicaLiteral(v: CellValue | undefined, c: ColumnSchema, phiColumns: ReadonlySet<string>, phi: PhiMode, engine: SourceEngine): string {
  if (!phiColumns.has(c.name) || phi === 'open') return mysqlLiteral(v, c, false, engine);
  if (phi === 'omit') return 'NULL';
  return mysqlLiteral(v, c, true, engine);
}

/** A batch as statements with the rows each must meet (pure). */
export function batchSteps(b: ChangeBatch, phi: PhiMode, engine: SourceEngine): Step[] {
  const first = b.changes[0]!;
  const key = hasRowKey(first.schema) ? identityColumns(first.schema) : [];
  if (phi !== 'open' && key.some((k) => first.phiColumns.has(k))) {
    throw new ChartlogError('phi_policy', `${first.table}: a primary-key column is PHI, so with --phi ${phi} its rows cannot be found again in the replica`, {
      hint: `replicate it with --phi open, or leave it out with --tables`,
    });
  }
  const ident = quoteMysqlIdent(first.schema.table);
  const byName = new Map(first.schema.columns.map((c) => [c.name, c]));
  const lit = (ch: ReplicaChange, row: Row, name: string) => replicaLiteral(row[name], byName.get(name)!, ch.phiColumns, phi, engine);
  const diverged = (ch: ReplicaChange) => ({ table: ch.table, position: ch.position });
  /** `key IN (…)` over the batch's key images (a row constructor for a composite key). */
  const keyIn = (key: readonly string[]) => {
    const tuple = (ch: ReplicaChange) => {
      const image = keyImage(ch, key);
      const v = key.map((k) => lit(ch, image, k));
      return key.length === 1 ? v[0]! : `(${v.join(', ')})`;
    };
    const lhs = key.length === 1 ? quoteMysqlIdent(key[0]!) : `(${key.map(quoteMysqlIdent).join(', ')})`;
    return `${lhs} IN (${b.changes.map(tuple).join(', ')})`;
  };
  const keyMatch = (ch: ReplicaChange, k: readonly string[]) => {
    const image = keyImage(ch, k);
    return k.map((c) => `${quoteMysqlIdent(c)} = ${lit(ch, image, c)}`).join(' AND ');
  };
  switch (b.kind) {
    case 'insert':
      return [{ sql: `INSERT INTO ${ident} (${b.columns.map(quoteMysqlIdent).join(', ')}) VALUES ${b.changes.map((ch) => `(${b.columns.map((c) => lit(ch, ch.after!, c)).join(', ')})`).join(', ')}`, expect: b.changes.length, failure: diverged(first) }];
    case 'delete':
      return [{ sql: `DELETE FROM ${ident} WHERE ${keyIn(b.key)}`, expect: b.changes.length, failure: diverged(first) }];
    case 'update': {
      if (b.columns.length === 0) return [];
      const rest = b.columns.filter((c) => !b.key.includes(c));
      if (b.columns.length === first.schema.columns.length && b.changes.every((ch) => b.key.every((k) => lit(ch, keyImage(ch, b.key), k) === lit(ch, ch.after!, k)))) {
        // Whole rows, keys unchanged: the rows are counted (and locked), then written by ONE
        // INSERT … ON DUPLICATE KEY UPDATE, which converts its values as an INSERT does (restore's
        // literals) — a statement per row cost MariaDB about three times as much. The count makes
        // sure every row exists, so the upsert only updates (the replica's tables have no other
        // unique key, chartlog creates only the primary key).
        const counted: Step = { sql: `SELECT COUNT(*) AS n FROM ${ident} WHERE ${keyIn(b.key)} FOR UPDATE`, expect: b.changes.length, count: true, failure: diverged(first) };
        if (rest.length === 0) return [counted];
        return [
          counted,
          {
            sql: `INSERT INTO ${ident} (${b.columns.map(quoteMysqlIdent).join(', ')}) VALUES ${b.changes.map((ch) => `(${b.columns.map((c) => lit(ch, ch.after!, c)).join(', ')})`).join(', ')} ON DUPLICATE KEY UPDATE ${rest.map((c) => `${quoteMysqlIdent(c)} = VALUES(${quoteMysqlIdent(c)})`).join(', ')}`,
            expect: null,
            failure: diverged(first),
          },
        ];
      }
      // Some columns missing (an unchanged TOAST value) or a key changed: one UPDATE per row, all in
      // the transaction's one round trip.
      return b.changes.map((ch) => ({
        sql: `UPDATE ${ident} SET ${b.columns.map((c) => `${quoteMysqlIdent(c)} = ${lit(ch, ch.after!, c)}`).join(', ')} WHERE ${keyMatch(ch, b.key)}`,
        expect: 1,
        failure: diverged(ch),
      }));
    }
    case 'single':
      return [singleStep(first, phi, engine)];
  }
}

/** TRUNCATE (as DELETE FROM, which stays inside the transaction), or an update or delete of a table without a key. */
function singleStep(ch: ReplicaChange, phi: PhiMode, engine: SourceEngine): Step {
  const ident = quoteMysqlIdent(ch.schema.table);
  if (ch.op === 't') return { sql: `DELETE FROM ${ident}`, expect: null, failure: { table: ch.table, position: ch.position } };
  const before = ch.before;
  if (!before) {
    throw new ChartlogError('integrity', `${ch.table} has no primary key and the change at ${Position.format(ch.position)} carries no before-image`, {
      hint: 'give the source table a primary key (or REPLICA IDENTITY FULL on PostgreSQL)',
    });
  }
  const usable = (c: ColumnSchema) => before[c.name] !== undefined && before[c.name] !== UNCHANGED;
  // PHI columns are not compared unless opened (sealed anew per message, or NULL); JSON is stored
  // normalised by MySQL, so its text is no match for the source's.
  const compared = ch.schema.columns.filter((c) => usable(c) && (phi === 'open' || !ch.phiColumns.has(c.name)) && c.type.kind !== 'json');
  const where = compared.map((c) => `${quoteMysqlIdent(c.name)} <=> ${replicaLiteral(before[c.name], c, ch.phiColumns, phi, engine)}`).join(' AND ') || 'TRUE';
  if (ch.op === 'd') return { sql: `DELETE FROM ${ident} WHERE ${where} LIMIT 1`, expect: 1, failure: { table: ch.table, position: ch.position } };
  const after = ch.after!;
  const set = ch.schema.columns.filter((c) => after[c.name] !== undefined && after[c.name] !== UNCHANGED);
  if (set.length === 0) return { sql: 'DO 0', expect: null, failure: { table: ch.table, position: ch.position } };
  return { sql: `UPDATE ${ident} SET ${set.map((c) => `${quoteMysqlIdent(c.name)} = ${replicaLiteral(after[c.name], c, ch.phiColumns, phi, engine)}`).join(', ')} WHERE ${where} LIMIT 1`, expect: 1, failure: { table: ch.table, position: ch.position } };
}

/** ENUM columns given the error value '' (which MySQL stores with a warning, as the source did). */
function emptyEnumColumns(changes: readonly ReplicaChange[]): Set<string> {
  const out = new Set<string>();
  for (const ch of changes) for (const c of ch.schema.columns) if (c.type.kind === 'enum' && ch.after?.[c.name] === '') out.add(c.name);
  return out;
}

function stepFailure(s: Step, source: string, position: Position, from: Position, target: string): ChartlogError {
  if (s.failure === 'position') {
    return new ChartlogError('lease', `the replica position of ${source} in ${target} is no longer ${Position.format(from)}: another chartlog replicate moved it`, {
      hint: 'run one chartlog replicate per target; stop the other one',
    });
  }
  return new ChartlogError('integrity', `${s.failure.table}: the change at ${Position.format(s.failure.position)} does not meet exactly the rows it changes in the replica: the replica no longer equals the source; transaction ${Position.format(position)} was not applied`, {
    hint: 'was the replica written to by something else? Rebuild it into an empty database',
  });
}

/** A driver error without the statement (mysql2 puts row values on `sql`); lost connections are retriable. */
function describe(err: unknown, what: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const e = err as { message?: string; code?: string; fatal?: boolean };
  const lost = e.fatal === true || /^(PROTOCOL_CONNECTION_LOST|ECONNRE|EPIPE|ETIMEDOUT|ER_SERVER_SHUTDOWN|ER_LOCK_DEADLOCK|ER_LOCK_WAIT_TIMEOUT)/.test(e.code ?? '');
  return new ChartlogError(lost ? 'connection' : 'storage', `${what} in the replica failed: ${e.code ? `[${e.code}] ` : ''}${scrubMessage(e.message ?? String(err))}`, {
    retriable: lost,
    hint: lost ? 'the replica reconnects and applies the transaction again (it was rolled back)' : 'the transaction was rolled back; fix the cause and start chartlog replicate again',
  });
}
