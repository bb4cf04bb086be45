import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChangeEvent, Op } from '../../../src/core/change-event.js';
import { Position } from '../../../src/core/position.js';
import { UNCHANGED, type Row, type TableSchema } from '../../../src/core/table-schema.js';
import { cellKey, TableState } from '../../../src/archive/table-state.js';

const withKey: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'note', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'chart', sourceType: 'text', type: { kind: 'string' }, nullable: true },
  ],
};
const keyless: TableSchema = { ...withKey, table: 'log', primaryKey: [] };
let seq = 0;
const ev = (schema: TableSchema, op: Op, before: Row | null, after: Row | null): ChangeEvent => ({ op, schema, before, after, position: Position.of('01', seq++) });

test('inserts, updates, key changes and deletes apply by primary key', () => {
  const t = new TableState(withKey);
  t.apply(ev(withKey, 'r', null, { id: 1n, note: 'a', chart: 'big' }));
  t.apply(ev(withKey, 'c', null, { id: 2n, note: 'b', chart: null }));
  t.apply(ev(withKey, 'u', null, { id: 1n, note: 'a2', chart: UNCHANGED }));
  t.apply(ev(withKey, 'u', { id: 2n }, { id: 3n, note: 'b', chart: null }));
  assert.deepEqual([...t.allRows()], [
    { id: 1n, note: 'a2', chart: 'big' },
    { id: 3n, note: 'b', chart: null },
  ]);
  t.apply(ev(withKey, 'd', { id: 1n }, null));
  assert.deepEqual([...t.allRows()], [{ id: 3n, note: 'b', chart: null }]);
  t.apply(ev(withKey, 't', null, null));
  assert.equal(t.size, 0);
});

test('an unchanged value without an earlier image is an error, not a silent NULL', () => {
  const t = new TableState(withKey);
  assert.throws(() => t.apply(ev(withKey, 'u', null, { id: 9n, note: 'x', chart: UNCHANGED })), { code: 'integrity', message: /public\.patients\.chart/ });
});

test('tables without a key match whole before-images and keep duplicates', () => {
  const t = new TableState(keyless);
  const row = { id: 1n, note: 'same', chart: null };
  t.apply(ev(keyless, 'c', null, row));
  t.apply(ev(keyless, 'c', null, { ...row }));
  assert.equal(t.size, 2);
  t.apply(ev(keyless, 'u', row, { ...row, note: 'changed' }));
  assert.deepEqual([...t.allRows()].map((r) => r.note).sort(), ['changed', 'same']);
  t.apply(ev(keyless, 'd', row, null));
  assert.deepEqual([...t.allRows()].map((r) => r.note), ['changed']);
});

test('cell keys keep types, -0, bytes and arrays apart', () => {
  const keys = [1, 1n, '1', -0, 0, null, true, Buffer.from([1]), ['1'], [1]].map((v) => cellKey(v));
  assert.equal(new Set(keys).size, keys.length);
});

test('a drop (op x) ends the table; a table of that name created again starts empty and exists', () => {
  const t = new TableState(withKey);
  t.apply(ev(withKey, 'c', null, { id: 1n, note: 'a', chart: null }));
  assert.equal(t.dropped, false);
  t.apply(ev(withKey, 'x', null, null));
  assert.equal(t.dropped, true);
  assert.equal(t.size, 0);
  t.apply(ev(withKey, 'c', null, { id: 2n, note: 'b', chart: null }));
  assert.equal(t.dropped, false, 'created again');
  assert.deepEqual([...t.allRows()], [{ id: 2n, note: 'b', chart: null }]);
});
