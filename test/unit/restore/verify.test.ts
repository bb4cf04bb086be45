import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Position } from '../../../src/core/position.js';
import { Compactor } from '../../../src/compactor/compactor.js';
import { HourCloser } from '../../../src/compactor/hour-closer.js';
import { manifestKey } from '../../../src/archive/layout.js';
import { PartWriter } from '../../../src/compactor/part-writer.js';
import { transactionRecordOf } from '../../../src/archive/transaction-log.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { batch, envelopes, HOUR_US, T0 } from '../../support/fake-envelopes.js';

async function archive(hours: number, skip: number | null = null): Promise<MemoryObjectStore> {
  const store = new MemoryObjectStore();
  // The source is never quiet here (a flush slower than the interval under load would close the last hour too).
  const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 60_000, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null }, async () => {});
  await c.start();
  let prev: Position | null = null;
  for (let n = 1; n <= hours * 3; n++) {
    const b = batch(n, T0 + BigInt(Math.floor((n - 1) / 3)) * HOUR_US + BigInt(n), [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], prev);
    prev = b.position;
    if (n === skip) continue; // lost on the way: the next transaction still names it
    c.add(b);
    await c.flush();
    await c.closeFinishedHours();
  }
  // fake-envelopes schemas are not in the store; put them where verify looks.
  for (const fp of ['00000000000000a1', '00000000000000a2']) await store.put(`clinic/schemas/${fp}.json`, Buffer.from(await envelopes.schemaJson('clinic', fp)));
  return store;
}

const verify = async (store: MemoryObjectStore) => verifyArchive(store, await readArchiveIndex(store, 'clinic'), envelopes);

test('a whole archive verifies', async () => {
  const r = await verify(await archive(3));
  assert.deepEqual(r.problems, []);
  assert.equal(r.ok, true);
  assert.equal(r.checked.transactions, 9);
  assert.equal(r.checked.events, 18);
  assert.equal(r.checked.manifests, 2);
});

test('every flipped bit in an object of a closed hour is found and the object named', async () => {
  const store = await archive(3);
  const sealed = [...store.objects.keys()].filter((k) => k.includes('/segments/'));
  assert.ok(sealed.length >= 6);
  for (const key of sealed) {
    const original = store.objects.get(key)!.body;
    for (const byte of [0, Math.floor(original.length / 2), original.length - 1]) {
      const damaged = Buffer.from(original);
      damaged[byte] = damaged[byte]! ^ 0x10;
      store.objects.set(key, { body: damaged, lastModified: new Date() });
      const r = await verify(store);
      assert.equal(r.ok, false);
      assert.deepEqual(r.problems.map((p) => [p.kind, p.object]), [['checksum', key]]);
    }
    store.objects.set(key, { body: original, lastModified: new Date() });
  }
});

test('a missing or altered manifest breaks the chain', async () => {
  const store = await archive(3);
  const m = manifestKey('clinic', '2026-11-24T05');
  const body = store.objects.get(m)!.body;
  const edited = { ...JSON.parse(body.toString()), sealedAt: '2020-01-01T00:00:00.000Z' };
  store.objects.set(m, { body: Buffer.from(JSON.stringify(edited)), lastModified: new Date() });
  const altered = await verify(store);
  assert.deepEqual(altered.problems.map((p) => p.kind), ['chain']);
  assert.match(altered.problems[0]!.message, /altered/);
  store.objects.delete(m);
  const missing = await verify(store);
  assert.equal(missing.problems[0]?.kind, 'chain');
});

test('a lost transaction is a gap, and a transaction missing events is a count problem', async () => {
  const gap = await verify(await archive(2, 4));
  assert.deepEqual(gap.problems.map((p) => p.kind), ['gap']);
  assert.match(gap.problems[0]!.message, /0000000000000005\.ffffffff follows 0000000000000004\.ffffffff/);

  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  const b = batch(1, T0, [['public.patients', '00000000000000a1']], null);
  w.add(b);
  w.addTransaction('2026-11-24T05', { ...transactionRecordOf(batch(2, T0, [['public.patients', '00000000000000a1']], b.position)) });
  await w.flush();
  await store.put('clinic/schemas/00000000000000a1.json', Buffer.from(await envelopes.schemaJson('clinic', '00000000000000a1')));
  const count = await verify(store);
  assert.deepEqual(count.problems.map((p) => p.kind), ['count']);
  assert.match(count.problems[0]!.message, /1 events of public\.patients logged, 0 stored/);
});

test('a flipped bit in a part of the open hour is found by the hash in its name, and hour closing refuses it', async () => {
  const store = await archive(2);
  const parts = [...store.objects.keys()].filter((k) => k.includes('/parts/'));
  assert.ok(parts.length >= 2);
  for (const key of parts) assert.match(key, /\/~flush\/.*\.[0-9a-f]{32}\.avro$/);
  const key = parts[0]!;
  const damaged = Buffer.from(store.objects.get(key)!.body);
  damaged[damaged.length - 20] = damaged[damaged.length - 20]! ^ 0x01;
  store.objects.set(key, { body: damaged, lastModified: new Date() });
  const r = await verify(store);
  assert.deepEqual(r.problems.map((p) => [p.kind, p.object]), [['checksum', key]]);
  const hour = key.match(/parts\/(\d{4}-\d{2}-\d{2})\/(\d{2})\//)!;
  await assert.rejects(new HourCloser(store, 'clinic', envelopes).close(`${hour[1]}T${hour[2]}`), { code: 'integrity', message: new RegExp(key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) });
});
