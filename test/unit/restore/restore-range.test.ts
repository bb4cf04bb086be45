import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { ArchiveIndex } from '../../../src/archive/archive-index.js';
import { renderRestoreSummary, resolvePoint, resolveTables } from '../../../src/restore/restore.js';

const snapshot = (position: string, commitTsUs: string, tables: string[]) => ({
  version: 1 as const,
  source: 'clinic',
  id: position,
  position,
  commitTsUs,
  takenAt: '2026-11-24T06:00:00.000Z',
  origin: 'source' as const,
  tables: Object.fromEntries(tables.map((t) => [t, { fingerprint: '0000000000000001', rows: 0, parts: [] }])),
});

const index: ArchiveIndex = {
  source: 'clinic',
  snapshots: [snapshot('0000000000000100.ffffffff', '1000000', ['public.a', 'public.b'])],
  snapshotObjects: [],
  hours: [],
  openParts: [],
  checkpoint: { version: 1, source: 'clinic', position: Position.of('0000000000000900'), commitTsUs: 9_000_000n, snapshotId: null, updatedAt: '' },
  unreadable: [],
};

const usage = (re: RegExp) => (err: unknown) => err instanceof ChartlogError && err.exitCode === 2 && re.test(err.message);

test('latest and the newest moment are cut at the checkpoint; times inside the range pass through', () => {
  assert.deepEqual(resolvePoint(index, { kind: 'latest' }, 'latest'), { kind: 'position', position: Position.of('0000000000000900') });
  assert.deepEqual(resolvePoint(index, { kind: 'time', us: 9_000_000n }, 't'), { kind: 'position', position: Position.of('0000000000000900') });
  assert.deepEqual(resolvePoint(index, { kind: 'time', us: 1_000_000n }, 't'), { kind: 'time', us: 1_000_000n });
  const p = { kind: 'position' as const, position: Position.of('0000000000000500', 3) };
  assert.deepEqual(resolvePoint(index, p, 'p'), p);
});

test('moments outside the range are refused naming both bounds', () => {
  const both = /1970-01-01T00:00:01\.000000Z \(position 0000000000000100\.ffffffff\) → 1970-01-01T00:00:09\.000000Z \(position 0000000000000900\.ffffffff\)/;
  assert.throws(() => resolvePoint(index, { kind: 'time', us: 999_999n }, 'early'), usage(both));
  assert.throws(() => resolvePoint(index, { kind: 'time', us: 9_000_001n }, 'late'), usage(both));
  assert.throws(() => resolvePoint(index, { kind: 'position', position: Position.of('0000000000000901') }, 'late'), usage(both));
  assert.throws(() => resolvePoint(index, { kind: 'position', position: Position.of('0000000000000099') }, 'early'), usage(both));
  assert.throws(() => resolvePoint(index, { kind: 'position', position: Position.of('00000001-0000000000000001') }, 'x'), usage(/not a position of source clinic/));
  assert.throws(() => resolvePoint({ ...index, snapshots: [] }, { kind: 'latest' }, 'latest'), usage(/nothing restorable yet \(no base snapshot\)/));
  assert.throws(() => resolvePoint({ ...index, checkpoint: null }, { kind: 'latest' }, 'latest'), usage(/nothing restorable yet/));
});

test('tables: all by default, unknown ones refused with the list of known ones', () => {
  assert.deepEqual(resolveTables(index, undefined), ['public.a', 'public.b']);
  assert.deepEqual(resolveTables(index, ['public.b', 'public.b']), ['public.b']);
  assert.throws(() => resolveTables(index, ['public.a', 'public.zz']), (err: unknown) => usage(/has no table public\.zz/)(err) && (err as ChartlogError).hint === 'its archive holds: public.a, public.b');
});

test('the summary names the exact position, commit time, rows per table and what happened to PHI', () => {
  const text = renderRestoreSummary({
    source: 'clinic', requested: 'latest', position: '0000000000000900.ffffffff', commitTime: '1970-01-01T00:00:09.000000Z', snapshot: 's', changes: 3, rows: 12,
    tables: [{ table: 'public.a', rows: 10, phiColumns: ['ssn'], sealed: true }, { table: 'public.b', rows: 2, phiColumns: [], sealed: false }],
    absent: ['public.c'], target: 'postgres://h/db', audit: null, seconds: { replay: 0.5, write: 0.25 }, spilled: [],
    lastTransaction: { position: '0000000000000900.ffffffff', txId: '771', commitTime: '1970-01-01T00:00:09.000000Z' }, commitTimeResolution: 'microseconds', warnings: [],
  });
  assert.match(text, /last whole transaction: 771 at position 0000000000000900\.ffffffff \(commit 1970-01-01T00:00:09\.000000Z\)/);
  assert.doesNotMatch(text, /whole seconds/);
  assert.match(text, /^restored source clinic to position 0000000000000900\.ffffffff \(commit 1970-01-01T00:00:09\.000000Z\), asked for latest$/m);
  assert.match(text, /2 tables, 12 rows into postgres:\/\/h\/db/);
  assert.match(text, /public\.a +10 rows {2}PHI kept sealed: ssn/);
  assert.match(text, /public\.c: did not exist yet at that moment/);
});
