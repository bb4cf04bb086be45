import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { SnapshotPartsWriter, writeSnapshot } from '../../../src/compactor/snapshot-builder.js';
import { readAvroContainer } from '../../../src/archive/avro-container.js';
import { singleObjectHeader } from '../../../src/codec/single-object.js';
import { listSnapshots } from '../../../src/archive/snapshot-manifest.js';
import { Lease, NO_FENCE } from '../../../src/archive/lease.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { decodeAll, envelopes, T0, types } from '../../support/fake-envelopes.js';
import { SCRIPTED_TABLE, scriptedEncoder } from '../../support/scripted-source.js';

const schema = SCRIPTED_TABLE;
const encoder = scriptedEncoder();

const position = Position.of('00000000000000f0', COMMIT_SEQ);
async function* rows(n: number): AsyncIterable<ChangeBatch> {
  yield { source: 'clinic', txId: null, position, commitTsUs: T0, snapshot: true, schemaChanges: [schema], events: Array.from({ length: n }, (_, i) => ({ op: 'r' as const, schema, before: null, after: {}, position: Position.of(position.commit, i) })) };
}
// eslint-disable-next-line require-yield
async function* refused(): AsyncIterable<ChangeBatch> {
  throw new ChartlogError('source_setup', 'cannot drop replication slot chartlog_clinic to start a new snapshot', { retriable: true });
}

function withAttempts(): MemoryObjectStore {
  const store = new MemoryObjectStore();
  const old = new Date(Date.now() - 60 * 60_000);
  store.objects.set('clinic/snapshots/00000000000000a0.ffffffff/public.patients/part-00000.avro', { body: Buffer.from('old'), lastModified: old });
  store.objects.set('clinic/snapshots/00000000000000b0.ffffffff/public.patients/part-00000.avro', { body: Buffer.from('being written'), lastModified: new Date() });
  return store;
}

test('a connector that refuses before its first batch leaves the store untouched', async () => {
  const store = withAttempts();
  const before = [...store.objects.keys()];
  await assert.rejects(writeSnapshot({ store, source: 'clinic', batches: refused(), encoder, schemas: envelopes }), (e: unknown) => e instanceof ChartlogError && e.code === 'source_setup');
  assert.deepEqual([...store.objects.keys()], before);
});

test('an old interrupted attempt is removed, a recent one (another writer) is left alone', async () => {
  const store = withAttempts();
  const m = await writeSnapshot({ store, source: 'clinic', batches: rows(3), encoder, schemas: envelopes, fence: NO_FENCE });
  assert.equal(m.origin, 'source');
  assert.equal(m.tables['public.patients']!.rows, 3);
  const keys = [...store.objects.keys()];
  assert.ok(!keys.some((k) => k.includes('00000000000000a0')), 'the old attempt is gone');
  assert.ok(keys.some((k) => k.includes('00000000000000b0')), 'the recent attempt stays');
  assert.deepEqual((await listSnapshots(store, 'clinic')).map((s) => s.id), [Position.format(position)]);
});

test('without the writer lease no interrupted attempt is removed; with a lease taken over, removal is refused', async () => {
  const store = withAttempts();
  await writeSnapshot({ store, source: 'clinic', batches: rows(1), encoder, schemas: envelopes });
  assert.ok([...store.objects.keys()].some((k) => k.includes('00000000000000a0')), 'removed without a lease');

  const other = withAttempts();
  const mine = new Lease({ store: other, source: 'clinic', ttlMs: 60_000 });
  assert.equal(await mine.acquire(), true);
  // Another process takes over (its clock says the lease expired).
  const taker = new Lease({ store: other, source: 'clinic', ttlMs: 60_000, now: () => Date.now() + 120_000 });
  assert.equal(await taker.acquire(), true);
  await assert.rejects(writeSnapshot({ store: other, source: 'clinic', batches: rows(1), encoder, schemas: envelopes, fence: mine }), (e: unknown) => e instanceof ChartlogError && e.code === 'lease');
  assert.ok([...other.objects.keys()].some((k) => k.includes('00000000000000a0')), 'a deposed writer removed an attempt');
  await mine.release();
  await taker.release();
});

/** A snapshot row of table version a1 as a single-object message, with a value of `bytes` characters. */
function bigRow(i: number, bytes: number): { table: string; fingerprint: string; value: Uint8Array } {
  const body = types['00000000000000a1']!.toBuffer({ pos: `p${String(i).padStart(6, '0')}`, ts: i, v: String(i % 10).repeat(bytes) });
  return { table: 'public.big', fingerprint: '00000000000000a1', value: Buffer.concat([singleObjectHeader(0xa1n), body]) };
}

test('parts stored in the background come out numbered in order, every row in key order, in blocks of at most 4096 rows', async () => {
  const store = new MemoryObjectStore();
  const writer = new SnapshotPartsWriter(store, 'clinic', 'snap1', envelopes);
  // 40 KiB a row: the 32 MiB part fills after about 820 rows, so 2,000 rows make three parts.
  const n = 2000;
  for (let i = 0; i < n; i++) await writer.add(bigRow(i, 40 * 1024));
  await writer.closeTable('public.big');
  const m = await writer.finish({ position, commitTsUs: T0, origin: 'source' });
  const parts = m.tables['public.big']!.parts;
  assert.deepEqual(parts.map((p) => p.key.split('/').at(-1)), ['part-00000.avro', 'part-00001.avro', 'part-00002.avro']);
  assert.equal(m.tables['public.big']!.rows, n);
  const read: string[] = [];
  for (const p of parts) {
    const { blocks } = readAvroContainer(store.objects.get(p.key)!.body, p.key);
    assert.ok(blocks.every((b) => b.count <= 4096));
    const rowsHere = decodeAll(store.objects.get(p.key)!.body, p.key).map((r) => r.pos);
    assert.equal(rowsHere.length, p.rows);
    read.push(...rowsHere);
  }
  assert.deepEqual(read, Array.from({ length: n }, (_, i) => `p${String(i).padStart(6, '0')}`));
});

test('a part whose background store fails makes finish fail, and no manifest is written', async () => {
  const store = new MemoryObjectStore();
  const failing: typeof store = Object.assign(Object.create(store) as MemoryObjectStore, {
    put: async () => {
      throw new ChartlogError('storage', 'access denied by the store (planted)', { retriable: false });
    },
  });
  const writer = new SnapshotPartsWriter(failing, 'clinic', 'snap2', envelopes);
  await assert.rejects(
    (async () => {
      for (let i = 0; i < 1000; i++) await writer.add(bigRow(i, 40 * 1024));
      await writer.finish({ position, commitTsUs: T0, origin: 'source' });
    })(),
    /access denied by the store \(planted\)/,
  );
  assert.ok(![...store.objects.keys()].some((k) => k.endsWith('manifest.json')), 'no manifest');
});
