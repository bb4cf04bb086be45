import { createHash } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import { deserializeCell } from '../phi/cell-serialization.js';
import { CODEC_FORMAT, TABLE_ATTRIBUTE, type AvroSchemaJson } from './avro-schema.js';
import { parseSqlType, type SqlEngine } from './sql-type.js';

/**
 * Strict checks of a stored schema's `chartlog.table` attribute before anything uses it: its
 * names and type attributes end up in a restore target's `CREATE TABLE`, so an altered schema
 * object must be refused here, with the object and the field named, not passed on.
 */

const KINDS = new Set(['boolean', 'int', 'float', 'decimal', 'string', 'bytes', 'bit', 'json', 'uuid', 'date', 'time', 'timetz', 'timestamp',
  'timestamptz', 'interval', 'enum', 'set', 'year', 'text', 'array']);
const INT_BITS = new Set([8, 16, 24, 32, 64]);
const FLOAT_BITS = new Set([32, 64]);
const AVRO_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
/** Both engines' identifier limit is 64 characters (PostgreSQL: 63 bytes). */
const MAX_IDENT = 64;

class Check {
  constructor(readonly where: string) {}

  fail(field: string, why: string): never {
    throw new ChartlogError('integrity', `schema object ${this.where}: ${TABLE_ATTRIBUTE}.${field} ${why}`, {
      hint: 'the schema object was altered or damaged; run `chartlog verify` and restore schemas/ from an intact copy of the archive',
    });
  }

  ident(field: string, v: unknown): string {
    if (typeof v !== 'string' || v.length === 0 || [...v].length > MAX_IDENT || CONTROL.test(v)) {
      this.fail(field, `is not an identifier (1 to ${MAX_IDENT} characters, no control characters)`);
    }
    return v;
  }

  int(field: string, v: unknown, min: number, max: number): void {
    if (v === undefined) return;
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) this.fail(field, `is not an integer from ${min} to ${max}`);
  }

  bool(field: string, v: unknown, optional = false): void {
    if (optional && v === undefined) return;
    if (typeof v !== 'boolean') this.fail(field, 'is not true or false');
  }

  /** `{cell: base64 of a cell serialization}`, `{unknown: reason}` or `{from: column name}`, nothing else. */
  missing(field: string, m: unknown): void {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) this.fail(field, 'is not a missing value');
    const o = m as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length !== 1) this.fail(field, 'must hold exactly one of cell, unknown, from');
    if ('from' in o) {
      if (typeof o.from !== 'string' || o.from.length === 0 || o.from.length > 256 || CONTROL.test(o.from)) this.fail(`${field}.from`, 'is not a column name (1 to 256 characters, no control characters)');
      return;
    }
    if ('unknown' in o) {
      if (typeof o.unknown !== 'string' || o.unknown.length > 1000 || CONTROL.test(o.unknown)) this.fail(`${field}.unknown`, 'is not a reason (up to 1000 characters, no control characters)');
      return;
    }
    if (typeof o.cell !== 'string' || o.cell.length > 1_000_000 || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.cell)) this.fail(`${field}.cell`, 'is not base64');
    try {
      deserializeCell(Buffer.from(o.cell, 'base64'));
    } catch (err) {
      this.fail(`${field}.cell`, `is not a cell value (${(err as Error).message})`);
    }
  }

  type(field: string, t: unknown, depth = 0): void {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) this.fail(field, 'is not a type');
    const o = t as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!['kind', 'bits', 'unsigned', 'precision', 'scale', 'length', 'values', 'element'].includes(k)) this.fail(`${field}.${k}`, 'is not a type attribute');
    if (typeof o.kind !== 'string' || !KINDS.has(o.kind)) this.fail(`${field}.kind`, 'is not a known value kind');
    if (o.bits !== undefined) {
      const allowed = o.kind === 'int' ? INT_BITS : o.kind === 'float' ? FLOAT_BITS : null;
      if (!allowed || !allowed.has(o.bits as number)) this.fail(`${field}.bits`, `is not a width of a ${o.kind}`);
    }
    this.bool(`${field}.unsigned`, o.unsigned, true);
    this.int(`${field}.precision`, o.precision, 1, 1000);
    this.int(`${field}.scale`, o.scale, -1000, 1000);
    this.int(`${field}.length`, o.length, 0, 4_294_967_295);
    if (o.values !== undefined) {
      if (!Array.isArray(o.values) || o.values.length > 65_535 || o.values.some((v) => typeof v !== 'string' || v.length > 65_535)) {
        this.fail(`${field}.values`, 'is not a list of labels');
      }
    }
    if (o.element !== undefined) {
      if (o.kind !== 'array' || depth >= 6) this.fail(`${field}.element`, 'is not allowed here');
      this.type(`${field}.element`, o.element, depth + 1);
    }
  }
}

/**
 * Throws ChartlogError('integrity') naming `where` and the field when the schema's table
 * attribute is not what chartlog writes: identifiers, value kinds, widths, lengths, precisions,
 * scales, labels, the namespace's version hash — and, given the source's `engine`, every source
 * type against that engine's allow-list (src/codec/sql-type.ts).
 */
export function checkTableAttribute(schema: AvroSchemaJson, where: string, engine?: SqlEngine): void {
  const c = new Check(where);
  const attr = schema[TABLE_ATTRIBUTE] as Record<string, unknown> | undefined;
  if (typeof attr !== 'object' || attr === null || Array.isArray(attr)) return c.fail('', 'is missing');
  if (attr.format !== CODEC_FORMAT) return; // fromAvroSchema names the unsupported format
  c.ident('source', attr.source);
  c.ident('schema', attr.schema);
  c.ident('table', attr.table);
  if (!Array.isArray(attr.columns) || attr.columns.length === 0 || attr.columns.length > 4096) c.fail('columns', 'is not a list of 1 to 4096 columns');
  const names = new Set<string>();
  (attr.columns as unknown[]).forEach((col, i) => {
    const f = `columns[${i}]`;
    if (typeof col !== 'object' || col === null) c.fail(f, 'is not a column');
    const o = col as Record<string, unknown>;
    const name = c.ident(`${f}.name`, o.name);
    if (names.has(name)) c.fail(`${f}.name`, 'repeats a column name');
    names.add(name);
    if (typeof o.field !== 'string' || !AVRO_NAME.test(o.field)) c.fail(`${f}.field`, 'is not an Avro name');
    if (typeof o.sourceType !== 'string' || o.sourceType.length === 0 || o.sourceType.length > 65_536) c.fail(`${f}.sourceType`, 'is not a type');
    c.bool(`${f}.nullable`, o.nullable);
    c.bool(`${f}.sealed`, o.sealed);
    c.type(`${f}.type`, o.type);
    if (o.missing !== undefined) c.missing(`${f}.missing`, o.missing);
    if (o.renamedFrom !== undefined) {
      if (!Array.isArray(o.renamedFrom) || o.renamedFrom.length === 0 || o.renamedFrom.length > 64) c.fail(`${f}.renamedFrom`, 'is not a list of 1 to 64 earlier names');
      (o.renamedFrom as unknown[]).forEach((n, j) => c.ident(`${f}.renamedFrom[${j}]`, n));
    }
    if (engine) {
      try {
        parseSqlType(engine, o.sourceType as string);
      } catch (err) {
        c.fail(`${f}.sourceType`, (err as Error).message);
      }
    }
  });
  if (!Array.isArray(attr.primaryKey) || attr.primaryKey.some((k) => typeof k !== 'string' || !names.has(k))) c.fail('primaryKey', 'names a column the table does not have');
  if (attr.identity !== undefined && (!Array.isArray(attr.identity) || attr.identity.length === 0 || attr.identity.some((k) => typeof k !== 'string' || !names.has(k)))) {
    c.fail('identity', 'is not a non-empty list of the table\'s columns');
  }
  // The namespace ends in a hash of the whole attribute: an attribute edited alone is caught
  // even without a MAC (a forged one must also change the fingerprint, which names the object).
  const version = createHash('sha256').update(JSON.stringify(attr)).digest('hex').slice(0, 16);
  if (typeof schema.namespace !== 'string' || !schema.namespace.endsWith(`.v${version}`)) c.fail('', 'does not match the version hash in the schema namespace');
}
