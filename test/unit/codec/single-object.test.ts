import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { recordBody, SINGLE_OBJECT_HEADER_BYTES, singleObject, singleObjectFingerprint, singleObjectHeader } from '../../../src/codec/single-object.js';

test('single-object framing: C3 01, the fingerprint little-endian, then the body', () => {
  const fp = 0x0123456789abcdefn;
  const header = singleObjectHeader(fp);
  assert.equal(SINGLE_OBJECT_HEADER_BYTES, 10);
  assert.deepEqual([...header], [0xc3, 0x01, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
  const body = Uint8Array.of(1, 2, 3);
  const message = singleObject(header, body);
  assert.equal(singleObjectFingerprint(message), fp);
  assert.deepEqual([...recordBody(message)], [1, 2, 3]);
  assert.equal(singleObjectFingerprint(singleObjectHeader(0xffffffffffffffffn)), 0xffffffffffffffffn);
});

test('a message without the marker, or too short for a fingerprint, is refused as damaged', () => {
  for (const bad of [Uint8Array.of(0xc3, 0x01, 0, 0), Uint8Array.of(0xc3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0), new Uint8Array(0)]) {
    assert.throws(
      () => singleObjectFingerprint(bad),
      (e: unknown) => e instanceof ChartlogError && e.code === 'integrity',
    );
  }
});
