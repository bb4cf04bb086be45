import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatLsn, lsnFromHex, lsnHex, lsnOfPosition, parseLsn, positionOfLsn } from '../../../../connectors/postgres/lsn.js';
import { COMMIT_SEQ, Position } from '../../../../src/core/position.js';

describe('LSN', () => {
  it('parses the server form into a BigInt and formats it back', () => {
    assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), (1n << 64n) - 1n);
    assert.equal(formatLsn(0x16b374d848n), '16/B374D848');
    assert.equal(formatLsn(0x1000000n), '0/1000000');
  });

  it('orders by value, where the unpadded strings would not', () => {
    assert.ok('0/9' > '0/10', 'string order is wrong for LSNs');
    assert.ok(parseLsn('0/9') < parseLsn('0/10'));
    assert.ok(lsnHex(parseLsn('0/9')) < lsnHex(parseLsn('0/10')), 'the fixed-width hex form sorts right');
    assert.ok(lsnHex(parseLsn('F/FFFFFFFF')) < lsnHex(parseLsn('10/0')));
  });

  it('round-trips through a Position commit part of 16 lowercase hex digits', () => {
    const lsn = parseLsn('AB/CDEF0123');
    const p = positionOfLsn(lsn);
    assert.equal(p.commit, '000000abcdef0123');
    assert.equal(p.seq, COMMIT_SEQ);
    assert.equal(lsnOfPosition(p), lsn);
    assert.equal(lsnOfPosition(Position.parse(Position.format(positionOfLsn(lsn, 7)))), lsn);
  });

  it('refuses malformed text and positions of another connector', () => {
    assert.throws(() => parseLsn('16-B374'), /invalid LSN/);
    assert.throws(() => parseLsn('123456789/0'), /invalid LSN/);
    assert.throws(() => lsnFromHex('0-1-6'), /not a PostgreSQL position/);
    assert.throws(() => lsnOfPosition(Position.of('0000000000000001-00000001')), /not a PostgreSQL position/);
  });
});
