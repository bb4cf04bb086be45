import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { UNCHANGED, qualifiedName } from '../../../src/core/table-schema.js';
import { batchOf, batchWithPhiOf, type Engine } from '../../support/change-arbitraries.js';
import { codecRig } from '../../support/codec-support.js';

const RUNS = 250;

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: every value kind round-trips exactly, unsealed (same process and a fresh reader)`, async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(engine, 'clinic'), async (batch) => {
        const rig = codecRig({ connector: engine });
        const messages = await rig.codec.encodeBatch(batch);
        assert.equal(messages.length, batch.events.length);
        const reader = rig.reader();
        for (const [i, m] of messages.entries()) {
          const event = batch.events[i]!;
          assert.deepEqual([m.value[0], m.value[1]], [0xc3, 0x01]);
          assert.equal(m.table, qualifiedName(event.schema));
          for (const decoder of [rig.codec, reader]) {
            const d = await decoder.decode(m.value);
            assert.deepStrictEqual(d.event, event);
            assert.equal(d.txId, batch.txId);
            assert.equal(d.commitTsUs, batch.commitTsUs);
            assert.equal(d.snapshot, batch.snapshot);
            assert.equal(d.source, 'clinic');
            assert.equal(d.connector, engine);
            assert.equal(d.fingerprint, m.fingerprint);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  test(`${engine}: every value kind round-trips exactly with random PHI columns sealed, and stays sealed without opening`, async () => {
    await fc.assert(
      fc.asyncProperty(
        batchWithPhiOf(engine, 'clinic'),
        async ([batch, phiColumns]) => {
          const table = qualifiedName(batch.events[0]!.schema);
          const rig = codecRig({ connector: engine, policy: { columns: { [table]: phiColumns }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
          const messages = await rig.codec.encodeBatch(batch);
          const opener = rig.reader({ withKeys: true });
          const archiveReader = rig.reader();
          for (const [i, m] of messages.entries()) {
            const event = batch.events[i]!;
            const opened = await opener.decode(m.value, { open: true });
            assert.deepStrictEqual(opened.event, event);
            assert.deepEqual(opened.sealedColumns, []);

            const sealed = await archiveReader.decode(m.value);
            assert.deepEqual([...sealed.sealedColumns].sort(), [...phiColumns].sort());
            for (const side of ['before', 'after'] as const) {
              const plain = event[side];
              const got = sealed.event[side];
              assert.equal(got === null, plain === null);
              if (!plain || !got) continue;
              assert.deepEqual(Object.keys(got).sort(), Object.keys(plain).sort());
              for (const [name, v] of Object.entries(plain)) {
                if (phiColumns.includes(name) && v !== null && v !== UNCHANGED) {
                  assert.ok(got[name] instanceof Uint8Array, `${name} stays sealed bytes`);
                } else {
                  assert.deepStrictEqual(got[name], v);
                }
              }
            }
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
}
