import type { ColumnSchema } from '../../core/table-schema.js';
import { parseSqlType, type SqlEngine } from '../../codec/sql-type.js';
import { mysqlString } from './mysql-text.js';

/**
 * A column's archived source type as a restore target's DDL writes it — the one place where
 * archived type text meets `CREATE TABLE` / `CREATE TYPE`. Never the archived text itself:
 * built-in types re-spelt from an allow-list with checked integers, user type names (PostgreSQL
 * enums, domains) as quoted identifiers, MySQL enum/set labels as string literals from the
 * column's structured labels. Throws ChartlogError('integrity') for a type outside the
 * allow-list (src/codec/sql-type.ts).
 */
export function sourceTypeDdl(engine: SqlEngine, col: Pick<ColumnSchema, 'sourceType' | 'type'>): string {
  const t = parseSqlType(engine, col.sourceType);
  if (engine === 'mysql' && (t.base === 'enum' || t.base === 'set')) {
    return `${t.base}(${(col.type.values ?? []).map(mysqlString).join(',')})`;
  }
  return t.ddl;
}

/** The element type's name of a PostgreSQL source type, quoted when it is a user type ('mood[]' → '"mood"'). */
export function pgBaseTypeDdl(sourceType: string): string {
  return parseSqlType('postgres', sourceType).base;
}
