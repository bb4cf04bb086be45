import type mysql from 'mysql2/promise';
import type { SampledRow } from '../../src/core/source-connector.js';
import type { TableSchema } from '../../src/core/table-schema.js';
import { quoteIdent } from './setup-check.js';

/**
 * `SourceConnector.sample` on MySQL/MariaDB: up to `limit` rows of a table, each column as its
 * text (CAST … AS CHAR; binary columns not read), in a read-only transaction that is rolled back.
 */
export async function sampleRows(c: mysql.Connection, table: TableSchema, limit: number): Promise<SampledRow[]> {
  const list = table.columns.map((col, i) => (col.type.kind === 'bytes' ? `NULL AS c${i}` : `CAST(${quoteIdent(col.name)} AS CHAR) AS c${i}`));
  if (list.length === 0) return [];
  await c.query('START TRANSACTION READ ONLY');
  try {
    const [rows] = await c.query(`SELECT ${list.join(', ')} FROM ${quoteIdent(table.schema)}.${quoteIdent(table.table)} LIMIT ${Math.max(0, Math.floor(limit))}`);
    return (rows as Record<string, unknown>[]).map((r) => Object.fromEntries(table.columns.map((col, i) => [col.name, textOf(r[`c${i}`])])));
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
  }
}

function textOf(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
}
