import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { bigintToTwosComplement, twosComplementToBigint } from '../../../src/codec/exact-decimal.js';

/** Two's complement by whole-bigint arithmetic: the definition the fast paths must match. */
function reference(n: bigint): Uint8Array {
  let length = 1;
  while (n < -(1n << BigInt(8 * length - 1)) || n >= 1n << BigInt(8 * length - 1)) length++;
  let u = n < 0n ? (1n << BigInt(8 * length)) + n : n;
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(u & 0xffn);
    u >>= 8n;
  }
  return out;
}

test('two\'s complement bytes match whole-bigint arithmetic around every byte boundary and read back', () => {
  const boundary = fc.integer({ min: 1, max: 17 }).chain((bytes) => {
    const edge = 1n << BigInt(8 * bytes - 1);
    return fc.oneof(fc.bigInt({ min: edge - 3n, max: edge + 3n }), fc.bigInt({ min: -edge - 3n, max: -edge + 3n }));
  });
  fc.assert(
    fc.property(fc.oneof(boundary, fc.bigInt({ min: -(1n << 130n), max: 1n << 130n }), fc.bigInt({ min: -(1n << 40n), max: 1n << 40n })), (n) => {
      const bytes = bigintToTwosComplement(n);
      assert.deepEqual(bytes, reference(n), String(n));
      assert.equal(twosComplementToBigint(bytes), n);
    }),
    { numRuns: 20_000 },
  );
});
