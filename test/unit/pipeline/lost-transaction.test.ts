import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { Settlement } from '../../../src/compactor/settlement.js';
import { LostTransactionDetector } from '../../../src/pipeline/lost-transaction.js';
import type { TransactionRecord } from '../../../src/archive/transaction-log.js';

/**
 * The detection of a transaction Kafka acknowledged but never delivered whole (kafkajs#1303):
 * the compactor's oldest unsettled END, watched against Kafka's acknowledgement and the clock.
 */

const commitOf = (n: number) => n.toString(16).padStart(16, '0');
const tx = (n: number) => Position.of(commitOf(n), COMMIT_SEQ);
const end = (n: number, previous: number | null, tables: Record<string, number>): TransactionRecord => ({
  pos: Position.format(tx(n)),
  previous: previous === null ? null : Position.format(tx(previous)),
  txId: String(n),
  commitTsUs: 1_000_000 + n,
  tables,
});

test('an END waiting for events Kafka acknowledged is judged lost after the wait, not before', () => {
  const d = new LostTransactionDetector(1000);
  assert.equal(d.observe(0, tx(5), tx(7)), null, 'first seen: starts the clock');
  assert.equal(d.observe(999, tx(5), tx(7)), null, 'not yet');
  assert.deepEqual(d.observe(1000, tx(5), tx(7)), tx(5), 'waited the whole time: lost');
  assert.equal(d.observe(1001, tx(5), tx(7)), null, 'reported once, then watched afresh');
  assert.deepEqual(d.observe(2001, tx(5), tx(7)), tx(5), 'still lost after a re-read: reported again');
});

test('progress restarts the clock: a slow compactor that settles is never judged lost', () => {
  const d = new LostTransactionDetector(1000);
  assert.equal(d.observe(0, tx(5), tx(9)), null);
  assert.equal(d.observe(900, tx(6), tx(9)), null, 'tx 5 settled; tx 6 is the oldest now');
  assert.equal(d.observe(1800, tx(6), tx(9)), null, 'tx 6 waited 900 ms only');
  assert.equal(d.observe(1900, null, tx(9)), null, 'nothing waits');
  assert.equal(d.observe(5000, tx(7), tx(9)), null, 'a new wait starts at 5000');
  assert.deepEqual(d.observe(6000, tx(7), tx(9)), tx(7));
});

test('an END Kafka has not acknowledged to the producer yet is not judged lost (its events may still be on their way)', () => {
  const d = new LostTransactionDetector(1000);
  assert.equal(d.observe(0, tx(5), tx(4)), null);
  assert.equal(d.observe(5000, tx(5), tx(4)), null);
  assert.equal(d.observe(6000, tx(5), null), null);
  assert.equal(d.observe(7000, tx(5), tx(5)), null, 'acknowledged now: the clock starts here');
  assert.deepEqual(d.observe(8000, tx(5), tx(5)), tx(5));
});

test('Settlement.oldestUnsettled: the END whose events are missing, then the one waiting for a lost predecessor', () => {
  const s = new Settlement();
  s.addEnd(end(1, null, { t: 1 }));
  s.addEvent({ commit: commitOf(1), table: 't', seq: 0 });
  s.addEnd(end(2, 1, { t: 2 }));
  s.addEvent({ commit: commitOf(2), table: 't', seq: 0 }); // one of its two events lost
  s.addEnd(end(3, 2, { t: 1 }));
  s.addEvent({ commit: commitOf(3), table: 't', seq: 0 });
  s.settle();
  assert.deepEqual(s.position, tx(1));
  assert.deepEqual(s.oldestUnsettled, tx(2), 'tx 2 lacks an event');
  // The re-read brings tx 2's events again (one a duplicate, counted once): everything settles.
  s.addEvent({ commit: commitOf(2), table: 't', seq: 0 });
  s.addEvent({ commit: commitOf(2), table: 't', seq: 1 });
  s.settle();
  assert.deepEqual(s.position, tx(3));
  assert.equal(s.oldestUnsettled, null);

  // An END lost with its events: the next END waits for its predecessor, and is the one reported.
  const g = new Settlement({ position: tx(1), commitTsUs: 1n });
  g.addEnd(end(3, 2, { t: 1 }));
  g.addEvent({ commit: commitOf(3), table: 't', seq: 0 });
  assert.deepEqual(g.settle().waiting, { tx: tx(3), previous: tx(2) });
  assert.deepEqual(g.oldestUnsettled, tx(3));
});

test('--role capture: a checkpoint that stays behind what Kafka acknowledged is judged stalled after the wait, not before', () => {
  const d = new LostTransactionDetector(1000);
  assert.equal(d.observeCheckpoint(0, tx(5), tx(7)), false, 'first seen: starts the clock');
  assert.equal(d.observeCheckpoint(999, tx(5), tx(7)), false, 'not yet');
  assert.equal(d.observeCheckpoint(1000, tx(5), tx(7)), true, 'waited the whole time: stalled');
  assert.equal(d.observeCheckpoint(1001, tx(5), tx(7)), false, 'reported once, then watched afresh');
  assert.equal(d.observeCheckpoint(2001, tx(5), tx(7)), true, 'still stalled after a re-read: reported again');
});

test('--role capture: a moving checkpoint, or one Kafka has not acknowledged past, is never judged stalled', () => {
  const d = new LostTransactionDetector(1000);
  assert.equal(d.observeCheckpoint(0, tx(5), tx(9)), false);
  assert.equal(d.observeCheckpoint(900, tx(6), tx(9)), false, 'the checkpoint moved: the clock restarts');
  assert.equal(d.observeCheckpoint(1800, tx(6), tx(9)), false, 'tx 6 waited 900 ms only');
  assert.equal(d.observeCheckpoint(1900, tx(9), tx(9)), false, 'caught up with Kafka: nothing waits');
  assert.equal(d.observeCheckpoint(5000, tx(9), tx(9)), false, 'still nothing past it');
  assert.equal(d.observeCheckpoint(5000, tx(9), null), false, 'Kafka acknowledged nothing yet');
  assert.equal(d.observeCheckpoint(6000, tx(9), tx(10)), false, 'a new wait starts at 6000');
  assert.equal(d.observeCheckpoint(7000, tx(9), tx(10)), true);
});

test('--role capture: no checkpoint yet while Kafka acknowledged something is a wait like any other', () => {
  const d = new LostTransactionDetector(1000);
  assert.equal(d.observeCheckpoint(0, null, null), false);
  assert.equal(d.observeCheckpoint(10, null, tx(1)), false, 'the clock starts');
  assert.equal(d.observeCheckpoint(1010, null, tx(2)), true, 'Kafka moving on does not restart it: the checkpoint did not move');
  assert.equal(d.observeCheckpoint(1020, null, tx(2)), false);
  assert.equal(d.observeCheckpoint(1500, tx(1), tx(2)), false, 'the first checkpoint: the clock restarts');
});
