import assert from 'node:assert/strict';
import { test } from 'node:test';
import avro from 'avsc';
import { AvroReader, AvroWriter, NotDirect } from '../../../src/codec/avro-binary.js';
import { deserializeCell, serializeCell, serializeCellTransient } from '../../../src/phi/cell-serialization.js';

/**
 * The writers copy ASCII strings byte for byte and hand anything else to Buffer (avro-binary.ts
 * `string`, cell-serialization.ts `writeUtf8`). The bytes must be the same either way: strings
 * that turn non-ASCII at every place, at every length around the writers' limits (21/22 units
 * for Avro, 64 for cells), are checked against avsc and against UTF-8 from Buffer.
 */

const TAILS = ['é', '\u00ff', '\u0080', '€', '😀', '\uFEFF', '\u007f'];

function strings(): string[] {
  const out: string[] = [];
  for (const n of [0, 1, 5, 20, 21, 22, 23, 63, 64, 65, 100]) {
    const ascii = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(3).slice(0, n).padEnd(n, 'x');
    out.push(ascii);
    for (const t of TAILS) for (const at of [0, Math.floor(n / 2), n]) out.push(ascii.slice(0, at) + t + ascii.slice(at));
  }
  return out;
}

test('Avro strings, ASCII or not, short or long, are written as avsc writes them and read back', () => {
  const type = avro.Type.forSchema('string');
  for (const s of strings()) {
    const w = new AvroWriter(4);
    w.string('x'.repeat(7)); // the writer's buffer is not empty nor fresh where the string goes
    const start = w.pos;
    w.string(s);
    const bytes = Buffer.from(w.result()).subarray(start);
    assert.deepEqual(bytes, type.toBuffer(s), JSON.stringify(s));
    assert.equal(new AvroReader(bytes, 0).string(), s);
  }
});

test('a lone surrogate is still left to avsc (NotDirect), after ASCII or alone', () => {
  for (const s of ['\uD800', 'abc\uD800', 'abc\uDC00def', `${'a'.repeat(30)}\uD800`]) {
    assert.throws(() => new AvroWriter().string(s), NotDirect, JSON.stringify(s));
  }
});

test('cell serialisation of strings, ASCII or not, is tag, UTF-8 length and UTF-8 bytes, and reads back', () => {
  for (const s of strings()) {
    const utf8 = Buffer.from(s, 'utf8');
    const expected = Buffer.alloc(5 + utf8.length);
    expected[0] = 5;
    expected.writeUInt32LE(utf8.length, 1);
    utf8.copy(expected, 5);
    assert.deepEqual(Buffer.from(serializeCellTransient(s)), expected, JSON.stringify(s));
    assert.deepEqual(Buffer.from(serializeCell(s)), expected, JSON.stringify(s));
    assert.equal(deserializeCell(serializeCell(s)), s);
  }
});

test("cell serialisation of a number without a Writer (serializeCellTransient, the AAD's key path) gives the Writer's bytes", () => {
  for (const n of [0, -0, 1, -1, 42, 2 ** 31, 2 ** 53 - 1, -(2 ** 53), 0.1, 1e300, Number.MIN_VALUE, NaN, Infinity, -Infinity]) {
    const expected = Buffer.alloc(9);
    expected[0] = 3;
    expected.writeDoubleLE(n, 1);
    assert.deepEqual(Buffer.from(serializeCellTransient(n)), expected, String(n));
    assert.deepEqual(Buffer.from(serializeCell(n)), expected, String(n));
    // Not one view for another length: a string of four bytes after it is tagged and sized as a string.
    assert.deepEqual(Buffer.from(serializeCellTransient('abcd')), Buffer.from([5, 4, 0, 0, 0, 97, 98, 99, 100]));
    assert.ok(Object.is(deserializeCell(serializeCellTransient(n)), n), String(n));
  }
});
