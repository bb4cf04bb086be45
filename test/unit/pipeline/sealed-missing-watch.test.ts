import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toAvroSchema } from '../../../src/codec/avro-schema.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { Position } from '../../../src/core/position.js';
import type { ColumnSchema, TableSchema } from '../../../src/core/table-schema.js';
import { SealedMissingWatch } from '../../../src/pipeline/sealed-missing-watch.js';

const id: ColumnSchema = { name: 'id', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false };
const note: ColumnSchema = { name: 'note', sourceType: 'text', type: { kind: 'string' }, nullable: true };
const flag: ColumnSchema = { name: 'flag', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false, missing: { value: 7 } };
const v = (...columns: ColumnSchema[]): TableSchema => ({ schema: 'public', table: 't', primaryKey: ['id'], columns });
const batch = (commit: string, ...versions: TableSchema[]): ChangeBatch => ({
  source: 's', txId: null, position: Position.of(commit), commitTsUs: 1_000_000n, snapshot: false,
  events: versions.map((schema, i) => ({ op: 'u', schema, before: null, after: { id: 1 }, position: Position.of(commit, i) })),
});

/** A watch over a fake codec: `sealed` columns are sealed; `stored` fingerprints were already in the archive. */
function watchWith(sealed: readonly string[], alreadyStored: readonly TableSchema[] = []) {
  const describe = (t: TableSchema) => SchemaStore.describe(toAvroSchema('s', t, new Set(sealed.filter((c) => t.columns.some((x) => x.name === c)))));
  const old = new Set(alreadyStored.map((t) => describe(t).fingerprint));
  return new SealedMissingWatch({ registeredOf: async (t) => describe(t), storedHere: (f) => !old.has(f) });
}

const C1 = '00000000000000000000000000000100';
const C2 = '00000000000000000000000000000200';

test('a sealed column added with a constant default asks for the table\'s re-read, with the window of its transaction', async () => {
  const w = watchWith(['note', 'flag']);
  assert.deepEqual(await w.requests(batch(C1, v(id, note))), []);
  const [r, ...more] = await w.requests(batch(C2, v(id, note, flag)));
  assert.equal(more.length, 0);
  assert.deepEqual(r!.tables, ['public.t']);
  assert.match(r!.reason, /flag .*sealed/);
  assert.deepEqual(r!.window, { from: Position.of(C2, 0), fromCommitTsUs: 1_000_000n, seenAt: Position.of(C2) });
  // The same version again (later batches) asks nothing more.
  assert.deepEqual(await w.requests(batch(C2, v(id, note, flag))), []);
});

test('negative controls: a public column (its value is stored), a column seen before, a version stored before this start', async () => {
  // Public: the schema records the value older rows read; nothing to re-read.
  const pub = watchWith(['note']);
  await pub.requests(batch(C1, v(id, note)));
  assert.deepEqual(await pub.requests(batch(C2, v(id, note, flag))), []);
  // First version seen since the start, already in the archive: handled before the restart.
  const restarted = watchWith(['note', 'flag'], [v(id, note, flag)]);
  assert.deepEqual(await restarted.requests(batch(C2, v(id, note, flag))), []);
  // ... and the same version new to the archive (the DDL was made while chartlog was stopped): re-read.
  const fresh = watchWith(['note', 'flag']);
  assert.equal((await fresh.requests(batch(C2, v(id, note, flag)))).length, 1);
  // Another column added later to a table whose sealed column was already there: no new re-read.
  const later = watchWith(['note', 'flag']);
  await later.requests(batch(C1, v(id, note, flag)));
  assert.deepEqual(await later.requests(batch(C2, v(id, note, flag, { ...note, name: 'other' }))), []);
});
