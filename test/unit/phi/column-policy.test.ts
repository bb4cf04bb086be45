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

test('names match by the rule of phi-names.ts: `SSN` seals the column `ssn`, and table names match by case too', () => {
  const policy = new ColumnPolicy({ columns: { 'public.Patients': ['SSN', 'Full_Name'] }, strict: [], publicColumns: {} });
  assert.deepEqual([...policy.sealedColumns(v1)].sort(), ['full_name', 'ssn'], 'the catalog names are sealed');
  assert.deepEqual([...new ColumnPolicy({ columns: { 'public.patients': ['SNN'] }, strict: [], publicColumns: {} }).sealedColumns(v1)], [], 'a misspelt name seals nothing: the start-time check refuses it');
});

test('strict and publicColumns match by case too; the hint names the entry as it is written', () => {
  const policy = new ColumnPolicy({ columns: { 'public.Patients': ['SSN', 'full_name'] }, strict: ['public.Patients'], publicColumns: { 'PUBLIC.patients': ['ID'] } });
  assert.ok(policy.isStrict(v1));
  assert.deepEqual([...policy.sealedColumns(v1)].sort(), ['full_name', 'ssn'], 'every column classified: no error');
  assert.throws(
    () => policy.sealedColumns(v2),
    (e: ChartlogError) => {
      assert.equal(e.code, 'phi_policy');
      assert.match(e.hint ?? '', /phi\.columns the line `public\.Patients: \[SSN, full_name, "mother maiden"\]`/);
      assert.match(e.hint ?? '', /phi\.publicColumns the line `PUBLIC\.patients: \[ID, "mother maiden"\]`/);
      return true;
    },
  );
});

test('an exact column name wins over case variants; a PHI name matching several variants fails closed', () => {
  const quoted: TableSchema = { ...v1, columns: [...v1.columns, { name: 'SSN', sourceType: 'text', type: { kind: 'string' }, nullable: true }] };
  assert.deepEqual([...new ColumnPolicy({ columns: { 'public.patients': ['ssn', 'SSN'] }, strict: [], publicColumns: {} }).sealedColumns(quoted)].sort(), ['SSN', 'ssn']);
  assert.throws(
    () => new ColumnPolicy({ columns: { 'public.patients': ['Ssn'] }, strict: [], publicColumns: {} }).sealedColumns(quoted),
    (e: ChartlogError) => e.code === 'phi_policy' && /several columns that differ from it only in case \("ssn", "SSN"\)/.test(e.message),
  );
  assert.throws(
    () => new ColumnPolicy({ columns: { 'public.Patients': ['ssn'], 'PUBLIC.PATIENTS': ['full_name'] }, strict: [], publicColumns: {} }).sealedColumns(v1),
    (e: ChartlogError) => e.code === 'phi_policy' && /several entries of phi\.columns/.test(e.message),
  );
});

test('the codec seals a column configured in another case: no plaintext of it in the encoded message', async () => {
  const rig = codecRig({ policy: { columns: { 'public.patients': ['SSN'] }, strict: [], publicColumns: {} } });
  const canary = 'CANARY-SSN-0042';
  const batch = {
    source: 'clinic',
    txId: '7',
    position: Position.of('0000000000000100', COMMIT_SEQ),
    commitTsUs: 1n,
    snapshot: false,
    events: [{ op: 'c' as const, schema: v1, before: null, after: { id: 42n, full_name: 'CANARY-NAME-42', ssn: canary }, position: Position.of('0000000000000100', 0) }],
  };
  const [message] = await rig.codec.encodeBatch(batch);
  assert.ok(message);
  assert.equal(Buffer.from(message.value).includes(Buffer.from(canary)), false, 'the ssn value is sealed');
  assert.equal(Buffer.from(message.value).includes(Buffer.from('CANARY-NAME-42')), true, 'full_name is not configured: the control passes in clear');
  const decoded = await rig.codec.decode(message.value);
  assert.deepEqual([...decoded.sealedColumns], ['ssn']);
});
