import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renamedPrevious, withRenames } from '../../../../connectors/postgres/column-renames.js';
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
