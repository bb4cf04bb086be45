import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cellDecoder } from '../../../../connectors/mysql/cell-decoder.js';
import { columnTypeOf } from '../../../../connectors/mysql/column-type.js';
import { RowImages, rowImagesReader, type ZongjiColumn, type ZongjiColumnSchema, type ZongjiTableMap } from '../../../../connectors/mysql/row-images.js';
import { freezeTableSchema, type ColumnSchema, type Row, type TableSchema } from '../../../../src/core/table-schema.js';

// zongji's own value reader and parser: the reference the fast paths must equal, value for value.
const zongjiUrl = import.meta.resolve('@vlasky/zongji');
const { readMysqlValue } = (await import(new URL('./lib/common.js', zongjiUrl).href)) as { readMysqlValue: (...a: unknown[]) => unknown };
const { Parser } = (await import(new URL('./lib/reader.js', zongjiUrl).href)) as {
  Parser: new () => { append(b: Buffer): void; parseBuffer(n: number): Buffer; reachedPacketEnd(): boolean };
};

/** One column: its table-map form (wire type, metadata, charset, COLUMN_TYPE) and its source type. */
interface Col {
  readonly sourceType: string;
  readonly json?: boolean;
  readonly wire: number;
  readonly columnType: string;
  readonly charset: string | null;
  readonly metadata: Record<string, number>;
  /** Random wire bytes of one non-null value. */
  readonly value: fc.Arbitrary<Uint8Array>;
}

const bytes = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n });
const prefixed = (prefix: number, max: number, body: fc.Arbitrary<Uint8Array> = fc.uint8Array({ maxLength: max })): fc.Arbitrary<Uint8Array> =>
  body.map((b) => {
    const out = Buffer.alloc(prefix + b.length);
    out.writeUIntLE(b.length, 0, prefix);
    out.set(b, prefix);
    return new Uint8Array(out);
  });
const utf8 = (max: number): fc.Arbitrary<Uint8Array> => fc.oneof(fc.string({ unit: 'grapheme', maxLength: max }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))), fc.uint8Array({ maxLength: max }));

const COLUMNS: readonly Col[] = [
  { sourceType: 'bigint(20)', wire: 8, columnType: 'bigint(20)', charset: null, metadata: {}, value: bytes(8) },
  { sourceType: 'bigint(20) unsigned', wire: 8, columnType: 'bigint(20) unsigned', charset: null, metadata: {}, value: bytes(8) },
  { sourceType: 'int(11)', wire: 3, columnType: 'int(11)', charset: null, metadata: {}, value: bytes(4) },
  { sourceType: 'int(10) unsigned', wire: 3, columnType: 'int(10) unsigned', charset: null, metadata: {}, value: bytes(4) },
  { sourceType: 'mediumint(9)', wire: 9, columnType: 'mediumint(9)', charset: null, metadata: {}, value: bytes(3) },
  { sourceType: 'smallint(5) unsigned', wire: 2, columnType: 'smallint(5) unsigned', charset: null, metadata: {}, value: bytes(2) },
  { sourceType: 'tinyint(1)', wire: 1, columnType: 'tinyint(1)', charset: null, metadata: {}, value: bytes(1) },
  { sourceType: 'decimal(12,2)', wire: 246, columnType: 'decimal(12,2)', charset: null, metadata: { precision: 12, decimals: 2 }, value: bytes(6) },
  { sourceType: 'decimal(30,10)', wire: 246, columnType: 'decimal(30,10)', charset: null, metadata: { precision: 30, decimals: 10 }, value: bytes(14) },
  { sourceType: 'decimal(5,0)', wire: 246, columnType: 'decimal(5,0)', charset: null, metadata: { precision: 5, decimals: 0 }, value: bytes(3) },
  { sourceType: 'varchar(20)', wire: 15, columnType: 'varchar(20)', charset: 'utf8mb4', metadata: { max_length: 80 }, value: prefixed(1, 80, utf8(20)) },
  { sourceType: 'varchar(300)', wire: 15, columnType: 'varchar(300)', charset: 'utf8mb4', metadata: { max_length: 1200 }, value: prefixed(2, 1200, utf8(300)) },
  { sourceType: 'char(11)', wire: 254, columnType: 'char(11)', charset: 'utf8mb4', metadata: { max_length: 44 }, value: prefixed(1, 44, utf8(11)) },
  { sourceType: 'text', wire: 252, columnType: 'text', charset: 'utf8mb4', metadata: { length_size: 2 }, value: prefixed(2, 200, utf8(60)) },
  { sourceType: 'longtext', json: true, wire: 252, columnType: 'longtext', charset: 'utf8mb4', metadata: { length_size: 4 }, value: prefixed(4, 100, utf8(40)) },
  { sourceType: 'blob', wire: 252, columnType: 'blob', charset: null, metadata: { length_size: 2 }, value: prefixed(2, 100) },
  { sourceType: 'date', wire: 10, columnType: 'date', charset: null, metadata: {}, value: bytes(3) },
  { sourceType: 'timestamp(6)', wire: 17, columnType: 'timestamp(6)', charset: null, metadata: { decimals: 6 }, value: bytes(7) },
  { sourceType: 'timestamp(3)', wire: 17, columnType: 'timestamp(3)', charset: null, metadata: { decimals: 3 }, value: bytes(6) },
  { sourceType: 'timestamp', wire: 17, columnType: 'timestamp', charset: null, metadata: { decimals: 0 }, value: bytes(4) },
  { sourceType: 'uuid', wire: 254, columnType: 'binary(16)', charset: null, metadata: { max_length: 16 }, value: prefixed(1, 16, fc.uint8Array({ maxLength: 16 })) },
  // No fast path: zongji's reader inside the compiled one.
  { sourceType: 'double', wire: 5, columnType: 'double', charset: null, metadata: { size: 8 }, value: bytes(8) },
  { sourceType: 'datetime(6)', wire: 18, columnType: 'datetime(6)', charset: null, metadata: { decimals: 6 }, value: bytes(8) },
  { sourceType: "enum('a','b')", wire: 247, columnType: "enum('a','b')", charset: 'utf8mb4', metadata: { size: 1 }, value: fc.constantFrom(0, 1, 2).map((i) => new Uint8Array([i])) },
];

const ZONGJI = { connection: { config: { dateStrings: true, timezone: 'Z' } } };

function tableOf(cols: readonly Col[]): { tableMap: ZongjiTableMap; version: TableSchema } {
  const columns: ZongjiColumn[] = cols.map((c, i) => ({ name: `c${i}`, charset: c.charset, type: c.wire, metadata: c.metadata }));
  const columnSchemas: ZongjiColumnSchema[] = cols.map((c, i) => ({ COLUMN_NAME: `c${i}`, COLUMN_TYPE: c.columnType }));
  const vcols: ColumnSchema[] = cols.map((c, i) => ({ name: `c${i}`, sourceType: c.sourceType, type: columnTypeOf(c.sourceType, c.json ?? false), nullable: true }));
  return { tableMap: { columns, columnSchemas }, version: freezeTableSchema({ schema: 's', table: 't', columns: vcols, primaryKey: [] }) };
}

/** zongji's readRow followed by the cell decoder: what the converter produced before row images. */
function reference(images: RowImages, version: TableSchema): Row[] {
  const p = new Parser();
  p.append(images.bytes);
  const decoders = version.columns.map((c) => cellDecoder(c));
  const out: Row[] = [];
  let after = false;
  const bit = (b: Buffer, i: number): boolean => (b[i >> 3]! & (1 << (i & 7))) !== 0;
  while (!p.reachedPacketEnd()) {
    const present = after ? images.presentAfter! : images.present;
    let count = 0;
    for (let i = 0; i < present.length * 8; i++) if (bit(present, i)) count++;
    const nulls = p.parseBuffer((count + 7) >> 3);
    const row: Record<string, unknown> = {};
    for (let i = 0, n = 0; i < version.columns.length; i++) {
      const name = version.columns[i]!.name;
      if (!bit(present, i)) row[name] = null;
      else if (bit(nulls, n++)) row[name] = null;
      else row[name] = decoders[i]!(readMysqlValue(p, images.tableMap.columns[i], images.tableMap.columnSchemas[i], images.tableMap, ZONGJI));
    }
    out.push(row as Row);
    if (images.presentAfter) after = !after;
  }
  return out;
}

/** Rows of (value or null per present column) as one rows event's row area. */
function encode(cells: readonly (Uint8Array | null)[][], presents: readonly boolean[][]): Buffer {
  const parts: Buffer[] = [];
  cells.forEach((row, r) => {
    const present = presents[r % presents.length]!;
    const shown = row.filter((_, i) => present[i]);
    const nulls = Buffer.alloc((shown.length + 7) >> 3);
    shown.forEach((v, n) => {
      if (v === null) nulls[n >> 3]! |= 1 << (n & 7);
    });
    parts.push(nulls, ...shown.filter((v): v is Uint8Array => v !== null).map((v) => Buffer.from(v)));
  });
  return Buffer.concat(parts);
}

const bitmap = (present: readonly boolean[]): Buffer => {
  const b = Buffer.alloc((present.length + 7) >> 3);
  present.forEach((p, i) => {
    if (p) b[i >> 3]! |= 1 << (i & 7);
  });
  return b;
};

describe('row images (rows read from the binlog bytes)', () => {
  const { tableMap, version } = tableOf(COLUMNS);
  const row = fc.tuple(...COLUMNS.map((c) => fc.option(c.value, { nil: null, freq: 5 })));

  it('give the same values as zongji + the cell decoder, for every type, NULL and column subset', () => {
    const present = fc.array(fc.boolean(), { minLength: COLUMNS.length, maxLength: COLUMNS.length });
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 6 }), fc.boolean(), present, present, (rows, update, p1, p2) => {
        const presents = update ? [p1, p2] : [p1];
        const cells = update && rows.length % 2 === 1 ? [...rows, rows[0]!] : rows;
        const images = new RowImages(encode(cells, presents), bitmap(p1), update ? bitmap(p2) : null, tableMap, ZONGJI);
        assert.deepStrictEqual(rowImagesReader(images, version)(images), reference(images, version));
      }),
      { numRuns: 200 },
    );
  });

  it('the comparison catches a wrong value (planted: one DECIMAL byte read differently)', () => {
    const cells = [COLUMNS.map((c) => (c.sourceType === 'decimal(12,2)' ? new Uint8Array([0x80, 0, 0, 0x01, 0x02, 0x03]) : null))];
    const all = COLUMNS.map(() => true);
    const images = new RowImages(encode(cells, [all]), bitmap(all), null, tableMap, ZONGJI);
    const good = rowImagesReader(images, version)(images);
    assert.deepStrictEqual(good, reference(images, version));
    assert.equal(good[0]!.c7, '258.03');
    const planted = new RowImages(Buffer.from(images.bytes), images.present, null, tableMap, ZONGJI);
    planted.bytes[planted.bytes.length - 1] = 0x04;
    assert.notDeepStrictEqual(rowImagesReader(planted, version)(planted), good);
  });

  it('refuses a row area that does not end where the last row does', () => {
    const all = COLUMNS.map(() => true);
    const cells = [COLUMNS.map(() => null)];
    const bytesOf = encode(cells, [all]);
    const images = new RowImages(Buffer.concat([bytesOf, Buffer.from([1])]), bitmap(all), null, tableMap, ZONGJI);
    assert.throws(() => rowImagesReader(images, version)(images));
  });
});
