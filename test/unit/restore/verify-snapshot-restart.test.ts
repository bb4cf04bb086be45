import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import { Compactor } from '../../../src/compactor/compactor.js';
import { snapshotManifestKey, type SnapshotManifest } from '../../../src/archive/snapshot-manifest.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { batch, envelopes, T0 } from '../../support/fake-envelopes.js';

/**
 * Transactions 1–3 stream, then a connector snapshot is taken at `snapshotAt` while nothing
 * streams, and the stream restarts from it: transaction 5 names the snapshot as its previous.
 */
async function archive(snapshot: { at: number; origin: SnapshotManifest['origin'] } | null, previousOf5: number): Promise<MemoryObjectStore> {
  const store = new MemoryObjectStore();
  const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 1, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, now: () => Number(T0 / 1000n) }, async () => {});
  await c.start();
  const tables: [string, string][] = [['public.patients', '00000000000000a1']];
  let prev: Position | null = null;
  for (const n of [1, 2, 3]) {
    const b = batch(n, T0 + BigInt(n), tables, prev);
    c.add(b);
    prev = b.position;
  }
  c.add(batch(5, T0 + 5n, tables, Position.of(previousOf5.toString(16).padStart(16, '0'))));
  await c.flush();
  if (snapshot) {
    const position = Position.format(Position.of(snapshot.at.toString(16).padStart(16, '0')));
    const m: SnapshotManifest = { version: 1, source: 'clinic', id: position, position, commitTsUs: String(T0 + 4n), takenAt: new Date().toISOString(), origin: snapshot.origin, tables: {} };
    await store.put(snapshotManifestKey('clinic', position), Buffer.from(JSON.stringify(m)));
  }
  await store.put('clinic/schemas/00000000000000a1.json', Buffer.from(await envelopes.schemaJson('clinic', '00000000000000a1')));
  return store;
}

const problems = async (store: MemoryObjectStore) => (await verifyArchive(store, await readArchiveIndex(store, 'clinic'), envelopes)).problems.map((p) => `${p.kind}: ${p.message}`);

test('a stream that restarts at a source snapshot taken after its last transaction is whole', async () => {
  assert.deepEqual(await problems(await archive({ at: 4, origin: 'source' }, 4)), []);
  // The snapshot may sit exactly at the last archived transaction, too.
  assert.deepEqual(await problems(await archive({ at: 3, origin: 'source' }, 3)), []);
});

test('a break the snapshot does not cover is still a gap', async () => {
  const gap = /^gap: transaction 0000000000000005\.ffffffff follows 0000000000000004\.ffffffff, but the archive's previous transaction is 0000000000000003\.ffffffff$/;
  const none = await problems(await archive(null, 4));
  assert.equal(none.length, 1);
  assert.match(none[0]!, gap);
  // A synthesised snapshot adds no stream transactions, so it never explains a break.
  const synthesised = await problems(await archive({ at: 4, origin: 'synthesised' }, 4));
  assert.equal(synthesised.length, 1);
  assert.match(synthesised[0]!, gap);
  // A source snapshot before the last archived transaction cannot be where the stream restarted.
  const before = await problems(await archive({ at: 2, origin: 'source' }, 2));
  assert.equal(before.length, 1);
  assert.match(before[0]!, /follows 0000000000000002\.ffffffff/);
});
