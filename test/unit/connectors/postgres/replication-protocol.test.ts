import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readKeepalive, readLsn, standbyStatusUpdate } from '../../../../connectors/postgres/replication-protocol.js';

test('a primary keepalive gives the server WAL end and whether it asks for an answer', () => {
  // 'k', walEnd 0/16B3748, sendTime, replyRequested 1 (bytes as PostgreSQL 15 sends them).
  const k = Buffer.from('6b00000000016b3748000002c0fa3b1c2a01', 'hex');
  assert.deepEqual(readKeepalive(k), { walEnd: 0x16b3748n, replyRequested: true });
  k[17] = 0;
  assert.equal(readKeepalive(k).replyRequested, false);
  assert.equal(readLsn(Buffer.from('00000001ffffffff', 'hex'), 0), 0x1ffffffffn, 'the high half carries');
});

test('a short keepalive is refused (retriable: the connection is read again), not read past its end', () => {
  assert.throws(() => readKeepalive(Buffer.from('6b0000000001', 'hex')), (e: Error & { retriable?: boolean }) => /keepalive: 6 bytes/.test(e.message) && e.retriable === true);
});

test('a status update reports exactly the given LSN as written, flushed and applied (not lsn + 1), with the time in µs since 2000-01-01', () => {
  const lsn = 0x1_0000_00ffn;
  const r = standbyStatusUpdate(lsn, Date.UTC(2000, 0, 1, 0, 0, 1), true);
  assert.equal(r.length, 34);
  assert.equal(r[0], 0x72);
  for (const at of [1, 9, 17]) assert.equal(r.readBigUInt64BE(at), lsn, `offset ${at}`);
  assert.equal(r.readBigInt64BE(25), 1_000_000n);
  assert.equal(r[33], 1);
  assert.equal(standbyStatusUpdate(lsn, 0, false)[33], 0);
});
