import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { configureLogger } from '../../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { Row, TableSchema } from '../../../src/core/table-schema.js';
import { ColumnPolicy } from '../../../src/phi/column-policy.js';
import { PhiGuard, type PhiGuardHit } from '../../../src/phi/phi-guard.js';

const str = (name: string) => ({ name, sourceType: 'text', type: { kind: 'string' as const }, nullable: true });
const patients: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [{ name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false }, str('ssn'), str('tax_no'), str('note'), str('sealed_ssn')],
};

// Synthetic SSN-shaped values (valid area/group/serial) and clean notes.
const ssn = (i: number) => `${String(100 + (i % 500)).padStart(3, '0')}-${String(10 + (i % 80))}-${String(1000 + i).slice(-4)}`;
let seq = 0;
function batch(rows: Row[]): ChangeBatch {
  const commit = (++seq).toString(16).padStart(16, '0');
  return {
    source: 'clinic',
    txId: String(seq),
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: BigInt(seq),
    snapshot: false,
    schemaChanges: [],
    events: rows.map((after, i) => ({ op: 'c' as const, schema: patients, before: null, after, position: Position.of(commit, i) })),
  };
}
const row = (i: number): Row => ({ id: BigInt(i), ssn: ssn(i), tax_no: i % 2 === 0 ? ssn(i) : null, note: `follow-up ${i}`, sealed_ssn: ssn(i) });

// Everything in clear except sealed_ssn, as a policy with unclassified: clear would give.
const policy = new ColumnPolicy({ columns: { 'public.patients': ['sealed_ssn'] }, strict: [], publicColumns: {}, unclassified: 'clear' }, { onUnclassified: () => undefined });

test('a clear column carrying SSN-shaped values raises a hit naming table, column and detector; a clean one and a sealed one do not', () => {
  const hits: PhiGuardHit[] = [];
  let now = 1_000_000;
  const guard = new PhiGuard({ sealedOf: (t) => policy.sealedColumns(t), now: () => now, onHit: (h) => void hits.push(h) });
  guard.inspect(batch([row(1), row(2)]));
  assert.deepEqual(
    hits.map((h) => `${h.table}.${h.column} ${h.detector} ${h.count}`),
    ['public.patients.ssn national-id 1', 'public.patients.tax_no national-id 1'],
    'ssn from the first row; tax_no (null there) from the second: the first non-empty value is checked',
  );
  // Within the interval nothing more is looked at, however many rows come.
  for (let i = 0; i < 100; i++) guard.inspect(batch([row(10 + i)]));
  assert.deepEqual(Object.fromEntries(guard.hits()), { 'public.patients.ssn national-id': 1, 'public.patients.tax_no national-id': 1 });
  // A second later, one more value per column.
  now += 1000;
  guard.inspect(batch([row(200), row(202)]));
  assert.deepEqual(Object.fromEntries(guard.hits()), { 'public.patients.ssn national-id': 2, 'public.patients.tax_no national-id': 2 });
  assert.equal(hits.length, 2, 'reported once per column and detector until warnEveryMs passes');
  now += 10 * 60_000;
  guard.inspect(batch([row(301)])); // tax_no is null in odd rows
  assert.deepEqual(hits.slice(2).map((h) => `${h.column} ${h.count}`), ['ssn 2'], 'the next report counts the hits since the last');
  assert.ok(!hits.some((h) => h.column === 'note' || h.column === 'sealed_ssn'), 'the clean column and the sealed one raise nothing');
});

test('the same values in sealed columns raise nothing; clean values in clear columns raise nothing', () => {
  const hits: PhiGuardHit[] = [];
  const sealedAll = new ColumnPolicy({ columns: { 'public.patients': ['ssn', 'tax_no', 'sealed_ssn'] }, strict: [], publicColumns: {}, unclassified: 'clear' }, { onUnclassified: () => undefined });
  const guard = new PhiGuard({ sealedOf: (t) => sealedAll.sealedColumns(t), onHit: (h) => void hits.push(h) });
  guard.inspect(batch([row(1), row(2), row(3)]));
  assert.deepEqual([...hits], []);
  const clean = new PhiGuard({ sealedOf: (t) => policy.sealedColumns(t), onHit: (h) => void hits.push(h) });
  clean.inspect(batch([{ id: 1n, ssn: 'n/a', tax_no: 'pending', note: 'annual check, no findings', sealed_ssn: null }]));
  assert.deepEqual([...hits], []);
});

test('a strict table the codec will refuse is skipped, not thrown', () => {
  const strict = new ColumnPolicy({ columns: { 'public.patients': [] }, strict: ['public.patients'], publicColumns: {} });
  const guard = new PhiGuard({ sealedOf: (t) => strict.sealedColumns(t), onHit: () => assert.fail('nothing to guard') });
  guard.inspect(batch([row(1)]));
});

test('the default report is a warning log line naming table, column and detector, never the value', async () => {
  const lines: string[] = [];
  configureLogger({ level: 'info', format: 'json', destination: new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(c.toString()), cb()) }) });
  try {
    const guard = new PhiGuard({ sealedOf: (t) => policy.sealedColumns(t) });
    guard.inspect(batch([row(7)]));
    await new Promise((r) => setImmediate(r));
    const text = lines.join('');
    assert.equal(lines.length, 1, text);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(line.level, 40);
    assert.equal(line.phiTable, 'public.patients');
    assert.equal(line.phiColumn, 'ssn');
    assert.equal(line.detector, 'national-id');
    assert.ok(!text.includes(ssn(7)), 'the value is not in the log');
    assert.ok(`${text}${ssn(7)}`.includes(ssn(7)), 'negative control: the check finds a value that is there');
  } finally {
    configureLogger({ level: 'silent' });
  }
});
