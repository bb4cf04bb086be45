import { ChartlogError } from '../../core/errors.js';
import { UNCHANGED, type CellValue, type ColumnSchema, type ColumnType } from '../../core/table-schema.js';
import type { SourceEngine } from './restore-target.js';
import { pgBaseTypeDdl, sourceTypeDdl } from './source-type-ddl.js';

/**
 * Values of the value model (src/core/table-schema.ts) in PostgreSQL's text input form, and
 * column types for PostgreSQL targets. Pure. From PostgreSQL sources every value goes back
 * exactly (the value model keeps the source's own text); from MySQL sources the mapping is best
 * effort (MySQL zero dates, which PostgreSQL cannot hold, become NULL).
 */

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualifiedIdent(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/** A double as PostgreSQL reads it back to the same bits: NaN, ±Infinity and -0 spelt out. */
export function floatText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  if (Object.is(v, -0)) return '-0';
  return String(v);
}

const MYSQL_ZERO_DATE = /^\d{4}-\d{2}-\d{2}/;

function hasZeroDatePart(s: string): boolean {
  const m = MYSQL_ZERO_DATE.exec(s);
  if (!m) return false;
  const [y, mo, d] = m[0].split('-');
  return y === '0000' || mo === '00' || d === '00';
}

/** The text input form of one value, null for SQL NULL. */
export function pgText(v: CellValue | undefined, col: ColumnSchema, sealed: boolean, engine: SourceEngine): string | null {
  if (v === undefined || v === null) return null;
  if (v === UNCHANGED) {
    throw new ChartlogError('internal', `column ${col.name}: an unchanged value reached the target`);
  }
  if (v instanceof Uint8Array) return `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (sealed) throw new ChartlogError('integrity', `column ${col.name} is sealed but holds no sealed bytes`, { hint: 'run `chartlog verify`' });
  return valueText(v, col.type, engine);
}

function valueText(v: Exclude<CellValue, null | typeof UNCHANGED>, type: Readonly<ColumnType>, engine: SourceEngine): string | null {
  if (v instanceof Uint8Array) return `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (typeof v === 'boolean') return v ? 't' : 'f';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return type.kind === 'float' ? floatText(v) : String(v);
  if (Array.isArray(v)) return arrayLiteral(v as readonly CellValue[], type.kind === 'array' && type.element ? type.element : { kind: 'string' }, engine);
  const s = v as string;
  if (engine === 'mysql' && (type.kind === 'date' || type.kind === 'timestamp' || type.kind === 'timestamptz') && hasZeroDatePart(s)) return null;
  return s;
}

/** `{…}` with every element quoted, so commas, quotes, braces, 'NULL' and '' stay themselves. */
export function arrayLiteral(values: readonly CellValue[], element: Readonly<ColumnType>, engine: SourceEngine): string {
  const parts = values.map((e) => {
    if (e === null || e === undefined || e === UNCHANGED) return 'NULL';
    if (Array.isArray(e)) return arrayLiteral(e as readonly CellValue[], element, engine);
    const text = valueText(e as Exclude<CellValue, null | typeof UNCHANGED>, element, engine);
    return text === null ? 'NULL' : `"${text.replace(/[\\"]/g, '\\$&')}"`;
  });
  return `{${parts.join(',')}}`;
}

/** COPY text format: backslash escapes for the characters that delimit fields and rows. */
export function copyEscape(text: string): string {
  return /[\\\n\r\t]/.test(text) ? text.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t')) : text;
}

/** A standard SQL string literal (standard_conforming_strings on): only quotes are doubled. */
export function sqlLiteral(text: string | null): string {
  if (text === null) return 'NULL';
  // Most values hold no quote: the scan is cheaper than a regex replace (replicas build SQL per row).
  return text.includes("'") ? `'${text.replace(/'/g, "''")}'` : `'${text}'`;
}

/**
 * The column type for a PostgreSQL target: the recorded source type when the archive came from
 * PostgreSQL (sealed columns: bytea), otherwise a type that holds the value model's values.
 */
export function pgColumnType(col: ColumnSchema, sealed: boolean, engine: SourceEngine): string {
  if (sealed) return 'bytea';
  if (engine === 'postgres') return sourceTypeDdl('postgres', col);
  return pgTypeOfKind(col.type);
}

/** A built-in PostgreSQL type for a value kind: for MySQL sources and unknown PostgreSQL types (domains, extensions). */
export function pgTypeOfKind(t: Readonly<ColumnType>): string {
  switch (t.kind) {
    case 'boolean': return 'boolean';
    case 'int':
      if (t.bits === 64) return t.unsigned ? 'numeric(20,0)' : 'bigint';
      if (t.bits === 32) return t.unsigned ? 'bigint' : 'integer';
      if (t.bits === 24) return 'integer';
      return t.unsigned && t.bits === 16 ? 'integer' : 'smallint';
    case 'float': return t.bits === 32 ? 'real' : 'double precision';
    case 'decimal': return t.precision !== undefined ? `numeric(${t.precision},${t.scale ?? 0})` : 'numeric';
    // MySQL CHAR drops trailing spaces where PostgreSQL's character(n) pads: varchar keeps the value.
    case 'string': return t.length !== undefined ? `varchar(${t.length})` : 'text';
    case 'bytes': return 'bytea';
    case 'bit': return t.length !== undefined ? `bit(${t.length})` : 'varbit';
    case 'json': return 'json';
    case 'uuid': return 'uuid';
    case 'date': return 'date';
    case 'time': return 'interval'; // MySQL TIME reaches ±838 hours
    case 'timetz': return 'timetz';
    case 'timestamp': return 'timestamp(6)';
    case 'timestamptz': return 'timestamptz(6)';
    case 'interval': return 'interval';
    case 'enum': return 'text';
    case 'set': return 'text[]';
    case 'year': return 'smallint';
    case 'text': return 'text';
    case 'array': return `${pgTypeOfKind(t.element ?? { kind: 'text' })}[]`;
  }
}

/** The enum a column needs created (PostgreSQL sources): its type name and labels. */
export function enumOf(col: ColumnSchema): { name: string; labels: readonly string[] } | null {
  let t: Readonly<ColumnType> | undefined = col.type;
  while (t?.kind === 'array') t = t.element;
  if (t?.kind !== 'enum' || !t.values) return null;
  return { name: pgBaseTypeDdl(col.sourceType), labels: t.values };
}
