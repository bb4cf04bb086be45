import { ChartlogError } from '../../src/core/errors.js';
import type { CellValue, ColumnType } from '../../src/core/table-schema.js';

/**
 * chartlog's own parsers from PostgreSQL's text output to the value model of
 * src/core/table-schema.ts, chosen per type OID. Pure functions: the catalog facts they need
 * (PgTypeInfo) are looked up beforehand by type-catalog.ts.
 *
 * They assume the session settings every chartlog connection sets (connection-settings.ts):
 * DateStyle ISO, IntervalStyle postgres, TimeZone UTC, bytea_output hex, extra_float_digits 3.
 * Snapshot and stream read the same text through the same parser, so a row has the same
 * values whichever way it arrived.
 */

/** What the catalog says about one type (pg_type plus enum labels). */
export interface PgTypeInfo {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** pg_type.typtype: b base, d domain, e enum, r range, m multirange, c composite, p pseudo. */
  readonly typtype: string;
  /** pg_type.typcategory: 'A' for arrays. */
  readonly category: string;
  readonly elementOid: number;
  readonly baseOid: number;
  readonly baseTypmod: number;
  readonly delimiter: string;
  readonly enumLabels?: readonly string[];
}

export interface TypeLookup {
  get(oid: number): PgTypeInfo | undefined;
}

export type TextParser = (text: string) => CellValue;

export interface ColumnCodec {
  readonly type: ColumnType;
  readonly parse: TextParser;
  /** Set when the type is not one chartlog knows: it travels as text, the caller warns once. */
  readonly unknownType?: string;
}

export const OID = {
  bool: 16, bytea: 17, char: 18, name: 19, int8: 20, int2: 21, int4: 23, text: 25, oid: 26,
  json: 114, xml: 142, cidr: 650, float4: 700, float8: 701, macaddr8: 774, money: 790,
  macaddr: 829, inet: 869, bpchar: 1042, varchar: 1043, date: 1082, time: 1083,
  timestamp: 1114, timestamptz: 1184, interval: 1186, timetz: 1266, bit: 1560, varbit: 1562,
  numeric: 1700, uuid: 2950, jsonb: 3802,
} as const;

function decodeError(what: string): ChartlogError {
  // Never the value itself: it may be PHI.
  return new ChartlogError('decode', `cannot decode a ${what} value from PostgreSQL's text output`, {
    hint: 'the connection settings (DateStyle, bytea_output, TimeZone) may have been overridden for the role; chartlog sets them per connection',
  });
}

const passText: TextParser = (t) => t;

const parseBool: TextParser = (t) => {
  if (t === 't') return true;
  if (t === 'f') return false;
  throw decodeError('boolean');
};

const INT_PATTERN = /^-?\d+$/;
const parseSmallInt: TextParser = (t) => {
  if (!INT_PATTERN.test(t)) throw decodeError('integer');
  return Number(t);
};
const parseBigInt: TextParser = (t) => {
  if (!INT_PATTERN.test(t)) throw decodeError('bigint');
  return BigInt(t);
};

/** Number() reads 'NaN', 'Infinity', '-Infinity' and '-0' (as -0) exactly as PostgreSQL prints them. */
const parseFloat: TextParser = (t) => {
  const v = Number(t);
  if (Number.isNaN(v) && t !== 'NaN') throw decodeError('float');
  return v;
};

const parseBytea: TextParser = (t) => {
  if (t.startsWith('\\x')) {
    const hex = t.slice(2);
    if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw decodeError('bytea');
    return new Uint8Array(Buffer.from(hex, 'hex'));
  }
  return parseByteaEscape(t);
};

/** bytea_output = escape: printable bytes as themselves, \\ for a backslash, \ooo octal otherwise. */
function parseByteaEscape(t: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c !== 0x5c) {
      if (c > 0xff) throw decodeError('bytea');
      out.push(c);
    } else if (t[i + 1] === '\\') {
      out.push(0x5c);
      i++;
    } else {
      const oct = t.slice(i + 1, i + 4);
      if (!/^[0-3][0-7]{2}$/.test(oct)) throw decodeError('bytea');
      out.push(Number.parseInt(oct, 8));
      i += 3;
    }
  }
  return Uint8Array.from(out);
}

const parseUuid: TextParser = (t) => t.toLowerCase();

/** With TimeZone=UTC PostgreSQL prints '+00'; anything else means the session zone was not UTC. */
const parseTimestamptz: TextParser = (t) => {
  if (t === 'infinity' || t === '-infinity' || t.endsWith('+00') || t.endsWith('+00 BC')) return t;
  throw decodeError('timestamptz');
};

/**
 * Parses PostgreSQL's array output: '{1,NULL,"a \"q\""}', nested '{{1,2},{3,4}}', with an
 * optional '[lo:hi]=' dimension prefix (non-default lower bounds are not kept). An unquoted
 * NULL is SQL NULL; a quoted "NULL" is the text.
 */
export function parseArrayLiteral(text: string, delimiter: string, element: TextParser): CellValue[] {
  let i = 0;
  if (text[0] === '[') {
    const eq = text.indexOf('=');
    if (eq < 0) throw decodeError('array');
    i = eq + 1;
  }
  const parseLevel = (): CellValue[] => {
    if (text[i] !== '{') throw decodeError('array');
    i++;
    const out: CellValue[] = [];
    if (text[i] === '}') {
      i++;
      return out;
    }
    for (;;) {
      while (text[i] === ' ') i++; // PostgreSQL prints none, but the input syntax allows it
      const c = text[i];
      if (c === '{') {
        out.push(parseLevel());
      } else if (c === '"') {
        i++;
        let s = '';
        for (;;) {
          const d = text[i];
          if (d === undefined) throw decodeError('array');
          if (d === '\\') {
            s += text[i + 1] ?? '';
            i += 2;
          } else if (d === '"') {
            i++;
            break;
          } else {
            s += d;
            i++;
          }
        }
        out.push(element(s));
      } else {
        let j = i;
        while (j < text.length && text[j] !== delimiter && text[j] !== '}') j++;
        const token = text.slice(i, j).trim();
        i = j;
        out.push(token.toUpperCase() === 'NULL' ? null : element(token));
      }
      const sep = text[i];
      if (sep === delimiter) {
        i++;
      } else if (sep === '}') {
        i++;
        return out;
      } else {
        throw decodeError('array');
      }
    }
  };
  const result = parseLevel();
  if (i !== text.length) throw decodeError('array');
  return result;
}

/** numeric's typmod holds precision and scale; scale may be negative since PostgreSQL 15. */
function numericType(typmod: number): ColumnType {
  if (typmod < 4) return { kind: 'decimal' };
  const t = typmod - 4;
  const precision = (t >> 16) & 0xffff;
  const scale = ((t & 0x7ff) ^ 1024) - 1024;
  return { kind: 'decimal', precision, scale };
}

function charLength(typmod: number): ColumnType {
  return typmod >= 4 ? { kind: 'string', length: typmod - 4 } : { kind: 'string' };
}

/** Types with a text form that is already their natural value; they travel as text, no warning. */
const KNOWN_AS_TEXT = new Set<number>([OID.inet, OID.cidr, OID.macaddr, OID.macaddr8, OID.xml, OID.money]);

function builtinCodec(oid: number, typmod: number): ColumnCodec | undefined {
  switch (oid) {
    case OID.bool: return { type: { kind: 'boolean' }, parse: parseBool };
    case OID.int2: return { type: { kind: 'int', bits: 16 }, parse: parseSmallInt };
    case OID.int4: return { type: { kind: 'int', bits: 32 }, parse: parseSmallInt };
    case OID.oid: return { type: { kind: 'int', bits: 32, unsigned: true }, parse: parseSmallInt };
    case OID.int8: return { type: { kind: 'int', bits: 64 }, parse: parseBigInt };
    case OID.float4: return { type: { kind: 'float', bits: 32 }, parse: parseFloat };
    case OID.float8: return { type: { kind: 'float', bits: 64 }, parse: parseFloat };
    case OID.numeric: return { type: numericType(typmod), parse: passText };
    case OID.text: case OID.name: return { type: { kind: 'string' }, parse: passText };
    case OID.char: return { type: { kind: 'string', length: 1 }, parse: passText };
    case OID.varchar: case OID.bpchar: return { type: charLength(typmod), parse: passText };
    case OID.bytea: return { type: { kind: 'bytes' }, parse: parseBytea };
    case OID.bit: case OID.varbit:
      return { type: typmod > 0 ? { kind: 'bit', length: typmod } : { kind: 'bit' }, parse: passText };
    case OID.json: case OID.jsonb: return { type: { kind: 'json' }, parse: passText };
    case OID.uuid: return { type: { kind: 'uuid' }, parse: parseUuid };
    case OID.date: return { type: { kind: 'date' }, parse: passText };
    case OID.time: return { type: { kind: 'time' }, parse: passText };
    case OID.timetz: return { type: { kind: 'timetz' }, parse: passText };
    case OID.timestamp: return { type: { kind: 'timestamp' }, parse: passText };
    case OID.timestamptz: return { type: { kind: 'timestamptz' }, parse: parseTimestamptz };
    case OID.interval: return { type: { kind: 'interval' }, parse: passText };
    default:
      return KNOWN_AS_TEXT.has(oid) ? { type: { kind: 'text' }, parse: passText } : undefined;
  }
}

/**
 * The value type and parser of a column of type `oid` with modifier `typmod`. Domains resolve
 * to their base type, arrays to their element's codec, enums carry their labels. Anything else
 * is text, flagged `unknownType` so the caller can warn once.
 */
export function columnCodec(oid: number, typmod: number, types: TypeLookup, depth = 0): ColumnCodec {
  const builtin = builtinCodec(oid, typmod);
  if (builtin) return builtin;
  const info = types.get(oid);
  if (!info || depth > 16) {
    return { type: { kind: 'text' }, parse: passText, unknownType: info ? `${info.schema}.${info.name}` : `oid ${oid}` };
  }
  if (info.typtype === 'd') {
    return columnCodec(info.baseOid, typmod >= 0 ? typmod : info.baseTypmod, types, depth + 1);
  }
  if (info.typtype === 'e') {
    return { type: { kind: 'enum', values: info.enumLabels ?? [] }, parse: passText };
  }
  if (info.category === 'A' && info.elementOid !== 0) {
    const element = columnCodec(info.elementOid, typmod, types, depth + 1);
    const delimiter = types.get(info.elementOid)?.delimiter ?? ',';
    const parse: TextParser = (t) => parseArrayLiteral(t, delimiter, element.parse);
    const codec: ColumnCodec = { type: { kind: 'array', element: element.type }, parse };
    return element.unknownType ? { ...codec, unknownType: element.unknownType } : codec;
  }
  if (info.name === 'citext') return { type: { kind: 'string' }, parse: passText };
  if (info.typtype === 'r' || info.typtype === 'm') return { type: { kind: 'text' }, parse: passText };
  return { type: { kind: 'text' }, parse: passText, unknownType: `${info.schema}.${info.name}` };
}

/** Type OIDs a codec for `oid` needs from the catalog (itself, base, element), for prefetching. */
export function isBuiltinType(oid: number): boolean {
  return builtinCodec(oid, -1) !== undefined;
}
