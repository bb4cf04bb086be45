import { freezeTableSchema, qualifiedName, type ColumnSchema, type TableSchema } from '../../src/core/table-schema.js';
import { REPLICA_IDENTITY_POSITION, rowKeys, type Queryable, type TypeCatalog } from './type-catalog.js';
import { columnCodec } from './type-parsers.js';

/**
 * Which tables a source captures, as the catalog has them now, in one catalog round trip
 * whatever their number (the PHI name check at start; SourceConnector.tables()):
 * - the configured "schema.table" names, those that exist;
 * - otherwise the publication's tables, when the publication exists;
 * - otherwise what `FOR ALL TABLES` will publish (ensurePublication creates it so): every
 *   ordinary and partitioned table outside the system schemas, partitions under their root.
 * Columns are those pgoutput sends and the snapshot reads: no dropped and no generated columns,
 * in attnum order.
 */
export async function capturedTables(
  db: Queryable,
  catalog: TypeCatalog,
  selection: { readonly tables: readonly string[] | undefined; readonly publication: string },
): Promise<TableSchema[]> {
  let filter: string;
  let params: unknown[];
  if (selection.tables) {
    filter = `n.nspname || '.' || c.relname = ANY($1::text[])`;
    params = [[...selection.tables]];
  } else {
    const pub = await db.query(`SELECT 1 AS x FROM pg_publication WHERE pubname = $1`, [selection.publication]);
    if (pub.rows.length > 0) {
      filter = `(n.nspname, c.relname) IN (SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1)`;
      params = [selection.publication];
    } else {
      filter = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' AND NOT c.relispartition`;
      params = [];
    }
  }
  const { rows } = await db.query(
    `SELECT n.nspname, c.relname, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
            format_type(a.atttypid, a.atttypmod) AS formatted,
            (SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i
              WHERE i.indrelid = c.oid AND i.indisprimary) AS pkpos,
            ${REPLICA_IDENTITY_POSITION} AS ripos
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      WHERE c.relkind IN ('r', 'p') AND ${filter}
      ORDER BY n.nspname, c.relname, a.attnum`,
    params,
  );
  await catalog.ensure(db, rows.map((r) => Number(r.atttypid)));
  const tables = new Map<string, { schema: string; table: string; columns: ColumnSchema[]; keyed: { name: string; pos: number }[]; identity: { name: string; pos: number }[] }>();
  for (const r of rows) {
    const schema = r.nspname ?? '';
    const table = r.relname ?? '';
    const name = qualifiedName({ schema, table });
    let t = tables.get(name);
    if (!t) {
      t = { schema, table, columns: [], keyed: [], identity: [] };
      tables.set(name, t);
    }
    const column = r.attname ?? '';
    t.columns.push({
      name: column,
      sourceType: r.formatted ?? `oid ${r.atttypid}`,
      type: columnCodec(Number(r.atttypid), Number(r.atttypmod), catalog).type,
      nullable: r.attnotnull !== 't',
    });
    if (r.pkpos) t.keyed.push({ name: column, pos: Number(r.pkpos) });
    if (r.ripos) t.identity.push({ name: column, pos: Number(r.ripos) });
  }
  return [...tables.values()].map((t) =>
    freezeTableSchema({ schema: t.schema, table: t.table, columns: t.columns, ...rowKeys(t.keyed, t.identity) }),
  );
}
