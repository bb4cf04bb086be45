import { ChartlogError } from '../../src/core/errors.js';
import type { CellValue, ColumnSchema } from '../../src/core/table-schema.js';
import { fractionDigits } from './column-type.js';

/**
 * One column's raw driver value → the exact value model. The SAME decoder serves both paths so a
 * row reads identically from the snapshot and from the binlog:
 * - binlog: zongji, on a connection with {dateStrings, timezone 'Z', supportBigNumbers,
 *   bigNumberStrings, jsonStrings};
 * - snapshot: mysql2's binary protocol (execute) with the same options and a session time zone
 *   of +00:00. The binary protocol, not the text one: text renders FLOAT with 6 significant
 *   digits (3.40282e38), the binary protocol sends the stored float32 exactly, as the binlog does.
 *
 * What each side gets wrong and is repaired here (measured on MariaDB 10.11, zongji 0.9.0):
 * - YEAR 0000: zongji adds 1900 to the stored byte, so 0000 arrives as 1900. YEAR cannot hold
 *   1900 (its range is 1901–2155 and 0000), so 1900 can only mean 0000.
 * - ENUM '' (the index-0 error value of non-strict inserts): zongji gives undefined.
 * - MariaDB UUID / INET4 / INET6: zongji sees BINARY(16)/BINARY(4) and gives a Buffer; the
 *   snapshot gets the server's text.
 * - 64-bit integers: number up to 2^53, exact decimal string above: always a bigint here.
 * - Temporal fractions: the binary protocol drops an all-zero fraction ('00:00:00' for a
 *   TIME(6) '00:00:00.000000'); values are written with exactly the declared digits.
 * - TIMESTAMP is UTC in the binlog and in a +00:00 session: marked '+00'.
 */
export type CellDecoder = (raw: unknown) => CellValue;

export function cellDecoder(column: ColumnSchema): CellDecoder {
  const t = column.type;
  switch (t.kind) {
    case 'int':
      return t.bits === 64 ? nullable(toBigInt) : nullable(toNumber);
    case 'float':
      return nullable(toNumber);
    case 'decimal':
    case 'date':
    case 'string':
    case 'json':
      return nullable(toText);
    case 'bytes':
      return nullable(toBytes);
    case 'bit': {
      const length = t.length ?? 1;
      return nullable((v) => toBits(v, length));
    }
    case 'uuid':
      return nullable(toUuid);
    case 'time':
    case 'timestamp': {
      const digits = fractionDigits(column.sourceType);
      return nullable((v) => padFraction(toText(v), digits));
    }
    case 'timestamptz': {
      const digits = fractionDigits(column.sourceType);
      return nullable((v) => `${padFraction(toText(v), digits)}+00`);
    }
    case 'year':
      return nullable((v) => {
        const y = toNumber(v);
        return y === 1900 ? 0 : y;
      });
    case 'enum':
      return (v) => (v === null ? null : v === undefined ? '' : toText(v));
    case 'set':
      return nullable((v) => {
        const s = toText(v);
        return s === '' ? [] : s.split(',');
      });
    default:
      return nullable((v) => toOtherText(v, column.sourceType));
  }
}

function nullable(f: (v: unknown) => CellValue): CellDecoder {
  return (v) => (v === null || v === undefined ? null : f(v));
}

function toBigInt(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' || typeof v === 'string') return BigInt(v);
  throw unexpected('integer', v);
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' || typeof v === 'bigint') return Number(v);
  throw unexpected('number', v);
}

function toText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw unexpected('text', v);
}

/** A copy: zongji's buffers are views into the packet, which must not be kept alive. */
function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (typeof v === 'string') return new Uint8Array(Buffer.from(v, 'binary'));
  throw unexpected('bytes', v);
}

function toBits(v: unknown, length: number): string {
  if (!(v instanceof Uint8Array)) {
    if (typeof v === 'number' || typeof v === 'bigint') return BigInt(v).toString(2).padStart(length, '0');
    throw unexpected('bits', v);
  }
  let s = '';
  for (const byte of v) s += byte.toString(2).padStart(8, '0');
  return s.length >= length ? s.slice(s.length - length) : s.padStart(length, '0');
}

function toUuid(v: unknown): string {
  if (typeof v === 'string') return v.toLowerCase();
  if (v instanceof Uint8Array && v.length === 16) {
    const h = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  throw unexpected('uuid', v);
}

/** Writes exactly `digits` fraction digits, as MySQL's own text form of the type does. */
export function padFraction(text: string, digits: number): string {
  const dot = text.lastIndexOf('.');
  if (digits > 0 && dot > 0 && text.length - dot - 1 === digits) return text; // the binlog's own form
  const hasFraction = dot > text.lastIndexOf(':');
  if (digits === 0) return hasFraction ? text.slice(0, dot) : text;
  if (!hasFraction) return `${text}.${'0'.repeat(digits)}`;
  const frac = text.slice(dot + 1);
  return frac.length >= digits ? text.slice(0, dot + 1 + digits) : `${text}${'0'.repeat(digits - frac.length)}`;
}

function toOtherText(v: unknown, sourceType: string): string {
  const type = sourceType.toLowerCase();
  if (v instanceof Uint8Array) {
    if (type === 'inet4' && v.length === 4) return Array.from(v).join('.');
    if (type === 'inet6' && v.length === 16) return formatInet6(v);
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
  }
  if (typeof v === 'string') return v;
  // Geometry: both drivers parse WKB into the same plain objects.
  return JSON.stringify(v);
}

/** RFC 5952 text, as MariaDB prints INET6 (IPv4-mapped and -compatible forms dotted). */
export function formatInet6(b: Uint8Array): string {
  const zeros10 = b.subarray(0, 10).every((x) => x === 0);
  const v4 = `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  if (zeros10 && b[10] === 0xff && b[11] === 0xff) return `::ffff:${v4}`;
  const tail32 = ((b[12]! << 24) >>> 0) + (b[13]! << 16) + (b[14]! << 8) + b[15]!;
  if (zeros10 && b[10] === 0 && b[11] === 0 && tail32 > 1) return `::${v4}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hexes = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hexes.join(':');
  return `${hexes.slice(0, bestStart).join(':')}::${hexes.slice(bestStart + bestLen).join(':')}`;
}

function unexpected(what: string, v: unknown): ChartlogError {
  // The value itself may be PHI: name only its JS type.
  return new ChartlogError('decode', `cannot read a ${what} value from a driver value of type ${v === null ? 'null' : typeof v}`);
}
