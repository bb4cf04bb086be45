import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import type { SnapshotManifest } from '../../../src/archive/snapshot-manifest.js';
import type { UnprovenWindow } from '../../../src/archive/unproven-tables.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { UnknownOlderRowsError, olderRowsValue } from '../../../src/replicate/schema-evolution.js';
import { BASE_WAIT_MS, LOAD_MARK, baseWaitMs, holdingWindow, inBase, markOf, pendingBases, tableAwaitingBase } from '../../../src/replicate/table-resyncs.js';

const p = (n: number): Position => Position.of(n.toString(16).padStart(16, '0'), 0xffffffff);
const base = (n: number, tables: string[]): SnapshotManifest => ({
  version: 1, source: 's', id: `${Position.format(p(n))}-00000000`, position: Position.format(p(n)), commitTsUs: '0', takenAt: '', origin: 'resync', scope: 'tables',
  tables: Object.fromEntries(tables.map((t) => [t, { fingerprint: '00', rows: 0, parts: [] }])),
});
const all = () => true;

test('pendingBases: the newest base per table newer than its mark (or the load), in position order', () => {
  const bases = [base(5, ['a']), base(10, ['a', 'b']), base(20, ['b']), base(30, ['c'])];
  const marks = new Map([[LOAD_MARK, p(8)], ['b', p(20)]]);
  assert.deepEqual(pendingBases(bases, marks, all).map((x) => [x.table, x.base.position]), [['a', Position.format(p(10))], ['c', Position.format(p(30))]]);
  // Every base taken: nothing pending (negative control of the above).
  assert.deepEqual(pendingBases(bases, new Map([[LOAD_MARK, p(30)]]), all), []);
  assert.deepEqual(pendingBases(bases, new Map(), (t) => t === 'b').map((x) => x.table), ['b']);
});

test('inBase and markOf: a change at or before the newer of the table mark and the load mark is in the base', () => {
  const marks = new Map([[LOAD_MARK, p(8)], ['a', p(20)]]);
  assert.equal(Position.format(markOf(marks, 'a')!), Position.format(p(20)));
  assert.equal(Position.format(markOf(marks, 'z')!), Position.format(p(8)));
  assert.equal(inBase(marks, 'a', Position.of(p(20).commit, 3)), true);
  assert.equal(inBase(marks, 'a', p(21)), false);
  assert.equal(inBase(new Map(), 'a', p(1)), false);
});

test('holdingWindow: the open window in scope that starts first; closed ones never hold', () => {
  const w = (table: string, from: number, closed: boolean): UnprovenWindow => ({ table, from: p(from), fromCommitTsUs: 0n, seenAt: p(from), reason: 'r', closedBy: closed ? { id: 'x', position: p(from + 1), commitTsUs: 0n } : null });
  assert.equal(holdingWindow([w('a', 9, false), w('b', 4, true), w('c', 6, false)], all)?.table, 'c');
  assert.equal(holdingWindow([w('a', 9, false), w('c', 6, false)], (t) => t === 'a')?.table, 'a');
  assert.equal(holdingWindow([w('b', 4, true)], all), null);
});

test('tableAwaitingBase: a column whose older rows were not captured waits for its table; a change meeting no row waits only in a table started while streaming; anything else stops', () => {
  let refusal: unknown;
  try {
    olderRowsValue('public.w', { name: 'g', type: { kind: 'float64' }, nullable: true, missing: { unknown: 'a volatile default' } } as never);
  } catch (err) {
    refusal = err;
  }
  assert.ok(refusal instanceof UnknownOlderRowsError, 'olderRowsValue refuses a column with unknown older values');
  assert.equal(tableAwaitingBase(refusal, null), 'public.w');
  // A known constant: no refusal at all.
  assert.equal(olderRowsValue('public.w', { name: 'g', type: { kind: 'int32' }, nullable: false, missing: { value: 7 } } as never), 7);

  const noRow = new ChartlogError('integrity', 'public.r2: the change at 00000000000000a0.00000001 does not meet exactly one row of the replica: …');
  assert.equal(tableAwaitingBase(noRow, { tableStarts: [{ table: 'public.r2' } as never] }), 'public.r2');
  assert.equal(tableAwaitingBase(noRow, { tableStarts: [] }), null, 'a table the archive saw from the start: the replica diverged, stop');
  assert.equal(tableAwaitingBase(new ChartlogError('integrity', 'the same words in another error: public.w.g: the rows written before this column was added read values chartlog could not capture'), null), null, 'only the refusal itself, not its words');
  assert.equal(tableAwaitingBase(new ChartlogError('storage', 'public.r2: the change at x does not meet exactly one row'), { tableStarts: [{ table: 'public.r2' } as never] }), null);
});

test('baseWaitMs: at least two catalog readings of a PostgreSQL source for an uncaptured column, else a minute', () => {
  const err = new UnknownOlderRowsError('public.w', 'g', 'a volatile default');
  const other = new ChartlogError('integrity', 'x');
  assert.equal(baseWaitMs({ type: 'postgres', postgres: { catalogCheckIntervalMs: 10_000 } } as never, err), BASE_WAIT_MS);
  assert.equal(baseWaitMs({ type: 'postgres', postgres: { catalogCheckIntervalMs: 120_000 } } as never, err), 270_000);
  assert.equal(baseWaitMs({ type: 'postgres', postgres: { catalogCheckIntervalMs: 120_000 } } as never, other), BASE_WAIT_MS);
  assert.equal(baseWaitMs({ type: 'mysql', postgres: { catalogCheckIntervalMs: 120_000 } } as never, err), BASE_WAIT_MS);
});
