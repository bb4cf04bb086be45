import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { UNCHANGED, qualifiedName } from '../../../src/core/table-schema.js';
import { SealPool } from '../../../src/phi/seal-pool.js';
import { batchOf, type Engine } from './change-arbitraries.js';
import { codecRig } from './codec-support.js';

const pool = new SealPool(1);
after(() => pool.close());

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: batches sealed on a pool thread open to exactly the events that went in, and stay sealed without opening`, async () => {
    const before = pool.stats.onThread;
    await fc.assert(
      fc.asyncProperty(
        batchOf(engine, 'clinic').chain((b) =>
          fc.tuple(fc.constant(b), fc.subarray(b.events[0]!.schema.columns.map((c) => c.name), { minLength: 1 })),
        ),
        async ([batch, phiColumns]) => {
          const table = qualifiedName(batch.events[0]!.schema);
          const rig = codecRig({ connector: engine, policy: { columns: { [table]: phiColumns }, strict: [], publicColumns: {} }, sealPool: pool, sealPoolFromEvents: 1 });
          const messages = await rig.codec.encodeBatch(batch);
          assert.equal(messages.length, batch.events.length);
          const opener = rig.reader({ withKeys: true });
          const archiveReader = rig.reader();
          for (const [i, m] of messages.entries()) {
            const event = batch.events[i]!;
            assert.equal(m.table, table);
            assert.deepEqual(m.position, event.position);
            const opened = await opener.decode(m.value, { open: true });
            assert.deepStrictEqual(opened.event, event);
            assert.equal(opened.txId, batch.txId);
            assert.equal(opened.commitTsUs, batch.commitTsUs);
            const sealed = await archiveReader.decode(m.value);
            for (const side of ['before', 'after'] as const) {
              const plain = event[side];
              const got = sealed.event[side];
              if (!plain || !got) continue;
              for (const [name, v] of Object.entries(plain)) {
                if (phiColumns.includes(name) && v !== null && v !== UNCHANGED) assert.ok(got[name] instanceof Uint8Array, `${name} stays sealed bytes`);
                else assert.deepStrictEqual(got[name], v);
              }
            }
          }
        },
      ),
      { numRuns: 200 },
    );
    assert.ok(pool.stats.onThread > before, 'batches went to the thread');
  });
}

test('a large batch sealed on the pool and the same batch sealed inline decode to the same events', async () => {
  const [batch] = fc.sample(
    batchOf('postgres', 'clinic').filter((b) => b.events.length === 5),
    { numRuns: 1, seed: 42 },
  );
  const big = { ...batch!, events: Array.from({ length: 400 }, (_, i) => batch!.events[i % 5]!) };
  const table = qualifiedName(big.events[0]!.schema);
  const policy = { columns: { [table]: big.events[0]!.schema.columns.map((c) => c.name) }, strict: [], publicColumns: {} };
  const pooled = codecRig({ policy, sealPool: pool, sealPoolFromEvents: 16 });
  const inline = codecRig({ policy });
  const fromPool = await pooled.codec.encodeBatch(big);
  const fromInline = await inline.codec.encodeBatch(big);
  assert.equal(fromPool.length, 400);
  for (const [i, m] of fromPool.entries()) {
    assert.equal(m.value.length, fromInline[i]!.value.length, 'same layout');
    const a = await pooled.reader({ withKeys: true }).decode(m.value, { open: true });
    const b = await inline.reader({ withKeys: true }).decode(fromInline[i]!.value, { open: true });
    assert.deepStrictEqual(a.event, b.event);
  }
});
