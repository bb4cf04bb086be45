import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { fillMissing, missingPlan, refuseUnknownMissing } from '../../../src/archive/missing-columns.js';
import { checkTableAttribute } from '../../../src/codec/table-attribute-check.js';
import { fromAvroSchema, SEALED_MISSING_REASON, TABLE_ATTRIBUTE, toAvroSchema } from '../../../src/codec/avro-schema.js';
import { ChartlogError } from '../../../src/core/errors.js';
import type { ColumnSchema, TableSchema } from '../../../src/core/table-schema.js';

const id: ColumnSchema = { name: 'id', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false };
const note: ColumnSchema = { name: 'note', sourceType: 'text', type: { kind: 'string' }, nullable: true };
const v = (...columns: ColumnSchema[]): TableSchema => ({ schema: 'public', table: 't', primaryKey: ['id'], columns });
const flag = (missing?: ColumnSchema['missing']): ColumnSchema => ({ name: 'flag', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false, ...(missing ? { missing } : {}) });
const big = (missing?: ColumnSchema['missing']): ColumnSchema => ({ name: 'big', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: true, ...(missing ? { missing } : {}) });

test('rows whose image predates a column read the value its version recorded; rows that have it keep theirs', () => {
  const plan = missingPlan([v(id, note), v(id, note, flag({ value: 7 }), big({ value: 9007199254740993n }))]);
  assert.deepEqual(fillMissing({ id: 1, note: 'a' }, plan), { id: 1, note: 'a', flag: 7, big: 9007199254740993n });
  assert.deepEqual(fillMissing({ id: 2, note: 'b', flag: 3, big: null }, plan), { id: 2, note: 'b', flag: 3, big: null });
  assert.deepEqual(plan.refuse.size, 0);
});

test('a later version that keeps the column without the value (after a restart, a rewrite) keeps the recorded one', () => {
  const plan = missingPlan([v(id, note), v(id, note, flag({ value: 7 })), v(id, flag())]);
  assert.deepEqual(fillMissing({ id: 1 }, plan), { id: 1, flag: 7 });
});

test('a column dropped and added again without a value reads NULL in older rows', () => {
  const plan = missingPlan([v(id), v(id, flag({ value: 7 })), v(id), v(id, { ...flag(), nullable: true })]);
  assert.deepEqual(fillMissing({ id: 1 }, plan), { id: 1 });
});

test('an unknown value is refused, naming the table, the column and resync, when older rows may lack it', () => {
  const plan = missingPlan([v(id), v(id, flag({ unknown: 'volatile default' }))]);
  assert.throws(() => refuseUnknownMissing('public.t', plan), (e: unknown) =>
    e instanceof ChartlogError && e.code === 'usage' && /public\.t\.flag/.test(e.message) && /volatile default/.test(e.message) && /chartlog resync .*--tables public\.t/.test(e.hint ?? ''));
  // Negative control: once the table was re-read, every version applied has the column.
  assert.doesNotThrow(() => refuseUnknownMissing('public.t', missingPlan([v(id, flag({ unknown: 'volatile default' }))])));
  assert.doesNotThrow(() => refuseUnknownMissing('public.t', missingPlan([v(id)])));
});

test('the table attribute keeps the missing value exactly, and versions without one keep their hash', () => {
  const plain = toAvroSchema('clinic', v(id, note), new Set());
  const before = JSON.stringify(plain);
  assert.ok(!before.includes('missing'), 'no member when nothing is recorded: archives written before it keep their fingerprints');
  const withValue = JSON.parse(JSON.stringify(toAvroSchema('clinic', v(id, note, flag({ value: 7 }), big({ value: 9007199254740993n })), new Set())));
  checkTableAttribute(withValue, 'x', 'postgres');
  const back = fromAvroSchema(withValue).table;
  assert.deepEqual(back.columns.map((c) => c.missing), [undefined, undefined, { value: 7 }, { value: 9007199254740993n }]);
  const unknown = JSON.parse(JSON.stringify(toAvroSchema('clinic', v(id, flag({ unknown: 'volatile default' })), new Set())));
  checkTableAttribute(unknown, 'x', 'postgres');
  assert.deepEqual(fromAvroSchema(unknown).table.columns[1]!.missing, { unknown: 'volatile default' });
});

test('a sealed column never carries its missing value in clear: it becomes unknown', () => {
  const s = toAvroSchema('clinic', v(id, { ...note, missing: { value: 'CANARY-SSN-1' } }), new Set(['note']));
  assert.ok(!JSON.stringify(s).includes('CANARY'));
  assert.ok(!JSON.stringify(s).includes(Buffer.from('CANARY-SSN-1').toString('base64').slice(0, 12)));
  assert.deepEqual(fromAvroSchema(s).table.columns[1]!.missing, { unknown: SEALED_MISSING_REASON });
});

test('a damaged missing member is refused, naming the field', () => {
  const s = JSON.parse(JSON.stringify(toAvroSchema('clinic', v(id, flag({ value: 7 })), new Set())));
  (s[TABLE_ATTRIBUTE] as { columns: { missing: unknown }[] }).columns[1]!.missing = { cell: 'AAAA', unknown: 'x' };
  assert.throws(() => checkTableAttribute(s, 'obj', 'postgres'), /columns\[1\]\.missing must hold exactly one/);
  (s[TABLE_ATTRIBUTE] as { columns: { missing: unknown }[] }).columns[1]!.missing = { cell: '!!' };
  assert.throws(() => checkTableAttribute(s, 'obj', 'postgres'), /columns\[1\]\.missing\.cell is not base64/);
});

const text = (name: string, extra: Partial<ColumnSchema> = {}): ColumnSchema => ({ ...note, name, ...extra });

/** The namespace's version hash of an attribute, as the writer of the time made it (table-attribute-check.ts). */
function rehash(avro: Record<string, unknown>): void {
  const version = createHash('sha256').update(JSON.stringify(avro[TABLE_ATTRIBUTE])).digest('hex').slice(0, 16);
  avro.namespace = String(avro.namespace).replace(/\.v[0-9a-f]{16}$/, `.v${version}`);
}

/**
 * A table version as MariaDB/MySQL sources wrote it before `renamedFrom` was their encoding too: a
 * renamed column's old name in `missing.from` (the pinned form of that attribute). Made by writing
 * the version without it and planting the member, then read back as every reader reads schemas.
 */
function legacyRenamed(t: TableSchema, renamed: Record<string, string>): TableSchema {
  const avro = JSON.parse(JSON.stringify(toAvroSchema('clinic', t, new Set()))) as Record<string, { columns: Record<string, unknown>[] }>;
  for (const c of avro[TABLE_ATTRIBUTE]!.columns) if (renamed[c.name as string]) c.missing = { from: renamed[c.name as string] };
  rehash(avro);
  checkTableAttribute(avro as never, 'legacy', 'mysql');
  return fromAvroSchema(avro as never).table;
}

test('legacy missing.from (archives MariaDB sources wrote before): read as renamedFrom; rows before the rename read the old column', () => {
  const renamed = legacyRenamed(v(id, text('memo')), { memo: 'note' });
  assert.deepEqual(renamed.columns[1]!.renamedFrom, ['note'], 'read as the one encoding');
  assert.equal(renamed.columns[1]!.missing, undefined, 'not a missing value');
  const plan = missingPlan([v(id, note), renamed]);
  assert.deepEqual(fillMissing({ id: 1, note: 'old' }, plan), { id: 1, memo: 'old' });
  assert.deepEqual(fillMissing({ id: 2, memo: 'new' }, plan), { id: 2, memo: 'new' }, 'a row written after the rename keeps its own value');
  assert.deepEqual(fillMissing({ id: 3, note: null }, plan), { id: 3, memo: null }, 'NULL stays NULL');
  assert.equal(plan.refuse.size, 0);
  // Negative control: without the member the same row would read NULL (absent) in memo.
  assert.deepEqual(fillMissing({ id: 1, note: 'old' }, missingPlan([v(id, note), v(id, text('memo'))])), { id: 1, note: 'old' });
});

test('legacy missing.from: renames chain (a → b → c), and a renamed column keeps what rows older than it read', () => {
  const chained = missingPlan([v(id, text('a')), legacyRenamed(v(id, text('b')), { b: 'a' }), legacyRenamed(v(id, text('c')), { c: 'b' })]);
  assert.deepEqual(fillMissing({ id: 1, a: 'x' }, chained).c, 'x');
  assert.deepEqual(fillMissing({ id: 2, b: 'y' }, chained).c, 'y');
  // flag added with a constant, then renamed: rows older than flag read the constant under the new name.
  const level = legacyRenamed(v(id, { ...flag(), name: 'level' }), { level: 'flag' });
  const plan = missingPlan([v(id), v(id, flag({ value: 7 })), level]);
  assert.deepEqual(fillMissing({ id: 1 }, plan), { id: 1, level: 7 });
  assert.deepEqual(fillMissing({ id: 2, flag: 3 }, plan).level, 3);
  // An unknown value moves with the rename: still refused until the table is re-read.
  const refused = missingPlan([v(id), v(id, flag({ unknown: 'volatile default' })), level]);
  assert.equal(refused.refuse.get('level'), 'volatile default');
  // The same histories in the one encoding (renamedFrom, what both connectors write now) read the same.
  const now = missingPlan([v(id), v(id, flag({ value: 7 })), v(id, { ...flag({ value: 7 }), name: 'level', renamedFrom: ['flag'] })]);
  assert.deepEqual(fillMissing({ id: 1 }, now), { id: 1, level: 7 });
  assert.deepEqual(fillMissing({ id: 2, flag: 3 }, now), { id: 2, level: 3 });
  // A renamed column without its own missing value takes over the old column's.
  const inherited = missingPlan([v(id), v(id, flag({ value: 7 })), v(id, { ...flag(), name: 'level', renamedFrom: ['flag'] })]);
  assert.deepEqual(fillMissing({ id: 1 }, inherited), { id: 1, level: 7 });
});

test('legacy missing.from passes the strict check and is never written again; a bad one is refused', () => {
  const avro = JSON.parse(JSON.stringify(toAvroSchema('clinic', v(id, text('memo', { renamedFrom: ['note'] })), new Set())));
  assert.ok(!JSON.stringify(avro).includes('"from"'), 'the one encoding is written: renamedFrom, no missing.from');
  (avro[TABLE_ATTRIBUTE] as { columns: Record<string, unknown>[] }).columns[1]!.missing = { from: 'note' };
  rehash(avro);
  checkTableAttribute(avro, 'x', 'mysql');
  assert.deepEqual(fromAvroSchema(avro).table.columns[1]!.renamedFrom, ['note'], 'both members name the same rename: one name');
  const bad = JSON.stringify(avro).replace('"from":"note"', '"from":""');
  assert.ok(bad !== JSON.stringify(avro), 'the bad copy differs');
  assert.throws(() => checkTableAttribute(JSON.parse(bad), 'x', 'mysql'), /missing\.from/);
});

test('RENAME COLUMN: rows stored before the rename move their value to the new name; later rows keep theirs', () => {
  const memo: ColumnSchema = { ...note, name: 'memo', renamedFrom: ['note'] };
  const plan = missingPlan([v(id, note), v(id, memo)]);
  assert.equal(plan.refuse.size, 0);
  assert.deepEqual(fillMissing({ id: 1, note: 'old' }, plan), { id: 1, memo: 'old' });
  assert.deepEqual(fillMissing({ id: 2, memo: 'new' }, plan), { id: 2, memo: 'new' });
  // Twice renamed (note → memo → text1): a row of either earlier version follows.
  const text1: ColumnSchema = { ...note, name: 'text1', renamedFrom: ['memo', 'note'] };
  const twice = missingPlan([v(id, note), v(id, memo), v(id, text1)]);
  assert.deepEqual(fillMissing({ id: 1, note: 'a' }, twice), { id: 1, text1: 'a' });
  assert.deepEqual(fillMissing({ id: 2, memo: 'b' }, twice), { id: 2, text1: 'b' });
  // Renamed, then a new column takes the old name: old rows move, the new column reads its missing value.
  const readd = missingPlan([v(id, note), v(id, memo), v(id, memo, { ...flag({ value: 7 }), name: 'note' })]);
  assert.equal(readd.refuse.size, 0);
  assert.deepEqual(fillMissing({ id: 1, note: 'old' }, readd), { id: 1, memo: 'old', note: 7 });
  assert.deepEqual(fillMissing({ id: 2, memo: 'm', note: 3 }, readd), { id: 2, memo: 'm', note: 3 });
  // Negative control: without renamedFrom the old value is lost (what the plan above prevents).
  assert.deepEqual(fillMissing({ id: 1, note: 'old' }, missingPlan([v(id, note), v(id, { ...note, name: 'memo' })])), { id: 1, note: 'old' });
});

test('RENAME COLUMN that cannot be told apart (swapped names, a renamed key) is refused unless the table was re-read', () => {
  const a: ColumnSchema = { ...note, name: 'a' };
  const b: ColumnSchema = { ...note, name: 'b' };
  const swapped = missingPlan([v(id, a, b), v(id, { ...a, renamedFrom: ['b'] }, { ...b, renamedFrom: ['a'] })]);
  assert.ok(swapped.refuse.size > 0, 'a swap is refused');
  assert.throws(() => refuseUnknownMissing('public.t', swapped), /another column took its old name/);
  const key: ColumnSchema = { ...id, name: 'pid', renamedFrom: ['id'] };
  const keyed = missingPlan([v(id, note), { ...v(key, note), primaryKey: ['pid'] }]);
  assert.throws(() => refuseUnknownMissing('public.t', keyed), /identifies rows/);
  // Re-read after the rename (only the new version applied): nothing predates it.
  assert.doesNotThrow(() => refuseUnknownMissing('public.t', missingPlan([{ ...v(key, note), primaryKey: ['pid'] }])));
});

test('renamedFrom survives the Avro schema attribute and its strict check; a damaged one is refused', () => {
  const t = v(id, { ...note, name: 'memo', renamedFrom: ['note'] });
  const avro = toAvroSchema('src', t, new Set());
  assert.doesNotThrow(() => checkTableAttribute(avro, 'x'));
  assert.deepEqual(fromAvroSchema(avro).table.columns[1]!.renamedFrom, ['note']);
  const bad = JSON.parse(JSON.stringify(avro)) as Record<string, { columns: Record<string, unknown>[] }>;
  bad[TABLE_ATTRIBUTE]!.columns[1]!.renamedFrom = ['no\u0001te'];
  assert.throws(() => checkTableAttribute(bad as never, 'x'), /renamedFrom\[0\]/);
  // A version without renames keeps exactly the attribute it had (backward compatible hash).
  assert.equal('renamedFrom' in (toAvroSchema('src', v(id, note), new Set())[TABLE_ATTRIBUTE] as { columns: object[] }).columns[1]!, false);
});
