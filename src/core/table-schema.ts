/**
 * The shape of a source table at one moment, and the exact in-memory value model every stage
 * shares. Connectors produce values in exactly these forms; the codec maps them to Avro and
 * back without loss; restore targets write them back.
 *
 * Value model, per column `kind` (one JS representation each, chosen so nothing is rounded):
 *
 * | kind        | JS value                | notes                                                    |
 * |-------------|-------------------------|----------------------------------------------------------|
 * | boolean     | boolean                 |                                                          |
 * | int         | number (bits ≤ 32)      | bits 64 (signed or unsigned) → bigint, always            |
 * |             | bigint (bits = 64)      |                                                          |
 * | float       | number                  | NaN, ±Infinity and -0 kept                               |
 * | decimal     | string                  | exact text: '-12.340', 'NaN', 'Infinity', '-Infinity'    |
 * | string      | string                  | text, varchar, char (with its padding), citext…          |
 * | bytes       | Uint8Array              | bytea, BINARY, VARBINARY, BLOB                           |
 * | bit         | string                  | '0'/'1' digits, most significant first                   |
 * | json        | string                  | the source's text: big integers stay exact               |
 * | uuid        | string                  | lowercase 8-4-4-4-12                                     |
 * | date        | string                  | 'YYYY-MM-DD', years may be 0000 / > 9999 / 'BC' suffixed; |
 * |             |                         | 'infinity', '-infinity', MySQL zero date '0000-00-00'    |
 * | time        | string                  | 'HH:MM:SS[.ffffff]', MySQL may be negative or > 24 h     |
 * | timetz      | string                  | 'HH:MM:SS[.ffffff]+HH[:MM]'                              |
 * | timestamp   | string                  | 'YYYY-MM-DD HH:MM:SS[.ffffff]', wall clock, no zone      |
 * | timestamptz | string                  | 'YYYY-MM-DD HH:MM:SS[.ffffff]+00', normalised to UTC     |
 * | interval    | string                  | PostgreSQL's text form                                   |
 * | enum        | string                  | the label                                                |
 * | set         | string[]                | MySQL SET members, in definition order                   |
 * | year        | number                  | MySQL YEAR, 0 for 0000                                   |
 * | text        | string                  | any other type (inet, cidr, macaddr, ranges…): its text  |
 * | array       | CellValue[]             | elements of `element`, nested, with nulls                |
 *
 * Beside these, every column may hold `null` (SQL NULL) or `UNCHANGED` (PostgreSQL's unchanged
 * TOAST value: the column kept its previous value, which was not sent). The three are distinct.
 */

/** A column kept its previous value, which the source did not send (unchanged TOAST). */
export const UNCHANGED: unique symbol = Symbol.for('chartlog.unchanged');
export type Unchanged = typeof UNCHANGED;

export type CellValue =
  | null
  | Unchanged
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly CellValue[];

/** One row image: column name → value. Only columns of the table's schema appear. */
export type Row = Readonly<Record<string, CellValue>>;

export type ValueKind =
  | 'boolean'
  | 'int'
  | 'float'
  | 'decimal'
  | 'string'
  | 'bytes'
  | 'bit'
  | 'json'
  | 'uuid'
  | 'date'
  | 'time'
  | 'timetz'
  | 'timestamp'
  | 'timestamptz'
  | 'interval'
  | 'enum'
  | 'set'
  | 'year'
  | 'text'
  | 'array';

export interface ColumnType {
  kind: ValueKind;
  /** int: 8 | 16 | 24 | 32 | 64; float: 32 | 64. */
  bits?: number;
  /** int: true for MySQL UNSIGNED. */
  unsigned?: boolean;
  /** decimal: declared precision and scale; both absent for PostgreSQL's unbounded numeric. */
  precision?: number;
  scale?: number;
  /** string, bytes, bit: declared length, when there is one. */
  length?: number;
  /** enum, set: the labels, in definition order. */
  values?: readonly string[];
  /** array: the element type. */
  element?: ColumnType;
}

/**
 * What a row written before its column existed reads in that column (ADD COLUMN on a table that
 * has rows: the source adds no row images). `value`: the constant every such row reads
 * (PostgreSQL `attmissingval`, a MariaDB/MySQL instant column's constant default). `unknown`:
 * the source gave such rows values chartlog cannot prove (a volatile default, a table rewrite);
 * the reason is kept, and a restore refuses to invent them (the table must be re-read:
 * `chartlog resync`). Absent: such rows read NULL. A renamed column is not a missing value: it
 * carries `renamedFrom` (ColumnSchema), on both engines.
 */
export type MissingValue = { readonly value: CellValue } | { readonly unknown: string };

export interface ColumnSchema {
  readonly name: string;
  /** The exact type as the source names it, e.g. 'numeric(12,2)', 'varchar(255)', 'tinyint unsigned'. */
  readonly sourceType: string;
  readonly type: Readonly<ColumnType>;
  readonly nullable: boolean;
  /** What rows older than the column read in it; absent: NULL (docs/formats.md, `missing`). */
  readonly missing?: MissingValue;
  /**
   * The column's earlier names, the most recent first (RENAME COLUMN, on PostgreSQL and
   * MariaDB/MySQL alike — the one encoding of a rename): rows stored before the rename hold its
   * value under one of them (docs/formats.md, `renamedFrom`). Later versions keep the list.
   * Absent: never renamed.
   */
  readonly renamedFrom?: readonly string[];
}

/**
 * One version of a table's shape. A new version is made whenever the source reports a change
 * (PostgreSQL relation message, MySQL DDL); events carry the version they were decoded with.
 */
export interface TableSchema {
  /** Source schema (PostgreSQL schema, MySQL database). */
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly ColumnSchema[];
  /** Primary-key column names in key order; empty when the table has none. */
  readonly primaryKey: readonly string[];
  /**
   * The columns that identify a row in the change stream when they are not the primary key: the
   * unique index of PostgreSQL `REPLICA IDENTITY USING INDEX`, in index order (its old images
   * carry only these). Absent when the primary key identifies rows, or, without one, the whole row.
   */
  readonly replicaIdentity?: readonly string[];
}

/**
 * The columns a row is matched by when changes are replayed: the replica identity, else the
 * primary key, else every column (a key-less table: identical rows are counted, not merged).
 */
export function identityColumns(t: TableSchema): readonly string[] {
  if (t.replicaIdentity && t.replicaIdentity.length > 0) return t.replicaIdentity;
  return t.primaryKey.length > 0 ? t.primaryKey : t.columns.map((c) => c.name);
}

/** Whether a key identifies at most one row (a primary key or a replica identity index). */
export function hasRowKey(t: TableSchema): boolean {
  return t.primaryKey.length > 0 || (t.replicaIdentity?.length ?? 0) > 0;
}

/** "schema.table", the name used in configuration, topics and object names. */
export function qualifiedName(t: { schema: string; table: string }): string {
  return `${t.schema}.${t.table}`;
}

/** Deep-freezes a table schema so no stage can change a shared version. */
export function freezeTableSchema(t: TableSchema): TableSchema {
  for (const c of t.columns) {
    Object.freeze(c.type);
    if (c.missing) Object.freeze(c.missing);
    if (c.renamedFrom) Object.freeze(c.renamedFrom);
    Object.freeze(c);
  }
  Object.freeze(t.columns);
  Object.freeze(t.primaryKey);
  if (t.replicaIdentity) Object.freeze(t.replicaIdentity);
  return Object.freeze(t);
}

/** Structural equality of two table versions (a missing value may be a bigint or bytes). */
export function sameTableVersion(a: TableSchema, b: TableSchema): boolean {
  const text = (t: TableSchema): string =>
    JSON.stringify(t, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `bytes:${Buffer.from(v).toString('hex')}` : v));
  return text(a) === text(b);
}
