import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CopyTextBuffer } from '../../../src/restore/targets/copy-text-buffer.js';
import { copyEscape } from '../../../src/restore/targets/postgres-text.js';

/** A row of cells written the way the PostgreSQL target used to: one string, then Buffer.from. */
type Cell = { kind: 'text'; s: string } | { kind: 'bytes'; b: Uint8Array } | { kind: 'null' };

function viaString(rows: readonly Cell[][]): Buffer {
  let s = '';
  for (const row of rows) {
    row.forEach((c, i) => {
      if (i > 0) s += '\t';
      if (c.kind === 'null') s += '\\N';
      else if (c.kind === 'bytes') s += `\\\\x${Buffer.from(c.b).toString('hex')}`;
      else s += copyEscape(c.s);
    });
    s += '\n';
  }
  return Buffer.from(s);
}

function viaBuffer(rows: readonly Cell[][], chunkBytes: number): Buffer {
  const out = new CopyTextBuffer(chunkBytes);
  const chunks: Buffer[] = [];
  for (const row of rows) {
    row.forEach((c, i) => {
      if (i > 0) out.byte(0x09);
      if (c.kind === 'null') out.nullValue();
      else if (c.kind === 'bytes') out.bytea(c.b);
      else out.text(c.s);
    });
    out.byte(0x0a);
    if (out.length >= chunkBytes) chunks.push(out.take());
  }
  chunks.push(out.take());
  return Buffer.concat(chunks);
}

const cell: fc.Arbitrary<Cell> = fc.oneof(
  // Every UTF-16 unit, lone surrogates included; and text rich in COPY's special characters.
  fc.string({ unit: 'binary' }).map((s) => ({ kind: 'text' as const, s })),
  fc.string({ unit: fc.constantFrom('\\', '\n', '\r', '\t', 'a', 'é', '🩺', '\ud800', 'N') }).map((s) => ({ kind: 'text' as const, s })),
  fc.uint8Array({ maxLength: 40 }).map((b) => ({ kind: 'bytes' as const, b })),
  fc.constant({ kind: 'null' as const }),
);

test('COPY text written as bytes equals the string the target built before, chunked anywhere', () => {
  fc.assert(
    fc.property(fc.array(fc.array(cell, { minLength: 1, maxLength: 6 }), { maxLength: 20 }), fc.integer({ min: 1, max: 64 }), (rows, chunk) => {
      assert.deepStrictEqual(viaBuffer(rows, chunk), viaString(rows));
    }),
    { numRuns: 2000 },
  );
});

test('a planted difference is caught: an unescaped tab, a wrong hex digit', () => {
  const rows: Cell[][] = [[{ kind: 'text', s: 'a\tb' }, { kind: 'bytes', b: new Uint8Array([0xab]) }]];
  assert.deepStrictEqual(viaBuffer(rows, 8), viaString(rows));
  const unescaped = Buffer.from('a\tb\t\\\\xab\n');
  assert.notDeepStrictEqual(viaBuffer(rows, 8), unescaped);
  const wrongHex = Buffer.from('a\\tb\t\\\\xac\n');
  assert.notDeepStrictEqual(viaBuffer(rows, 8), wrongHex);
  assert.deepStrictEqual(viaBuffer(rows, 8), Buffer.from('a\\tb\t\\\\xab\n'));
});
