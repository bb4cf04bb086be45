import type mysql from 'mysql2/promise';
import { ChartlogError, usageError } from '../../core/errors.js';
import { mysqlColumnType, mysqlLiteral, quoteMysqlIdent } from './mysql-text.js';
import { maskUrl } from '../../core/mask-url.js';
import { eachRow, scrubMessage, type RestoreTarget, type RowSource, type TablePlan } from './restore-target.js';

const BATCH_CHARS = 2 * 1024 * 1024; // well under the default max_allowed_packet (16 MiB)

/**
 * Statements every restore session runs first: literals are read with backslash escapes and
 * TIMESTAMP values as UTC; non-strict, so values MySQL itself stored in lenient modes (zero
 * dates, the empty ENUM error value) go back as they were; 0 in an AUTO_INCREMENT column stays 0.
 */
export const MYSQL_SESSION = [
  'SET NAMES utf8mb4',
  "SET time_zone = '+00:00'",
  "SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
  'SET foreign_key_checks = 0',
];

/**
 * A MySQL/MariaDB database as restore target: the database named in the URL, which must exist
 * and hold none of the tables. Tables are created from the recorded schemas (exact COLUMN_TYPE
 * for MySQL archives) and filled with multi-row INSERTs inside one transaction per table; a
 * failed table is dropped, and `abort` drops the tables already written.
 */
export class MysqlTarget implements RestoreTarget {
  readonly description: string;
  readonly rowOrder = 'any';
  private admin: mysql.Connection | null = null;
  private readonly created: string[] = [];
  private readonly uri: string;

  constructor(url: string) {
    this.description = maskUrl(url);
    const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
    if (u.pathname.replace(/^\//, '') === '') {
      throw usageError(`--target ${this.description} names no database`, 'add the (empty) database to the URL: mysql://user@host:3306/restored');
    }
    this.uri = u.toString();
  }

  private async connect(): Promise<mysql.Connection> {
    let conn: mysql.Connection;
    try {
      // The driver is loaded with the first connection: a files target (which shares this module's DDL) never needs it.
      const { createConnection } = (await import('mysql2/promise')).default;
      conn = await createConnection({ uri: this.uri, charset: 'utf8mb4', supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, timezone: 'Z', connectTimeout: 15_000 });
    } catch (err) {
      throw new ChartlogError('usage', `cannot connect to the target ${this.description}: ${(err as Error).message}`, {
        hint: 'check --target; the database must exist, be reachable and empty (CREATE DATABASE …)',
      });
    }
    conn.on('error', () => undefined);
    for (const s of MYSQL_SESSION) await conn.query(s);
    // MySQL 5.7/MariaDB give the first TIMESTAMP column an implicit default and ON UPDATE otherwise.
    await conn.query('SET explicit_defaults_for_timestamp = 1').catch(() => undefined);
    return conn;
  }

  async check(tables: readonly { schema: string; table: string }[]): Promise<void> {
    const admin = (this.admin ??= await this.connect());
    const byName = new Map<string, string>();
    for (const t of tables) {
      const other = byName.get(t.table.toLowerCase());
      if (other) throw usageError(`${other} and ${t.schema}.${t.table} would both become table ${t.table} of the target database`, 'restore them in two runs, into two databases (--tables)');
      byName.set(t.table.toLowerCase(), `${t.schema}.${t.table}`);
    }
    if (tables.length === 0) return;
    const [rows] = await admin.query('SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?)', [tables.map((t) => t.table)]);
    const existing = (rows as { name: string }[]).map((r) => r.name);
    if (existing.length > 0) {
      throw usageError(
        `the target ${this.description} is not empty: ${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}`,
        'restore into an empty database (CREATE DATABASE …), or drop those tables first',
      );
    }
  }

  async prepare(): Promise<void> {}

  async writeTable(plan: TablePlan, rows: RowSource, progress: (rows: number, bytes?: number) => void): Promise<number> {
    const conn = await this.connect();
    const ident = quoteMysqlIdent(plan.table.table);
    const cols = plan.table.columns;
    const sealed = cols.map((c) => plan.sealed.has(c.name));
    const head = `INSERT INTO ${ident} (${cols.map((c) => quoteMysqlIdent(c.name)).join(', ')}) VALUES `;
    let count = 0;
    let createdHere = false;
    try {
      await conn.query(createTableSqlMysql(plan));
      createdHere = true;
      await conn.query('START TRANSACTION');
      let sql = '';
      let pending = 0;
      // Non-strict mode stores what it cannot take as something else, with a warning: every
      // warning fails the table except the one the ENUM error value '' itself raises.
      const emptyEnums = new Set<string>();
      const enumCols = cols.map((c) => c.type.kind === 'enum' && !plan.sealed.has(c.name));
      const flush = async (): Promise<void> => {
        const [result] = await conn.query(sql);
        if ((result as { warningStatus?: number }).warningStatus) await checkWarnings(conn, plan.name, emptyEnums);
        emptyEnums.clear();
        progress(pending, Buffer.byteLength(sql));
        sql = '';
        pending = 0;
      };
      for await (const row of eachRow(rows)) {
        const values = cols.map((c, i) => {
          const v = row[c.name];
          if (enumCols[i] && v === '') emptyEnums.add(c.name);
          return mysqlLiteral(v, c, sealed[i]!, plan.sourceEngine);
        });
        sql += `${sql ? ',' : head}(${values.join(',')})`;
        pending++;
        count++;
        if (sql.length >= BATCH_CHARS) await flush();
      }
      if (sql) await flush();
      await conn.query('COMMIT');
      this.created.push(ident);
      return count;
    } catch (err) {
      await conn.query('ROLLBACK').catch(() => undefined);
      if (createdHere) await conn.query(`DROP TABLE IF EXISTS ${ident}`).catch(() => undefined);
      if (err instanceof ChartlogError) throw err;
      const e = err as { message?: string; code?: string };
      // mysql2 puts the whole statement (row values) on `sql`; only code and a scrubbed message pass.
      throw new ChartlogError('storage', `writing ${plan.name} into the target failed: ${e.code ? `[${e.code}] ` : ''}${scrubMessage(e.message ?? '')}`, {
        hint: 'nothing of this restore is left in the target; fix the cause and run it again',
      });
    } finally {
      await conn.end().catch(() => undefined);
    }
  }

  async finish(): Promise<void> {}

  async abort(): Promise<void> {
    const admin = this.admin;
    if (!admin) return;
    for (const t of this.created.splice(0)) await admin.query(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.admin?.end().catch(() => undefined);
    this.admin = null;
  }
}

/** Fails on any warning of the last statement but "Data truncated" on a column given the ENUM error value ''. */
export async function checkWarnings(conn: mysql.Connection, table: string, emptyEnums: ReadonlySet<string>): Promise<void> {
  const [rows] = await conn.query('SHOW WARNINGS');
  for (const w of rows as { Level: string; Code: number; Message: string }[]) {
    const column = /column [`'"]?([^`'"]+)[`'"]?/.exec(w.Message)?.[1];
    if (w.Code === 1265 && column !== undefined && emptyEnums.has(column)) continue;
    throw new ChartlogError('storage', `writing ${table} into the target: the server changed a value (${w.Level} ${w.Code}: ${scrubMessage(w.Message)})`, {
      hint: 'the target cannot hold this value as it was; restore into a database of the source engine and version',
    });
  }
}

/** CREATE TABLE in the current database, columns NULL/NOT NULL explicitly, with the primary key. */
export function createTableSqlMysql(plan: TablePlan): string {
  const key = new Set(plan.table.primaryKey);
  const cols = plan.table.columns.map(
    (c) => `${quoteMysqlIdent(c.name)} ${mysqlColumnType(c, plan.sealed.has(c.name), plan.sourceEngine, key.has(c.name))} ${c.nullable && !key.has(c.name) ? 'NULL' : 'NOT NULL'}`,
  );
  if (plan.table.primaryKey.length > 0) cols.push(`PRIMARY KEY (${plan.table.primaryKey.map(quoteMysqlIdent).join(', ')})`);
  return `CREATE TABLE ${quoteMysqlIdent(plan.table.table)} (${cols.join(', ')}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`;
}
