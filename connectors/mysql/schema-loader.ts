import type { ColumnSchema, TableSchema } from '../../src/core/table-schema.js';
import { freezeTableSchema, qualifiedName } from '../../src/core/table-schema.js';
import { columnTypeOf } from './column-type.js';

/** The slice of a mysql2/promise connection this module uses (a fake will do in tests). */
export interface QueryConnection {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
}

const SYSTEM_SCHEMAS = ['mysql', 'information_schema', 'performance_schema', 'sys'];

/** Which tables a source captures: the configured "schema.table" list, or every user table. */
export function tableFilter(tables: readonly string[] | undefined): (schema: string, table: string) => boolean {
  if (!tables || tables.length === 0) return (schema) => !SYSTEM_SCHEMAS.includes(schema.toLowerCase());
  const set = new Set(tables);
  return (schema, table) => set.has(`${schema}.${table}`);
}

interface ColumnRow {
  TABLE_SCHEMA: string;
  TABLE_NAME: string;
  COLUMN_NAME: string;
  COLUMN_TYPE: string;
  DATA_TYPE: string;
  IS_NULLABLE: string;
}

/**
 * The current versions of the captured base tables, from INFORMATION_SCHEMA (one round trip per
 * catalogue view, whatever the number of tables). MariaDB's JSON columns are LONGTEXT with a
 * `json_valid(col)` check constraint, which is how they are recognised.
 */
export async function loadTableSchemas(
  conn: QueryConnection,
  captures: (schema: string, table: string) => boolean,
  schemas?: readonly string[],
): Promise<Map<string, TableSchema>> {
  const where = schemas && schemas.length > 0
    ? `c.TABLE_SCHEMA IN (${schemas.map(() => '?').join(',')})`
    : `c.TABLE_SCHEMA NOT IN (${SYSTEM_SCHEMAS.map(() => '?').join(',')})`;
  const params = schemas && schemas.length > 0 ? [...schemas] : SYSTEM_SCHEMAS;
  const [cols] = await conn.query(
    `SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.DATA_TYPE, c.IS_NULLABLE
       FROM information_schema.COLUMNS c
       JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
      WHERE ${where} AND t.TABLE_TYPE = 'BASE TABLE'
      ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION`,
    params,
  );
  const [keys] = await conn.query(
    `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE c
      WHERE ${where} AND CONSTRAINT_NAME = 'PRIMARY'
      ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`,
    params,
  );
  const jsonColumns = new Set<string>();
  try {
    const [checks] = await conn.query(
      `SELECT CONSTRAINT_SCHEMA AS s, TABLE_NAME AS t, CHECK_CLAUSE AS clause FROM information_schema.CHECK_CONSTRAINTS c
        WHERE ${where.replace(/c\.TABLE_SCHEMA/g, 'c.CONSTRAINT_SCHEMA')}`,
      params,
    );
    for (const r of checks as { s: string; t: string; clause: string }[]) {
      const m = /^json_valid\(`((?:[^`]|``)+)`\)$/i.exec(r.clause.trim());
      if (m) jsonColumns.add(`${r.s}.${r.t}.${m[1]!.replace(/``/g, '`')}`);
    }
  } catch {
    // Servers without CHECK_CONSTRAINTS (MySQL < 8.0.16) have a real JSON type instead.
  }
  const pk = new Map<string, string[]>();
  for (const r of keys as ColumnRow[]) {
    const name = qualifiedName({ schema: r.TABLE_SCHEMA, table: r.TABLE_NAME });
    pk.set(name, [...(pk.get(name) ?? []), r.COLUMN_NAME]);
  }
  const columns = new Map<string, { schema: string; table: string; list: ColumnSchema[] }>();
  for (const r of cols as ColumnRow[]) {
    if (!captures(r.TABLE_SCHEMA, r.TABLE_NAME)) continue;
    const name = qualifiedName({ schema: r.TABLE_SCHEMA, table: r.TABLE_NAME });
    const isJson = r.DATA_TYPE.toLowerCase() === 'json' || jsonColumns.has(`${name}.${r.COLUMN_NAME}`);
    let entry = columns.get(name);
    if (!entry) {
      entry = { schema: r.TABLE_SCHEMA, table: r.TABLE_NAME, list: [] };
      columns.set(name, entry);
    }
    entry.list.push({
      name: r.COLUMN_NAME,
      sourceType: isJson ? 'json' : r.COLUMN_TYPE,
      type: columnTypeOf(r.COLUMN_TYPE, isJson),
      nullable: r.IS_NULLABLE === 'YES',
    });
  }
  const out = new Map<string, TableSchema>();
  for (const [name, e] of columns) {
    out.set(name, freezeTableSchema({ schema: e.schema, table: e.table, columns: e.list, primaryKey: pk.get(name) ?? [] }));
  }
  return out;
}
