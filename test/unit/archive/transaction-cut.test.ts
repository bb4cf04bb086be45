import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { TransactionRecord } from '../../../src/archive/transaction-log.js';
import { backwardSteps, committedBy, cutTransactions, nonMonotonicStretches, TransactionCutter } from '../../../src/archive/transaction-cut.js';
import { restoreCut } from '../../../src/archive/replay.js';
import type { ArchiveReader, TransactionFold } from '../../../src/archive/archive-reader.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { cutSummary, resolvePoint } from '../../../src/restore/restore.js';
import type { ArchiveIndex } from '../../../src/archive/archive-index.js';

const S = 1_000_000n;
const pos = (commit: number, seq = COMMIT_SEQ): string => Position.format(Position.of(commit.toString(16).padStart(16, '0'), seq));

/** A log: whole transactions, and split ones as pieces [seq of each piece's last event…] then the last record. */
function log(...txs: { commit: number; us: bigint; pieces?: number[]; drop?: 'last' | number }[]): TransactionRecord[] {
  const out: TransactionRecord[] = [];
  let previous: string | null = null;
  for (const t of txs) {
    const ends = [...(t.pieces ?? []).map((s) => pos(t.commit, s)), pos(t.commit)];
    ends.forEach((p, i) => {
      const r: TransactionRecord = { pos: p, previous, txId: `tx${t.commit}`, commitTsUs: Number(t.us), tables: { 'public.a': 1 } };
      previous = p;
      const dropped = t.drop === 'last' ? i === ends.length - 1 : t.drop === i;
      if (!dropped) out.push(r);
    });
  }
  return out;
}

test('latest: the last transaction whose every piece is stored', () => {
  const l = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999, 19999] }, { commit: 3, us: 3n * S });
  const r = cutTransactions(l);
  assert.equal(r.last?.txId, 'tx3');
  assert.equal(r.incomplete, null);
});

test('kill -9 inside a split transaction: its stored pieces are left out, the cut is the transaction before', () => {
  const l = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999, 19999], drop: 'last' });
  const r = cutTransactions(l);
  assert.equal(r.last?.txId, 'tx1');
  assert.equal(r.incomplete, '0000000000000002');
  // Negative control: with its last record stored, the same transaction is included.
  assert.equal(cutTransactions(log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999, 19999] })).last?.txId, 'tx2');
});

test('a missing middle piece breaks the transaction even when its last record is stored; nothing after it is included', () => {
  const l = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999, 19999], drop: 1 }, { commit: 3, us: 3n * S });
  const r = cutTransactions(l);
  assert.equal(r.last?.txId, 'tx1');
  assert.equal(r.incomplete, '0000000000000002');
});

test('pieces re-published after a restart that overlap the stored ones still make a whole transaction', () => {
  const l = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999, 19999] });
  // The second run resumed after event 4999 and cut its pieces elsewhere: 14999's previous is 4999.
  l.splice(2, 0, { pos: pos(2, 14999), previous: pos(2, 4999), txId: 'tx2', commitTsUs: 2_000_000, tables: {} });
  assert.equal(cutTransactions(l).last?.txId, 'tx2');
});

test('read a record at a time (a streamed log), the cut stops reading where nothing later can change it, with the result of the whole read', () => {
  const fed = (l: TransactionRecord[], bound = {}): { read: number; whole: ReturnType<typeof cutTransactions>; streamed: ReturnType<typeof cutTransactions> } => {
    const cut = new TransactionCutter(bound);
    let read = 0;
    for (const r of l) {
      read++;
      if (!cut.push(r)) break;
    }
    return { read, whole: cutTransactions(l, bound), streamed: cut.result() };
  };
  const l = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999] }, { commit: 3, us: 3n * S }, { commit: 4, us: 4n * S });
  // A position bound: the first record past it ends the reading (the log after it is never read).
  const byPosition = fed(l, { position: Position.of('0000000000000002') });
  assert.deepEqual([byPosition.read, byPosition.streamed.last?.txId], [4, 'tx2']);
  assert.deepEqual(byPosition.streamed, byPosition.whole);
  // A broken chain: reading ends at the piece that shows it.
  const broken = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999, 19999], drop: 1 }, { commit: 3, us: 3n * S }, { commit: 4, us: 4n * S });
  const b = fed(broken);
  assert.deepEqual([b.read, b.streamed.last?.txId, b.streamed.incomplete], [3, 'tx1', '0000000000000002']);
  assert.deepEqual(b.streamed, b.whole);
  // A time bound reads to the end (a later transaction may be stamped within: laterWithin).
  const t = fed(l, { us: 2n * S });
  assert.deepEqual([t.read, t.streamed.last?.txId, t.streamed.stoppedBy?.txId], [l.length, 'tx2', 'tx3']);
  assert.deepEqual(t.streamed, t.whole);
});

test('a position inside a transaction (a checkpoint between pieces) cuts before that transaction', () => {
  const l = log({ commit: 1, us: 1n * S }, { commit: 2, us: 2n * S, pieces: [9999] }, { commit: 3, us: 3n * S });
  assert.equal(cutTransactions(l, { position: Position.of('0000000000000002', 9999) }).last?.txId, 'tx1');
  assert.equal(cutTransactions(l, { position: Position.of('0000000000000002') }).last?.txId, 'tx2');
});

test('time, microsecond clock: at or before the moment; the first transaction after it ends the cut (stepped-back stamps after it stay out)', () => {
  const l = log({ commit: 1, us: 10n * S }, { commit: 2, us: 20n * S }, { commit: 3, us: 15n * S });
  const r = cutTransactions(l, { us: 16n * S });
  assert.equal(r.last?.txId, 'tx1');
  assert.equal(r.stoppedBy?.txId, 'tx2');
  assert.equal(r.laterWithin?.txId, 'tx3');
  assert.equal(cutTransactions(l, { us: 20n * S }).last?.txId, 'tx3');
});

/** A clock stepped forward at commit 2 (stamped 100 s), set right again from commit 3. */
const stepped = (): TransactionRecord[] =>
  log({ commit: 1, us: 10n * S }, { commit: 2, us: 100n * S }, { commit: 3, us: 20n * S }, { commit: 4, us: 30n * S }, { commit: 5, us: 110n * S });

test('a clock stepped forward: a moment inside the stepped range names the stepped transaction and the last later one within it', () => {
  const at25 = cutTransactions(stepped(), { us: 25n * S });
  assert.deepEqual([at25.last?.txId, at25.stoppedBy?.txId, at25.laterWithin?.txId], ['tx1', 'tx2', 'tx3']);
  assert.equal(cutTransactions(stepped(), { us: 35n * S }).laterWithin?.txId, 'tx4');
  // Outside the stretch: before its earliest stamp and after its latest, the cut is as before, with nothing later within.
  const at15 = cutTransactions(stepped(), { us: 15n * S });
  assert.deepEqual([at15.last?.txId, at15.stoppedBy?.txId, at15.laterWithin], ['tx1', 'tx2', null]);
  const at105 = cutTransactions(stepped(), { us: 105n * S });
  assert.deepEqual([at105.last?.txId, at105.stoppedBy?.txId, at105.laterWithin], ['tx4', 'tx5', null]);
  // Position cuts are not time cuts: nothing is judged by stamps.
  assert.equal(cutTransactions(stepped(), { position: Position.of('0000000000000003') }).laterWithin, null);
});

test('second resolution: a later transaction stamped one second earlier is within only once its whole second is', () => {
  const l = log({ commit: 1, us: 10n * S }, { commit: 2, us: 12n * S }, { commit: 3, us: 11n * S });
  assert.equal(cutTransactions(l, { us: 11n * S + 500_000n, resolutionUs: S }).laterWithin, null);
  assert.equal(cutTransactions(l, { us: 11n * S + 999_999n, resolutionUs: S }).laterWithin?.txId, 'tx3');
  // A tie (both stamped 12 s) is monotonic: no refusal at any moment.
  const tie = log({ commit: 1, us: 10n * S }, { commit: 2, us: 12n * S }, { commit: 3, us: 12n * S });
  for (const us of [11n * S, 12n * S, 12n * S + 999_999n]) assert.equal(cutTransactions(tie, { us, resolutionUs: S }).laterWithin, null);
});

test('after the transaction that stops a time cut, only whole transactions count as within; a broken one after it is not reported as the cut\'s', () => {
  const l = log({ commit: 1, us: 10n * S }, { commit: 2, us: 100n * S }, { commit: 3, us: 20n * S, pieces: [5], drop: 'last' }, { commit: 4, us: 21n * S });
  const r = cutTransactions(l, { us: 25n * S });
  assert.deepEqual([r.last?.txId, r.stoppedBy?.txId, r.laterWithin, r.incomplete], ['tx1', 'tx2', null, null]);
  // Negative control: whole, the same transaction is within.
  assert.equal(cutTransactions(log({ commit: 1, us: 10n * S }, { commit: 2, us: 100n * S }, { commit: 3, us: 20n * S, pieces: [5] }), { us: 25n * S }).laterWithin?.txId, 'tx3');
});

test('restore refuses a moment inside a non-monotonic stretch (usage, exit 2), naming both positions, their stamps and the positions to restore to', async () => {
  // The log as ArchiveReader.foldTransactions streams it: a record at a time into the fold.
  const fold = async <T>(_after: unknown, start: () => TransactionFold<T>): Promise<T> => {
    const f = start();
    for (const t of stepped()) if (!f.push(t)) break;
    return f.result();
  };
  const reader = { foldTransactions: fold } as unknown as ArchiveReader;
  const start = Position.of('0000000000000000');
  await assert.rejects(restoreCut(reader, start, { kind: 'time', us: 25n * S }), (err: unknown) => {
    assert.ok(err instanceof ChartlogError);
    assert.equal(err.code, 'usage');
    assert.match(err.message, new RegExp(`position ${pos(2).replace('.', '\\.')} is stamped 1970-01-01T00:01:40\\.000000Z.*precedes position ${pos(3).replace('.', '\\.')}, stamped 1970-01-01T00:00:20\\.000000Z`));
    assert.match(String(err.hint), new RegExp(`--to ${pos(1).replace('.', '\\.')} \\(everything before .*--to ${pos(3).replace('.', '\\.')} \\(through`));
    return true;
  });
  // Outside the stretch, and by position inside it, the cut is made as before.
  assert.equal((await restoreCut(reader, start, { kind: 'time', us: 15n * S })).last?.txId, 'tx1');
  assert.equal((await restoreCut(reader, start, { kind: 'time', us: 105n * S })).last?.txId, 'tx4');
  assert.equal((await restoreCut(reader, start, { kind: 'position', position: Position.parse(pos(3)) })).last?.txId, 'tx3');
});

test('time, second resolution: a commit stamped 10:00:00 is not within 10:00:00.5 (it may have been at .9); it is within 10:00:00.999999', () => {
  const ten = 36_000n * S;
  const l = log({ commit: 1, us: ten - S }, { commit: 2, us: ten });
  assert.equal(cutTransactions(l, { us: ten + 500_000n, resolutionUs: S }).last?.txId, 'tx1');
  assert.equal(cutTransactions(l, { us: ten + 999_999n, resolutionUs: S }).last?.txId, 'tx2');
  // Negative control: taken as microseconds, the same stamp is within 10:00:00.5.
  assert.equal(cutTransactions(l, { us: ten + 500_000n }).last?.txId, 'tx2');
  assert.equal(committedBy(ten, ten + 999_998n, S), false);
  assert.equal(committedBy(ten, ten, 1n), true);
});

test('resolvePoint: with second resolution the newest moment is no longer turned into the checkpoint position', () => {
  const index = {
    source: 'clinic',
    snapshots: [{ version: 1, source: 'clinic', id: 's', position: pos(1), commitTsUs: String(1n * S), takenAt: '', origin: 'source', tables: {} }],
    snapshotObjects: [], hours: [], openParts: [], unreadable: [],
    checkpoint: { version: 1, source: 'clinic', position: Position.of('0000000000000009'), commitTsUs: 9n * S, snapshotId: null, updatedAt: '' },
  } as unknown as ArchiveIndex;
  assert.deepEqual(resolvePoint(index, { kind: 'time', us: 9n * S }, 't', S), { kind: 'time', us: 9n * S, resolutionUs: S });
  assert.equal(resolvePoint(index, { kind: 'time', us: 9n * S }, 't').kind, 'position');
});

test('summary: a cut far before the asked time is warned about; a near one is not; an incomplete transaction is named', () => {
  const l = log({ commit: 1, us: 10n * S }, { commit: 2, us: 4_000n * S }, { commit: 3, us: 100n * S });
  const cut = { ...cutTransactions(l, { us: 200n * S }), position: Position.of('0000000000000001') };
  const far = cutSummary(cut, { kind: 'time', us: 200n * S }, 1n);
  assert.equal(far.lastTransaction?.txId, 'tx1');
  assert.match(far.warnings.join('\n'), /190 s before the time asked for: the next transaction \(position 0000000000000002\.ffffffff\) is stamped 1970-01-01T01:06:40\.000000Z/);
  const near = cutSummary({ ...cutTransactions(l, { us: 11n * S }), position: Position.of('0000000000000001') }, { kind: 'time', us: 11n * S }, 1n);
  assert.deepEqual(near.warnings, []);
  const killed = cutSummary({ ...cutTransactions(log({ commit: 1, us: S }, { commit: 2, us: 2n * S, pieces: [5], drop: 'last' })), position: Position.of('0000000000000001') }, { kind: 'latest' }, S);
  assert.match(killed.warnings.join('\n'), /commit 0000000000000002 is not whole/);
  assert.equal(killed.commitTimeResolution, 'seconds');
});

test('backward steps: each transaction stamped before the newest one before it', () => {
  const l = log({ commit: 1, us: 10n * S }, { commit: 2, us: 20n * S }, { commit: 3, us: 15n * S }, { commit: 4, us: 21n * S });
  assert.deepEqual(backwardSteps(l).map((b) => [b.position, b.commitTsUs, b.newestBeforeUs]), [[pos(3), 15n * S, 20n * S]]);
  assert.deepEqual(backwardSteps(log({ commit: 1, us: S }, { commit: 2, us: S })), []);
});

test('non-monotonic stretches: from the stepped-forward transaction to the last one stamped before it, overlapping steps merged', () => {
  const one = nonMonotonicStretches(stepped());
  assert.deepEqual(one.map((n) => [n.from.position, n.to.position, n.earliestUs, n.latestUs, n.steps]), [[pos(2), pos(4), 20n * S, 100n * S, 2]]);
  // Two separate steps, then one that reaches back over both: the last one merges only with what it overlaps.
  const two = nonMonotonicStretches(
    log({ commit: 1, us: 10n * S }, { commit: 2, us: 50n * S }, { commit: 3, us: 40n * S }, { commit: 4, us: 60n * S }, { commit: 5, us: 200n * S }, { commit: 6, us: 70n * S }, { commit: 7, us: 300n * S }),
  );
  assert.deepEqual(two.map((n) => [n.from.position, n.to.position, n.earliestUs, n.latestUs]), [
    [pos(2), pos(3), 40n * S, 50n * S],
    [pos(5), pos(6), 70n * S, 200n * S],
  ]);
  const merged = nonMonotonicStretches(log({ commit: 1, us: 50n * S }, { commit: 2, us: 40n * S }, { commit: 3, us: 45n * S }, { commit: 4, us: 30n * S }));
  assert.deepEqual(merged.map((n) => [n.from.position, n.to.position, n.earliestUs, n.latestUs, n.steps]), [[pos(1), pos(4), 30n * S, 50n * S, 3]]);
  // Negative control: ties and forward steps make no stretch.
  assert.deepEqual(nonMonotonicStretches(log({ commit: 1, us: S }, { commit: 2, us: S }, { commit: 3, us: 2n * S })), []);
});
