import { civilFromDays } from '../../src/core/civil-date.js';
import type { CellValue, ColumnSchema, Row, TableSchema } from '../../src/core/table-schema.js';
import { type CellDecoder, cellDecoder, padFraction } from './cell-decoder.js';
import { fractionDigits } from './column-type.js';

/**
 * Row images read straight from the binlog packet into the value model.
 *
 * zongji (0.9.0, pinned) parses every row of a rows event into an object keyed by column name,
 * each value built through generic helpers (a 32-character string concatenation per padded
 * number, a buffer copy per DECIMAL), and the converter then decodes each of those values once
 * more (cell-decoder.ts). On a backlog that was a third of the connector's CPU and most of its
 * garbage (profile of `cdc-mariadb.bench --stages`, 200k rows). So on the connections of
 * BinlogReader zongji reads only the rows event's header and bitmaps and hands over the row
 * area as bytes (a RowImages); the converter, which knows the table version, reads the rows
 * from those bytes with a reader compiled once per (table map, version).
 *
 * Exactness: the reader has its own code only for the common types whose result it can state
 * exactly (integers, DECIMAL, UTF-8 text, TEXT/BLOB, DATE, TIMESTAMP(n), BINARY(16) as UUID);
 * every other column is read by zongji's own readMysqlValue and decoded by the cell decoder, as
 * before. The unit test row-images.test.ts compares both paths value for value.
 *
 * zongji exports only its class, so its row-event classes and value reader are imported from
 * their files (the package's "exports" map does not reach them; the same module instances are
 * shared because ESM caches by URL). The hook changes nothing for zongji instances that did not
 * ask for images.
 */

/** Set on a zongji instance to receive row images instead of parsed rows. */
export const ROW_IMAGES = Symbol('chartlog.rowImages');

/** The parts of zongji's table-map entry the reader uses (tableMap[tableId]). */
export interface ZongjiTableMap {
  readonly columns: readonly ZongjiColumn[];
  readonly columnSchemas: readonly ZongjiColumnSchema[];
}
export interface ZongjiColumn {
  readonly name: string;
  readonly charset: string | null;
  readonly type: number;
  readonly metadata: Record<string, number> | undefined;
}
export interface ZongjiColumnSchema {
  readonly COLUMN_NAME: string;
  readonly COLUMN_TYPE: string;
  readonly UNSIGNED?: boolean;
}
interface ZongjiParser {
  _buffer: Buffer;
  _offset: number;
  _packetEnd: number;
  append(buffer: Buffer): void;
}
interface ZongjiInstance {
  [ROW_IMAGES]?: boolean;
  connection?: { config?: { dateStrings?: unknown; timezone?: unknown; decimalNumbers?: unknown } };
}
type ReadMysqlValue = (parser: ZongjiParser, column: ZongjiColumn, columnSchema: ZongjiColumnSchema, tableMap: ZongjiTableMap, zongji: ZongjiInstance) => unknown;

/** One rows event's row area, as it was in the packet (a copy: the packet is not kept). */
export class RowImages {
  constructor(
    readonly bytes: Buffer,
    /** Columns present in the (first) image, one bit each. */
    readonly present: Buffer,
    /** UPDATE: columns present in the after image; null otherwise. */
    readonly presentAfter: Buffer | null,
    readonly tableMap: ZongjiTableMap,
    readonly zongji: ZongjiInstance,
  ) {}
}

const zongjiUrl = import.meta.resolve('@vlasky/zongji');
const rowsEvents = (await import(new URL('./lib/rows_event.js', zongjiUrl).href)) as Record<string, { prototype: object }>;
const common = (await import(new URL('./lib/common.js', zongjiUrl).href)) as { readMysqlValue: ReadMysqlValue };
const reader = (await import(new URL('./lib/reader.js', zongjiUrl).href)) as { Parser: new () => ZongjiParser };

interface RowsEventThis {
  _zongji: ZongjiInstance;
  tableMap: Record<number, ZongjiTableMap>;
  tableId: number;
  columns_present_bitmap: Buffer;
  columns_present_bitmap2?: Buffer;
}
type FetchOneRow = (this: RowsEventThis, parser: ZongjiParser) => unknown;

function hook(proto: object, twoImages: boolean): void {
  const p = proto as { _fetchOneRow: FetchOneRow; [ROW_IMAGES]?: true };
  if (Object.hasOwn(p, ROW_IMAGES)) return; // own: UpdateRows inherits the mark from RowsEvent
  const original = p._fetchOneRow;
  if (typeof original !== 'function') throw new Error('zongji changed: its rows events have no _fetchOneRow (connectors/mysql/row-images.ts reads zongji 0.9.x)');
  p._fetchOneRow = function (this: RowsEventThis, parser: ZongjiParser): unknown {
    if (this._zongji[ROW_IMAGES] !== true) return original.call(this, parser);
    // The whole row area at once: zongji's loop (`while not at the end, push a row`) ends after it.
    const bytes = Buffer.from(parser._buffer.subarray(parser._offset, parser._packetEnd));
    parser._offset = parser._packetEnd;
    return new RowImages(bytes, this.columns_present_bitmap, twoImages ? this.columns_present_bitmap2! : null, this.tableMap[this.tableId]!, this._zongji);
  };
  p[ROW_IMAGES] = true;
}
// WriteRows and DeleteRows inherit RowsEvent's _fetchOneRow; UpdateRows has its own.
hook(Object.getPrototypeOf(rowsEvents.WriteRows!.prototype) as object, false);
hook(rowsEvents.UpdateRows!.prototype, true);

// MySQL wire types (zongji's MysqlTypes).
const T = { TINY: 1, SHORT: 2, LONG: 3, DATE: 10, INT24: 9, LONGLONG: 8, VARCHAR: 15, TIMESTAMP2: 17, NEWDECIMAL: 246, TINY_BLOB: 249, MEDIUM_BLOB: 250, LONG_BLOB: 251, BLOB: 252, STRING: 254 } as const;

const enum Op {
  Fallback,
  Int8,
  UInt8,
  Int16,
  UInt16,
  Int24,
  UInt24,
  Int32,
  UInt32,
  Int64,
  UInt64,
  Decimal,
  Utf8Short,
  Utf8Long,
  BlobBytes,
  Uuid16,
  Date,
  Timestamp,
}

interface Step {
  readonly op: Op;
  readonly name: string;
  /** Length prefix bytes (strings, blobs); DECIMAL: integral digits; TIMESTAMP: fraction digits stored. */
  readonly a: number;
  /** DECIMAL: scale; TIMESTAMP: digits the version writes. */
  readonly b: number;
  readonly column: ZongjiColumn;
  readonly schema: ZongjiColumnSchema;
  readonly decode: CellDecoder;
}

/** A compiled reader: the rows of one RowImages (UPDATE: before, after, before, after, …). */
export type RowImagesReader = (images: RowImages) => Row[];

const compiled = new WeakMap<readonly ZongjiColumn[], Map<TableSchema, RowImagesReader>>();

/** The reader of `images` for table version `version` (compiled once per table map and version). */
export function rowImagesReader(images: RowImages, version: TableSchema): RowImagesReader {
  const columns = images.tableMap.columns;
  let byVersion = compiled.get(columns);
  if (!byVersion) {
    byVersion = new Map();
    compiled.set(columns, byVersion);
  }
  let r = byVersion.get(version);
  if (!r) {
    r = compile(images.tableMap, images.zongji, version);
    byVersion.set(version, r);
  }
  return r;
}

function compile(tableMap: ZongjiTableMap, zongji: ZongjiInstance, version: TableSchema): RowImagesReader {
  if (version.columns.length !== tableMap.columns.length || version.columns.some((c, i) => c.name !== tableMap.columns[i]!.name)) {
    // versionFor makes versions from the table map, column for column: anything else is a bug.
    throw new Error(`table version ${version.schema}.${version.table} does not match its binlog table map`);
  }
  const config = zongji.connection?.config ?? {};
  // The fast paths give what zongji gives under these connection settings (connection-settings.ts).
  const textTemporals = config.dateStrings === true && config.timezone === 'Z';
  const textDecimals = !config.decimalNumbers;
  const steps = version.columns.map((c, i) => step(tableMap.columns[i]!, tableMap.columnSchemas[i]!, c, textTemporals, textDecimals));
  const readMysqlValue = common.readMysqlValue;
  const parser = new reader.Parser();
  return (images) => {
    const buf = images.bytes;
    parser.append(buf);
    const out: Row[] = [];
    const end = buf.length;
    let pos = 0;
    let present = images.present;
    const nullBytesFor = (bitmap: Buffer): number => (countBits(bitmap) + 7) >> 3;
    const nullBytes = nullBytesFor(images.present);
    const nullBytesAfter = images.presentAfter ? nullBytesFor(images.presentAfter) : 0;
    let after = false;
    while (pos < end) {
      const nulls = pos;
      pos += after ? nullBytesAfter : nullBytes;
      const row: Record<string, CellValue> = {};
      for (let i = 0, n = 0; i < steps.length; i++) {
        const s = steps[i]!;
        if ((present[i >> 3]! & (1 << (i & 7))) === 0) {
          row[s.name] = null;
          continue;
        }
        if ((buf[nulls + (n >> 3)]! & (1 << (n & 7))) !== 0) {
          row[s.name] = null;
          n++;
          continue;
        }
        n++;
        switch (s.op) {
          case Op.Int8: row[s.name] = buf.readInt8(pos); pos += 1; break;
          case Op.UInt8: row[s.name] = buf[pos]!; pos += 1; break;
          case Op.Int16: row[s.name] = buf.readInt16LE(pos); pos += 2; break;
          case Op.UInt16: row[s.name] = buf.readUInt16LE(pos); pos += 2; break;
          case Op.Int24: row[s.name] = buf.readIntLE(pos, 3); pos += 3; break;
          case Op.UInt24: row[s.name] = buf.readUIntLE(pos, 3); pos += 3; break;
          case Op.Int32: row[s.name] = buf.readInt32LE(pos); pos += 4; break;
          case Op.UInt32: row[s.name] = buf.readUInt32LE(pos); pos += 4; break;
          case Op.Int64: row[s.name] = buf.readBigInt64LE(pos); pos += 8; break;
          case Op.UInt64: row[s.name] = buf.readBigUInt64LE(pos); pos += 8; break;
          case Op.Decimal: pos = readDecimal(buf, pos, s.a, s.b, row, s.name); break;
          case Op.Utf8Short:
          case Op.Utf8Long: {
            const len = s.op === Op.Utf8Short ? buf[pos]! : buf.readUIntLE(pos, s.a);
            pos += s.a;
            row[s.name] = buf.toString('utf8', pos, pos + len);
            pos += len;
            break;
          }
          case Op.BlobBytes: {
            const len = buf.readUIntLE(pos, s.a);
            pos += s.a;
            row[s.name] = new Uint8Array(buf.subarray(pos, pos + len));
            pos += len;
            break;
          }
          case Op.Uuid16: {
            const len = buf[pos]!;
            pos += 1;
            row[s.name] = uuidText(buf, pos, len);
            pos += len;
            break;
          }
          case Op.Date: {
            const raw = buf.readUIntLE(pos, 3);
            pos += 3;
            row[s.name] = dateText((raw >> 9) & 0x7fff, (raw >> 5) & 0x0f, raw & 0x1f);
            break;
          }
          case Op.Timestamp: pos = readTimestamp(buf, pos, s.a, s.b, row, s.name); break;
          default: {
            parser._offset = pos;
            row[s.name] = s.decode(readMysqlValue(parser, s.column, s.schema, tableMap, zongji));
            pos = parser._offset;
          }
        }
      }
      out.push(row);
      if (images.presentAfter) {
        after = !after;
        present = after ? images.presentAfter : images.present;
      }
    }
    if (pos !== end) throw new Error(`rows event of ${version.schema}.${version.table}: row images end at byte ${pos}, not ${end}`);
    return out;
  };
}

function step(column: ZongjiColumn, schema: ZongjiColumnSchema, c: ColumnSchema, textTemporals: boolean, textDecimals: boolean): Step {
  const decode = cellDecoder(c);
  const base = { name: c.name, column, schema, decode, a: 0, b: 0 };
  const t = c.type;
  const unsigned = schema.UNSIGNED !== undefined ? schema.UNSIGNED : schema.COLUMN_TYPE.includes('unsigned');
  const meta = column.metadata ?? {};
  const utf8 = column.charset === 'utf8mb4' || column.charset === 'utf8mb3' || column.charset === 'utf8';
  const textKind = t.kind === 'string' || t.kind === 'json' || t.kind === 'text';
  switch (column.type) {
    case T.TINY: return t.kind === 'int' && t.bits === 8 ? { ...base, op: unsigned ? Op.UInt8 : Op.Int8 } : { ...base, op: Op.Fallback };
    case T.SHORT: return t.kind === 'int' && t.bits === 16 ? { ...base, op: unsigned ? Op.UInt16 : Op.Int16 } : { ...base, op: Op.Fallback };
    case T.INT24: return t.kind === 'int' && t.bits === 24 ? { ...base, op: unsigned ? Op.UInt24 : Op.Int24 } : { ...base, op: Op.Fallback };
    case T.LONG: return t.kind === 'int' && t.bits === 32 ? { ...base, op: unsigned ? Op.UInt32 : Op.Int32 } : { ...base, op: Op.Fallback };
    case T.LONGLONG: return t.kind === 'int' && t.bits === 64 ? { ...base, op: unsigned ? Op.UInt64 : Op.Int64 } : { ...base, op: Op.Fallback };
    case T.NEWDECIMAL:
      if (!textDecimals || t.kind !== 'decimal' || meta.precision === undefined || meta.decimals === undefined) break;
      return { ...base, op: Op.Decimal, a: meta.precision - meta.decimals, b: meta.decimals };
    case T.VARCHAR:
    case T.STRING: {
      const def = schema.COLUMN_TYPE;
      const prefix = (meta.max_length ?? 0) > 255 ? 2 : 1;
      if (def.startsWith('binary') && t.kind === 'uuid' && prefix === 1 && parseInt(def.slice(7), 10) === 16) return { ...base, op: Op.Uuid16, a: 1 };
      if (def === 'uuid' || def === 'inet4' || def === 'inet6' || def.startsWith('vector') || def.startsWith('binary') || def.startsWith('varbin')) break;
      if (!utf8 || !textKind) break;
      return { ...base, op: prefix === 1 ? Op.Utf8Short : Op.Utf8Long, a: prefix };
    }
    case T.TINY_BLOB:
    case T.MEDIUM_BLOB:
    case T.LONG_BLOB:
    case T.BLOB: {
      const size = meta.length_size;
      if (size === undefined || size < 1 || size > 4) break;
      if (column.charset === null && t.kind === 'bytes') return { ...base, op: Op.BlobBytes, a: size };
      if (utf8 && textKind) return { ...base, op: size === 1 ? Op.Utf8Short : Op.Utf8Long, a: size };
      break;
    }
    case T.DATE:
      if (textTemporals && t.kind === 'date') return { ...base, op: Op.Date };
      break;
    case T.TIMESTAMP2:
      if (textTemporals && t.kind === 'timestamptz') return { ...base, op: Op.Timestamp, a: meta.decimals ?? 0, b: fractionDigits(c.sourceType) };
      break;
  }
  return { ...base, op: Op.Fallback };
}

/** Bits set in the whole bitmap, as zongji counts them for the null bitmap's size. */
function countBits(bitmap: Buffer): number {
  let n = 0;
  for (const byte of bitmap) for (let b = byte; b !== 0; b &= b - 1) n++;
  return n;
}

/** Zero-padded to `size` digits, the last `size` kept (zongji's zeroPad). */
function pad(n: number, size: number): string {
  const s = String(n);
  return s.length === size ? s : s.length < size ? '0'.repeat(size - s.length) + s : s.slice(s.length - size);
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;

const DIG_BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/** A big-endian signed integer of 1–4 bytes with the first byte's top bit flipped (DECIMAL's sign). */
function groupAt(buf: Buffer, pos: number, size: number, first: boolean, mask: number): number {
  let v = buf[pos]! ^ (first ? 0x80 : 0);
  v = v & 0x80 ? v - 0x100 : v;
  for (let k = 1; k < size; k++) v = v * 256 + buf[pos + k]!;
  return (v ^ mask) | 0;
}

/** MySQL's binary DECIMAL → the exact text zongji gives ('-12.50'). */
function readDecimal(buf: Buffer, start: number, integral: number, scale: number, row: Record<string, CellValue>, name: string): number {
  const uncompInt = Math.floor(integral / 9);
  const compInt = integral - uncompInt * 9;
  const uncompFrac = Math.floor(scale / 9);
  const compFrac = scale - uncompFrac * 9;
  const positive = (buf[start]! & 0x80) !== 0;
  const mask = positive ? 0 : -1;
  let pos = start;
  let first = true;
  let intDigits = '';
  const compIntSize = DIG_BYTES[compInt]!;
  if (compIntSize > 0) {
    intDigits += String(groupAt(buf, pos, compIntSize, first, mask));
    first = false;
    pos += compIntSize;
  }
  for (let i = 0; i < uncompInt; i++) {
    intDigits += pad(groupAt(buf, pos, 4, first, mask), 9);
    first = false;
    pos += 4;
  }
  let k = 0;
  // Leading zeros go while a digit follows (zongji's /^0+(?=\d)/).
  while (intDigits.charCodeAt(k) === 48 && isDigit(intDigits.charCodeAt(k + 1))) k++;
  intDigits = intDigits.length === 0 ? '0' : intDigits.slice(k);
  let frac = '';
  for (let i = 0; i < uncompFrac; i++) {
    frac += pad(groupAt(buf, pos, 4, first, mask), 9);
    first = false;
    pos += 4;
  }
  const compFracSize = DIG_BYTES[compFrac]!;
  if (compFracSize > 0) {
    frac += pad(groupAt(buf, pos, compFracSize, first, mask), compFrac);
    pos += compFracSize;
  }
  row[name] = `${positive ? '' : '-'}${intDigits}${scale > 0 ? `.${frac}` : ''}`;
  return pos;
}

/** TIMESTAMP2(n) → zongji's text with `digits` fraction digits and '+00' (cell-decoder's form). */
function readTimestamp(buf: Buffer, start: number, stored: number, digits: number, row: Record<string, CellValue>, name: string): number {
  const seconds = buf.readInt32BE(start);
  let pos = start + 4;
  let fraction = '';
  let value = 0;
  let ms = 0;
  if (stored > 0) {
    const size = Math.ceil(stored / 2);
    value = buf.readIntBE(pos, size);
    pos += size;
    if (stored % 2 !== 0) value /= 10;
    if (value < 0) value = -value;
    ms = stored > 3 ? Math.floor(value / 10 ** (stored - 3)) : stored < 3 ? value * 10 ** (3 - stored) : value;
    fraction = pad(value, stored);
  }
  // Built from precomputed two-digit strings, without a Date: zongji's Date and a dozen pad()
  // strings per value were most of this function's time.
  let text: string;
  if (seconds === 0 && value === 0) {
    text = '0000-00-00 00:00:00';
  } else {
    // zongji's `new Date(seconds * 1000 + ms)` read in UTC (a Date truncates a fractional time
    // value toward zero).
    const t = Math.floor(Math.trunc(seconds * 1000 + ms) / 1000);
    const days = Math.floor(t / 86_400);
    let rest = t - days * 86_400;
    const h = Math.floor(rest / 3600);
    rest -= h * 3600;
    const m = Math.floor(rest / 60);
    const [year, month, day] = civilFromDays(days);
    text = `${dateText(year, month, day)} ${TWO_DIGITS[h]}:${TWO_DIGITS[m]}:${TWO_DIGITS[rest - m * 60]}`;
  }
  if (stored > 0) text = `${text}.${fraction}`;
  // The binlog's own form (stored === digits) is what padFraction returns unchanged, unless a
  // fraction with an odd digit count that is not a whole tenth put a dot in `fraction`.
  row[name] = stored === digits && Number.isInteger(value) ? `${text}+00` : `${padFraction(text, digits)}+00`;
  return pos;
}

/** '00'..'99'. */
const TWO_DIGITS = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));

/** DATE's 'YYYY-MM-DD' (zongji's zero-padded parts: the year's last 4 digits; month 0–15, day 0–31). */
function dateText(y: number, m: number, d: number): string {
  return `${pad(y, 4)}-${TWO_DIGITS[m]!}-${TWO_DIGITS[d]!}`;
}

/** UUID text is written here as ASCII and read out as one string (no 20 intermediate strings). */
const SCRATCH = Buffer.alloc(36);
const HEX_CHARS = Buffer.from('0123456789abcdef', 'latin1');

/** BINARY(16) (trailing zero bytes stripped in the image) as UUID text, as toUuid writes it. */
function uuidText(buf: Buffer, pos: number, len: number): string {
  let n = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) SCRATCH[n++] = 0x2d;
    const b = i < len ? buf[pos + i]! : 0;
    SCRATCH[n++] = HEX_CHARS[b >> 4]!;
    SCRATCH[n++] = HEX_CHARS[b & 15]!;
  }
  return SCRATCH.toString('latin1', 0, n);
}
