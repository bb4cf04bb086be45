import assert from 'node:assert/strict';
import { test } from 'node:test';
import avro from 'avsc';
import { AvroCodec } from '../../../src/codec/avro-codec.js';
import { avroName, fieldNames, fromAvroSchema, toAvroSchema } from '../../../src/codec/avro-schema.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import { recordBody } from '../../../src/codec/single-object.js';
import type { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { codecRig, quietLog } from '../../support/codec-support.js';

const patients: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'full name', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'balance', sourceType: 'numeric(12,2)', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
    { name: 'admitted', sourceType: 'timestamp with time zone', type: { kind: 'timestamptz' }, nullable: true },
  ],
};

const fp = (t: TableSchema, sealed: string[] = []): string => SchemaStore.describe(toAvroSchema('clinic', t, new Set(sealed))).fingerprintHex;

test('one fingerprint per table version: equal versions agree, any difference in shape or sealing differs', () => {
  assert.equal(fp(patients), fp(structuredClone(patients)));
  const rescaled = structuredClone(patients) as { columns: { type: { scale?: number } }[] } & TableSchema;
  rescaled.columns[2]!.type.scale = 3;
  const retyped = structuredClone(patients) as { columns: { sourceType: string }[] } & TableSchema;
  retyped.columns[1]!.sourceType = 'varchar(80)';
  const rekeyed = { ...patients, primaryKey: [] };
  const all = [fp(patients), fp(rescaled), fp(retyped), fp(rekeyed), fp(patients, ['full name']), fp({ ...patients, table: 'patients2' })];
  assert.equal(new Set(all).size, all.length);
  assert.notEqual(SchemaStore.describe(toAvroSchema('other', patients, new Set())).fingerprintHex, fp(patients));
});

test('the stored schema alone recreates the table version (restore needs nothing else)', () => {
  const schema = JSON.parse(JSON.stringify(toAvroSchema('clinic', patients, new Set(['full name']))));
  const v = fromAvroSchema(schema);
  assert.deepStrictEqual(v.table, patients);
  assert.equal(v.source, 'clinic');
  assert.deepEqual([...v.sealed], ['full name']);
  assert.ok(Object.isFrozen(v.table));
});

test('field names are valid Avro names, unique, and the column names are kept exactly', () => {
  assert.equal(avroName('first name'), 'first_name');
  assert.equal(avroName('1st'), '_1st');
  const cols = ['a-b', 'a_b', 'a b', '1', '_1'].map((name) => ({ name, sourceType: 'text', type: { kind: 'string' as const }, nullable: true }));
  const names = fieldNames(cols);
  assert.equal(new Set(names).size, names.length);
  for (const n of names) assert.match(n, /^[A-Za-z_][A-Za-z0-9_]*$/);
});

test('a standard Avro reader decodes a message with nothing but the stored schema', async () => {
  const rig = codecRig();
  const [m] = await rig.codec.encodeBatch({
    source: 'clinic',
    txId: '42',
    position: Position.of('00000000000000aa', COMMIT_SEQ),
    commitTsUs: 1700000000000000n,
    snapshot: false,
    events: [{ op: 'c', schema: patients, before: null, after: { id: 7n, 'full name': 'Ada', balance: '-1.50', admitted: '2024-01-02 03:04:05.5+00' }, position: Position.of('00000000000000aa', 0) }],
  });
  const fingerprint = AvroCodec.fingerprintOfMessage(m!.value);
  const stored = rig.store.objects.get(`clinic/schemas/${fingerprint.toString(16).padStart(16, '0')}.json`);
  assert.ok(stored, 'schema object stored under its fingerprint');
  const type = avro.Type.forSchema(JSON.parse(Buffer.from(stored.body).toString('utf8')));
  const env = type.fromBuffer(Buffer.from(recordBody(m!.value))) as Record<string, unknown>;
  assert.equal(env.op, 'c');
  const source = env.source as Record<string, unknown>;
  assert.equal(source.table, 'patients');
  assert.equal(source.pos, '00000000000000aa');
  // avsc unwraps unions whose branches it can tell apart and wraps the others.
  const after = env.after as Record<string, unknown>;
  assert.deepEqual({ ...(after.full_name as object) }, { string: 'Ada' });
  assert.equal(after.id, 7);
  assert.deepEqual({ ...(after.admitted as object) }, { long: 1704164645500000 });
});

test('schemas are written once (putIfAbsent) and resolved from the object store by a fresh reader', async () => {
  const store = new MemoryObjectStore();
  const a = new SchemaStore({ source: 'clinic', store, log: quietLog });
  const r1 = await a.register(toAvroSchema('clinic', patients, new Set()));
  const r2 = await a.register(toAvroSchema('clinic', patients, new Set()));
  assert.equal(r1.fingerprintHex, r2.fingerprintHex);
  assert.equal(store.writes, 1);
  const b = new SchemaStore({ source: 'clinic', store, log: quietLog });
  await b.register(toAvroSchema('clinic', patients, new Set()));
  assert.equal(store.writes, 1, 'a second process finds it present');
  const fresh = new SchemaStore({ source: 'clinic', store, log: quietLog });
  const resolved = await fresh.resolve(r1.fingerprint);
  assert.deepStrictEqual(resolved.version.table, patients);
  assert.deepEqual(await fresh.listFingerprints(), [r1.fingerprint]);
});

test('a missing or altered schema object is a clear error', async () => {
  const store = new MemoryObjectStore();
  const s = new SchemaStore({ source: 'clinic', store, log: quietLog });
  await assert.rejects(s.resolve(0x1234n), (e: ChartlogError) => e.code === 'not_found' && /0000000000001234/.test(e.message) && /schemas\//.test(e.hint ?? ''));
  const r = await s.register(toAvroSchema('clinic', patients, new Set()));
  const path = `clinic/schemas/${r.fingerprintHex}.json`;
  const altered = JSON.parse(Buffer.from(store.objects.get(path)!.body).toString('utf8'));
  altered.fields[2].name = 'opcode';
  await store.put(path, Buffer.from(JSON.stringify(altered)));
  const fresh = new SchemaStore({ source: 'clinic', store, log: quietLog });
  await assert.rejects(fresh.resolve(r.fingerprint), (e: ChartlogError) => e.code === 'integrity');
});

test('a message that is not single-object encoded is refused without echoing its bytes', async () => {
  const rig = codecRig();
  await assert.rejects(rig.codec.decode(Buffer.from('CANARY-not-avro')), (e: ChartlogError) => e.code === 'integrity' && !e.message.includes('CANARY'));
});

test('a table version change mid-stream (decimal scale) keeps each message decoding under its own version', async () => {
  const rig = codecRig();
  const v2 = structuredClone(patients) as TableSchema & { columns: { type: { scale?: number }; sourceType: string }[] };
  v2.columns[2]!.type.scale = 3;
  v2.columns[2]!.sourceType = 'numeric(12,3)';
  const commit = '00000000000000bb';
  const batch = {
    source: 'clinic',
    txId: null,
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 5n,
    snapshot: false,
    schemaChanges: [v2],
    events: [
      { op: 'c' as const, schema: patients, before: null, after: { id: 1n, 'full name': 'A', balance: '1.50', admitted: null }, position: Position.of(commit, 0) },
      { op: 'c' as const, schema: v2, before: null, after: { id: 2n, 'full name': 'B', balance: '1.500', admitted: null }, position: Position.of(commit, 1) },
    ],
  };
  const [m1, m2] = await rig.codec.encodeBatch(batch);
  assert.notEqual(m1!.fingerprint, m2!.fingerprint);
  const reader = rig.reader();
  const d1 = await reader.decode(m1!.value);
  const d2 = await reader.decode(m2!.value);
  assert.equal(d1.event.after!.balance, '1.50');
  assert.equal(d2.event.after!.balance, '1.500');
  assert.deepStrictEqual(d2.event.schema, v2);
  assert.equal([...rig.store.objects.keys()].filter((k) => k.startsWith('clinic/schemas/')).length, 2);
});

test('a damaged message body is an integrity error, never a wrong event', async () => {
  const rig = codecRig();
  const commit = '00000000000000cc';
  const [m] = await rig.codec.encodeBatch({
    source: 'clinic',
    txId: null,
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 5n,
    snapshot: false,
    events: [{ op: 'c', schema: patients, before: null, after: { id: 1n, 'full name': 'A', balance: '1.50', admitted: null }, position: Position.of(commit, 0) }],
  });
  const truncated = m!.value.subarray(0, m!.value.length - 3);
  await assert.rejects(rig.reader().decode(truncated), (e: ChartlogError) => e.code === 'integrity');
  const badPos = Buffer.from(m!.value);
  badPos.set(Buffer.from('ZZ'), badPos.indexOf(Buffer.from(commit)));
  await assert.rejects(rig.reader().decode(badPos), (e: ChartlogError) => e.code === 'integrity' && /position/.test(e.message));
});

test('columns named like JS internals (__proto__, constructor) round-trip as own properties', async () => {
  const odd: TableSchema = {
    schema: 'public',
    table: 'odd',
    primaryKey: ['constructor'],
    columns: [
      { name: 'constructor', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false },
      { name: '__proto__', sourceType: 'text', type: { kind: 'string' }, nullable: true },
      { name: 'prototype', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    ],
  };
  const after: Record<string, unknown> = { constructor: 1, prototype: 'p' };
  Object.defineProperty(after, '__proto__', { value: 'x', enumerable: true, writable: true, configurable: true });
  const commit = '00000000000000dd';
  for (const sealed of [[], ['__proto__', 'constructor']]) {
    const rig = codecRig({ policy: { columns: { 'public.odd': sealed }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
    const event = { op: 'c' as const, schema: odd, before: null, after: after as never, position: Position.of(commit, 0) };
    const [m] = await rig.codec.encodeBatch({ source: 'clinic', txId: null, position: Position.of(commit, COMMIT_SEQ), commitTsUs: 1n, snapshot: false, events: [event] });
    const d = await rig.reader({ withKeys: true }).decode(m!.value, { open: true });
    assert.ok(Object.hasOwn(d.event.after!, '__proto__'));
    assert.deepStrictEqual(d.event, event);
  }
});
