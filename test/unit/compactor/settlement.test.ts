import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { Settlement } from '../../../src/compactor/settlement.js';
import { decodeProgress, encodeProgress, type ProgressEvent } from '../../../src/bus/kafka-progress.js';
import type { TransactionRecord } from '../../../src/archive/transaction-log.js';

/**
 * Settlement from progress records (bus.kafka.scaleOut): the settler counts what several
 * workers vouch is durable, each through a progress record (encoded and decoded here as on the
 * wire), and moves the settled position only over transactions whose every event is vouched
 * for, in chain order, each seq once.
 */

const commitOf = (n: number) => n.toString(16).padStart(16, '0');
const txPos = (n: number) => Position.of(commitOf(n), COMMIT_SEQ);
const end = (n: number, previous: number | null, tables: Record<string, number>, pos: Position = txPos(n), prev: Position | null = previous === null ? null : txPos(previous)): TransactionRecord => ({
  pos: Position.format(pos),
  previous: prev === null ? null : Position.format(prev),
  txId: String(n),
  commitTsUs: 1_000_000 + n,
  tables,
});
const ev = (n: number, table: string, seq: number): ProgressEvent => ({ commit: commitOf(n), table, seq });

/** What a settler does with one worker's progress record: decode it from the wire, count its events. */
function vouch(s: Settlement, member: string, events: ProgressEvent[]): void {
  for (const value of encodeProgress(member, events)) for (const e of decodeProgress(value, 'test').events) s.addEvent(e);
}

test('a transaction split between two workers settles only once both vouched for their share', () => {
  const s = new Settlement();
  s.addEnd(end(1, null, { 'public.patients': 3, 'public.visits': 2 }));
  vouch(s, 'a', [ev(1, 'public.patients', 0), ev(1, 'public.patients', 2), ev(1, 'public.visits', 1)]);
  assert.deepEqual(s.settle(), { moved: false, waiting: null }, 'worker B has not vouched for its share yet');
  assert.equal(s.position, null);
  vouch(s, 'b', [ev(1, 'public.patients', 4), ev(1, 'public.visits', 3)]);
  assert.equal(s.settle().moved, true);
  assert.ok(Position.equals(s.position!, txPos(1)));
  assert.equal(s.commitTsUs, 1_000_001n);
  assert.ok(s.idle, 'nothing left to count');
});

test('events vouched twice (a partition re-read by its new owner after a rebalance) count once (negative control: a plain counter would settle)', () => {
  const s = new Settlement();
  s.addEnd(end(1, null, { 'public.patients': 3 }));
  const share = [ev(1, 'public.patients', 0), ev(1, 'public.patients', 1)];
  vouch(s, 'old-owner', share);
  vouch(s, 'new-owner', share);
  // 4 vouchers for an END counting 3: a count of records would call it complete; seq 2 is missing.
  assert.equal(s.settle().moved, false);
  assert.equal(s.position, null);
  vouch(s, 'new-owner', [ev(1, 'public.patients', 2)]);
  assert.equal(s.settle().moved, true);
  assert.ok(Position.equals(s.position!, txPos(1)));
});

test('a complete transaction waits for its predecessor (the END chain), then both settle in order', () => {
  const s = new Settlement({ position: txPos(1), commitTsUs: 1_000_001n });
  s.addEnd(end(2, 1, { 'public.patients': 1 }));
  s.addEnd(end(3, 2, { 'public.patients': 1 }));
  vouch(s, 'b', [ev(3, 'public.patients', 0)]);
  assert.deepEqual(s.settle(), { moved: false, waiting: null }, 'T2 is not complete: nothing moves, T3 waits behind it');
  vouch(s, 'a', [ev(2, 'public.patients', 0)]);
  assert.equal(s.settle().moved, true);
  assert.ok(Position.equals(s.position!, txPos(3)));

  // An END whose predecessor END never arrived (lost from Kafka): complete, but it waits.
  const gap = new Settlement({ position: txPos(1), commitTsUs: 0n });
  gap.addEnd(end(5, 4, { 'public.patients': 1 }));
  vouch(gap, 'a', [ev(5, 'public.patients', 0)]);
  const r = gap.settle();
  assert.equal(r.moved, false);
  assert.ok(r.waiting && Position.equals(r.waiting.previous, txPos(4)));
});

test('pieces of a large transaction settle one by one from the events vouched in their seq range', () => {
  const s = new Settlement({ position: txPos(1), commitTsUs: 0n });
  const c = commitOf(2);
  const p1 = Position.of(c, 2);
  s.addEnd(end(2, 1, { 'public.visits': 3 }, p1, txPos(1)));
  s.addEnd(end(2, null, { 'public.visits': 2 }, txPos(2), p1));
  vouch(s, 'a', [0, 1, 2].map((q) => ev(2, 'public.visits', q)));
  assert.equal(s.settle().moved, true);
  assert.ok(Position.equals(s.position!, p1), 'the first piece settled alone');
  vouch(s, 'b', [ev(2, 'public.visits', 3)]);
  assert.equal(s.settle().moved, false, 'one of the second piece\'s two events');
  vouch(s, 'b', [ev(2, 'public.visits', 4)]);
  assert.equal(s.settle().moved, true);
  assert.ok(Position.equals(s.position!, txPos(2)));
});

test('a worker learning the checkpoint (advanceTo) forgets what it covers; vouchers at or below it are ignored', () => {
  const s = new Settlement();
  s.addEnd(end(1, null, { 'public.patients': 1 }));
  vouch(s, 'a', [ev(1, 'public.patients', 0), ev(2, 'public.patients', 0)]);
  s.advanceTo(txPos(1), 1_000_001n);
  assert.ok(s.isSettled(Position.of(commitOf(1), 0)));
  assert.ok(!s.isSettled(Position.of(commitOf(2), 0)));
  assert.equal(s.idle, false, 'T2\'s event still counts');
  s.advanceTo(txPos(0), 0n);
  assert.ok(Position.equals(s.position!, txPos(1)), 'never backwards');
  s.addEnd(end(1, null, { 'public.patients': 1 }));
  vouch(s, 'a', [ev(1, 'public.patients', 0)]);
  assert.equal(s.settle().moved, false, 'a settled END and its events change nothing');
});

test('progress records: seqs as ranges, duplicates collapse, large sets split under the size limit, bad records refused naming where', () => {
  const events: ProgressEvent[] = [];
  for (let n = 1; n <= 400; n++) for (const q of [0, 1, 2, 5, 7, 8]) events.push(ev(n, 'public.patients', q));
  events.push(ev(1, 'public.patients', 1)); // a duplicate
  const records = encodeProgress('vm/1', events, 4096);
  assert.ok(records.length > 1, `split into ${records.length} records`);
  for (const r of records) assert.ok(r.length < 4096 + 512, `record of ${r.length} bytes`);
  const back = records.flatMap((r) => decodeProgress(r, 'p/0@0').events);
  const key = (e: ProgressEvent) => `${e.commit}/${e.table}/${e.seq}`;
  assert.deepEqual(new Set(back.map(key)), new Set(events.map(key)));
  assert.equal(back.length, 400 * 6, 'the duplicate collapsed');
  assert.deepEqual(JSON.parse(encodeProgress('vm/1', [ev(1, 't.a', 0), ev(1, 't.a', 1), ev(1, 't.a', 2), ev(1, 't.a', 5)])[0]!.toString()).events, [[commitOf(1), 't.a', [0, 2, 5, 5]]]);
  assert.deepEqual(encodeProgress('vm/1', []), [], 'no events, no record');
  assert.equal(decodeProgress(encodeProgress('vm/7', [ev(3, 't.a', 1)])[0]!, 'x').member, 'vm/7');
  assert.throws(() => decodeProgress(Buffer.from('{"v":2,"member":"m","events":[]}'), 'chartlog.clinic.__progress/0@12'), (err: Error & { code?: string }) => err.code === 'decode' && /__progress\/0@12/.test(err.message) && /version 2/.test(err.message));
  assert.throws(() => decodeProgress(Buffer.from('not json'), 'p/1@3'), /p\/1@3: a progress record that is not JSON/);
  assert.throws(() => decodeProgress(Buffer.from(`{"v":1,"member":"m","events":[["${commitOf(1)}","t.a",[3,1]]]}`), 'p/1@4'), /malformed seq range/);
});
