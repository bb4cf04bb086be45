import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { TransactionRecord } from '../../../src/archive/transaction-log.js';
import { backwardSteps, committedBy, cutTransactions } from '../../../src/archive/transaction-cut.js';
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
  assert.equal(cutTransactions(l, { us: 20n * S }).last?.txId, 'tx3');
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
