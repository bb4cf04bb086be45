import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';

const commitArb = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((n) => n.toString(16).padStart(16, '0'));
const posArb = fc.record({ commit: commitArb, seq: fc.integer({ min: 0, max: COMMIT_SEQ }) }).map((p) => Position.of(p.commit, p.seq));

test('format then parse gives the same position', () => {
  fc.assert(fc.property(posArb, (p) => assert.deepEqual(Position.parse(Position.format(p)), p)));
});

test('string order of formatted positions is position order', () => {
  fc.assert(
    fc.property(posArb, posArb, (a, b) => {
      const [fa, fb] = [Position.format(a), Position.format(b)];
      const byString = fa < fb ? -1 : fa > fb ? 1 : 0;
      assert.equal(Math.sign(Position.compare(a, b)), byString);
    }),
  );
});

test('a transaction position sorts after its events', () => {
  const ev = Position.of('00000000016b3748', 41);
  const tx = Position.commitOf(ev);
  assert.equal(tx.seq, COMMIT_SEQ);
  assert.ok(Position.compare(ev, tx) < 0);
  assert.equal(Position.format(tx), '00000000016b3748.ffffffff');
});

test('parse names the bad text and says what a position looks like', () => {
  assert.throws(() => Position.parse('0/16B3748'), (err: Error & { code?: string; hint?: string }) => {
    assert.equal(err.code, 'usage');
    assert.match(err.message, /0\/16B3748/);
    assert.match(err.hint ?? '', /8 hex digits/);
    return true;
  });
});

test('positions are frozen values', () => {
  const p = Position.of('00ff', 1);
  assert.ok(Object.isFrozen(p));
  assert.throws(() => Position.of('00FF', 1), /lowercase hex/);
  assert.throws(() => Position.of('00ff', -1), /sequence/);
});
