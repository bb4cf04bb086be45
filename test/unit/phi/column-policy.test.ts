import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { ChartlogError } from '../../../src/core/errors.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { ColumnPolicy } from '../../../src/phi/column-policy.js';
import { codecRig } from '../../support/codec-support.js';

const v1: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'full_name', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'ssn', sourceType: 'text', type: { kind: 'string' }, nullable: true },
  ],
};
const v2: TableSchema = { ...v1, columns: [...v1.columns, { name: 'mother maiden', sourceType: 'text', type: { kind: 'string' }, nullable: true }] };

const config = {
  columns: { 'public.patients': ['full_name', 'ssn'] },
  strict: ['public.patients'],
  publicColumns: { 'public.patients': ['id'] },
};

test('configured PHI columns are sealed; others pass', () => {
  assert.deepEqual([...new ColumnPolicy(config).sealedColumns(v1)].sort(), ['full_name', 'ssn']);
  assert.deepEqual([...new ColumnPolicy({ ...config, strict: [] }).sealedColumns(v2)].sort(), ['full_name', 'ssn'], 'non-strict: new column passes as non-PHI');
  assert.deepEqual([...new ColumnPolicy({ columns: {}, strict: [], publicColumns: {} }).sealedColumns(v1)], []);
});

test('a strict table fails closed on an unclassified column, naming it and the configuration line to add', () => {
  const policy = new ColumnPolicy(config);
  assert.throws(
    () => policy.sealedColumns(v2),
    (e: ChartlogError) => {
      assert.equal(e.code, 'phi_policy');
      assert.equal(e.retriable, false);
      assert.match(e.message, /public\.patients/);
      assert.match(e.message, /"mother maiden"/);
      assert.match(e.hint ?? '', /phi\.columns the line `public\.patients: \[full_name, ssn, "mother maiden"\]`/);
      assert.match(e.hint ?? '', /phi\.publicColumns the line `public\.patients: \[id, "mother maiden"\]`/);
      return true;
    },
  );
  assert.ok(policy.isStrict(v2));
});

test('the codec stops a strict table at the DDL (schema change) before any row of it is encoded', async () => {
  const rig = codecRig({ policy: config });
  const batch = {
    source: 'clinic',
    txId: null,
    position: Position.of('00000000000000ff', COMMIT_SEQ),
    commitTsUs: 1n,
    snapshot: false,
    events: [],
    schemaChanges: [v2],
  };
  await assert.rejects(rig.codec.encodeBatch(batch), (e: ChartlogError) => e.code === 'phi_policy');
  assert.equal([...rig.store.objects.keys()].filter((k) => k.includes('/schemas/')).length, 0, 'nothing stored for the refused version');
  // The accepted version still works.
  assert.match(await rig.codec.fingerprintOf(v1), /^[0-9a-f]{16}$/);
});
