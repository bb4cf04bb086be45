import { createHash } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import { freezeTableSchema, type ColumnSchema, type ColumnType, type MissingValue, type TableSchema } from '../core/table-schema.js';
import { deserializeCell, serializeCell } from '../phi/cell-serialization.js';
import { mappingFor, SEALED } from './value-mapping.js';

/**
 * TableSchema → Avro schema of the change envelope (docs/architecture.md §2), and back.
 *
 * Shape (Debezium's field names):
 *   Envelope { before: [null, Value], after: [null, Value], op: string,
 *              source: Source { connector, name, db, schema, table, pos, txId, seq, commitTsUs, snapshot },
 *              tsUs: long timestamp-micros }
 *   Value    { <one field per column>: [null, <value branches>, chartlog.Marker] }
 *   chartlog.Marker = enum { UNCHANGED, ABSENT }
 *
 * - Every column's union holds null: a key-only before image or a malformed source row must
 *   still encode; whether the column is nullable is kept in the table attribute.
 * - Marker UNCHANGED is PostgreSQL's unchanged TOAST value; ABSENT is a column missing from a
 *   partial row image (a delete's key-only before image). Both stay distinct from null.
 * - Sealed PHI columns are `bytes` whatever their kind.
 * - An array column's nested levels (multi-dimensional PostgreSQL arrays) travel in a recursive
 *   record `chartlog.nested.<field>_level`, one per array column (value-mapping.ts, arrayMapping).
 * - Column and table names that are not valid Avro names are sanitised for field and namespace
 *   names; the exact names live in the `chartlog.table` attribute.
 * - The namespace ends in `v<16 hex>`, a hash of the whole table version (source types, kinds,
 *   precision and scale, primary key, which columns are sealed). Parsing Canonical Form strips
 *   every attribute, so without it two versions that differ only in, say, a decimal's scale
 *   would share one fingerprint and decode each other's values wrongly.
 *
 * The `chartlog.table` attribute carries the whole TableSchema, so restore can recreate tables
 * from stored schemas alone.
 */

export const CODEC_FORMAT = 1;
export const MARKER_NAME = 'chartlog.Marker';
export const MARKER_SYMBOLS = ['UNCHANGED', 'ABSENT'] as const;
export const TABLE_ATTRIBUTE = 'chartlog.table';

/** The op codes an envelope may hold (core/change-event.ts `Op`): its schema says only `string`. */
export const ENVELOPE_OPS: ReadonlySet<string> = new Set(['c', 'u', 'd', 'r', 't', 'x']);

/** The `chartlog.table` attribute. */
export interface TableAttribute {
  format: number;
  source: string;
  schema: string;
  table: string;
  primaryKey: string[];
  /** TableSchema.replicaIdentity; absent (not empty) when the table has none, so older versions hash as before. */
  identity?: string[];
  columns: {
    name: string;
    /** The Avro field name that carries it. */
    field: string;
    sourceType: string;
    type: ColumnType;
    nullable: boolean;
    sealed: boolean;
    /**
     * What rows written before the column existed read in it (core/table-schema.ts
     * MissingValue): `cell` is its cell serialization in base64, `unknown` why it cannot be
     * known. Absent when they read NULL — so versions written before it existed keep their hash.
     * `from` (the column's name before a RENAME COLUMN) is read from archives MariaDB/MySQL
     * sources wrote before `renamedFrom` was their encoding too, and read as `renamedFrom`;
     * never written.
     */
    missing?: MissingAttribute;
    /** Earlier names of the column, most recent first (RENAME COLUMN). Absent when never renamed. */
    renamedFrom?: string[];
  }[];
}

export type MissingAttribute = { cell: string } | { unknown: string } | { from: string };

/** A sealed column's value would stand in clear in the schema: never stored, the rows are re-read instead. */
export const SEALED_MISSING_REASON = 'the column is sealed (PHI), so the value its older rows read is not stored in the schema';

function missingAttribute(m: MissingValue, sealed: boolean): MissingAttribute {
  if ('unknown' in m) return { unknown: m.unknown };
  if (sealed && m.value !== null) return { unknown: SEALED_MISSING_REASON };
  return { cell: Buffer.from(serializeCell(m.value)).toString('base64') };
}

/** A stored `missing` as the value model has it; the legacy `from` (a rename) is not a missing value. */
function missingValue(m: MissingAttribute): MissingValue | undefined {
  if ('unknown' in m) return { unknown: m.unknown };
  if ('from' in m) return undefined;
  return { value: deserializeCell(Buffer.from(m.cell, 'base64')) };
}

/**
 * A column's earlier names: `renamedFrom`, the one encoding of RENAME COLUMN, or — in archives
 * MariaDB/MySQL sources wrote before it was theirs too — the old name in `missing.from`.
 */
function earlierNames(c: TableAttribute['columns'][number]): string[] | undefined {
  const legacy = c.missing && 'from' in c.missing ? [c.missing.from] : [];
  const names = [...new Set([...(c.renamedFrom ?? []), ...legacy])];
  return names.length > 0 ? names : undefined;
}

export type AvroSchemaJson = Record<string, unknown>;

const AVRO_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Valid Avro names that JS readers (avsc builds record classes) must not see as field names. */
const RESERVED_FIELDS = new Set(['__proto__', 'constructor', 'prototype']);

/** A valid Avro name part: invalid characters become '_', a leading digit gets a '_' before it. */
export function avroName(text: string): string {
  if (AVRO_NAME.test(text)) return text;
  const s = text.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(s) ? s : `_${s}`;
}

/** Field names for the columns, unique and valid, as close to the column names as they can be. */
export function fieldNames(columns: readonly ColumnSchema[]): string[] {
  const used = new Set<string>();
  return columns.map((c, i) => {
    let name = avroName(c.name);
    if (RESERVED_FIELDS.has(name)) name = `${name}_`;
    if (used.has(name)) name = `${name}__${i}`;
    while (used.has(name)) name = `${name}_`;
    used.add(name);
    return name;
  });
}

/** Key-ordered copy without undefined members, so equal types serialise to equal text. */
function normaliseType(t: Readonly<ColumnType>): ColumnType {
  const out: ColumnType = { kind: t.kind };
  if (t.bits !== undefined) out.bits = t.bits;
  if (t.unsigned !== undefined) out.unsigned = t.unsigned;
  if (t.precision !== undefined) out.precision = t.precision;
  if (t.scale !== undefined) out.scale = t.scale;
  if (t.length !== undefined) out.length = t.length;
  if (t.values !== undefined) out.values = [...t.values];
  if (t.element !== undefined) out.element = normaliseType(t.element);
  return out;
}

export function tableAttribute(source: string, table: TableSchema, sealed: ReadonlySet<string>): TableAttribute {
  const fields = fieldNames(table.columns);
  return {
    format: CODEC_FORMAT,
    source,
    schema: table.schema,
    table: table.table,
    primaryKey: [...table.primaryKey],
    ...(table.replicaIdentity && table.replicaIdentity.length > 0 ? { identity: [...table.replicaIdentity] } : {}),
    columns: table.columns.map((c, i) => ({
      name: c.name,
      field: fields[i]!,
      sourceType: c.sourceType,
      type: normaliseType(c.type),
      nullable: c.nullable,
      sealed: sealed.has(c.name),
      ...(c.missing ? { missing: missingAttribute(c.missing, sealed.has(c.name)) } : {}),
      ...(c.renamedFrom && c.renamedFrom.length > 0 ? { renamedFrom: [...c.renamedFrom] } : {}),
    })),
  };
}

/** The Avro schema of a table version's envelope, sealed columns as bytes. */
export function toAvroSchema(source: string, table: TableSchema, sealed: ReadonlySet<string>): AvroSchemaJson {
  for (const name of sealed) {
    if (!table.columns.some((c) => c.name === name)) {
      throw new ChartlogError('internal', `sealed column ${name} is not a column of ${table.schema}.${table.table}`);
    }
  }
  const attr = tableAttribute(source, table, sealed);
  const version = createHash('sha256').update(JSON.stringify(attr)).digest('hex').slice(0, 16);
  const namespace = ['chartlog', avroName(source), avroName(table.schema), avroName(table.table), `v${version}`].join('.');
  let markerDefined = false;
  const marker = (): unknown => {
    if (markerDefined) return MARKER_NAME;
    markerDefined = true;
    return { type: 'enum', name: 'Marker', namespace: 'chartlog', symbols: [...MARKER_SYMBOLS] };
  };
  const valueFields = attr.columns.map((c) => {
    const mapping = c.sealed ? SEALED : mappingFor(c.type, c.sourceType, c.field);
    return { name: c.field, type: ['null', ...mapping.branches, marker()], default: null };
  });
  return {
    type: 'record',
    name: 'Envelope',
    namespace,
    doc: `Changes of ${table.schema}.${table.table} from source ${source}`,
    [TABLE_ATTRIBUTE]: attr,
    fields: [
      { name: 'before', type: ['null', { type: 'record', name: 'Value', fields: valueFields }], default: null },
      { name: 'after', type: ['null', 'Value'], default: null },
      { name: 'op', type: 'string' },
      {
        name: 'source',
        type: {
          type: 'record',
          name: 'Source',
          fields: [
            { name: 'connector', type: 'string' },
            { name: 'name', type: 'string' },
            { name: 'db', type: 'string' },
            { name: 'schema', type: 'string' },
            { name: 'table', type: 'string' },
            { name: 'pos', type: 'string' },
            { name: 'txId', type: ['null', 'string'], default: null },
            { name: 'seq', type: 'long' },
            { name: 'commitTsUs', type: { type: 'long', logicalType: 'timestamp-micros' } },
            { name: 'snapshot', type: 'boolean' },
          ],
        },
      },
      { name: 'tsUs', type: { type: 'long', logicalType: 'timestamp-micros' } },
    ],
  };
}

/** What a stored schema says about its table version. */
export interface StoredTableVersion {
  readonly source: string;
  readonly table: TableSchema;
  readonly sealed: ReadonlySet<string>;
  readonly attribute: TableAttribute;
}

/** Recreates the table version from an envelope schema written by `toAvroSchema`. */
export function fromAvroSchema(schema: AvroSchemaJson): StoredTableVersion {
  const attr = schema[TABLE_ATTRIBUTE] as TableAttribute | undefined;
  if (!attr || typeof attr !== 'object' || !Array.isArray(attr.columns)) {
    throw new ChartlogError('integrity', `schema ${String(schema.namespace)} has no ${TABLE_ATTRIBUTE} attribute`, {
      hint: 'only schemas written by chartlog can be decoded into change events',
    });
  }
  if (attr.format !== CODEC_FORMAT) {
    throw new ChartlogError('integrity', `schema format ${attr.format} is not supported (this chartlog reads format ${CODEC_FORMAT})`, {
      hint: 'read this archive with the chartlog version that wrote it or a newer one',
    });
  }
  const table = freezeTableSchema({
    schema: attr.schema,
    table: attr.table,
    primaryKey: [...attr.primaryKey],
    ...(attr.identity ? { replicaIdentity: [...attr.identity] } : {}),
    columns: attr.columns.map((c) => ({
      name: c.name,
      sourceType: c.sourceType,
      type: normaliseType(c.type),
      nullable: c.nullable,
      ...(c.missing && missingValue(c.missing) ? { missing: missingValue(c.missing)! } : {}),
      ...(earlierNames(c) ? { renamedFrom: earlierNames(c)! } : {}),
    })),
  });
  return Object.freeze({
    source: attr.source,
    table,
    sealed: new Set(attr.columns.filter((c) => c.sealed).map((c) => c.name)),
    attribute: attr,
  });
}
