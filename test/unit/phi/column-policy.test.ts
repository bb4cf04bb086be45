import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { ChartlogError } from '../../../src/core/errors.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { ColumnPolicy, type UnclassifiedColumn } from '../../../src/phi/column-policy.js';
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

const clear = 'clear' as const;

test('configured PHI columns are sealed; under unclassified: clear, others pass', () => {
  assert.deepEqual([...new ColumnPolicy(config).sealedColumns(v1)].sort(), ['full_name', 'ssn']);
  assert.deepEqual([...new ColumnPolicy({ ...config, strict: [], unclassified: clear }).sealedColumns(v2)].sort(), ['full_name', 'ssn'], 'clear, non-strict: new column passes as non-PHI');
  assert.deepEqual([...new ColumnPolicy({ columns: {}, strict: [], publicColumns: {}, unclassified: clear }).sealedColumns(v1)], []);
});

test('by default (unclassified absent or seal) an unclassified column is sealed, a reviewed one is not, a key column stays in clear', () => {
  for (const unclassified of [undefined, 'seal' as const]) {
    const policy = new ColumnPolicy({ ...config, strict: [], ...(unclassified ? { unclassified } : {}) }, { onUnclassified: () => undefined });
    assert.equal(policy.unclassified, 'seal');
    assert.deepEqual([...policy.sealedColumns(v2)].sort(), ['full_name', 'mother maiden', 'ssn'], 'the new column is sealed like PHI');
  }
  // Nothing classified at all: every column but the key is sealed.
  const bare = new ColumnPolicy({ columns: {}, strict: [], publicColumns: {} }, { onUnclassified: () => undefined });
  assert.deepEqual([...bare.sealedColumns(v2)].sort(), ['full_name', 'mother maiden', 'ssn']);
  // A reviewed-public column passes in clear, matched by the same case rule.
  const reviewed = new ColumnPolicy({ columns: {}, strict: [], publicColumns: { 'public.Patients': ['FULL_NAME'] } }, { onUnclassified: () => undefined });
  assert.deepEqual([...reviewed.sealedColumns(v2)].sort(), ['mother maiden', 'ssn']);
  // A table without a key: every unclassified column is sealed.
  const keyless: TableSchema = { ...v2, primaryKey: [] };
  assert.deepEqual([...bare.sealedColumns(keyless)].sort(), ['full_name', 'id', 'mother maiden', 'ssn']);
  // A key column classified as PHI is still sealed (as before); only unclassified keys stay clear.
  const phiKey = new ColumnPolicy({ columns: { 'public.patients': ['id'] }, strict: [], publicColumns: {} }, { onUnclassified: () => undefined });
  assert.deepEqual([...phiKey.sealedColumns(v1)].sort(), ['full_name', 'id', 'ssn']);
});

test('each unclassified column is reported once per policy, by name only, with how it is handled', () => {
  const seen: UnclassifiedColumn[] = [];
  const policy = new ColumnPolicy({ ...config, strict: [] }, { onUnclassified: (c) => void seen.push({ ...c }) });
  policy.sealedColumns(v1);
  assert.deepEqual([...seen], [], 'every column of v1 is classified (id is reviewed public)');
  policy.sealedColumns(v2);
  policy.sealedColumns({ ...v2 }); // another object for the same version (a resent relation)
  assert.deepEqual([...seen], [{ table: 'public.patients', column: 'mother maiden', handling: 'sealed' }], 'once, not once per version');
  const bare = new ColumnPolicy({ columns: {}, strict: [], publicColumns: {}, unclassified: clear }, { onUnclassified: (c) => void seen.push({ ...c }) });
  seen.length = 0;
  bare.sealedColumns(v1);
  assert.deepEqual([...seen], [
    { table: 'public.patients', column: 'id', handling: 'key' },
    { table: 'public.patients', column: 'full_name', handling: 'clear' },
    { table: 'public.patients', column: 'ssn', handling: 'clear' },
  ]);
});

test('the default report is one warning log line naming table and column, never a value', async () => {
  const { configureLogger } = await import('../../../src/core/logger.js');
  const lines: string[] = [];
  const { Writable } = await import('node:stream');
  configureLogger({ level: 'info', format: 'json', destination: new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(c.toString()), cb()) }) });
  try {
    const policy = new ColumnPolicy({ ...config, strict: [] });
    policy.sealedColumns(v2);
    policy.sealedColumns(v2);
    await new Promise((r) => setImmediate(r));
    assert.equal(lines.length, 1, lines.join(''));
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(line.level, 40);
    assert.equal(line.phiTable, 'public.patients');
    assert.equal(line.phiColumn, 'mother maiden');
    assert.match(String(line.msg), /column public\.patients\.mother maiden is not classified .*: sealed like PHI/);
  } finally {
    configureLogger({ level: 'silent' });
  }
});

test('a strict table refuses an unclassified column under either mode, key columns included', () => {
  for (const unclassified of ['seal', 'clear'] as const) {
    const policy = new ColumnPolicy({ ...config, unclassified }, { onUnclassified: () => assert.fail('a strict table reports by refusing') });
    assert.throws(() => policy.sealedColumns(v2), (e: ChartlogError) => e.code === 'phi_policy' && /"mother maiden"/.test(e.message));
    const noKeyReview = new ColumnPolicy({ ...config, unclassified, publicColumns: {} });
    assert.throws(() => noKeyReview.sealedColumns(v1), (e: ChartlogError) => e.code === 'phi_policy' && /"id"/.test(e.message));
  }
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
  const policy = new ColumnPolicy({ columns: { 'public.Patients': ['SSN', 'Full_Name'] }, strict: [], publicColumns: {}, unclassified: clear });
  assert.deepEqual([...policy.sealedColumns(v1)].sort(), ['full_name', 'ssn'], 'the catalog names are sealed');
  assert.deepEqual([...new ColumnPolicy({ columns: { 'public.patients': ['SNN'] }, strict: [], publicColumns: {}, unclassified: clear }).sealedColumns(v1)], [], 'a misspelt name seals nothing under clear: the start-time check refuses it');
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
  assert.deepEqual([...new ColumnPolicy({ columns: { 'public.patients': ['ssn', 'SSN'] }, strict: [], publicColumns: {}, unclassified: clear }).sealedColumns(quoted)].sort(), ['SSN', 'ssn']);
  assert.throws(
    () => new ColumnPolicy({ columns: { 'public.patients': ['Ssn'] }, strict: [], publicColumns: {}, unclassified: clear }).sealedColumns(quoted),
    (e: ChartlogError) => e.code === 'phi_policy' && /several columns that differ from it only in case \("ssn", "SSN"\)/.test(e.message),
  );
  assert.throws(
    () => new ColumnPolicy({ columns: { 'public.Patients': ['ssn'], 'PUBLIC.PATIENTS': ['full_name'] }, strict: [], publicColumns: {}, unclassified: clear }).sealedColumns(v1),
    (e: ChartlogError) => e.code === 'phi_policy' && /several entries of phi\.columns/.test(e.message),
  );
});

test('the codec seals a column configured in another case: no plaintext of it in the encoded message', async () => {
  const rig = codecRig({ policy: { columns: { 'public.patients': ['SSN'] }, strict: [], publicColumns: {}, unclassified: clear } });
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
