import fc from 'fast-check';
import type { ChangeBatch, ChangeEvent, Op } from '../../src/core/change-event.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import { UNCHANGED, type CellValue, type ColumnSchema, type ColumnType, type Row, type TableSchema } from '../../src/core/table-schema.js';

/**
 * Generators of table versions, rows and batches over each engine's type set, with the edge
 * values the value model documents (src/core/table-schema.ts). Built by hand: connectors are
 * not used here.
 */

export type Engine = 'postgres' | 'mysql';

interface TypeCase {
  sourceType: string;
  type: ColumnType;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

const text = fc.string({ unit: 'binary', maxLength: 24 });

function decimalText(precision: number, scale: number): fc.Arbitrary<string> {
  const limit = 10n ** BigInt(precision) - 1n;
  const canonical = fc.bigInt(-limit, limit).map((u) => {
    const neg = u < 0n;
    const digits = (neg ? -u : u).toString().padStart(scale + 1, '0');
    const body = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
    return neg ? `-${body}` : body;
  });
  return fc.oneof(
    { weight: 6, arbitrary: canonical },
    { weight: 1, arbitrary: fc.constantFrom('NaN', 'Infinity', '-Infinity', scale > 0 ? `-0.${'0'.repeat(scale)}` : '-0', '1e5', '00.5', '+1') },
  );
}

const unboundedDecimal = fc.oneof(
  fc.tuple(fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }), fc.nat(30)).map(([u, s]) => {
    const neg = u < 0n;
    const d = (neg ? -u : u).toString().padStart(s + 1, '0');
    return `${neg ? '-' : ''}${s === 0 ? d : `${d.slice(0, -s)}.${d.slice(-s)}`}`;
  }),
  fc.constantFrom('NaN', 'Infinity', '-Infinity', '0', '-0.000'),
);

const civilDate = fc.record({ y: fc.integer({ min: 1, max: 9999 }), m: fc.integer({ min: 1, max: 12 }), d: fc.integer({ min: 1, max: 28 }) })
  .map(({ y, m, d }) => `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`);

const fraction = fc.oneof(fc.constant(''), fc.integer({ min: 0, max: 999999 }).map((f) => `.${pad(f, 6).replace(/0+$/, '') || '0'}`));
const fractionUntrimmed = fc.integer({ min: 0, max: 999 }).map((f) => `.${pad(f, 3)}`);
const timeOfDay = fc
  .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }), fc.oneof(fraction, fractionUntrimmed))
  .map(([h, m, s, f]) => `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${f === '.0' ? '' : f}`);

const pgDate = fc.oneof({ weight: 5, arbitrary: civilDate }, { weight: 1, arbitrary: fc.constantFrom('infinity', '-infinity', '0044-03-15 BC', '12345-01-01', '0001-01-01', '9999-12-31', '1969-12-31', '1970-01-01') });
const mysqlDate = fc.oneof({ weight: 5, arbitrary: civilDate }, { weight: 1, arbitrary: fc.constantFrom('0000-00-00', '2020-02-30', '2020-00-00', '1000-01-01') });
const pgTime = fc.oneof({ weight: 5, arbitrary: timeOfDay }, { weight: 1, arbitrary: fc.constantFrom('24:00:00', '00:00:00', '23:59:59.999999') });
const mysqlTime = fc.oneof(
  { weight: 4, arbitrary: timeOfDay },
  { weight: 1, arbitrary: fc.constantFrom('-838:59:59', '838:59:59', '-00:00:01', '100:00:00.5', '12:00:00.000000') },
);
const timestamp = (suffix: string, edges: string[]): fc.Arbitrary<string> =>
  fc.oneof({ weight: 5, arbitrary: fc.tuple(civilDate, timeOfDay).map(([d, t]) => `${d} ${t}${suffix}`) }, { weight: 1, arbitrary: fc.constantFrom(...edges) });

const json = fc.oneof(
  fc.json({ maxDepth: 2 }),
  fc.constantFrom('{"id": 12345678901234567890123, "x": [1.10, -0]}', '[]', 'null', '"a"', '{"nested": {"ssn": "x"}}'),
);

function pgTypes(): fc.Arbitrary<TypeCase> {
  const scalar: TypeCase[] = [
    { sourceType: 'boolean', type: { kind: 'boolean' } },
    { sourceType: 'smallint', type: { kind: 'int', bits: 16 } },
    { sourceType: 'integer', type: { kind: 'int', bits: 32 } },
    { sourceType: 'bigint', type: { kind: 'int', bits: 64 } },
    { sourceType: 'real', type: { kind: 'float', bits: 32 } },
    { sourceType: 'double precision', type: { kind: 'float', bits: 64 } },
    { sourceType: 'numeric(12,2)', type: { kind: 'decimal', precision: 12, scale: 2 } },
    { sourceType: 'numeric(38,10)', type: { kind: 'decimal', precision: 38, scale: 10 } },
    { sourceType: 'numeric(5)', type: { kind: 'decimal', precision: 5, scale: 0 } },
    { sourceType: 'numeric', type: { kind: 'decimal' } },
    { sourceType: 'text', type: { kind: 'string' } },
    { sourceType: 'character varying(255)', type: { kind: 'string', length: 255 } },
    { sourceType: 'bytea', type: { kind: 'bytes' } },
    { sourceType: 'bit varying(16)', type: { kind: 'bit', length: 16 } },
    { sourceType: 'jsonb', type: { kind: 'json' } },
    { sourceType: 'uuid', type: { kind: 'uuid' } },
    { sourceType: 'date', type: { kind: 'date' } },
    { sourceType: 'time without time zone', type: { kind: 'time' } },
    { sourceType: 'time with time zone', type: { kind: 'timetz' } },
    { sourceType: 'timestamp without time zone', type: { kind: 'timestamp' } },
    { sourceType: 'timestamp with time zone', type: { kind: 'timestamptz' } },
    { sourceType: 'interval', type: { kind: 'interval' } },
    { sourceType: 'mood', type: { kind: 'enum', values: ['sad', 'ok', 'happy, very'] } },
    { sourceType: 'inet', type: { kind: 'text' } },
    // PostgreSQL names one type for any number of dimensions: values nest (see arrayOf).
    { sourceType: 'integer[]', type: { kind: 'array', element: { kind: 'int', bits: 32 } } },
    { sourceType: 'smallint[]', type: { kind: 'array', element: { kind: 'int', bits: 16 } } },
    { sourceType: 'bigint[]', type: { kind: 'array', element: { kind: 'int', bits: 64 } } },
    { sourceType: 'text[]', type: { kind: 'array', element: { kind: 'string' } } },
    { sourceType: 'numeric(10,3)[]', type: { kind: 'array', element: { kind: 'decimal', precision: 10, scale: 3 } } },
    { sourceType: 'numeric[]', type: { kind: 'array', element: { kind: 'decimal' } } },
    { sourceType: 'boolean[]', type: { kind: 'array', element: { kind: 'boolean' } } },
    { sourceType: 'double precision[]', type: { kind: 'array', element: { kind: 'float', bits: 64 } } },
    { sourceType: 'real[]', type: { kind: 'array', element: { kind: 'float', bits: 32 } } },
    { sourceType: 'bytea[]', type: { kind: 'array', element: { kind: 'bytes' } } },
    { sourceType: 'date[]', type: { kind: 'array', element: { kind: 'date' } } },
    { sourceType: 'time without time zone[]', type: { kind: 'array', element: { kind: 'time' } } },
    { sourceType: 'timestamp without time zone[]', type: { kind: 'array', element: { kind: 'timestamp' } } },
    { sourceType: 'timestamp with time zone[]', type: { kind: 'array', element: { kind: 'timestamptz' } } },
    { sourceType: 'uuid[]', type: { kind: 'array', element: { kind: 'uuid' } } },
    { sourceType: 'jsonb[]', type: { kind: 'array', element: { kind: 'json' } } },
    { sourceType: 'mood[]', type: { kind: 'array', element: { kind: 'enum', values: ['sad', 'ok', 'happy, very', 'quo"te', 'NULL'] } } },
    { sourceType: 'inet[]', type: { kind: 'array', element: { kind: 'text' } } },
    // An array of a domain over bigint[]: the element type is itself an array.
    { sourceType: 'int8_pair[]', type: { kind: 'array', element: { kind: 'array', element: { kind: 'int', bits: 64 } } } },
  ];
  return fc.constantFrom(...scalar);
}

function mysqlTypes(): fc.Arbitrary<TypeCase> {
  const scalar: TypeCase[] = [
    { sourceType: 'tinyint(1)', type: { kind: 'int', bits: 8 } },
    { sourceType: 'tinyint unsigned', type: { kind: 'int', bits: 8, unsigned: true } },
    { sourceType: 'smallint unsigned', type: { kind: 'int', bits: 16, unsigned: true } },
    { sourceType: 'mediumint', type: { kind: 'int', bits: 24 } },
    { sourceType: 'mediumint unsigned', type: { kind: 'int', bits: 24, unsigned: true } },
    { sourceType: 'int', type: { kind: 'int', bits: 32 } },
    { sourceType: 'int unsigned', type: { kind: 'int', bits: 32, unsigned: true } },
    { sourceType: 'bigint', type: { kind: 'int', bits: 64 } },
    { sourceType: 'bigint unsigned', type: { kind: 'int', bits: 64, unsigned: true } },
    { sourceType: 'float', type: { kind: 'float', bits: 32 } },
    { sourceType: 'double', type: { kind: 'float', bits: 64 } },
    { sourceType: 'decimal(65,30)', type: { kind: 'decimal', precision: 65, scale: 30 } },
    { sourceType: 'decimal(10,0)', type: { kind: 'decimal', precision: 10, scale: 0 } },
    { sourceType: 'varchar(64)', type: { kind: 'string', length: 64 } },
    { sourceType: 'char(10)', type: { kind: 'string', length: 10 } },
    { sourceType: 'longtext', type: { kind: 'string' } },
    { sourceType: 'varbinary(16)', type: { kind: 'bytes', length: 16 } },
    { sourceType: 'blob', type: { kind: 'bytes' } },
    { sourceType: 'bit(12)', type: { kind: 'bit', length: 12 } },
    { sourceType: 'json', type: { kind: 'json' } },
    { sourceType: 'uuid', type: { kind: 'uuid' } },
    { sourceType: 'date', type: { kind: 'date' } },
    { sourceType: 'time(6)', type: { kind: 'time' } },
    { sourceType: 'datetime(6)', type: { kind: 'timestamp' } },
    { sourceType: 'timestamp', type: { kind: 'timestamptz' } },
    { sourceType: "enum('a','b,c','it''s')", type: { kind: 'enum', values: ['a', 'b,c', "it's"] } },
    { sourceType: "set('x','y','z''s')", type: { kind: 'set', values: ['x', 'y', "z's"] } },
    { sourceType: 'year', type: { kind: 'year' } },
  ];
  return fc.constantFrom(...scalar);
}

/** A value of the type, exactly as a connector of `engine` produces it. */
export function valueOf(type: ColumnType, engine: Engine): fc.Arbitrary<CellValue> {
  switch (type.kind) {
    case 'boolean':
      return fc.boolean();
    case 'int': {
      const bits = type.bits ?? 32;
      if (bits === 64) return type.unsigned ? fc.bigInt(0n, (1n << 64n) - 1n) : fc.bigInt(-(1n << 63n), (1n << 63n) - 1n);
      if (type.unsigned) return fc.integer({ min: 0, max: 2 ** bits - 1 });
      return fc.integer({ min: -(2 ** (bits - 1)), max: 2 ** (bits - 1) - 1 });
    }
    case 'float':
      return fc.oneof(fc.double(), fc.constantFrom(NaN, -0, Infinity, -Infinity, 3.14, 1e-310));
    case 'decimal':
      return type.precision === undefined ? unboundedDecimal : decimalText(type.precision, type.scale ?? 0);
    case 'string':
    case 'text':
    case 'interval':
    case 'timetz':
      return fc.oneof(
        text,
        fc.constantFrom('', ' ', 'padded    ', '1 year 2 mons 3 days 04:05:06.7', '12:00:00+05:30', '192.168.0.1/24'),
        // What array literals must escape, and what reads like SQL NULL.
        fc.constantFrom('NULL', 'null', '"NULL"', 'a,b', 'quo"ted', 'back\\slash', '{brace}', '{1,2}', ' sp '),
      );
    case 'bytes':
      return fc.uint8Array({ maxLength: 40 });
    case 'bit':
      return fc.array(fc.constantFrom('0', '1'), { maxLength: 16 }).map((a) => a.join(''));
    case 'json':
      return json;
    case 'uuid':
      return fc.uuid();
    case 'date':
      return engine === 'postgres' ? pgDate : mysqlDate;
    case 'time':
      return engine === 'postgres' ? pgTime : mysqlTime;
    case 'timestamp':
      return engine === 'postgres'
        ? timestamp('', ['infinity', '-infinity', '0044-03-15 10:00:00 BC', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999'])
        : timestamp('', ['0000-00-00 00:00:00', '2024-01-01 00:00:00.100000', '1000-01-01 00:00:00']);
    case 'timestamptz':
      return timestamp('+00', ['infinity', '-infinity', '0001-01-01 00:00:00+00', '2038-01-19 03:14:07+00']);
    case 'enum':
      return fc.constantFrom(...(type.values ?? ['x']));
    case 'set':
      return fc.subarray([...(type.values ?? [])]);
    case 'year':
      return fc.oneof(fc.constant(0), fc.integer({ min: 1901, max: 2155 }));
    case 'array':
      return arrayOf(type.element!, engine);
  }
}

/**
 * Array values as PostgreSQL's connector produces them, and more: rectangular arrays of 1–3
 * dimensions (what PostgreSQL holds), and ragged lists mixing elements, nulls and lists (empty
 * ones too) up to 4 levels deep, which the codec must carry just as exactly.
 */
function arrayOf(element: ColumnType, engine: Engine): fc.Arbitrary<CellValue> {
  const item = fc.option(valueOf(element, engine), { nil: null, freq: 5 });
  const rectangular = (dims: readonly number[]): fc.Arbitrary<CellValue[]> => {
    const [n, ...rest] = dims;
    return fc.array(rest.length === 0 ? item : rectangular(rest), { minLength: n!, maxLength: n! });
  };
  const ragged = (depth: number): fc.Arbitrary<CellValue[]> =>
    fc.array(depth === 0 ? item : fc.oneof({ weight: 3, arbitrary: item }, { weight: 2, arbitrary: ragged(depth - 1) }), { maxLength: 4 });
  return fc.oneof(
    { weight: 2, arbitrary: fc.array(item, { maxLength: 4 }) },
    { weight: 2, arbitrary: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 2, maxLength: 3 }).chain(rectangular) },
    { weight: 2, arbitrary: ragged(3) },
  );
}

const columnName = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,10}$/) },
  { weight: 1, arbitrary: fc.constantFrom('first name', '1st', 'Ünïcode', 'a-b', 'a_b', 'select', 'ssn#', '__proto_x') },
);

/** A table version of `engine`: 1–8 columns, maybe a primary key over the first one or two. */
export function tableOf(engine: Engine): fc.Arbitrary<TableSchema> {
  const types = engine === 'postgres' ? pgTypes() : mysqlTypes();
  return fc
    .record({
      columns: fc.uniqueArray(fc.record({ name: columnName, tc: types, nullable: fc.boolean() }), { minLength: 1, maxLength: 8, selector: (c) => c.name }),
      keyLength: fc.integer({ min: 0, max: 2 }),
      schema: fc.constantFrom('public', 'app', 'clinic_db'),
      table: fc.constantFrom('patients', 'encounters', 'Lab Results'),
    })
    .map(({ columns, keyLength, schema, table }) => {
      const cols: ColumnSchema[] = columns.map((c) => ({ name: c.name, sourceType: c.tc.sourceType, type: c.tc.type, nullable: c.nullable }));
      // Key columns are scalar: arrays and floats make poor keys in both engines.
      const keyable = cols.filter((c) => c.type.kind !== 'array' && c.type.kind !== 'float' && c.type.kind !== 'set');
      return { schema, table, columns: cols, primaryKey: keyable.slice(0, keyLength).map((c) => c.name) };
    });
}

type CellChoice = { kind: 'value'; value: CellValue } | { kind: 'null' } | { kind: 'unchanged' } | { kind: 'absent' };

/** A row image: every column a value, null, UNCHANGED (PostgreSQL), or absent. */
export function rowOf(table: TableSchema, engine: Engine, options: { markers: boolean }): fc.Arbitrary<Row> {
  const cells = table.columns.map((c) => {
    const isKey = table.primaryKey.includes(c.name);
    const choices: fc.WeightedArbitrary<CellChoice>[] = [
      { weight: 6, arbitrary: valueOf(c.type, engine).map((value) => ({ kind: 'value' as const, value })) },
    ];
    if (!isKey) choices.push({ weight: 1, arbitrary: fc.constant({ kind: 'null' as const }) });
    if (options.markers && !isKey && engine === 'postgres') choices.push({ weight: 1, arbitrary: fc.constant({ kind: 'unchanged' as const }) });
    return fc.oneof(...choices);
  });
  return fc.tuple(...cells).map((choices) => {
    const row: Record<string, CellValue> = {};
    choices.forEach((ch, i) => {
      const name = table.columns[i]!.name;
      if (ch.kind === 'value') row[name] = ch.value;
      else if (ch.kind === 'null') row[name] = null;
      else if (ch.kind === 'unchanged') row[name] = UNCHANGED;
    });
    return row;
  });
}

function keyOnly(table: TableSchema, row: Row): Row {
  return Object.fromEntries(table.primaryKey.map((k) => [k, row[k] ?? null]));
}

export function eventOf(table: TableSchema, engine: Engine, commit: string, seq: number): fc.Arbitrary<ChangeEvent> {
  const position = Position.of(commit, seq);
  return fc
    .record({
      op: fc.constantFrom<Op>('c', 'u', 'd', 'r', 't', 'x'),
      before: rowOf(table, engine, { markers: false }),
      after: rowOf(table, engine, { markers: true }),
      keyOnlyBefore: fc.boolean(),
    })
    .map(({ op, before, after, keyOnlyBefore }) => {
      const shortBefore = keyOnlyBefore && table.primaryKey.length > 0 ? keyOnly(table, before) : before;
      switch (op) {
        case 'c':
        case 'r':
          return { op, schema: table, before: null, after: stripUnchanged(after), position };
        case 'u':
          return { op, schema: table, before: keyOnlyBefore ? shortBefore : null, after, position };
        case 'd':
          return { op, schema: table, before: shortBefore, after: null, position };
        case 't':
        case 'x':
          return { op, schema: table, before: null, after: null, position };
      }
    });
}

function stripUnchanged(row: Row): Row {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === UNCHANGED ? null : v]));
}

/** A transaction (batchOf) with a random non-empty set of its table's columns to seal. */
export function batchWithPhiOf(engine: Engine, source: string): fc.Arbitrary<[ChangeBatch, string[]]> {
  return batchOf(engine, source).chain((b) => fc.tuple(fc.constant(b), fc.subarray(b.events[0]!.schema.columns.map((c) => c.name), { minLength: 1 })));
}

/** A transaction over one table version: 1–5 events. */
export function batchOf(engine: Engine, source: string): fc.Arbitrary<ChangeBatch> {
  return fc
    .record({
      table: tableOf(engine),
      lsn: fc.bigInt(0n, (1n << 64n) - 1n),
      txId: fc.option(fc.stringMatching(/^[0-9a-f-]{1,20}$/), { nil: null }),
      commitTsUs: fc.bigInt(0n, 4102444800000000n),
      snapshot: fc.boolean(),
      n: fc.integer({ min: 1, max: 5 }),
    })
    .chain(({ table, lsn, txId, commitTsUs, snapshot, n }) => {
      const commit = lsn.toString(16).padStart(16, '0');
      return fc.tuple(...Array.from({ length: n }, (_, i) => eventOf(table, engine, commit, i))).map((events) => ({
        source,
        txId,
        position: Position.of(commit, COMMIT_SEQ),
        commitTsUs,
        snapshot,
        events,
      }));
    });
}
