import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { HourCloser } from '../../../src/compactor/hour-closer.js';
import { PartWriter } from '../../../src/compactor/part-writer.js';
import { transactionRecordOf, type TransactionRecord } from '../../../src/archive/transaction-log.js';
import { ArchiveReader } from '../../../src/archive/archive-reader.js';
import { readArchiveIndex, tablesOf } from '../../../src/archive/archive-index.js';
import { writeCheckpoint } from '../../../src/archive/checkpoint.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { batch, envelopes, HOUR_US, T0 } from '../../support/fake-envelopes.js';

const FP = '00000000000000a1';
// More tables than one pass of verify counts (8): the counts run in two passes over the log.
const TABLES = Array.from({ length: 11 }, (_, i) => `public.t${String(i).padStart(2, '0')}`);
const commitOf = (n: number) => n.toString(16).padStart(16, '0');

/**
 * 120 transactions (commit 2n for the n-th) over two hours (the first closed into segments, the second left in flush
 * parts), each touching a few of 11 tables, some twice, with planted count defects:
 *   - tx 7: one of its three events of t03 lost;
 *   - tx 30: an event of t09 stored that its transaction does not log (logged 0, stored 1);
 *   - tx 45: logged in two pieces (a large transaction), counts summed — whole, no finding;
 *   - commit 177 (between tx 88 and 89) and 0x200 (after the last, past the checkpoint): events
 *     of t01 and t10 no transaction logs; commit 0 (before the log starts): not a finding;
 *   - tx 100: every event of t05 lost.
 */
async function plantedArchive(): Promise<MemoryObjectStore> {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  const hourOfN = (n: number) => (n <= 60 ? '2026-11-24T05' : '2026-11-24T06');
  const tsOf = (n: number) => T0 + (n <= 60 ? 0n : HOUR_US) + BigInt(n);
  let prev: Position | null = null;
  const stray = (commit: number, table: string) => {
    const b = batch(commit, tsOf(commit >> 1), [[table, FP]], null);
    for (const m of b.messages) w.addMessage(hourOfN(commit >> 1), m);
  };
  stray(0, 'public.t02');
  for (let n = 1; n <= 120; n++) {
    const tables: [string, string][] = [];
    for (let k = 0; k < 1 + (n % 4); k++) tables.push([TABLES[(n * 3 + k * 5) % TABLES.length]!, FP]);
    if (n % 7 === 0) tables.push([TABLES[3]!, FP], [TABLES[3]!, FP]); // twice in one transaction
    const b = batch(2 * n, tsOf(n), tables, prev);
    const record = transactionRecordOf(b);
    let messages = b.messages;
    if (n === 7) messages = messages.filter((m, i) => !(m.table === TABLES[3] && i === messages.findIndex((x) => x.table === TABLES[3])));
    if (n === 100) {
      messages = messages.filter((m) => m.table !== TABLES[5]);
      record.tables[TABLES[5]!] = 3;
    }
    if (n === 30) messages = [...messages, ...batch(2 * n, tsOf(n), [...tables, [TABLES[9]!, FP]], null).messages.slice(tables.length)];
    for (const m of messages) w.addMessage(hourOfN(n), m);
    if (n === 45) {
      // Two pieces: the first at its last event's position, the second names it.
      const cut = Position.of(commitOf(2 * n), 0);
      const [first, ...rest] = Object.keys(record.tables);
      w.addTransaction(hourOfN(n), { ...record, pos: Position.format(cut), tables: { [first!]: record.tables[first!]! } } as TransactionRecord);
      w.addTransaction(hourOfN(n), { ...record, previous: Position.format(cut), tables: Object.fromEntries(rest.map((t) => [t, record.tables[t]!])) });
    } else w.addTransaction(hourOfN(n), record);
    if (n === 88) stray(2 * n + 1, 'public.t01');
    prev = b.position;
    if (n % 25 === 0) await w.flushRuns();
  }
  stray(0x200, 'public.t10');
  await w.flushRuns();
  await writeCheckpoint(store, { source: 'clinic', position: Position.of(commitOf(240), COMMIT_SEQ), commitTsUs: tsOf(120), snapshotId: null });
  await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  await store.put(`clinic/schemas/${FP}.json`, Buffer.from(await envelopes.schemaJson('clinic', FP)));
  return store;
}

/** verify's counts as they were computed before they streamed: the whole log and every table's records in memory. */
async function wholeCounts(store: MemoryObjectStore): Promise<{ problems: string[]; pending: string[] }> {
  const index = await readArchiveIndex(store, 'clinic');
  const reader = new ArchiveReader(store, index, envelopes);
  const txs = await reader.transactions(null);
  const expected = new Map<string, Map<string, number>>();
  for (const tx of txs) {
    const commit = Position.parse(tx.pos).commit;
    const counts = expected.get(commit) ?? new Map<string, number>();
    for (const [table, n] of Object.entries(tx.tables)) counts.set(table, (counts.get(table) ?? 0) + Number(n));
    expected.set(commit, counts);
  }
  const first = Position.parse(txs[0]!.pos).commit;
  const settled = index.checkpoint!.position.commit;
  const out = { problems: [] as string[], pending: [] as string[] };
  const report = (commit: string, message: string) => (commit > settled ? out.pending : out.problems).push(message);
  for (const table of tablesOf(index)) {
    const actual = new Map<string, number>();
    for (const r of await reader.tableRecords(table, null)) actual.set(r.position.commit, (actual.get(r.position.commit) ?? 0) + 1);
    for (const [commit, counts] of expected) {
      const want = counts.get(table) ?? 0;
      const got = actual.get(commit) ?? 0;
      if (want !== got) report(commit, `transaction ${commit}: ${want} events of ${table} logged, ${got} stored`);
    }
    for (const [commit, got] of actual) if (!expected.has(commit) && commit >= first) report(commit, `${got} events of ${table} at ${commit} belong to no logged transaction`);
  }
  return out;
}

test('verify streams its counts and finds what counting everything in memory finds, in the same order', async () => {
  const store = await plantedArchive();
  const index = await readArchiveIndex(store, 'clinic');
  assert.ok(index.hours.length === 1 && index.openParts.length > 0, 'one closed hour (segments), one open (flush parts)');
  const report = await verifyArchive(store, index, envelopes);
  const planted = [
    'transaction 000000000000000e: 3 events of public.t03 logged, 2 stored',
    'transaction 000000000000003c: 0 events of public.t09 logged, 1 stored',
    '1 events of public.t01 at 00000000000000b1 belong to no logged transaction',
    'transaction 00000000000000c8: 3 events of public.t05 logged, 0 stored',
  ];
  assert.deepEqual(report.problems.map((p) => p.kind), planted.map(() => 'count'));
  assert.deepEqual([...report.problems.map((p) => p.message)].sort(), [...planted].sort());
  assert.deepEqual(report.pending, [{ transaction: '0000000000000200', message: '1 events of public.t10 at 0000000000000200 belong to no logged transaction' }]);
  assert.equal(report.checked.transactions, 121, '120 transactions, one of them in two pieces');

  const whole = await wholeCounts(store);
  assert.deepEqual(report.problems.map((p) => p.message), whole.problems);
  assert.deepEqual(report.pending.map((p) => p.message), whole.pending);
});
