import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import type { TransactionRecord } from '../../../src/archive/transaction-log.js';
import { settledTransactions, type TableRecord } from '../../../src/replicate/settled-transactions.js';

/** Which transactions a replica may apply: whole, durable, chained, every event present. */

const commit = (n: number) => n.toString(16).padStart(16, '0');
const pos = (n: number, seq?: number) => Position.of(commit(n), seq);
const fmt = (n: number, seq?: number) => Position.format(pos(n, seq));
const tx = (n: number, previous: string | null, tables: Record<string, number>, seq?: number): TransactionRecord => ({ pos: fmt(n, seq), previous, txId: null, commitTsUs: n * 1000, tables });
const rec = (n: number, seq: number, table = 'public.t'): TableRecord => ({ table, position: pos(n, seq) });
const all = () => true;

test('transactions up to the checkpoint are settled, in order, with their records; later ones are in flight', () => {
  const log = [tx(2, fmt(1), { 'public.t': 2 }), tx(3, fmt(2), { 'public.t': 1 }), tx(4, fmt(3), { 'public.t': 1 })];
  const records = [rec(2, 0), rec(2, 1), rec(3, 0), rec(4, 0)];
  const plan = settledTransactions({ after: pos(1), durable: pos(3), log, records, inScope: all });
  assert.deepEqual(plan.transactions.map((t) => Position.format(t.position)), [fmt(2), fmt(3)]);
  assert.equal(plan.transactions[0]!.records.length, 2);
  assert.equal(plan.inFlight, 1);
  assert.equal(plan.oldestInFlightUs, 4000n);
  assert.equal(plan.transactions[1]!.commitTsUs, 3000n);
});

test('a large transaction is settled only with its last piece; a checkpoint naming a piece settles nothing of it', () => {
  const log = [tx(2, fmt(1), { 'public.t': 1 }, 0), tx(2, fmt(2, 0), { 'public.t': 1 })];
  const records = [rec(2, 0), rec(2, 1)];
  assert.equal(settledTransactions({ after: pos(1), durable: pos(2, 0), log: log.slice(0, 1), records: records.slice(0, 1), inScope: all }).transactions.length, 0);
  const whole = settledTransactions({ after: pos(1), durable: pos(2), log, records, inScope: all });
  assert.equal(whole.transactions.length, 1);
  assert.equal(whole.transactions[0]!.records.length, 2, 'both pieces, one target transaction');
});

test('a transaction touching no table in scope still moves the position (empty), and out-of-scope counts are not checked', () => {
  const log = [tx(2, fmt(1), { 'public.other': 3 })];
  const plan = settledTransactions({ after: pos(1), durable: pos(2), log, records: [], inScope: (t) => t === 'public.t' });
  assert.equal(plan.transactions.length, 1);
  assert.equal(plan.transactions[0]!.records.length, 0);
});

test('a gap in the chain stops the replica (negative control: the intact chain passes)', () => {
  const intact = [tx(2, fmt(1), {}), tx(3, fmt(2), {})];
  assert.equal(settledTransactions({ after: pos(1), durable: pos(3), log: intact, records: [], inScope: all }).transactions.length, 2);
  const holed = [tx(2, fmt(1), {}), tx(4, fmt(3), {}), tx(5, fmt(4), {})];
  // The whole transaction before the hole is applied; the plan then stops, nothing after it.
  const plan = settledTransactions({ after: pos(1), durable: pos(5), log: holed, records: [], inScope: all });
  assert.deepEqual(plan.transactions.map((t) => Position.format(t.position)), [fmt(2)]);
  assert.match(plan.stop?.message ?? '', /gap before transaction .*04\.ffffffff: it follows .*03\.ffffffff, but the replica's previous transaction is .*02\.ffffffff/);
  assert.equal(plan.inFlight, 2);
  // A hole right after the replica's position: nothing to apply, so it is thrown.
  assert.throws(() => settledTransactions({ after: pos(2), durable: pos(5), log: holed.slice(1), records: [], inScope: all }), /gap before transaction .*04\.ffffffff/);
  // The first transaction after the replica must follow it, too.
  assert.throws(() => settledTransactions({ after: pos(1), durable: pos(3), log: [tx(3, fmt(2), {})], records: [], inScope: all }), /gap/);
});

test('after a load to a snapshot position, the first transaction may name one before it', () => {
  const plan = settledTransactions({ after: pos(5, 7), durable: pos(6), log: [tx(6, fmt(4), {})], records: [], inScope: all });
  assert.equal(plan.transactions.length, 1);
});

test('a settled transaction missing an event is refused (negative control: whole passes)', () => {
  const log = [tx(2, fmt(1), { 'public.t': 2 })];
  assert.equal(settledTransactions({ after: pos(1), durable: pos(2), log, records: [rec(2, 0), rec(2, 1)], inScope: all }).transactions.length, 1);
  assert.throws(() => settledTransactions({ after: pos(1), durable: pos(2), log, records: [rec(2, 0)], inScope: all }), /2 events of public\.t logged, 1 stored/);
});

test('no checkpoint: nothing is settled', () => {
  const plan = settledTransactions({ after: pos(1), durable: null, log: [tx(2, fmt(1), {})], records: [], inScope: all });
  assert.equal(plan.transactions.length, 0);
  assert.equal(plan.inFlight, 1);
});
