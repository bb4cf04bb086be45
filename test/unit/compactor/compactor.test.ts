import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Position } from '../../../src/core/position.js';
import { EmbeddedBus } from '../../../src/bus/embedded-bus.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { Compactor } from '../../../src/compactor/compactor.js';
import { listManifestHours } from '../../../src/archive/manifest.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { batch, envelopes, HOUR_US, T0 } from '../../support/fake-envelopes.js';

const options = { flushIntervalMs: 20, maxPartBytes: 1 << 20, closeGraceMs: 60_000, snapshotId: null };

test('positions are acknowledged only after their parts and the checkpoint are stored', async () => {
  const store = new MemoryObjectStore();
  const bus = new EmbeddedBus(4);
  const acked: Position[] = [];
  const compactor = new Compactor(store, 'clinic', envelopes, options, async (r) => {
    // At acknowledgement time the checkpoint already covers the position.
    const cp = await readCheckpoint(store, 'clinic');
    assert.deepEqual(cp?.position, r.upTo);
    assert.ok([...store.objects.keys()].some((k) => k.includes('/parts/')));
    acked.push(r.upTo);
  });
  await compactor.start();
  const running = compactor.run(bus);
  let prev: Position | null = null;
  const published: Position[] = [];
  for (let n = 1; n <= 40; n++) {
    const b = batch(n, T0 + BigInt(n), [['public.patients', '00000000000000a1']], prev);
    await bus.publish(b); // waits while 4 batches are queued: backpressure
    assert.ok(bus.size <= 4);
    published.push(b.position);
    prev = b.position;
  }
  bus.close();
  await running;
  assert.ok(acked.length >= 1);
  assert.deepEqual(acked[acked.length - 1], published[published.length - 1]);
  for (let i = 1; i < acked.length; i++) assert.ok(acked[i]!.commit > acked[i - 1]!.commit, 'acknowledgements only move forward');
});

test('an hour is sealed once the durable stream has moved past it', async () => {
  const store = new MemoryObjectStore();
  // The clock stands still: a flush slower than the 20 ms interval (a loaded machine) would
  // otherwise make the source look quiet and close the hour by the clock instead.
  const compactor = new Compactor(store, 'clinic', envelopes, { ...options, now: () => Number(T0 / 1000n) + 2 * 3_600_000 }, async () => {});
  await compactor.start();
  const b1 = batch(1, T0 + 5n, [['public.patients', '00000000000000a1']], null);
  compactor.add(b1);
  await compactor.flush();
  await compactor.closeFinishedHours();
  assert.deepEqual(await listManifestHours(store, 'clinic'), [], 'the hour is still open');
  compactor.add(batch(2, T0 + HOUR_US + 5n, [['public.patients', '00000000000000a1']], b1.position));
  await compactor.flush();
  await compactor.closeFinishedHours();
  assert.deepEqual(await listManifestHours(store, 'clinic'), ['2026-11-24T05']);
  // A late transaction of the sealed hour goes into the open one instead of reopening it.
  compactor.add(batch(3, T0 + 9n, [['public.patients', '00000000000000a1']], null));
  await compactor.flush();
  assert.ok([...store.objects.keys()].some((k) => k.startsWith('clinic/parts/2026-11-24/06/~flush/0000000000000003')));
});

test('a batch published during a flush waits one interval from its publication, not from the end of that flush', async () => {
  // Interval 400 ms; every flush takes 600 ms (a slow store). Batch 2 is published 100 ms into
  // the first flush. Counting the interval from the end of the flush would make it durable
  // ≈ 1500 ms after publication (600 left of flush 1 … +400 … +600); counting from its
  // publication, it is flushed as soon as flush 1 ends, ≈ 1100 ms.
  const store = new MemoryObjectStore();
  const bus = new EmbeddedBus(16);
  const durableAt = new Map<string, number>();
  let flushes = 0;
  const compactor = new Compactor(store, 'clinic', envelopes, { ...options, flushIntervalMs: 400 }, async (r) => {
    flushes++;
    await new Promise((resolve) => setTimeout(resolve, 600));
    durableAt.set(r.upTo.commit, Date.now());
  });
  await compactor.start();
  const running = compactor.run(bus);
  const b1 = batch(1, T0 + 1n, [['public.patients', '00000000000000a1']], null);
  await bus.publish(b1);
  while (flushes === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const b2 = batch(2, T0 + 2n, [['public.patients', '00000000000000a1']], b1.position);
  const publishedAt = Date.now();
  await bus.publish(b2);
  while (!durableAt.has(b2.position.commit)) await new Promise((resolve) => setTimeout(resolve, 5));
  bus.close();
  await running;
  const latency = durableAt.get(b2.position.commit)! - publishedAt;
  assert.ok(latency >= 500, `it still waited for flush 1 and its own flush (${latency} ms)`);
  assert.ok(latency < 1350, `durable ${latency} ms after publication; the deadline must count from publication`);
});
