import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AvroWriter } from '../../../src/codec/avro-binary.js';
import { bigintToTwosComplement, parseScaledDecimal, smallScaledDecimal, twosComplementToBigint } from '../../../src/codec/exact-decimal.js';
import { formatTimestamp, parseDate, parseTime, parseTimestamp } from '../../../src/codec/temporal-text.js';
import { mappingFor } from '../../../src/codec/value-mapping.js';
import type { CellValue, ColumnType } from '../../../src/core/table-schema.js';

/** Encodes through the mapping and says which branch carried the value. */
function branch(type: ColumnType, v: CellValue): [string, unknown] {
  const wrapped = mappingFor(type).toAvro(v);
  const [b] = Object.keys(wrapped);
  return [b!, wrapped[b!]];
}

function roundTrip(type: ColumnType, v: CellValue): CellValue {
  const [b, x] = branch(type, v);
  return mappingFor(type).fromAvro(b, x);
}

test('decimal(p,s): canonical text uses Avro decimal bytes; NaN, Infinity, -0 and other forms stay exact text', () => {
  const t: ColumnType = { kind: 'decimal', precision: 12, scale: 2 };
  assert.deepEqual(branch(t, '-12.30'), ['bytes', Buffer.from(bigintToTwosComplement(-1230n))]);
  for (const v of ['NaN', 'Infinity', '-Infinity', '-0.00', '12.3', '1e5', '0012.30', '12345678901.00']) {
    assert.equal(branch(t, v)[0], 'string', v);
    assert.equal(roundTrip(t, v), v);
  }
  for (const v of ['0.00', '-0.01', '9999999999.99', '-9999999999.99', '128.00', '-128.00']) assert.equal(roundTrip(t, v), v);
  assert.equal(parseScaledDecimal('1.5', 0, 10), null);
  assert.equal(parseScaledDecimal('15', 0, 10), 15n);
});

test('decimal(p,s) written directly: the bytes the parse-and-BigInt path writes, for canonical and every other form', () => {
  /** What `write` wrote before its small-number path: the definition. */
  const reference = (text: string, scale: number, precision: number): Buffer => {
    const w = new AvroWriter(64);
    const unscaled = parseScaledDecimal(text, scale, precision);
    if (unscaled === null) {
      w.long(1);
      w.string(text);
    } else {
      w.long(0);
      w.bytes(bigintToTwosComplement(unscaled));
    }
    return Buffer.from(w.buf.subarray(0, w.pos));
  };
  const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max });
  const text = fc.oneof(
    fc.tuple(fc.constantFrom('', '-', '+', '--'), digits(0, 18), fc.constantFrom('', '.', ','), digits(0, 6)).map(([sign, int, dot, frac]) => `${sign}${int}${dot}${frac}`),
    fc.bigInt({ min: -(10n ** 17n), max: 10n ** 17n }).map((n) => String(n)), // scaled below
    fc.constantFrom('NaN', 'Infinity', '-0.00', '0.00', '00.00', '1e5', ' 1.00', '1.00 ', '9007199254740993.00', '-128.00', '127.99', '-0.01', '0.5', '.50', '5.'),
  );
  let direct = 0;
  fc.assert(
    fc.property(text, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 20 }), (raw, scale, extra) => {
      // Whole numbers become canonical text at this scale ('-1234' at 2: '-12.34', '5' at 2: '0.05').
      const whole = /^-?\d+$/.exec(raw) && !raw.startsWith('-0') && !/^0\d/.test(raw);
      const magnitude = raw.replace('-', '').padStart(scale + 1, '0');
      const t = whole && scale > 0 ? `${raw.startsWith('-') ? '-' : ''}${magnitude.slice(0, -scale)}.${magnitude.slice(-scale)}` : raw;
      const precision = Math.max(1, scale + extra - 4);
      const w = new AvroWriter(64);
      mappingFor({ kind: 'decimal', precision, scale }).write(w, t, 0);
      assert.deepEqual(Buffer.from(w.buf.subarray(0, w.pos)), reference(t, scale, precision), `${t} (${precision},${scale})`);
      if (smallScaledDecimal(t, scale, precision) !== undefined) direct++;
    }),
    { numRuns: 30_000 },
  );
  // The small-number path was taken, not only the reference one (else this compared nothing).
  assert.ok(direct > 1000, `direct path taken ${direct} times`);
});

test('two\'s complement bytes are minimal and exact at byte boundaries', () => {
  for (const [n, hex] of [[0n, '00'], [127n, '7f'], [128n, '0080'], [-1n, 'ff'], [-128n, '80'], [-129n, 'ff7f'], [(1n << 64n) - 1n, '00ffffffffffffffff']] as const) {
    assert.equal(Buffer.from(bigintToTwosComplement(n)).toString('hex'), hex);
    assert.equal(twosComplementToBigint(bigintToTwosComplement(n)), n);
  }
});

test('ints: 64-bit as bigint long, unsigned 64 as decimal(20,0), unsigned 32 as long; wrong JS types refused', () => {
  assert.deepEqual(branch({ kind: 'int', bits: 64 }, -(1n << 63n)), ['long', -(1n << 63n)]);
  assert.equal(roundTrip({ kind: 'int', bits: 64, unsigned: true }, (1n << 64n) - 1n), (1n << 64n) - 1n);
  assert.deepEqual(branch({ kind: 'int', bits: 32, unsigned: true }, 4294967295), ['long', 4294967295n]);
  assert.equal(roundTrip({ kind: 'int', bits: 32, unsigned: true }, 4294967295), 4294967295);
  assert.throws(() => branch({ kind: 'int', bits: 64 }, 5), /expected a signed 64-bit bigint, got number/);
  assert.throws(() => branch({ kind: 'int', bits: 32 }, 5n), /got bigint/);
  assert.throws(() => branch({ kind: 'int', bits: 64 }, 1n << 63n), /signed 64-bit/);
});

test('floats keep NaN, ±Infinity, -0 and float4 text values', () => {
  for (const v of [NaN, Infinity, -Infinity, -0, 3.14, 5e-324]) assert.ok(Object.is(roundTrip({ kind: 'float', bits: 32 }, v), v));
});

test('date: logical date for years 1–9999, text for infinity, BC, zero and invalid dates', () => {
  assert.deepEqual(branch({ kind: 'date' }, '1970-01-02'), ['int', 1]);
  assert.deepEqual(branch({ kind: 'date' }, '1969-12-31'), ['int', -1]);
  assert.deepEqual(branch({ kind: 'date' }, '0001-01-01'), ['int', -719162]);
  assert.deepEqual(branch({ kind: 'date' }, '2000-02-29'), ['int', 11016]);
  for (const v of ['infinity', '-infinity', '0044-03-15 BC', '12345-01-01', '0000-00-00', '2020-02-30', '2021-02-29', '2020-00-00']) {
    assert.equal(parseDate(v), null, v);
    assert.equal(roundTrip({ kind: 'date' }, v), v);
  }
});

test('time: time-micros for canonical times of day, text for MySQL negative/over-24h and untrimmed fractions', () => {
  assert.deepEqual(branch({ kind: 'time' }, '12:34:56.789'), ['long', 45296789000n]);
  assert.deepEqual(branch({ kind: 'time' }, '00:00:00'), ['long', 0n]);
  assert.deepEqual(branch({ kind: 'time' }, '23:59:59.999999'), ['long', 86399999999n]);
  for (const v of ['-838:59:59', '838:59:59', '24:00:00', '12:00:00.500', '12:00:00.000000', '1:00:00']) {
    assert.equal(parseTime(v), null, v);
    assert.equal(roundTrip({ kind: 'time' }, v), v);
  }
});

test('timestamps: local-timestamp-micros / timestamp-micros, text for infinity, BC, zero dates, years > 9999', () => {
  assert.deepEqual(branch({ kind: 'timestamp' }, '1970-01-01 00:00:00.000001'), ['long', 1n]);
  assert.deepEqual(branch({ kind: 'timestamp' }, '1969-12-31 23:59:59.999999'), ['long', -1n]);
  assert.deepEqual(branch({ kind: 'timestamptz' }, '2024-02-29 12:00:00+00'), ['long', 1709208000000000n]);
  assert.equal(branch({ kind: 'timestamptz' }, '2024-02-29 12:00:00')[0], 'string');
  assert.equal(formatTimestamp(-62135596800000000n, ''), '0001-01-01 00:00:00');
  for (const v of ['infinity', '-infinity', '0000-00-00 00:00:00', '0044-03-15 10:00:00 BC', '10000-01-01 00:00:00', '2024-01-01 00:00:00.100000']) {
    assert.equal(parseTimestamp(v, ''), null, v);
    assert.equal(roundTrip({ kind: 'timestamp' }, v), v);
  }
});

test('sets, arrays with nulls, nested arrays, bytes', () => {
  assert.deepEqual(roundTrip({ kind: 'set', values: ['a', 'b'] }, ['a', 'b']), ['a', 'b']);
  const nested: ColumnType = { kind: 'array', element: { kind: 'array', element: { kind: 'int', bits: 64 } } };
  assert.deepStrictEqual(roundTrip(nested, [[1n, null], null, []]), [[1n, null], null, []]);
  const dates: ColumnType = { kind: 'array', element: { kind: 'date' } };
  assert.deepStrictEqual(roundTrip(dates, ['2024-01-01', 'infinity', null]), ['2024-01-01', 'infinity', null]);
  const bytes = roundTrip({ kind: 'bytes' }, Uint8Array.of(0, 255));
  assert.deepStrictEqual(bytes, Uint8Array.of(0, 255));
  assert.equal(Object.getPrototypeOf(bytes), Uint8Array.prototype, 'plain Uint8Array, not a Buffer');
});

test('a logical date/time value the encoder never writes is an integrity error, not a wrong value', () => {
  assert.throws(() => mappingFor({ kind: 'date' }).fromAvro('int', 5_000_000), /out of the range/);
  assert.throws(() => mappingFor({ kind: 'time' }).fromAvro('long', -1n), /out of the range/);
  assert.throws(() => mappingFor({ kind: 'timestamp' }).fromAvro('long', 1n << 62n), /out of the range/);
});

test('MySQL time(n)/datetime(n)/timestamp(n): fixed-width fractions take the logical branch; PostgreSQL names do not', () => {
  const dt6 = mappingFor({ kind: 'timestamp' }, 'datetime(6)');
  assert.deepEqual(Object.entries(dt6.toAvro('1970-01-01 00:00:00.100000')), [['long', 100000n]]);
  assert.equal(dt6.fromAvro('long', 100000n), '1970-01-01 00:00:00.100000');
  assert.deepEqual(Object.keys(dt6.toAvro('1970-01-01 00:00:00.1')), ['string'], 'a trimmed value in a fixed-width column stays text');
  const t3 = mappingFor({ kind: 'time' }, 'time(3)');
  assert.deepEqual(Object.entries(t3.toAvro('12:00:00.500')), [['long', 43200500000n]]);
  assert.deepEqual(Object.keys(t3.toAvro('-01:00:00.000')), ['string']);
  const dt0 = mappingFor({ kind: 'timestamp' }, 'datetime');
  assert.deepEqual(Object.keys(dt0.toAvro('2024-01-01 10:00:00')), ['long']);
  const ts0 = mappingFor({ kind: 'timestamptz' }, 'timestamp(0)');
  assert.equal(ts0.fromAvro('long', 0n), '1970-01-01 00:00:00+00');
  const pg = mappingFor({ kind: 'timestamp' }, 'timestamp(3) without time zone');
  assert.deepEqual(Object.keys(pg.toAvro('2024-01-01 10:00:00.5')), ['long']);
  assert.deepEqual(Object.keys(pg.toAvro('2024-01-01 10:00:00.500')), ['string']);
  for (const [m, v] of [[dt6, '2024-02-29 23:59:59.999999'], [t3, '838:59:59.000'], [pg, 'infinity']] as const) {
    const w = m.toAvro(v);
    const b = Object.keys(w)[0]!;
    assert.equal(m.fromAvro(b, w[b]), v);
  }
});
