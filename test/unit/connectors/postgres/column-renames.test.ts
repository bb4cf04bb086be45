import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renamedPrevious, versionBeforeStop, withRenames } from '../../../../connectors/postgres/column-renames.js';
import type { ColumnSchema, TableSchema } from '../../../../src/core/table-schema.js';

const col = (name: string, extra: Partial<ColumnSchema> = {}): ColumnSchema => ({ name, sourceType: 'text', type: { kind: 'string' }, nullable: true, ...extra });
const v = (...columns: ColumnSchema[]): TableSchema => ({ schema: 'public', table: 't', primaryKey: ['id'], columns });
const nums = (o: Record<string, number>) => new Map(Object.entries(o));

test('a new name at the attnum of a name the message no longer has is a rename; the column keeps its missing value', () => {
  const prev = v(col('id'), col('note', { missing: { value: 'x' } }));
  const r = renamedPrevious(prev, ['id', 'memo'], nums({ id: 1, note: 2 }), nums({ id: 1, memo: 2 }));
  assert.deepEqual(r.columns.map((c) => [c.name, c.renamedFrom, c.missing]), [['id', undefined, undefined], ['memo', ['note'], { value: 'x' }]]);
  // Renamed again: the earlier names follow, most recent first.
  const again = renamedPrevious(r, ['id', 'text1'], nums({ id: 1, memo: 2, note: 2 }), nums({ id: 1, text1: 2 }));
  assert.deepEqual(again.columns[1]!.renamedFrom, ['memo', 'note']);
  // The key follows a renamed key column.
  assert.deepEqual(renamedPrevious(prev, ['pid', 'note'], nums({ id: 1, note: 2 }), nums({ pid: 1, note: 2 })).primaryKey, ['pid']);
});

test('drop + add is not a rename (another attnum); nothing renamed returns the version itself', () => {
  const prev = v(col('id'), col('note'));
  const r = renamedPrevious(prev, ['id', 'memo'], nums({ id: 1, note: 2 }), nums({ id: 1, memo: 3 }));
  assert.equal(r, prev);
  assert.equal(renamedPrevious(prev, ['id', 'note'], nums({ id: 1, note: 2 }), nums({ id: 1, note: 2 })), prev);
  // The catalog ahead of the message (renamed after it): the old name has no attnum now; no guess.
  assert.equal(renamedPrevious(prev, ['id', 'note'], nums({ id: 1, note: 2 }), nums({ id: 1, memo: 2 })), prev);
});

test('withRenames carries renamedFrom onto the described version (sticky across later versions)', () => {
  const prior = v(col('id'), col('memo', { renamedFrom: ['note'] }));
  const described = v(col('id'), col('memo'), col('extra'));
  assert.deepEqual(withRenames(described, prior).columns.map((c) => c.renamedFrom), [undefined, ['note'], undefined]);
  assert.equal(withRenames(described, v(col('id'))), described);
});

test('versionBeforeStop: the catalog at start read back to the version the archive last had (changes made while stopped)', () => {
  const now = v(col('id'), col('memo'), col('flag'), col('note'));
  // Saved: id 1, note 2 (renamed to memo since), extra 3 (dropped since), note again at 5 now; flag 4 added since.
  const r = versionBeforeStop(now, nums({ id: 1, note: 2, extra: 3 }), nums({ id: 1, memo: 2, flag: 4, note: 5 }));
  assert.deepEqual(r.previous.columns.map((c) => c.name), ['id', 'note'], 'memo under its saved name; flag and the new note left out');
  assert.deepEqual(r.replaced, ['note'], 'note has another attnum: dropped and added again');
  assert.deepEqual(r.previous.primaryKey, ['id']);
  // (A name taken again is not followed as a rename: `replaced` re-reads the table.) Without it,
  // the first relation message compared with the previous version shows the rename as the running stream does.
  const renameOnly = versionBeforeStop(v(col('id'), col('memo'), col('flag')), nums({ id: 1, note: 2 }), nums({ id: 1, memo: 2, flag: 4 }));
  assert.deepEqual(renameOnly.replaced, []);
  const renamed = renamedPrevious(renameOnly.previous, ['id', 'memo', 'flag'], nums({ id: 1, note: 2 }), nums({ id: 1, memo: 2, flag: 4 }));
  assert.deepEqual(renamed.columns.map((c) => [c.name, c.renamedFrom]), [['id', undefined], ['memo', ['note']]]);
  // Nothing changed: the same columns, nothing replaced.
  const same = versionBeforeStop(v(col('id'), col('note')), nums({ id: 1, note: 2 }), nums({ id: 1, note: 2 }));
  assert.deepEqual([same.previous.columns.map((c) => c.name), same.replaced], [['id', 'note'], []]);
  // The negative control: the catalog's version as the previous one (main) shows no rename.
  assert.equal(renamedPrevious(now, ['id', 'memo', 'flag', 'note'], nums({ id: 1, note: 2 }), nums({ id: 1, memo: 2, flag: 4, note: 5 })), now);
});
