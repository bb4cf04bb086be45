import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import type { OpenAuditEntry } from '../../../src/phi/phi-opener.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { UNCHANGED, qualifiedName } from '../../../src/core/table-schema.js';
import { CryptoPool } from '../../../src/phi/crypto-pool.js';
import { batchOf, batchWithPhiOf, type Engine } from '../../support/change-arbitraries.js';
import { codecRig, ssnPhonePatients as patients } from '../../support/codec-support.js';

const pool = new CryptoPool(1);
after(() => pool.close());

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: batches sealed on a pool thread open to exactly the events that went in, and stay sealed without opening`, async () => {
    const before = pool.stats.onThread;
    await fc.assert(
      fc.asyncProperty(
        batchWithPhiOf(engine, 'clinic'),
        async ([batch, phiColumns]) => {
          const table = qualifiedName(batch.events[0]!.schema);
          const rig = codecRig({ connector: engine, policy: { columns: { [table]: phiColumns }, strict: [], publicColumns: {}, unclassified: 'clear' as const }, cryptoPool: pool, poolFrom: 1 });
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
  const policy = { columns: { [table]: big.events[0]!.schema.columns.map((c) => c.name) }, strict: [], publicColumns: {}, unclassified: 'clear' as const };
  const pooled = codecRig({ policy, cryptoPool: pool, poolFrom: 16 });
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

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: decodeMany opens on a pool thread exactly what decode opens, with the same audit entries`, async () => {
    const before = pool.stats.onThread;
    await fc.assert(
      fc.asyncProperty(
        fc.array(batchOf(engine, 'clinic'), { minLength: 1, maxLength: 3 }).chain((bs) =>
          fc.tuple(fc.constant(bs), fc.subarray(bs[0]!.events[0]!.schema.columns.map((c) => c.name), { minLength: 1 })),
        ),
        async ([batches, phiColumns]) => {
          const table = qualifiedName(batches[0]!.events[0]!.schema);
          const rig = codecRig({ connector: engine, policy: { columns: { [table]: phiColumns }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
          const messages: Uint8Array[] = [];
          // Batches of other tables carry no PHI: a mix of sealed and plain messages.
          for (const b of batches) for (const m of await rig.codec.encodeBatch(b)) messages.push(m.value);
          const auditOne: OpenAuditEntry[] = [];
          const auditMany: OpenAuditEntry[] = [];
          const one = rig.reader({ withKeys: true, onOpen: (e) => auditOne.push(e) });
          const many = rig.reader({ withKeys: true, onOpen: (e) => auditMany.push(e), cryptoPool: pool });
          const expected = [];
          for (const m of messages) expected.push(await one.decode(m, { open: true }));
          const got = await many.decodeMany(messages, { open: true });
          assert.equal(got.length, messages.length);
          for (const [i, d] of got.entries()) {
            assert.deepStrictEqual(d.event, expected[i]!.event);
            assert.deepEqual(d.sealedColumns, []);
          }
          assert.deepStrictEqual(auditMany, auditOne);
        },
      ),
      { numRuns: 150 },
    );
    assert.ok(pool.stats.onThread > before, 'openings went to the thread');
  });
}

test('a damaged sealed value among many fails decodeMany with the error decode gives, naming the column and no value', async () => {
  const rig = codecRig({ policy: { columns: { 'public.patients': ['ssn', 'phone'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const }, cryptoPool: pool, poolFrom: 16 });
  const commit = '0000000000000100';
  const batch: ChangeBatch = {
    source: 'clinic',
    txId: '1',
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 1n,
    snapshot: false,
    events: Array.from({ length: 64 }, (_, i) => ({
      op: 'c' as const,
      schema: patients,
      before: null,
      after: { id: BigInt(i), ssn: `CANARY-SSN-${i}`, phone: `CANARY-PHN-${i}` },
      position: Position.of(commit, i),
    })),
  };
  const messages = (await rig.codec.encodeBatch(batch)).map((m) => Buffer.from(m.value));
  const damaged = messages[40]!;
  const rowSeal = (await rig.reader().decode(damaged)).event.after!.ssn as Uint8Array;
  damaged[damaged.indexOf(Buffer.from(rowSeal)) + 70]! ^= 0x01; // inside the row's seal (format 3), carried by ssn
  const opener = rig.reader({ withKeys: true, cryptoPool: pool });
  const one = await rig.reader({ withKeys: true }).decode(damaged, { open: true }).then(
    () => assert.fail('a damaged value opened'),
    (e: unknown) => e as ChartlogError,
  );
  await assert.rejects(opener.decodeMany(messages, { open: true }), (e: unknown) => {
    assert.ok(e instanceof ChartlogError);
    assert.equal(e.code, 'integrity');
    assert.equal(e.message, one.message);
    assert.match(e.message, /clinic public\.patients: sealed value failed authentication/);
    assert.ok(!e.message.includes('CANARY') && !(e.hint ?? '').includes('CANARY'));
    return true;
  });
  // The intact ones still open, all 63 of them.
  const intact = await opener.decodeMany(messages.filter((m) => m !== damaged), { open: true });
  assert.deepEqual(intact.map((d) => d.event.after!.ssn), messages.flatMap((_m, i) => (i === 40 ? [] : [`CANARY-SSN-${i}`])));
});

test('a crypto thread that dies while sealing a batch loses nothing: the batch is encoded again on the calling thread', async () => {
  const local = new CryptoPool(1);
  try {
    const rig = codecRig({ policy: { columns: { 'public.patients': ['ssn', 'phone'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const }, cryptoPool: local, poolFrom: 16 });
    const commit = '0000000000000200';
    const batch = (n: number): ChangeBatch => ({
      source: 'clinic',
      txId: '2',
      position: Position.of(commit, COMMIT_SEQ),
      commitTsUs: 2n,
      snapshot: false,
      events: Array.from({ length: n }, (_, i) => ({ op: 'c' as const, schema: patients, before: null, after: { id: BigInt(i), ssn: `CANARY-SSN-${i}`, phone: `CANARY-PHN-${i}` }, position: Position.of(commit, i) })),
    });
    await rig.codec.encodeBatch(batch(16)); // starts the thread
    assert.equal(local.stats.onThread, 1);
    const encoding = rig.codec.encodeBatch(batch(20_000));
    const pending = (local as unknown as { pending: Map<number, unknown> }).pending;
    while (pending.size === 0) await new Promise((r) => setImmediate(r));
    await (local as unknown as { workers: { terminate(): Promise<number> }[] }).workers[0]!.terminate();
    const messages = await encoding;
    assert.equal(local.stats.onThread, 1, 'the second batch did not come back from the thread');
    assert.equal(messages.length, 20_000);
    const opener = rig.reader({ withKeys: true });
    for (const i of [0, 1, 9_999, 19_999]) {
      assert.deepEqual((await opener.decode(messages[i]!.value, { open: true })).event.after, { id: BigInt(i), ssn: `CANARY-SSN-${i}`, phone: `CANARY-PHN-${i}` });
    }
  } finally {
    await local.close();
  }
});
