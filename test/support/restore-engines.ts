import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { requireEnv } from './env.js';

/**
 * Databases of the real test services for restore tests: a source to capture and fresh, empty
 * targets to restore into, all read back the same way — every value as the server's own text
 * output (PostgreSQL) or raw bytes of the text protocol (MariaDB) — so "equal" means the
 * server holds the same value, nothing a driver rounded.
 */
export type Captured = Record<string, string | null>[];

export interface TestDatabase {
  readonly type: 'postgres' | 'mysql';
  readonly name: string;
  readonly url: string;
  exec(sql: string): Promise<void>;
  /** A table's rows ordered by `order`, every column as text; the table as the target names it. */
  capture(table: string, order?: string): Promise<Captured>;
  /** Names of the tables in the database (PostgreSQL: schema public). */
  tables(): Promise<string[]>;
  drop(): Promise<void>;
}

const PG_SESSION = '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1';
const RAW = { getTypeParser: (() => (v: string) => v) as unknown as pg.CustomTypesConfig['getTypeParser'] };

/** Every row of `table` at `url` as the server's own text output, in `order` (one connection, closed after). */
export async function capturePg(url: string, table: string, order = 'id'): Promise<Captured> {
  const c = new pg.Client({ connectionString: url, options: PG_SESSION, types: RAW });
  await c.connect();
  try {
    return (await c.query(`SELECT * FROM ${table} ORDER BY ${order}`)).rows as Captured;
  } finally {
    await c.end();
  }
}

export async function createPgDatabase(prefix = 'rs'): Promise<TestDatabase> {
  const base = requireEnv('CHARTLOG_TEST_PG_URL');
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  const url = u.toString();
  const client = new pg.Client({ connectionString: url, options: PG_SESSION, types: RAW });
  await client.connect();
  return {
    type: 'postgres',
    name,
    url,
    exec: async (sql) => void (await client.query(sql)),
    capture: async (table, order = 'id') => (await client.query(`SELECT * FROM ${table} ORDER BY ${order}`)).rows as Captured,
    tables: async () => (await client.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).rows.map((r: { tablename: string }) => r.tablename),
    drop: async () => {
      await client.end().catch(() => undefined);
      const a = new pg.Client({ connectionString: base });
      await a.connect();
      await a.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, [name]).catch(() => undefined);
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await a.end();
    },
  };
}

export async function createMariadbDatabase(prefix = 'rs'): Promise<TestDatabase> {
  const base = requireEnv('CHARTLOG_TEST_MARIADB_URL');
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const conn = await mysql.createConnection({
    uri: base,
    multipleStatements: true,
    charset: 'utf8mb4',
    // The text protocol's bytes for every column, as hex: exactly what the server printed.
    typeCast: (field) => {
      const b = field.buffer();
      return b === null ? null : b.toString('hex');
    },
  });
  await conn.query(`CREATE DATABASE \`${name}\``);
  await conn.query(`USE \`${name}\``);
  await conn.query("SET SESSION sql_mode = '', time_zone = '+00:00'");
  return {
    type: 'mysql',
    name,
    url: `${base.replace(/\/$/, '')}/${name}`,
    exec: async (sql) => void (await conn.query(sql)),
    capture: async (table, order = 'id') => (await conn.query(`SELECT * FROM ${table} ORDER BY ${order}`))[0] as Captured,
    tables: async () => ((await conn.query(`SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1`))[0] as { t: string }[]).map((r) => Buffer.from(r.t, 'hex').toString('utf8')),
    drop: async () => {
      await conn.query(`DROP DATABASE IF EXISTS \`${name}\``).catch(() => undefined);
      await conn.end().catch(() => undefined);
    },
  };
}

/**
 * Compares captures value by value. On a difference it names the row (by `id`), the column and
 * the moment, never the values: test output must not carry PHI.
 */
export function diffCaptures(actual: Captured, expected: Captured, label: string): string | null {
  if (actual.length !== expected.length) return `${label}: ${actual.length} rows, expected ${expected.length}`;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const cols = new Set([...Object.keys(a), ...Object.keys(e)]);
    for (const c of cols) {
      if (!(c in a)) return `${label}: row ${i} lacks column ${c}`;
      if (!(c in e)) return `${label}: row ${i} has extra column ${c}`;
      if (a[c] !== e[c]) return `${label}: row ${i} (id ${String(e.id)}) column ${c} differs${a[c] === null || e[c] === null ? ` (${a[c] === null ? 'NULL' : 'a value'} where ${e[c] === null ? 'NULL' : 'a value'} was expected)` : ''}`;
    }
  }
  return null;
}
