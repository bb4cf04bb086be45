import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Compactor } from '../../../src/compactor/compactor.js';
import { ChartlogError } from '../../../src/core/errors.js';
import type { Position } from '../../../src/core/position.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { renderVerifyReport, verifyArchive } from '../../../src/restore/verify.js';
import type { PutOptions } from '../../../src/storage/object-store.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { LegacyPartWriter } from '../../support/legacy-part-writer.js';
import { writeCheckpoint } from '../../../src/archive/checkpoint.js';
import { batch, envelopes, T0 } from '../../support/fake-envelopes.js';

/** A store that dies (a fatal error, like a killed process) on writes whose key matches. */
class DyingStore extends MemoryObjectStore {
  dieOn: RegExp | null = null;

  override async putIfAbsent(key: string, body: Uint8Array, options?: PutOptions): Promise<boolean> {
    if (this.dieOn?.test(key)) {
      // The other parts of the flush land first, as they may before a kill.
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw new ChartlogError('internal', `killed before ${key} was written`);
    }
    return super.putIfAbsent(key, body, options);
  }
}

const tables: [string, string][] = [['public.patients', '00000000000000a1']];

/**
 * Transactions 1–3 are durable and checkpointed. Transaction 4's event part is written, then the
 * process dies before the part with its transaction record: the state kill -9 left between the
 * parts of one flush when each table had its own part (archives written before flush parts, by
 * the PartWriter of that time — verify must still read them right).
 */
async function crashedArchive(dieOn: RegExp): Promise<DyingStore> {
  const store = new DyingStore();
  const w = new LegacyPartWriter(store, 'clinic', envelopes);
  let prev: Position | null = null;
  for (const n of [1, 2, 3]) {
    const b = batch(n, T0 + BigInt(n), tables, prev);
    w.add(b);
    prev = b.position;
  }
  const durable = await w.flush();
  await writeCheckpoint(store, { source: 'clinic', position: durable!.upTo, commitTsUs: durable!.commitTsUs, snapshotId: null });
  store.dieOn = dieOn;
  w.add(batch(4, T0 + 4n, tables, prev));
  await assert.rejects(w.flush(), /killed before/);
  await store.put('clinic/schemas/00000000000000a1.json', Buffer.from(await envelopes.schemaJson('clinic', '00000000000000a1')));
  return store;
}

test('with flush parts, a kill during a flush leaves none of it: nothing in flight, nothing to report', async () => {
  const store = new DyingStore();
  const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 1, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, now: () => Number(T0 / 1000n) }, async () => {});
  await c.start();
  let prev: Position | null = null;
  for (const n of [1, 2, 3]) {
    const b = batch(n, T0 + BigInt(n), tables, prev);
    c.add(b);
    prev = b.position;
  }
  await c.flush();
  store.dieOn = /\/parts\//;
  c.add(batch(4, T0 + 4n, tables, prev));
  await assert.rejects(c.flush(), /killed before/);
  await store.put('clinic/schemas/00000000000000a1.json', Buffer.from(await envelopes.schemaJson('clinic', '00000000000000a1')));
  const index = await readArchiveIndex(store, 'clinic');
  assert.equal(index.openParts.length, 1, 'the first flush only');
  const report = await verifyArchive(store, index, envelopes);
  assert.deepEqual(report.problems, []);
  assert.deepEqual(report.pending, []);
  assert.equal(report.checked.transactions, 3);
});

test('events of a transaction after the checkpoint whose record was never written are in flight, not a problem', async () => {
  const store = await crashedArchive(/~transactions\//);
  const index = await readArchiveIndex(store, 'clinic');
  assert.ok(index.openParts.some((p) => p.table === 'public.patients' && p.key.includes('0000000000000004')), 'the event part of transaction 4 was written');
  const report = await verifyArchive(store, index, envelopes);
  assert.deepEqual(report.problems, []);
  assert.equal(report.ok, true);
  assert.deepEqual(report.pending, [{ transaction: '0000000000000004', message: '1 events of public.patients at 0000000000000004 belong to no logged transaction' }]);
  assert.match(renderVerifyReport(report), /1 transaction\(s\) after the checkpoint are still in flight/);
});

test('the same count mismatch at or before the checkpoint is still a problem', async () => {
  const store = await crashedArchive(/~transactions\//);
  // A checkpoint that claims transaction 4 is whole, as if it had been written.
  const cp = JSON.parse(Buffer.from(await store.get('clinic/state/checkpoint.json')).toString('utf8')) as { position: string };
  cp.position = cp.position.replace('0000000000000003', '0000000000000004');
  await store.put('clinic/state/checkpoint.json', Buffer.from(JSON.stringify(cp)));
  const report = await verifyArchive(store, await readArchiveIndex(store, 'clinic'), envelopes);
  assert.equal(report.ok, false);
  assert.deepEqual(report.problems.map((p) => p.message), ['1 events of public.patients at 0000000000000004 belong to no logged transaction']);
  assert.deepEqual(report.pending, []);
});
