import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Position } from '../../../src/core/position.js';
import { Compactor } from '../../../src/compactor/compactor.js';
import { checkpointKey, manifestKey } from '../../../src/archive/layout.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { archiveSigner, authenticateArchive, loadArchiveMac } from '../../../src/archive/archive-auth.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { snapshotManifestKey } from '../../../src/archive/snapshot-manifest.js';
import type { ArchiveSigner } from '../../../src/phi/archive-mac.js';
import { FileKeyring } from '../../../src/phi/keyring/file-keyring.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { batch, envelopes, HOUR_US, T0 } from '../../support/fake-envelopes.js';

/**
 * Archive MACs on the format's own writers (Compactor, HourCloser, checkpoint) over an
 * in-memory store: what is accepted before and after a legacy archive gets its key, and the
 * anchor. End to end against real services: test/integration/archive-auth.test.ts.
 */

const keyring = FileKeyring.create(join(mkdtempSync(join(tmpdir(), 'chartlog-auth-')), 'keyring.json'));

/** Writes transactions n = from..to, three per hour from T0, closing every hour the stream leaves. */
async function write(store: MemoryObjectStore, from: number, to: number, signer?: ArchiveSigner, prev: Position | null = null): Promise<Position | null> {
  const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 60_000, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, ...(signer ? { signer } : {}) }, async () => {});
  await c.start();
  for (let n = from; n <= to; n++) {
    const b = batch(n, T0 + BigInt(Math.floor((n - 1) / 3)) * HOUR_US + BigInt(n), [['public.patients', '00000000000000a1']], prev);
    prev = b.position;
    c.add(b);
    await c.flush();
    await c.closeFinishedHours();
  }
  return prev;
}

const problems = async (store: MemoryObjectStore) => {
  const mac = await loadArchiveMac(store, 'clinic', () => keyring);
  return authenticateArchive(await readArchiveIndex(store, 'clinic'), mac).map((p) => `${p.kind} ${p.object}`);
};
const hourKey = (i: number) => manifestKey('clinic', new Date(Number((T0 + BigInt(i) * HOUR_US) / 1000n)).toISOString().slice(0, 13));

test('a legacy archive (no key) is accepted but reported unauthenticated; a MAC without the key is not', async () => {
  const store = new MemoryObjectStore();
  await write(store, 1, 7);
  assert.deepEqual(await problems(store), []);
  const index = await readArchiveIndex(store, 'clinic');
  const r = await verifyArchive(store, index, envelopes, { mac: null, engine: 'postgres' });
  assert.equal(r.authenticated, false);
  // A signed object in an archive whose key object is gone: the key was deleted.
  const signed = new MemoryObjectStore();
  await write(signed, 1, 4, archiveSigner(signed, keyring, 'clinic'));
  assert.deepEqual(await problems(signed), []);
  signed.objects.delete('clinic/keys/archive-mac.json');
  assert.deepEqual(await problems(signed), [`mac ${hourKey(0)}`, `mac ${checkpointKey('clinic')}`], 'signed objects, and the key is missing');
});

test('a legacy archive continued with a key: old objects adopted, new ones signed, the checkpoint anchors the newest hour', async () => {
  const store = new MemoryObjectStore();
  const prev = await write(store, 1, 7); // hours 0 and 1 closed, unsigned
  const signer = archiveSigner(store, keyring, 'clinic');
  await write(store, 8, 13, signer, prev); // hours 2..3 closed, signed
  assert.deepEqual(await problems(store), []);
  const cp = await readCheckpoint(store, 'clinic');
  assert.ok(cp?.stored && 'mac' in cp.stored.object);
  assert.equal(cp.head?.hour, new Date(Number((T0 + 3n * HOUR_US) / 1000n)).toISOString().slice(0, 13));
  const mac = (await loadArchiveMac(store, 'clinic', () => keyring))!;
  assert.equal(mac.adopted.head?.hour, new Date(Number((T0 + 1n * HOUR_US) / 1000n)).toISOString().slice(0, 13));
  // Whole verify: clean and authenticated (the fake envelopes' schemas are not stored: set aside).
  const r = await verifyArchive(store, await readArchiveIndex(store, 'clinic'), envelopes, { mac, engine: 'postgres' });
  assert.deepEqual(r.problems.filter((p) => p.kind !== 'schema'), []);
  assert.equal(r.authenticated, true);
});

test('deleting the newest hour, stripping a MAC, an unsigned manifest after the key, a planted snapshot: each named', async () => {
  const fresh = async () => {
    const store = new MemoryObjectStore();
    await write(store, 1, 10, archiveSigner(store, keyring, 'clinic'));
    return store;
  };
  // Control.
  assert.deepEqual(await problems(await fresh()), []);

  let store = await fresh();
  store.objects.delete(hourKey(2));
  assert.deepEqual(await problems(store), [`truncated ${hourKey(2)}`]);

  store = await fresh();
  const m = JSON.parse(store.objects.get(hourKey(1))!.body.toString()) as Record<string, unknown>;
  delete m.mac;
  store.objects.set(hourKey(1), { body: Buffer.from(JSON.stringify(m, null, 2)), lastModified: new Date() });
  const got = await problems(store);
  assert.ok(got.includes(`mac ${hourKey(1)}`), got.join('\n'));

  store = await fresh();
  const planted = snapshotManifestKey('clinic', 'ffffffffffffffff.ffffffff');
  await store.put(planted, Buffer.from(JSON.stringify({ version: 1, source: 'clinic', id: 'ffffffffffffffff.ffffffff', position: 'ffffffffffffffff.ffffffff', commitTsUs: '1', takenAt: '', origin: 'source', tables: {} })));
  assert.deepEqual(await problems(store), [`mac ${planted}`]);

  // A rolled-back or deleted checkpoint.
  store = await fresh();
  store.objects.delete(checkpointKey('clinic'));
  assert.deepEqual(await problems(store), [`truncated ${checkpointKey('clinic')}`]);
});

test('a table-scoped base (chartlog resync) is accepted with its MAC; planted or altered, it is refused', async () => {
  const { SnapshotPartsWriter } = await import('../../../src/compactor/snapshot-builder.js');
  const { tableSnapshotManifestKey } = await import('../../../src/archive/snapshot-manifest.js');
  const { Position: P } = await import('../../../src/core/position.js');
  const store = new MemoryObjectStore();
  const signer = archiveSigner(store, keyring, 'clinic');
  const last = await write(store, 1, 4, signer);
  const id = `${P.format(last!)}-0a0b0c0d`;
  const w = new SnapshotPartsWriter(store, 'clinic', id, envelopes, undefined, signer, true);
  w.noteTable('public.patients', '00000000000000a1');
  const m = await w.finish({ position: last!, commitTsUs: 1n, origin: 'resync' });
  assert.equal(m.scope, 'tables');
  const key = tableSnapshotManifestKey('clinic', id);
  assert.ok(store.objects.has(key), 'written under table-snapshots/');
  const index = await readArchiveIndex(store, 'clinic');
  assert.equal(index.tableSnapshots?.length, 1);
  assert.equal(index.snapshots.some((s) => s.id === id), false, 'not listed as a source-wide base');
  assert.deepEqual(await problems(store), []);
  // Altered (a row count changed, MAC kept): refused.
  const altered = JSON.parse(Buffer.from(await store.get(key)).toString('utf8')) as Record<string, unknown>;
  (altered.tables as Record<string, { rows: number }>)['public.patients']!.rows = 7;
  await store.put(key, Buffer.from(JSON.stringify(altered)));
  assert.deepEqual(await problems(store), [`mac ${key}`]);
  // Planted without a MAC: refused too (no table base was ever adopted).
  delete altered.mac;
  await store.put(key, Buffer.from(JSON.stringify(altered)));
  assert.deepEqual(await problems(store), [`mac ${key}`]);
});
