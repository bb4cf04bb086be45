import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
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
import { LegacyPartWriter } from '../../support/legacy-part-writer.js';
import { flushPartSection, flushPartToc } from '../../../src/archive/flush-part.js';
import { readArchiveIndex, tablesOf } from '../../../src/archive/archive-index.js';
import { ArchiveReader } from '../../../src/archive/archive-reader.js';
import { verifyArchive } from '../../../src/restore/verify.js';

/** The sections of a flush part in the store, each decoded with its own container's writer schema. */
function sectionsOf(store: MemoryObjectStore, key: string): { table: string; fingerprint: string; rows: { v: string }[] }[] {
  const body = store.objects.get(key)!.body;
  return flushPartToc(body, key).map((_, i) => {
    const s = flushPartSection(body, key, i);
    return { table: s.table, fingerprint: s.fingerprint, rows: decodeAll(s.container, key) };
  });
}

test('a flush writes one flush part per hour, with a section per table and schema version and the transaction log, and reports what became durable', async () => {
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
  assert.deepEqual(keys, r.objects);
  assert.equal(keys.length, 1, keys.join('\n'));
  assert.match(keys[0]!, /^clinic\/parts\/2026-11-24\/05\/~flush\/0000000000000001\.00000000-0000000000000002\.ffffffff\.[0-9a-f]{32}\.avro$/);
  const sections = sectionsOf(store, keys[0]!);
  assert.deepEqual(sections.map((s) => [s.table, s.fingerprint, s.rows.map((x) => x.v)]), [
    ['public.patients', '00000000000000a1', ['row 1/0']],
    ['public.visits', '00000000000000a1', ['row 1/1']],
    [TRANSACTIONS_TABLE, TRANSACTIONS_TABLE, [undefined, undefined]],
    ['public.patients', '00000000000000a2', ['row 2/0']],
  ], 'each table version is its own section, decoded with its own writer schema');
  assert.equal(await w.flush(), null, 'nothing pending after a flush');
});

test('a flush across the end of an hour writes one flush part per hour', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  const b1 = batch(1, T0 + HOUR_US - 1n, [['public.patients', '00000000000000a1']], null);
  w.add(b1);
  w.add(batch(2, T0 + HOUR_US, [['public.patients', '00000000000000a1']], b1.position));
  await w.flush();
  const keys = [...store.objects.keys()].sort();
  assert.equal(keys.length, 2);
  assert.ok(keys[0]!.startsWith('clinic/parts/2026-11-24/05/~flush/') && keys[1]!.startsWith('clinic/parts/2026-11-24/06/~flush/'), keys.join('\n'));
  for (const k of keys) assert.deepEqual(sectionsOf(store, k).map((s) => s.table), ['public.patients', TRANSACTIONS_TABLE], 'each hour holds its transactions and their events');
});

test('a failed write is retried and the flush completes only when its part is stored', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  w.add(batch(1, T0, [['public.patients', '00000000000000a1']], null));
  store.failNext(3);
  const r = await w.flush();
  assert.ok(r);
  assert.equal(store.objects.size, 1);
});

/** Transaction-log records in the store whose events are not all stored (what verify counts, at its simplest). */
async function logRecordsWithoutEvents(store: MemoryObjectStore): Promise<string[]> {
  const reader = new ArchiveReader(store, await readArchiveIndex(store, 'clinic'), envelopes);
  const stored = new Map<string, number>();
  for (const table of ['public.patients', 'public.visits']) {
    for (const r of await reader.tableRecords(table, null)) stored.set(`${r.position.commit} ${table}`, (stored.get(`${r.position.commit} ${table}`) ?? 0) + 1);
  }
  const orphans: string[] = [];
  for (const tx of await reader.transactions(null)) {
    const commit = tx.pos.split('.')[0]!;
    for (const [table, n] of Object.entries(tx.tables)) if ((stored.get(`${commit} ${table}`) ?? 0) < Number(n)) orphans.push(`${tx.pos} ${table}`);
  }
  return orphans;
}

test('a transaction-log record is never durable before the table records it vouches for: one write holds both, and a write that dies stores neither', async () => {
  // Each write is recorded with the tables it made durable.
  const writes: string[][] = [];
  class Recording extends MemoryObjectStore {
    dieOnWrite = false;
    override async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
      if (this.dieOnWrite) throw new ChartlogError('internal', `killed before ${key} was written`);
      writes.push(flushPartToc(body, key).map((s) => s.table));
      return super.putIfAbsent(key, body);
    }
  }
  const store = new Recording();
  const w = new PartWriter(store, 'clinic', envelopes);
  const b1 = batch(1, T0 + 10n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], null);
  w.add(b1);
  assert.ok(await w.flush());
  assert.deepEqual(writes, [['public.patients', 'public.visits', TRANSACTIONS_TABLE]], 'one write: the events and the log record that counts them');
  assert.deepEqual(await logRecordsWithoutEvents(store), []);

  // A kill -9 during the next flush's write: nothing of it is stored, so no log record without its events.
  store.dieOnWrite = true;
  w.add(batch(2, T0 + 20n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], b1.position));
  await assert.rejects(w.flush(), /killed before/);
  assert.equal(store.objects.size, 1);
  assert.deepEqual(await logRecordsWithoutEvents(store), []);
});

test('negative control: the check finds a log record whose events are missing (per-table parts, a table part lost)', async () => {
  const store = new MemoryObjectStore();
  const w = new LegacyPartWriter(store, 'clinic', envelopes);
  w.add(batch(1, T0 + 10n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], null));
  await w.flush();
  assert.deepEqual(await logRecordsWithoutEvents(store), []);
  const visits = [...store.objects.keys()].find((k) => k.includes('/public.visits/'))!;
  store.objects.delete(visits);
  assert.deepEqual(await logRecordsWithoutEvents(store), ['0000000000000001.ffffffff public.visits']);
});

test('hours written by the per-table PartWriter (before flush parts), alone or mixed with flush parts, are read and closed exactly', async () => {
  const store = new MemoryObjectStore();
  const legacy = new LegacyPartWriter(store, 'clinic', envelopes);
  const batches: BusBatch[] = [];
  let prev: Position | null = null;
  for (let n = 1; n <= 20; n++) {
    const b = batch(n, T0 + BigInt(n) * 1000n, n % 3 ? [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']] : [['public.patients', '00000000000000a2']], prev);
    batches.push(b);
    prev = b.position;
  }
  // Batches 1–10 by the writer before flush parts, 11–20 by today's, and 9–12 delivered again by both.
  for (const b of batches.slice(0, 10)) legacy.add(b);
  await legacy.flush();
  const oldParts = [...store.objects.keys()];
  assert.ok(oldParts.length >= 3 && oldParts.every((k) => !k.includes('/~flush/')), 'per-table parts');
  const w = new PartWriter(store, 'clinic', envelopes);
  for (const b of batches.slice(8, 20)) w.add(b);
  await w.flush();

  // Read while the hour is open: every record once, in order, per table; the log whole.
  const index = await readArchiveIndex(store, 'clinic');
  assert.deepEqual(tablesOf(index), ['public.patients', 'public.visits']);
  const reader = new ArchiveReader(store, index, envelopes);
  const want = (table: string) => batches.flatMap((b) => b.messages.filter((m) => m.table === table).map((m) => Position.format(m.position)));
  for (const table of ['public.patients', 'public.visits']) {
    assert.deepEqual((await reader.tableRecords(table, null)).map((r) => Position.format(r.position)), want(table));
    const streamed: string[] = [];
    for await (const part of reader.tableRecordBatches(table, null)) for (const r of part) streamed.push(Position.format(r.position));
    assert.deepEqual(streamed, want(table));
  }
  assert.deepEqual((await reader.transactions(null)).map((t) => t.pos), batches.map((b) => Position.format(b.position)));
  for (const fp of ['00000000000000a1', '00000000000000a2']) await store.put(`clinic/schemas/${fp}.json`, Buffer.from(await envelopes.schemaJson('clinic', fp)));
  const report = await verifyArchive(store, index, envelopes);
  assert.deepEqual(report.problems, []);
  assert.equal(report.checked.events, batches.reduce((n, b) => n + b.messages.length, 0));

  // Closed: the same records, once each, from per-table segments; every part deleted.
  const m = await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  assert.ok(m);
  assert.equal(m.transactions, 20);
  assert.equal(m.events, batches.reduce((n, b) => n + b.messages.length, 0));
  assert.deepEqual([...store.objects.keys()].filter((k) => k.includes('/parts/')), []);
  const closed = new ArchiveReader(store, await readArchiveIndex(store, 'clinic'), envelopes);
  for (const table of ['public.patients', 'public.visits']) assert.deepEqual((await closed.tableRecords(table, null)).map((r) => Position.format(r.position)), want(table));
  assert.deepEqual(m.objects.map((o) => [o.table, o.fingerprint]), [
    ['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a2'], ['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a2'],
    ['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a2'], ['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a2'],
    ['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a2'], ['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a2'],
    ['public.patients', '00000000000000a1'],
    ['public.visits', '00000000000000a1'], [TRANSACTIONS_TABLE, TRANSACTIONS_TABLE],
  ]);
});

test('a flush part whose section does not match its table of contents is refused', async () => {
  const store = new MemoryObjectStore();
  const w = new PartWriter(store, 'clinic', envelopes);
  w.add(batch(1, T0 + 10n, [['public.patients', '00000000000000a1'], ['public.visits', '00000000000000a1']], null));
  await w.flush();
  const [key] = [...store.objects.keys()];
  // The table of contents edited (the hash in the name left as it was): a reader must not take patients for another table.
  const body = Buffer.from(store.objects.get(key!)!.body);
  const text = body.toString('latin1');
  const a = text.indexOf('"table":"public.patients"');
  assert.ok(a > 0);
  const edited = Buffer.from(text.slice(0, a) + '"table":"public.patientz"' + text.slice(a + 25), 'latin1');
  assert.equal(edited.length, body.length);
  assert.throws(() => flushPartSection(edited, key!, 0), { code: 'integrity', message: /section 0 holds public\.patients .* its table of contents says public\.patientz/ });
  await store.put(key!, edited);
  await assert.rejects(new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05'), { code: 'integrity' });
  assert.doesNotThrow(() => flushPartSection(body, key!, 0));
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
  assert.equal(lateParts.length, 1);
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

test('past a small memory budget, hour closing spools its segments to disk and writes the same objects as within it', async () => {
  const { mkdtemp, readdir, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  // 12,000 transactions over two tables, the patients' table version changing twice (three
  // segments for it), several blocks per segment; one part a reordered delivery (the fallback).
  const batches: BusBatch[] = [];
  let prev: Position | null = null;
  for (let n = 1; n <= 12_000; n++) {
    const version = n <= 5000 || n > 9000 ? '00000000000000a1' : '00000000000000a2';
    const b = batch(n, T0 + BigInt(n) * 1000n, [['public.patients', version], ['public.visits', '00000000000000a1']], prev);
    batches.push(b);
    prev = b.position;
  }
  const flushes = [batches.slice(0, 4000), batches.slice(4001, 8000), [...batches.slice(8000), batches[4000]!]];
  const write = async (): Promise<MemoryObjectStore> => {
    const store = new MemoryObjectStore();
    const w = new PartWriter(store, 'clinic', envelopes);
    for (const slice of flushes) {
      for (const b of slice) w.add(b);
      await w.flush();
    }
    return store;
  };
  const spillDir = await mkdtemp(join(tmpdir(), 'chartlog-closer-test-'));
  try {
    const roomyStore = await write();
    const roomy = new HourCloser(roomyStore, 'clinic', envelopes, undefined, undefined, undefined, { spillDir });
    const m1 = await roomy.close('2026-11-24T05');
    assert.equal(roomy.spilledSegments, 0, 'the default budget holds this hour: nothing spools to disk (the control)');
    const tightStore = await write();
    const tight = new HourCloser(tightStore, 'clinic', envelopes, undefined, undefined, undefined, { memoryBudgetBytes: 1, spillDir });
    const m2 = await tight.close('2026-11-24T05');
    assert.ok(m1 && m2);
    assert.ok(tight.spilledSegments >= 4, `every segment waited on disk (${tight.spilledSegments})`);
    assert.deepEqual(await readdir(spillDir), [], 'the spool directory is removed');
    assert.deepEqual(m2.objects, m1.objects, 'same segments, sha256s, sizes and counts');
    assert.equal(m1.objects.filter((o) => o.table === 'public.patients').length, 3);
    for (const o of m2.objects) {
      assert.deepEqual(tightStore.objects.get(o.key)!.body, roomyStore.objects.get(o.key)!.body, `${o.key}: byte for byte`);
      assert.equal(o.sha256, sha256Hex(tightStore.objects.get(o.key)!.body));
    }
    const patients = m2.objects.filter((o) => o.table === 'public.patients');
    const rows = patients.flatMap((o) => decodeAll(tightStore.objects.get(o.key)!.body, 'segment').map((r) => r.v));
    assert.deepEqual(rows, batches.map((_, i) => `row ${i + 1}/0`), 'every record once, in position order');
    for (const fp of ['00000000000000a1', '00000000000000a2']) await tightStore.put(`clinic/schemas/${fp}.json`, Buffer.from(await envelopes.schemaJson('clinic', fp)));
    const report = await verifyArchive(tightStore, await readArchiveIndex(tightStore, 'clinic'), envelopes);
    assert.deepEqual(report.problems, []);
    assert.equal(report.checked.events, 24_000);
  } finally {
    await rm(spillDir, { recursive: true, force: true });
  }
});

test('past segmentBytes, a table-hour is cut into several segments (readers hold one whole object): every record once, in order, verify clean', async () => {
  // 10,000 transactions over two tables, the patients' version changing once: blocks of 4096 records.
  const batches: BusBatch[] = [];
  let prev: Position | null = null;
  for (let n = 1; n <= 10_000; n++) {
    const b = batch(n, T0 + BigInt(n) * 1000n, [['public.patients', n <= 6000 ? '00000000000000a1' : '00000000000000a2'], ['public.visits', '00000000000000a1']], prev);
    batches.push(b);
    prev = b.position;
  }
  const write = async (): Promise<MemoryObjectStore> => {
    const store = new MemoryObjectStore();
    const w = new PartWriter(store, 'clinic', envelopes);
    for (const b of batches) w.add(b);
    await w.flush();
    for (const fp of ['00000000000000a1', '00000000000000a2']) await store.put(`clinic/schemas/${fp}.json`, Buffer.from(await envelopes.schemaJson('clinic', fp)));
    return store;
  };
  const whole = await new HourCloser(await write(), 'clinic', envelopes).close('2026-11-24T05');
  assert.equal(whole!.objects.filter((o) => o.table === 'public.patients').length, 2, 'control: one segment per version within the default size');
  const store = await write();
  const m = await new HourCloser(store, 'clinic', envelopes, undefined, undefined, undefined, { segmentBytes: 1 }).close('2026-11-24T05');
  const patients = m!.objects.filter((o) => o.table === 'public.patients');
  // A cut after every block: version a1 (6000 records) in 2 segments, a2 (4000) in 1.
  assert.deepEqual(patients.map((o) => [o.fingerprint, o.records]), [['00000000000000a1', 4096], ['00000000000000a1', 1904], ['00000000000000a2', 4000]]);
  assert.equal(m!.events, whole!.events);
  const rows = patients.flatMap((o) => decodeAll(store.objects.get(o.key)!.body, 'segment').map((r) => r.v));
  assert.deepEqual(rows, batches.map((_, i) => `row ${i + 1}/0`), 'every record once, in position order');
  const index = await readArchiveIndex(store, 'clinic');
  const read: string[] = [];
  for await (const b of new ArchiveReader(store, index, envelopes).tableRecordBatches('public.patients', null)) for (const r of b) read.push(Position.format(r.position));
  assert.deepEqual(read, batches.map((b) => Position.format(Position.of(b.position.commit, 0))), 'the streaming reader reads the cut segments as one history');
  const report = await verifyArchive(store, index, envelopes);
  assert.deepEqual(report.problems, []);
  assert.equal(report.checked.events, 20_000);
});
