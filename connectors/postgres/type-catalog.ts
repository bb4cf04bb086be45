import type { Logger } from '../../src/core/logger.js';
import { freezeTableSchema, type ColumnSchema, type MissingValue, type TableSchema } from '../../src/core/table-schema.js';
import { columnCodec, isBuiltinType, type ColumnCodec, type PgTypeInfo, type TypeLookup } from './type-parsers.js';

/**
 * The slice of a pg client chartlog uses for catalog queries. Connections are made with raw
 * text parsers (connection-settings.ts), so every value arrives as the server's text.
 */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, string | null>[] }>;
}

/** A column as a relation message (or pg_attribute) describes it. */
export interface ColumnDef {
  readonly name: string;
  readonly typeOid: number;
  readonly typeMod: number;
}

/** One table version with the parser of each of its columns, in column order. */
export interface DescribedTable {
  readonly schema: TableSchema;
  readonly codecs: readonly ColumnCodec[];
}

/**
 * Type and table facts from the catalog, cached per type OID. Relation messages give a
 * relation's columns as they were at that point of the WAL; the catalog adds what they lack
 * (exact type names via format_type, NOT NULL, primary key, enum labels). Those come from the
 * current catalog: a column dropped since is described as nullable and outside the key.
 */
export class TypeCatalog implements TypeLookup {
  private readonly types = new Map<number, PgTypeInfo>();
  private readonly warned = new Set<string>();

  constructor(private readonly log: Logger) {}

  get(oid: number): PgTypeInfo | undefined {
    return this.types.get(oid);
  }

  /** Drops cached types so the next `ensure` reads them again. */
  forget(oids: readonly number[]): void {
    for (const o of oids) this.types.delete(o);
  }

  /** Loads the types (and their base and element types) not yet known. */
  async ensure(db: Queryable, oids: readonly number[]): Promise<void> {
    let missing = [...new Set(oids)].filter((o) => !isBuiltinType(o) && !this.types.has(o));
    while (missing.length > 0) {
      const { rows } = await db.query(
        `SELECT t.oid, n.nspname, t.typname, t.typtype, t.typcategory, t.typelem, t.typbasetype,
                t.typtypmod, t.typdelim,
                CASE WHEN t.typtype = 'e' THEN
                  (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
                END AS labels
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE t.oid = ANY($1::oid[])`,
        [missing],
      );
      const next: number[] = [];
      for (const r of rows) {
        const info: PgTypeInfo = {
          oid: Number(r.oid),
          schema: r.nspname ?? '',
          name: r.typname ?? '',
          typtype: r.typtype ?? 'b',
          category: r.typcategory ?? '',
          elementOid: Number(r.typelem ?? 0),
          baseOid: Number(r.typbasetype ?? 0),
          baseTypmod: Number(r.typtypmod ?? -1),
          delimiter: r.typdelim ?? ',',
          ...(r.labels !== null && r.labels !== undefined ? { enumLabels: parseTextArray(r.labels) } : {}),
        };
        this.types.set(info.oid, info);
        for (const o of [info.elementOid, info.baseOid]) {
          if (o !== 0 && !isBuiltinType(o) && !this.types.has(o)) next.push(o);
        }
      }
      for (const o of missing) {
        // A type that vanished between the relation message and this query: keep a
        // placeholder so the column travels as text instead of looping.
        if (!this.types.has(o)) this.types.set(o, { oid: o, schema: '?', name: `oid ${o}`, typtype: 'b', category: 'X', elementOid: 0, baseOid: 0, baseTypmod: -1, delimiter: ',' });
      }
      missing = [...new Set(next)];
    }
  }

  /** Builds one table version: TableSchema plus codecs, in the given column order. */
  async describe(
    db: Queryable,
    relationOid: number,
    schemaName: string,
    table: string,
    columns: readonly ColumnDef[],
    previous?: TableSchema,
    previousFromCatalog = false,
  ): Promise<DescribedTable> {
    await this.ensure(db, columns.map((c) => c.typeOid));
    const meta = await db.query(
      `SELECT a.attname, a.attnotnull, a.atthasdef, a.atthasmissing,
              CASE WHEN a.atthasmissing THEN (a.attmissingval::text::text[])[1] END AS missingtext,
              (SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i
                WHERE i.indrelid = a.attrelid AND i.indisprimary) AS pkpos,
              ${REPLICA_IDENTITY_POSITION} AS ripos
         FROM pg_attribute a
        WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped`,
      [relationOid],
    );
    const byName = new Map(meta.rows.map((r) => [r.attname ?? '', r]));
    const formatted = await db.query(
      `SELECT format_type(u.o, u.m) AS t
         FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS u(o, m, n) ORDER BY u.n`,
      [columns.map((c) => c.typeOid), columns.map((c) => c.typeMod)],
    );
    const codecs: ColumnCodec[] = [];
    const cols: ColumnSchema[] = [];
    const keyed: { name: string; pos: number }[] = [];
    const identity: { name: string; pos: number }[] = [];
    columns.forEach((c, i) => {
      const codec = columnCodec(c.typeOid, c.typeMod, this);
      if (codec.unknownType) this.warnUnknown(codec.unknownType, `${schemaName}.${table}`, c.name);
      codecs.push(codec);
      const m = byName.get(c.name);
      const missing = missingOf(c.name, codec, m, previous, previousFromCatalog);
      if (missing && 'unknown' in missing && (!previous || !previous.columns.some((p) => p.name === c.name && p.missing))) {
        this.log.warn({ table: `${schemaName}.${table}`, column: c.name, reason: missing.unknown },
          `rows of ${schemaName}.${table} older than column ${c.name} cannot be restored past this change until the table is re-read: chartlog resync --tables ${schemaName}.${table}`);
      }
      cols.push({
        name: c.name,
        sourceType: formatted.rows[i]?.t ?? `oid ${c.typeOid}`,
        type: codec.type,
        nullable: m?.attnotnull !== 't',
        ...(missing ? { missing } : {}),
      });
      if (m?.pkpos) keyed.push({ name: c.name, pos: Number(m.pkpos) });
      if (m?.ripos) identity.push({ name: c.name, pos: Number(m.ripos) });
    });
    const schema = freezeTableSchema({ schema: schemaName, table, columns: cols, ...rowKeys(keyed, identity) });
    return { schema, codecs };
  }

  private warnUnknown(type: string, table: string, column: string): void {
    if (this.warned.has(type)) return;
    this.warned.add(type);
    this.log.warn({ type, table, column }, `PostgreSQL type ${type} is not one chartlog knows; its values travel as their text form`);
  }
}

/**
 * What rows older than a column read in it (core/table-schema.ts MissingValue). PostgreSQL keeps
 * the constant default of a column added to a table with rows in `pg_attribute.attmissingval`
 * (atthasmissing) instead of rewriting the rows; logical decoding sends nothing for them. A
 * column new since `previous` without one either reads NULL in older rows (nullable, no default)
 * or was given values by a table rewrite no change message carries (a volatile default): that
 * cannot be proved from here, so it is `unknown`. A column known before keeps what it had (a
 * rewrite clears atthasmissing once the rows hold the value; older images still lack it).
 * `previousFromCatalog`: `previous` was read from the catalogue when the stream started, not
 * from this stream's relation messages.
 */
export function missingOf(
  name: string,
  codec: ColumnCodec,
  m: Record<string, string | null> | undefined,
  previous: TableSchema | undefined,
  previousFromCatalog = false,
): MissingValue | undefined {
  if (m?.atthasmissing === 't' && m.missingtext !== null && m.missingtext !== undefined) {
    if (codec.type.kind === 'array' || codec.unknownType) return { unknown: `column ${name}: its constant default is of a type chartlog does not read from the catalog` };
    try {
      return { value: codec.parse(m.missingtext) };
    } catch {
      return { unknown: `column ${name}: its constant default could not be read from the catalog` };
    }
  }
  const before = previous?.columns.find((c) => c.name === name);
  if (before) return before.missing;
  if (!previous) return undefined;
  // A version read from the catalogue (not from the stream) may be ahead of a backlog: a column
  // it lacks that the catalogue lacks too was dropped since, not added.
  if (!m) return previousFromCatalog ? undefined : { unknown: `column ${name} was added and dropped again before chartlog read the catalog` };
  if (m.atthasdef === 't' || m.attnotnull === 't') {
    return { unknown: `column ${name} was added with a default PostgreSQL keeps no constant for (a volatile default fills rows by a table rewrite, which logical decoding does not carry)` };
  }
  return undefined;
}

/**
 * SQL (over `pg_attribute a`): the column's place in the table's replica identity index, null
 * when the table's identity is not `USING INDEX` or the column is not in it.
 */
export const REPLICA_IDENTITY_POSITION = `(SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i JOIN pg_class rc ON rc.oid = i.indrelid
                WHERE i.indrelid = a.attrelid AND i.indisreplident AND rc.relreplident = 'i')`;

/**
 * A table's primary key and, when `REPLICA IDENTITY USING INDEX` names other columns, that
 * index's columns as its replica identity (rows are matched by them: docs/formats.md).
 * Positions are 1-based places in the index.
 */
export function rowKeys(
  primary: readonly { name: string; pos: number }[],
  identity: readonly { name: string; pos: number }[],
): { primaryKey: string[]; replicaIdentity?: string[] } {
  const order = (l: readonly { name: string; pos: number }[]): string[] => [...l].sort((a, b) => a.pos - b.pos).map((k) => k.name);
  const primaryKey = order(primary);
  const replicaIdentity = order(identity);
  if (replicaIdentity.length === 0 || replicaIdentity.join('\u0000') === primaryKey.join('\u0000')) return { primaryKey };
  return { primaryKey, replicaIdentity };
}

/** A one-dimensional text[] literal from the catalog (enum labels). */
export function parseTextArray(literal: string): string[] {
  const out: string[] = [];
  let i = 1;
  if (literal === '{}') return out;
  while (i < literal.length) {
    let s = '';
    if (literal[i] === '"') {
      i++;
      while (i < literal.length && literal[i] !== '"') {
        if (literal[i] === '\\') i++;
        s += literal[i] ?? '';
        i++;
      }
      i++;
    } else {
      while (i < literal.length && literal[i] !== ',' && literal[i] !== '}') s += literal[i++];
    }
    out.push(s);
    i++; // the ',' or the closing '}'
  }
  return out;
}
