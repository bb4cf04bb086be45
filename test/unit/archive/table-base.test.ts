import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import type { ArchiveIndex } from '../../../src/archive/archive-index.js';
import { chooseTableBase } from '../../../src/archive/replay.js';
import type { SnapshotManifest } from '../../../src/archive/snapshot-manifest.js';

const snap = (position: string, tables: string[], scoped = false): SnapshotManifest => ({
  version: 1,
  source: 'clinic',
  id: scoped ? `${position}-0a0b0c0d` : position,
  position,
  commitTsUs: '1',
  takenAt: '2026-11-24T06:00:00.000Z',
  origin: scoped ? 'resync' : 'source',
  ...(scoped ? { scope: 'tables' as const } : {}),
  tables: Object.fromEntries(tables.map((t) => [t, { fingerprint: '0000000000000001', rows: 0, parts: [] }])),
});

const full = snap('0000000000000100.ffffffff', ['public.a', 'public.b']);
const resyncA = snap('0000000000000500.ffffffff', ['public.a'], true);
const laterFull = snap('0000000000000700.ffffffff', ['public.a', 'public.b']);
const index: ArchiveIndex = {
  source: 'clinic',
  snapshots: [full, laterFull],
  snapshotObjects: [],
  tableSnapshots: [resyncA],
  tableSnapshotObjects: [],
  hours: [],
  openParts: [],
  checkpoint: { version: 1, source: 'clinic', position: Position.of('0000000000000900'), commitTsUs: 9_000_000n, snapshotId: null, updatedAt: '' },
  unreadable: [],
};
const at = (p: string) => Position.of(p);

test('a table resynced at or before the cut starts from its table base; other tables keep the source base', () => {
  assert.equal(chooseTableBase(index, 'public.a', full, at('0000000000000600')).id, resyncA.id);
  assert.equal(chooseTableBase(index, 'public.a', full, at('0000000000000500')).id, resyncA.id, 'a cut exactly at its position includes it');
  assert.equal(chooseTableBase(index, 'public.b', full, at('0000000000000600')).id, full.id);
});

test('moments before the resync restore from the earlier base', () => {
  assert.equal(chooseTableBase(index, 'public.a', full, at('00000000000004ff')).id, full.id);
});

test('a newer source base wins over an older table base', () => {
  assert.equal(chooseTableBase(index, 'public.a', laterFull, at('0000000000000800')).id, laterFull.id);
});

test('without a cut, only a table base the checkpoint reaches is used', () => {
  assert.equal(chooseTableBase(index, 'public.a', full, null).id, resyncA.id);
  const ahead = { ...index, checkpoint: { ...index.checkpoint!, position: Position.of('0000000000000400') } };
  assert.equal(chooseTableBase(ahead, 'public.a', full, null).id, full.id);
});

test('an index written before table bases (no tableSnapshots) restores from the source base', () => {
  const { tableSnapshots: _t, tableSnapshotObjects: _o, ...older } = index;
  assert.equal(chooseTableBase(older, 'public.a', full, at('0000000000000600')).id, full.id);
});
