import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AvroCodec } from '../../../src/codec/avro-codec.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import { CodecEnvelopeReader } from '../../../src/archive/codec-envelope-reader.js';
import { recordBody } from '../../../src/codec/single-object.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const table: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'note', sourceType: 'text', type: { kind: 'string' }, nullable: true },
  ],
};

test('positions and commit times are read from codec records without decoding the rows', async () => {
  const store = new MemoryObjectStore();
  const schemas = new SchemaStore({ source: 'clinic', store });
  const codec = new AvroCodec({ source: 'clinic', connector: 'postgres', schemas });
  const commit = '00000000016b3748';
  const batch: ChangeBatch = {
    source: 'clinic',
    txId: '771',
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 1_795_500_000_123_456n,
    snapshot: false,
    events: [0, 1, 2].map((seq) => ({ op: 'c', schema: table, before: null, after: { id: 9_007_199_254_740_993n + BigInt(seq), note: 'x'.repeat(seq * 50) }, position: Position.of(commit, seq) })),
  };
  const messages = await codec.encodeBatch(batch);
  const reader = new CodecEnvelopeReader(schemas);
  const data = Buffer.concat(messages.map((m) => recordBody(m.value)));
  const split = await reader.splitterFor('clinic', messages[0]!.fingerprint);
  let offset = 0;
  for (let seq = 0; seq < 3; seq++) {
    const r = split(data, offset);
    assert.deepEqual(r.position, Position.of(commit, seq));
    assert.equal(r.commitTsUs, 1_795_500_000_123_456n);
    offset = r.end;
  }
  assert.equal(offset, data.length);
  assert.equal(JSON.parse(await reader.schemaJson('clinic', messages[0]!.fingerprint)).name, 'Envelope');
});
