import type { SampledRow } from '../../src/core/source-connector.js';
import type { TableSchema } from '../../src/core/table-schema.js';
import { quoteIdent } from './setup-check.js';
import type { Queryable } from './type-catalog.js';

/**
 * `SourceConnector.sample` on PostgreSQL: up to `limit` rows of a table, each column cast to
 * text (bytea not read), in a read-only transaction that is rolled back.
 */
export async function sampleRows(db: Queryable, table: TableSchema, limit: number): Promise<SampledRow[]> {
  const list = table.columns.map((c, i) => (c.type.kind === 'bytes' ? `NULL::text AS c${i}` : `${quoteIdent(c.name)}::text AS c${i}`));
  if (list.length === 0) return [];
  await db.query('BEGIN TRANSACTION READ ONLY');
  try {
    const { rows } = await db.query(`SELECT ${list.join(', ')} FROM ${quoteIdent(table.schema)}.${quoteIdent(table.table)} LIMIT $1`, [Math.max(0, Math.floor(limit))]);
    return rows.map((r) => Object.fromEntries(table.columns.map((c, i) => [c.name, r[`c${i}`] ?? null])));
  } finally {
    await db.query('ROLLBACK').catch(() => undefined);
  }
}
