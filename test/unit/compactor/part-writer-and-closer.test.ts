import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Position } from '../../../src/core/position.js';
import type { BusBatch } from '../../../src/codec/bus-message.js';
import { readAvroContainer } from '../../../src/archive/avro-container.js';
import { HourCloser } from '../../../src/compactor/hour-closer.js';
import { manifestKey, TRANSACTIONS_TABLE } from '../../../src/archive/layout.js';
import { listManifestHours, parseManifest, sha256Hex } from '../../../src/archive/manifest.js';
import { PartWriter } from '../../../src/compactor/part-writer.js';
import { decodeTransaction } from '../../../src/archive/transaction-log.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { Lease } from '../../../src/archive/lease.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { batch, decodeAll, envelopes, HOUR_US, T0 } from '../../support/fake-envelopes.js';

test('a flush writes one part per table, hour and schema version, and reports what became durable', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  assert.equal(await w.flush(), null);
  const b1 = batch(1, T0 + 10n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], null);
  const b2 = batch(2, T0 + 20n, [['public.patients', '00000000000000a2']], b1.position);
  w.add(b1);
  w.add(b2);
  const r = await w.flush();
  assert.ok(r);
  assert.deepEqual(r.upTo, b2.position);
  assert.equal(r.batches, 2);
  assert.equal(r.events, 3);
  const keys = [...store.objects.keys()].sort();
  assert.equal(keys.length, 4, keys.join('\n'));
  assert.ok(keys.every((k) => k.startsWith('clinic/parts/2026-11-24/05/')));
  const v2 = keys.find((k) => k.includes('/public.patients/') && decodeAll(store.objects.get(k)!.body, k)[0]?.v === 'row 2/0');
  assert.ok(v2, 'the schema change started its own part');
  assert.equal(await w.flush(), null, 'nothing pending after a flush');
});

test('a failed write is retried and the flush completes only when every part is stored', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  w.add(batch(1, T0, [['public.patients', '00000000000000a1']], null));
  store.failNext(3);
  const r = await w.flush();
  assert.ok(r);
  assert.equal(store.objects.size, 2);
});

test('the transaction log is stored only after every table part of its flush (a kill -9 between them never leaves a log record without its events)', async () => {
  // Table parts are slow to store here, the transaction log fast: written concurrently, the log would land first.
  const stored: string[] = [];
  class SlowTables extends MemoryObjectStore {
    override async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
      if (!key.includes(TRANSACTIONS_TABLE)) await new Promise((r) => setTimeout(r, 20));
      const r = await super.putIfAbsent(key, body);
      stored.push(key);
      return r;
    }
  }
  const w = new PartWriter(new SlowTables(), 'clinic', envelopes);
  w.add(batch(1, T0 + 10n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], null));
  assert.ok(await w.flush());
  assert.equal(stored.length, 3);
  assert.ok(stored[2]!.includes(TRANSACTIONS_TABLE), `the log is last: ${stored.join(', ')}`);
});

test('closing an hour merges parts into deduplicated segments in position order and chains manifests', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  const batches: BusBatch[] = [];
  let prev: Position | null = null;
  for (let n = 1; n <= 30; n++) {
    const b = batch(n, T0 + BigInt(n) * 1000n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], prev);
    batches.push(b);
    prev = b.position;
  }
  // Three flushes, then a redelivery of batches 11..20 (as after a crash before a checkpoint).
  for (const slice of [batches.slice(0, 10), batches.slice(10, 20), batches.slice(20)]) {
    for (const b of slice) w.add(b);
    await w.flush();
  }
  for (const b of batches.slice(10, 20)) w.add(b);
  await w.flush();

  const closer = new HourCloser(store, 'clinic', envelopes);
  assert.deepEqual(await closer.hoursWithParts(), ['2026-11-24T05']);
  const m = await closer.close('2026-11-24T05');
  assert.ok(m);
  assert.equal(m.transactions, 30);
  assert.equal(m.events, 60);
  assert.equal(m.previous, null);
  assert.equal([...store.objects.keys()].filter((k) => k.includes('/parts/')).length, 0, 'parts are deleted once the hour is closed');
  const patients = m.objects.filter((o) => o.table === 'public.patients');
  assert.equal(patients.length, 1);
  const rows = decodeAll(store.objects.get(patients[0]!.key)!.body, 'segment');
  assert.deepEqual(rows.map((r) => r.v), batches.map((_, i) => `row ${i + 1}/0`));
  for (const o of m.objects) assert.equal(o.sha256, sha256Hex(store.objects.get(o.key)!.body));
  const tx = m.objects.find((o) => o.table === TRANSACTIONS_TABLE)!;
  const txData = readAvroContainer(store.objects.get(tx.key)!.body).blocks[0]!.data;
  const first = decodeTransaction(txData, 0).record;
  assert.deepEqual(first.tables, { 'public.patients': 1, 'public.visits': 1 });

  // The next hour's manifest points at this one by hash.
  w.add(batch(31, T0 + HOUR_US + 5n, [['public.visits', '00000000000000a1']], prev));
  await w.flush();
  const m2 = await closer.close('2026-11-24T06');
  assert.deepEqual(m2?.previous, { hour: '2026-11-24T05', sha256: sha256Hex(store.objects.get(manifestKey('clinic', '2026-11-24T05'))!.body) });
  assert.deepEqual(await listManifestHours(store, 'clinic'), ['2026-11-24T05', '2026-11-24T06']);
  assert.equal(parseManifest(store.objects.get(manifestKey('clinic', '2026-11-24T06'))!.body, 'm').events, 1);
});

test('closing again after a crash between manifest and clean-up only cleans up', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  w.add(batch(1, T0, [['public.patients', '00000000000000a1']], null));
  await w.flush();
  const parts = [...store.objects.entries()];
  await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  const manifest = Buffer.from(store.objects.get(manifestKey('clinic', '2026-11-24T05'))!.body);
  for (const [k, v] of parts) store.objects.set(k, v); // the deletes "did not happen"
  const again = await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  assert.equal(again, null);
  assert.deepEqual(store.objects.get(manifestKey('clinic', '2026-11-24T05'))!.body, manifest);
  assert.equal([...store.objects.keys()].filter((k) => k.includes('/parts/')).length, 0);
});

test('closing a closed hour again never deletes a part written after its manifest (events its segments lack)', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  const b1 = batch(1, T0, [['public.patients', '00000000000000a1']], null);
  w.add(b1);
  await w.flush();
  const merged = [...store.objects.entries()];
  await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  for (const [k, v] of merged) store.objects.set(k, v); // a crash before the clean-up
  // A second writer that thought the hour open wrote more of it after the manifest.
  const late = new PartWriter(store, 'clinic', envelopes);
  late.add(batch(2, T0 + 10n, [['public.patients', '00000000000000a1']], b1.position));
  await late.flush();
  const lateParts = [...store.objects.keys()].filter((k) => k.includes('/parts/') && !merged.some(([m]) => m === k));
  assert.equal(lateParts.length, 2);
  assert.equal(await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05'), null);
  const left = [...store.objects.keys()].filter((k) => k.includes('/parts/')).sort();
  assert.deepEqual(left, lateParts.sort(), 'only the merged parts are deleted; the late ones stay');
});

test('hour closing by a process whose lease was taken over writes and deletes nothing', async () => {
  const store = new MemoryObjectStore();
  const mine = new Lease({ store, source: 'clinic', ttlMs: 60_000 });
  await mine.acquire();
  const w = new PartWriter(store, 'clinic', envelopes, undefined, mine);
  w.add(batch(1, T0, [['public.patients', '00000000000000a1']], null));
  await w.flush();
  const taker = new Lease({ store, source: 'clinic', ttlMs: 60_000, now: () => Date.now() + 120_000 });
  await taker.acquire();
  const before = [...store.objects.keys()].sort();
  await assert.rejects(new HourCloser(store, 'clinic', envelopes, undefined, mine).close('2026-11-24T05'), (e: unknown) => e instanceof ChartlogError && e.code === 'lease');
  assert.deepEqual([...store.objects.keys()].sort(), before);
  // Its part writer is fenced too.
  w.add(batch(2, T0 + 5n, [['public.patients', '00000000000000a1']], null));
  await assert.rejects(w.flush(), (e: unknown) => e instanceof ChartlogError && e.code === 'lease');
  assert.deepEqual([...store.objects.keys()].sort(), before);
  await taker.release();
});

test('closing an hour whose part holds a reordered delivery (records below its name) still gives every record once, in order', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  const batches: BusBatch[] = [];
  let prev: Position | null = null;
  for (let n = 1; n <= 30; n++) {
    const b = batch(n, T0 + BigInt(n) * 1000n, [['public.patients', '00000000000000a1']], prev);
    batches.push(b);
    prev = b.position;
  }
  // Parts named from 1, 12 and 21; the last also holds 11 and 15..20, below its name's first
  // position: the streaming merge has passed 12..14 when it reaches it, so the closer reads the
  // table-hour whole instead, before writing anything.
  const flushes = [batches.slice(0, 10), batches.slice(11, 14), [...batches.slice(20), batches[10]!, ...batches.slice(14, 20)]];
  for (const slice of flushes) {
    for (const b of slice) w.add(b);
    await w.flush();
  }
  const m = await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  assert.ok(m);
  assert.equal(m.transactions, 30);
  assert.equal(m.events, 30);
  const patients = m.objects.filter((o) => o.table === 'public.patients');
  assert.equal(patients.length, 1);
  assert.deepEqual(decodeAll(store.objects.get(patients[0]!.key)!.body, 'segment').map((r) => r.v), batches.map((_, i) => `row ${i + 1}/0`));
  for (const o of m.objects) assert.equal(o.sha256, sha256Hex(store.objects.get(o.key)!.body));
});
