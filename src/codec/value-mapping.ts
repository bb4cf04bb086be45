import { ChartlogError } from '../core/errors.js';
import type { CellValue, ColumnType } from '../core/table-schema.js';
import {
  bigintToTwosComplement,
  formatScaledDecimal,
  parseScaledDecimal,
  smallScaledDecimal,
  twosComplementToBigint,
} from './exact-decimal.js';
import { fixedFractionDigits, formatDate, formatTime, formatTimestamp, parseDate, parseTime, parseTimestamp } from './temporal-text.js';
import { AvroDecodeError, type AvroReader, type AvroWriter } from './avro-binary.js';

/**
 * How one column type travels in Avro: the union branches its non-null values use, and the
 * converters between the value model (src/core/table-schema.ts) and avsc's wrapped-union form
 * (`{ branchName: value }`). Every mapping is exact: decoding returns the value that was encoded.
 *
 * | kind                     | Avro branches                                                  |
 * |--------------------------|----------------------------------------------------------------|
 * | boolean                  | boolean                                                        |
 * | int ≤ 32 bits (signed), ≤ 24 unsigned, year | int                                         |
 * | int 32 unsigned, 64 signed | long (bigint through a custom long type)                    |
 * | int 64 unsigned          | bytes decimal(20,0)                                            |
 * | float                    | double (NaN, ±Infinity, -0 kept; float4 text values stay exact) |
 * | decimal(p,s)             | bytes decimal(p,s) \| string (NaN, ±Infinity, '-0.0', other forms) |
 * | decimal unbounded        | string                                                         |
 * | date                     | int date \| string (infinity, BC, zero dates, years > 9999)    |
 * | time                     | long time-micros \| string (negative, ≥ 24 h, other fraction forms) |
 * | timestamp                | long local-timestamp-micros \| string                          |
 * | timestamptz              | long timestamp-micros \| string                                |
 * | uuid                     | string uuid                                                    |
 * | bytes                    | bytes                                                          |
 * | set                      | array of string                                                |
 * | array                    | array of [null, element branches…, nested level record] (arrayMapping) |
 * | string, bit, json, timetz, interval, enum, text | string (JSON keeps its source text)   |
 *
 * The fallback branch is always string, so a standard Avro reader sees either the logical type
 * or the source's exact text. Temporal text takes the logical branch only in canonical form:
 * fractions trimmed (PostgreSQL), or exactly n digits when the source type ends in "(n)"
 * (MySQL time(n)/datetime(n)/timestamp(n)); see temporal-text.ts.
 */
export interface ValueMapping {
  /** Avro schemas of the branches (never null, never the marker). */
  readonly branches: readonly unknown[];
  /** A non-null value → `{ branch: avroValue }`. Throws on a value of the wrong JS type. */
  toAvro(value: CellValue): Record<string, unknown>;
  /** The branch name avsc reports and its value → the model's value. */
  fromAvro(branch: string, value: unknown): CellValue;
  /**
   * A non-null value straight to Avro binary, in a union whose first branch of this mapping has
   * index `base`: the branch index, then the body — the bytes avsc writes for `toAvro(value)`.
   * Throws like `toAvro` on a value of the wrong JS type.
   */
  write(w: AvroWriter, value: CellValue, base: number): void;
  /** Reads the body of branch `branch` (its position in `branches`) written by `write`: `fromAvro`'s value. */
  read(r: AvroReader, branch: number): CellValue;
}

const BIGINT_MAX_U64 = (1n << 64n) - 1n;

/** A value the mapping cannot carry; says which JS type arrived, never the value. */
export class ValueTypeError extends Error {
  constructor(expected: string, got: unknown) {
    super(`expected ${expected}, got ${describeJsType(got)}`);
  }
}

export function describeJsType(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return 'Uint8Array';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** A plain Uint8Array copy: the model's bytes type, not avsc's Buffer view of its input. */
function fromBuffer(b: unknown): Uint8Array {
  return new Uint8Array(b as Uint8Array);
}

function expectString(v: CellValue): string {
  if (typeof v !== 'string') throw new ValueTypeError('string', v);
  return v;
}

function writeString(w: AvroWriter, v: CellValue, base: number): void {
  w.long(base);
  w.string(expectString(v));
}

const readString = (r: AvroReader): string => r.string();

const STRING: ValueMapping = {
  branches: ['string'],
  toAvro: (v) => ({ string: expectString(v) }),
  fromAvro: (_b, v) => v as string,
  write: writeString,
  read: readString,
};

const UUID: ValueMapping = {
  branches: [{ type: 'string', logicalType: 'uuid' }],
  toAvro: (v) => ({ string: expectString(v) }),
  fromAvro: (_b, v) => v as string,
  write: writeString,
  read: readString,
};

const BOOLEAN: ValueMapping = {
  branches: ['boolean'],
  toAvro: (v) => {
    if (typeof v !== 'boolean') throw new ValueTypeError('boolean', v);
    return { boolean: v };
  },
  fromAvro: (_b, v) => v as boolean,
  write: (w, v, base) => {
    if (typeof v !== 'boolean') throw new ValueTypeError('boolean', v);
    w.long(base);
    w.boolean(v);
  },
  read: (r) => r.boolean(),
};

function expectInt32(v: CellValue): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
    throw new ValueTypeError('a 32-bit integer number', v);
  }
  return v;
}

const INT: ValueMapping = {
  branches: ['int'],
  toAvro: (v) => ({ int: expectInt32(v) }),
  fromAvro: (_b, v) => v as number,
  write: (w, v, base) => {
    const n = expectInt32(v);
    w.long(base);
    w.long(n);
  },
  read: (r) => readInt32(r),
};

function expectUint32(v: CellValue): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 4294967295) {
    throw new ValueTypeError('an unsigned 32-bit integer number', v);
  }
  return v;
}

const UINT32: ValueMapping = {
  branches: ['long'],
  toAvro: (v) => ({ long: BigInt(expectUint32(v)) }),
  fromAvro: (_b, v) => Number(v as bigint),
  write: (w, v, base) => {
    const n = expectUint32(v);
    w.long(base);
    w.long(n);
  },
  read: (r) => Number(r.bigLong()),
};

const INT64: ValueMapping = {
  branches: ['long'],
  toAvro: (v) => {
    if (typeof v !== 'bigint' || BigInt.asIntN(64, v) !== v) throw new ValueTypeError('a signed 64-bit bigint', v);
    return { long: v };
  },
  fromAvro: (_b, v) => v as bigint,
  write: (w, v, base) => {
    if (typeof v !== 'bigint' || BigInt.asIntN(64, v) !== v) throw new ValueTypeError('a signed 64-bit bigint', v);
    w.long(base);
    w.bigLong(v);
  },
  read: (r) => r.bigLong(),
};

const UINT64: ValueMapping = {
  branches: [{ type: 'bytes', logicalType: 'decimal', precision: 20, scale: 0 }],
  toAvro: (v) => {
    if (typeof v !== 'bigint' || v < 0n || v > BIGINT_MAX_U64) throw new ValueTypeError('an unsigned 64-bit bigint', v);
    return { bytes: toBuffer(bigintToTwosComplement(v)) };
  },
  fromAvro: (_b, v) => twosComplementToBigint(v as Uint8Array),
  write: (w, v, base) => {
    if (typeof v !== 'bigint' || v < 0n || v > BIGINT_MAX_U64) throw new ValueTypeError('an unsigned 64-bit bigint', v);
    w.long(base);
    w.bytes(bigintToTwosComplement(v));
  },
  read: (r) => twosComplementToBigint(r.bytesView()),
};

const DOUBLE: ValueMapping = {
  branches: ['double'],
  toAvro: (v) => {
    if (typeof v !== 'number') throw new ValueTypeError('number', v);
    return { double: v };
  },
  fromAvro: (_b, v) => v as number,
  write: (w, v, base) => {
    if (typeof v !== 'number') throw new ValueTypeError('number', v);
    w.long(base);
    w.double(v);
  },
  read: (r) => r.double(),
};

const BYTES: ValueMapping = {
  branches: ['bytes'],
  toAvro: (v) => {
    if (!(v instanceof Uint8Array)) throw new ValueTypeError('Uint8Array', v);
    return { bytes: toBuffer(v) };
  },
  fromAvro: (_b, v) => fromBuffer(v),
  write: (w, v, base) => {
    if (!(v instanceof Uint8Array)) throw new ValueTypeError('Uint8Array', v);
    w.long(base);
    w.bytes(v);
  },
  read: (r) => r.bytes(),
};

const SET: ValueMapping = {
  branches: [{ type: 'array', items: 'string' }],
  toAvro: (v) => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ValueTypeError('string[]', v);
    return { array: v };
  },
  fromAvro: (_b, v) => [...(v as string[])],
  write: (w, v, base) => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ValueTypeError('string[]', v);
    w.long(base);
    if (v.length > 0) {
      w.long(v.length);
      for (const x of v as string[]) w.string(x);
    }
    w.long(0);
  },
  read: (r) => {
    const out: string[] = [];
    for (let n = r.blockCount(); n > 0; n = r.blockCount()) while (n-- > 0) out.push(r.string());
    return out;
  },
};

function decimalMapping(precision: number, scale: number): ValueMapping {
  return {
    branches: [{ type: 'bytes', logicalType: 'decimal', precision, scale }, 'string'],
    toAvro: (v) => {
      const text = expectString(v);
      const unscaled = parseScaledDecimal(text, scale, precision);
      return unscaled === null ? { string: text } : { bytes: toBuffer(bigintToTwosComplement(unscaled)) };
    },
    fromAvro: (b, v) => (b === 'string' ? (v as string) : formatScaledDecimal(twosComplementToBigint(v as Uint8Array), scale)),
    write: (w, v, base) => {
      const text = expectString(v);
      const small = smallScaledDecimal(text, scale, precision);
      if (small !== undefined) {
        w.long(base);
        writeSmallTwosComplement(w, small);
        return;
      }
      const unscaled = parseScaledDecimal(text, scale, precision);
      if (unscaled === null) {
        w.long(base + 1);
        w.string(text);
      } else {
        w.long(base);
        w.bytes(bigintToTwosComplement(unscaled));
      }
    },
    read: (r, b) => (b === 1 ? r.string() : formatScaledDecimal(twosComplementToBigint(r.bytesView()), scale)),
  };
}

/**
 * `w.bytes(bigintToTwosComplement(BigInt(v)))` for a safe integer, written straight into the
 * message: minimal big-endian two's-complement bytes, no array or BigInt per value.
 */
function writeSmallTwosComplement(w: AvroWriter, v: number): void {
  let length = 1;
  while (v < -(2 ** (8 * length - 1)) || v >= 2 ** (8 * length - 1)) length++;
  w.long(length);
  w.ensure(length);
  const buf = w.buf;
  for (let i = w.pos + length - 1; i >= w.pos; i--) {
    buf[i] = ((v % 256) + 256) % 256;
    v = Math.floor(v / 256);
  }
  w.pos += length;
}

/** A logical value the encoder can never have written (so the message is damaged). */
function formatted(text: string | null): string {
  if (text === null) {
    throw new ChartlogError('integrity', 'a date/time value in a message is out of the range the encoder writes', {
      hint: 'the object is damaged; run `chartlog verify`',
    });
  }
  return text;
}

const DATE: ValueMapping = {
  branches: [{ type: 'int', logicalType: 'date' }, 'string'],
  toAvro: (v) => {
    const days = parseDate(expectString(v));
    return days === null ? { string: v } : { int: days };
  },
  fromAvro: (b, v) => (b === 'string' ? (v as string) : formatted(formatDate(v as number))),
  write: (w, v, base) => {
    const days = parseDate(expectString(v));
    if (days === null) {
      w.long(base + 1);
      w.string(v as string);
    } else {
      w.long(base);
      w.long(days);
    }
  },
  read: (r, b) => (b === 1 ? r.string() : formatted(formatDate(readInt32(r)))),
};

function timeMapping(digits: number | undefined): ValueMapping {
  return {
    branches: [{ type: 'long', logicalType: 'time-micros' }, 'string'],
    toAvro: (v) => {
      const micros = parseTime(expectString(v), digits);
      return micros === null ? { string: v } : { long: micros };
    },
    fromAvro: (b, v) => (b === 'string' ? (v as string) : formatted(formatTime(v as bigint, digits))),
    write: (w, v, base) => writeMicros(w, expectString(v), parseTime(v as string, digits), base),
    read: (r, b) => (b === 1 ? r.string() : formatted(formatTime(r.bigLong(), digits))),
  };
}

/** Microseconds (the logical branch) or, when the text is not canonical, the text. */
function writeMicros(w: AvroWriter, text: string, micros: bigint | null, base: number): void {
  if (micros === null) {
    w.long(base + 1);
    w.string(text);
  } else {
    w.long(base);
    w.bigLong(micros);
  }
}

/** An Avro int: a long within 32 bits. */
function readInt32(r: AvroReader): number {
  const n = r.long();
  if (n < -2147483648 || n > 2147483647) throw new AvroDecodeError('int beyond 32 bits');
  return n;
}

function timestampMapping(logicalType: string, suffix: string, digits: number | undefined): ValueMapping {
  return {
    branches: [{ type: 'long', logicalType }, 'string'],
    toAvro: (v) => {
      const micros = parseTimestamp(expectString(v), suffix, digits);
      return micros === null ? { string: v } : { long: micros };
    },
    fromAvro: (b, v) => (b === 'string' ? (v as string) : formatted(formatTimestamp(v as bigint, suffix, digits))),
    write: (w, v, base) => writeMicros(w, expectString(v), parseTimestamp(v as string, suffix, digits), base),
    read: (r, b) => (b === 1 ? r.string() : formatted(formatTimestamp(r.bigLong(), suffix, digits))),
  };
}

const TIME = timeMapping(undefined);
const TIMESTAMP = timestampMapping('local-timestamp-micros', '', undefined);
const TIMESTAMPTZ = timestampMapping('timestamp-micros', '+00', undefined);

/** Avro unions name their branches by type (or full name); avsc reports these names. */
export function branchName(schema: unknown): string {
  if (typeof schema === 'string') return schema;
  const o = schema as { type: string; name?: string; namespace?: string };
  if (o.type === 'record' || o.type === 'enum' || o.type === 'fixed') {
    return o.namespace && !o.name!.includes('.') ? `${o.namespace}.${o.name}` : o.name!;
  }
  return o.type;
}

/** Namespace of the records that carry nested array levels (see arrayMapping). */
export const NESTED_ARRAY_NAMESPACE = 'chartlog.nested';

/**
 * PostgreSQL arrays: one element type for any number of dimensions (`int4[]` holds '{1,2}' and
 * '{{1,2},{3,4}}' alike), so a value is a list whose items are element values, nulls, or lists
 * again, at any depth (ragged or empty lists too, though PostgreSQL's are rectangular).
 *
 *   column branch:  { type: array, items: [null, <element branches>, Level] }
 *   Level:          record chartlog.nested.<field>_level { items: array of [null, <element branches>, Level] }
 *
 * Avro cannot name an array, and only named types can recurse, so each nested list is wrapped
 * in the one-field record Level, which refers to itself. A one-dimensional value uses no Level
 * at all: it is byte for byte a plain array of nullable elements, so one-dimensional values
 * written before Level existed still decode. The record is named after the column's
 * field (unique in the envelope) with a full name, so its union branch name does not depend on
 * the envelope's namespace.
 *
 * An element type that is itself an array adds nothing (the element already nests), so it
 * collapses into this one. A SET element takes JS arrays as its values, so it cannot nest.
 */
function arrayMapping(element: Readonly<ColumnType>, field: string): ValueMapping {
  let elementType = element;
  while (elementType.kind === 'array') {
    if (!elementType.element) throw new ChartlogError('internal', 'array column type without an element type');
    elementType = elementType.element;
  }
  const inner = mappingFor(elementType);
  const nests = elementType.kind !== 'set';
  const level = `${NESTED_ARRAY_NAMESPACE}.${field}_level`;
  const items: unknown[] = ['null', ...inner.branches];
  if (nests) {
    items.push({
      type: 'record',
      name: level,
      doc: 'one nested level of a multi-dimensional array',
      fields: [{ name: 'items', type: { type: 'array', items: ['null', ...inner.branches, level] } }],
    });
  }
  const encode = (list: readonly CellValue[]): unknown[] =>
    list.map((x) => {
      if (x === null) return null;
      if (nests && Array.isArray(x)) return { [level]: { items: encode(x as readonly CellValue[]) } };
      return inner.toAvro(x);
    });
  const decode = (list: readonly (Record<string, unknown> | null)[]): CellValue[] =>
    list.map((x) => {
      if (x === null) return null;
      const branch = Object.keys(x)[0]!;
      if (branch === level) return decode((x[branch] as { items: (Record<string, unknown> | null)[] }).items);
      return inner.fromAvro(branch, x[branch]);
    });
  // Item union: null (0), the element's branches (from 1), then Level when the element nests.
  const levelIndex = 1 + inner.branches.length;
  const write = (w: AvroWriter, list: readonly CellValue[]): void => {
    if (list.length > 0) {
      w.long(list.length);
      for (const x of list) {
        if (x === null) w.long(0);
        else if (nests && Array.isArray(x)) {
          w.long(levelIndex);
          write(w, x as readonly CellValue[]);
        } else inner.write(w, x, 1);
      }
    }
    w.long(0);
  };
  const read = (r: AvroReader, depth: number): CellValue[] => {
    if (depth > 1000) throw new AvroDecodeError('arrays nested too deep');
    const out: CellValue[] = [];
    for (let n = r.blockCount(); n > 0; n = r.blockCount()) {
      while (n-- > 0) {
        const i = r.long();
        if (i === 0) out.push(null);
        else if (nests && i === levelIndex) out.push(read(r, depth + 1));
        else if (i >= 1 && i < levelIndex) out.push(inner.read(r, i - 1));
        else throw new AvroDecodeError('invalid union index');
      }
    }
    return out;
  };
  return {
    branches: [{ type: 'array', items }],
    toAvro: (v) => {
      if (!Array.isArray(v)) throw new ValueTypeError('array', v);
      return { array: encode(v as readonly CellValue[]) };
    },
    fromAvro: (_b, v) => decode(v as (Record<string, unknown> | null)[]),
    write: (w, v, base) => {
      if (!Array.isArray(v)) throw new ValueTypeError('array', v);
      w.long(base);
      write(w, v as readonly CellValue[]);
    },
    read: (r) => read(r, 0),
  };
}

/**
 * The mapping of a column type; throws an internal error for a type the model lacks. The source
 * type only tells time and timestamp columns of fixed fraction width (`fixedFractionDigits`).
 * `field`, the column's Avro field name, names the record of an array's nested levels: every
 * array column of one schema needs its own (absent: 'value').
 */
export function mappingFor(type: Readonly<ColumnType>, sourceType?: string, field = 'value'): ValueMapping {
  const digits = fixedFractionDigits(sourceType);
  switch (type.kind) {
    case 'boolean':
      return BOOLEAN;
    case 'int': {
      const bits = type.bits ?? 32;
      if (bits === 64) return type.unsigned ? UINT64 : INT64;
      if (bits === 32 && type.unsigned) return UINT32;
      return INT;
    }
    case 'year':
      return INT;
    case 'float':
      return DOUBLE;
    case 'decimal':
      return type.precision === undefined ? STRING : decimalMapping(type.precision, type.scale ?? 0);
    case 'bytes':
      return BYTES;
    case 'uuid':
      return UUID;
    case 'date':
      return DATE;
    case 'time':
      return digits === undefined ? TIME : timeMapping(digits);
    case 'timestamp':
      return digits === undefined ? TIMESTAMP : timestampMapping('local-timestamp-micros', '', digits);
    case 'timestamptz':
      return digits === undefined ? TIMESTAMPTZ : timestampMapping('timestamp-micros', '+00', digits);
    case 'set':
      return SET;
    case 'array':
      if (!type.element) throw new ChartlogError('internal', 'array column type without an element type');
      return arrayMapping(type.element, field);
    case 'string':
    case 'bit':
    case 'json':
    case 'timetz':
    case 'interval':
    case 'enum':
    case 'text':
      return STRING;
    default:
      throw new ChartlogError('internal', `unknown column kind "${String((type as ColumnType).kind)}"`);
  }
}

/** Sealed PHI values: the sealer's bytes, whatever the column's kind. */
export const SEALED: ValueMapping = BYTES;
