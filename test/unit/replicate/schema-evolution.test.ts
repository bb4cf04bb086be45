import assert from 'node:assert/strict';
import { test } from 'node:test';
import { olderRowsValue, sameColumns, shapeSteps } from '../../../src/replicate/schema-evolution.js';
import type { ColumnSchema, TableSchema } from '../../../src/core/table-schema.js';

const col = (name: string, renamedFrom?: string[]): ColumnSchema => ({ name, sourceType: 'text', type: { kind: 'string' }, nullable: true, ...(renamedFrom ? { renamedFrom } : {}) });
const v = (...columns: ColumnSchema[]): TableSchema => ({ schema: 'public', table: 't', primaryKey: ['id'], columns: [col('id'), ...columns] });

test('a renamed column (renamedFrom) is renamed in the replica, not added beside the old one', () => {
  assert.deepEqual(shapeSteps(new Set(['id', 'note']), v(col('memo', ['note']))), [{ kind: 'rename', from: 'note', column: 'memo' }]);
  // Twice renamed while the replica still has the first name (PostgreSQL lists every earlier name).
  assert.deepEqual(shapeSteps(new Set(['id', 'note']), v(col('text1', ['memo', 'note']))), [{ kind: 'rename', from: 'note', column: 'text1' }]);
  // Negative control: without renamedFrom the same version means drop + add (the values would be lost).
  assert.deepEqual(shapeSteps(new Set(['id', 'note']), v(col('memo'))), [{ kind: 'drop', column: 'note' }, { kind: 'add', column: 'memo' }]);
});

test('dropped columns are dropped, added ones added; a new column taking a renamed one\'s old name comes after the rename', () => {
  assert.deepEqual(shapeSteps(new Set(['id', 'a', 'b']), v(col('a'), col('c'))), [{ kind: 'drop', column: 'b' }, { kind: 'add', column: 'c' }]);
  assert.deepEqual(shapeSteps(new Set(['id', 'note']), v(col('memo', ['note']), col('note'))), [{ kind: 'rename', from: 'note', column: 'memo' }, { kind: 'add', column: 'note' }]);
  assert.deepEqual(shapeSteps(new Set(['id', 'memo']), v(col('memo', ['note']))), [], 'already renamed: nothing to do');
});

test('sameColumns: exactly the version\'s columns, no more, no fewer', () => {
  assert.equal(sameColumns(new Set(['id', 'a']), v(col('a'))), true);
  assert.equal(sameColumns(new Set(['id', 'a', 'b']), v(col('a'))), false, 'a dropped column is a change');
  assert.equal(sameColumns(new Set(['id']), v(col('a'))), false);
  assert.equal(sameColumns(undefined, v(col('a'))), false);
});

test('a column added at the source: rows the replica holds read its missing constant, NULL without one; unknown stops the replica', () => {
  assert.equal(olderRowsValue('db.t', { ...col('flag'), missing: { value: 7 } }), 7);
  assert.equal(olderRowsValue('db.t', { ...col('big'), missing: { value: 9007199254740993n } }), 9007199254740993n);
  assert.equal(olderRowsValue('db.t', col('plain')), null);
  assert.throws(() => olderRowsValue('db.t', { ...col('r'), missing: { unknown: 'volatile default' } }), /db\.t\.r: .*volatile default.*cannot add the column/);
});
