import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ChartlogError } from '../../../src/core/errors.js';
import { qualifiedName } from '../../../src/core/table-schema.js';
import { batchWithPhiOf, type Engine } from '../../support/change-arbitraries.js';
import { codecRig } from '../../support/codec-support.js';
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

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: a block of any table version's records (sealed columns, markers, arrays, edge values) splits where the message decoder says each ends, with its position and commit time; a cut record is refused`, async () => {
    await fc.assert(
      fc.asyncProperty(batchWithPhiOf(engine, 'clinic'), async ([batch, phiColumns]) => {
        const rig = codecRig({ connector: engine, policy: { columns: { [qualifiedName(batch.events[0]!.schema)]: phiColumns }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
        const messages = await rig.codec.encodeBatch(batch);
        const bodies = messages.map((m) => recordBody(m.value));
        const data = Buffer.concat(bodies);
        const decoded = await rig.reader().decodeMany(messages.map((m) => m.value));
        const split = await new CodecEnvelopeReader(new SchemaStore({ source: 'clinic', store: rig.store })).splitterFor('clinic', messages[0]!.fingerprint);
        let offset = 0;
        decoded.forEach((d, i) => {
          const r = split(data, offset);
          assert.deepEqual(r.position, d.event.position);
          assert.equal(r.commitTsUs, d.commitTsUs);
          assert.equal(r.end, offset + bodies[i]!.length);
          offset = r.end;
        });
        // The last record cut short anywhere: refused as damaged, never split somewhere else.
        const last = bodies.at(-1)!;
        const start = data.length - last.length;
        for (const cut of [1, Math.floor(last.length / 2), last.length - 1]) {
          assert.throws(() => split(data.subarray(0, start + cut), start), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity');
        }
      }),
      { numRuns: 150 },
    );
  });
}
