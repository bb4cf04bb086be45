import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { skipThrough, statusLsn, type AckProgress } from '../../../../connectors/postgres/ack-policy.js';
import { COMMIT_SEQ, Position } from '../../../../src/core/position.js';

const idle: AckProgress = { ackTarget: 200n, confirmed: 150n, inTx: false, highestDataCommit: 200n };

describe('acknowledgement policy: what a status update may report', () => {
  it('reports the server position only when everything received is acknowledged and processed', () => {
    assert.equal(statusLsn(idle, 900n, true), 900n);
  });

  it('never reports received but unacknowledged data', () => {
    assert.equal(statusLsn({ ...idle, highestDataCommit: 300n }, 900n, true), 200n, 'a delivered transaction is not acknowledged');
    assert.equal(statusLsn(idle, 900n, false), 200n, 'messages still queued');
    assert.equal(statusLsn({ ...idle, inTx: true }, 900n, true), 200n, 'a transaction is open');
  });

  it('never goes below what was reported before (PostgreSQL 15 would move the slot back)', () => {
    assert.equal(statusLsn({ ...idle, confirmed: 500n, highestDataCommit: 600n }, 900n, true), 500n);
    assert.equal(statusLsn({ ...idle, confirmed: 500n }, 100n, true), 500n);
    assert.equal(statusLsn({ ackTarget: 0n, confirmed: 0n, inTx: false, highestDataCommit: 0n }, 0n, false), 0n);
  });
});

describe('acknowledgement policy: what a resumed stream skips', () => {
  const c = (n: number) => n.toString(16).padStart(16, '0');
  it('skips whole transactions at or below the last durable one', () => {
    const durable = Position.of(c(0x500));
    assert.equal(skipThrough(c(0x400), durable), COMMIT_SEQ);
    assert.equal(skipThrough(c(0x500), durable), COMMIT_SEQ);
    assert.equal(skipThrough(c(0x501), durable), -1);
    assert.equal(skipThrough(c(0x400), null), -1);
  });

  it('resumes inside a transaction after the last durable event of a partial batch', () => {
    assert.equal(skipThrough(c(0x500), Position.of(c(0x500), 299)), 299);
    assert.equal(skipThrough(c(0x4ff), Position.of(c(0x500), 299)), COMMIT_SEQ);
  });
});
