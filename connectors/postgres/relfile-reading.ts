import type { RelfileReading } from './rewrite-watch.js';

/**
 * One catalog row of a captured table, as `RELFILE_READING_SQL` returns it, turned into the
 * rewrite watch's reading (rewrite-watch.ts). Pure: tested on rows as the server returns them.
 *
 * A partitioned table (relkind 'p') has no storage: its reading is its partition tree instead —
 * every partition's OID and relfilenode, in OID order — so ATTACH, DETACH or DROP of a partition,
 * and a partition rewritten or truncated on its own, all change it, as a rewrite changes an
 * ordinary table's relfilenode. Its `xmin` is the distinct xmins of its leaves: a TRUNCATE of the
 * root (carried by the stream) gives every leaf that transaction's xmin, so the watch can tell it
 * apart as it does for ordinary tables.
 */
export interface CatalogReading extends RelfileReading {
  /** Set when the table is a partition whose ancestor ("schema.table") the publication sends: ATTACH made its rows that ancestor's. */
  readonly attachedTo?: string;
  /** For a partitioned table: its partitions' "schema.table" names. */
  readonly partitions?: readonly string[];
}

/** Parameters: $3 the publication. The caller appends the filter (`AND (…)`) with $1, $2. */
export const RELFILE_READING_SQL = `
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.relfilenode, c.xmin, pg_current_wal_lsn() AS lsn,
         (extract(epoch FROM statement_timestamp()) * 1000000)::int8::text AS ts_us,
         CASE WHEN c.relispartition THEN (
           SELECT an.nspname || '.' || ac.relname
             FROM pg_partition_ancestors(c.oid) WITH ORDINALITY x(relid, depth)
             JOIN pg_class ac ON ac.oid = x.relid JOIN pg_namespace an ON an.oid = ac.relnamespace
            WHERE x.relid <> c.oid AND EXISTS (SELECT 1 FROM pg_publication_tables pt
                    WHERE pt.pubname = $3::text AND pt.schemaname = an.nspname AND pt.tablename = ac.relname)
            ORDER BY x.depth DESC LIMIT 1) END AS attached_to,
         CASE WHEN c.relkind = 'p' THEN (
           SELECT coalesce(json_agg(json_build_array(pc.oid::text, pn.nspname || '.' || pc.relname, pc.relfilenode::text, pc.xmin::text, t.isleaf) ORDER BY pc.oid), '[]')::text
             FROM pg_partition_tree(c.oid) t JOIN pg_class pc ON pc.oid = t.relid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
            WHERE t.relid <> c.oid) END AS partitions,
         CASE WHEN c.relkind = 'r' AND (SELECT p.pubtruncate FROM pg_publication p WHERE p.pubname = $3::text) THEN (
           SELECT string_agg(a.attnum::text || ':' || a.xmin::text, ',' ORDER BY a.attnum)
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0) END AS attrs
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p')`;

type Row = Record<string, string | null | undefined>;

export function relfileReading(r: Row): CatalogReading {
  const base = { oid: Number(r.oid), table: `${r.nspname}.${r.relname}` };
  const attachedTo = r.attached_to ? { attachedTo: r.attached_to } : {};
  if (r.relkind !== 'p') return { ...base, relfilenode: r.relfilenode ?? '', xmin: r.xmin ?? '', ...(r.attrs ? { attrs: r.attrs } : {}), ...attachedTo };
  const parts = JSON.parse(r.partitions ?? '[]') as [string, string, string, string, boolean][];
  const leafXmins = [...new Set(parts.filter((p) => p[4]).map((p) => p[3]))].sort();
  return {
    ...base,
    relfilenode: `partitions:${parts.map(([oid, , relfilenode]) => `${oid}=${relfilenode}`).join(',')}`,
    xmin: leafXmins.join(','),
    partitions: parts.map((p) => p[1]),
    ...attachedTo,
  };
}
