import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ObjectInfo, ObjectStore } from '../../../src/storage/object-store.js';
import { ArchiveIndexCache } from '../../../src/archive/archive-index.js';

/** What a polling reader of the archive index reads again, and what it does not. */

function countingStore(): { store: ObjectStore; reads: string[]; bytes: Map<string, Uint8Array> } {
  const reads: string[] = [];
  const bytes = new Map<string, Uint8Array>();
  const store = {
    get: (key: string) => {
      reads.push(key);
      return Promise.resolve(bytes.get(key)!);
    },
  } as unknown as ObjectStore;
  return { store, reads, bytes };
}
const info = (key: string, size: number, ms: number): ObjectInfo => ({ key, size, lastModified: new Date(ms) });

test('an object listed again with the same size and time is not read again; a rewritten one is', async () => {
  const { store, reads, bytes } = countingStore();
  const cache = new ArchiveIndexCache();
  bytes.set('m/a.json', Buffer.from('one'));
  assert.equal(Buffer.from(await cache.get(store, info('m/a.json', 3, 1000))).toString(), 'one');
  assert.equal(Buffer.from(await cache.get(store, info('m/a.json', 3, 1000))).toString(), 'one');
  assert.deepEqual(reads, ['m/a.json'], 'read once');
  // Rewritten (another size, or the same size at another time): read again, the new bytes used.
  bytes.set('m/a.json', Buffer.from('two!'));
  assert.equal(Buffer.from(await cache.get(store, info('m/a.json', 4, 1000))).toString(), 'two!');
  bytes.set('m/a.json', Buffer.from('thr!'));
  assert.equal(Buffer.from(await cache.get(store, info('m/a.json', 4, 2000))).toString(), 'thr!');
  assert.equal(reads.length, 3);
});

test('prune forgets what the last read did not list; a failed read keeps nothing', async () => {
  const { store, reads, bytes } = countingStore();
  const cache = new ArchiveIndexCache();
  bytes.set('a', Buffer.from('a'));
  bytes.set('b', Buffer.from('b'));
  await cache.get(store, info('a', 1, 1));
  await cache.get(store, info('b', 1, 1));
  cache.prune();
  await cache.get(store, info('a', 1, 1)); // only a is listed this time
  cache.prune();
  await cache.get(store, info('a', 1, 1));
  await cache.get(store, info('b', 1, 1));
  assert.deepEqual(reads, ['a', 'b', 'b'], 'b was forgotten after a read that did not list it, a was kept');
  const failing = { get: () => Promise.reject(new Error('boom')) } as unknown as ObjectStore;
  await assert.rejects(cache.get(failing, info('c', 1, 1)), /boom/);
  bytes.set('c', Buffer.from('c'));
  assert.equal(Buffer.from(await cache.get(store, info('c', 1, 1))).toString(), 'c', 'read again after the failure');
});
