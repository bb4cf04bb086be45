import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import type { ObjectStore } from '../../src/storage/object-store.js';

/**
 * Waits until the source's checkpoint reaches a commit made about now (within a second of this
 * call), looking every 100 ms at most `tries` times: what a `chartlog run` has durable once the
 * changes a test made before calling this are in the archive.
 */
export async function waitUntilCaughtUp(store: ObjectStore, source: string, tries = 600): Promise<void> {
  const wanted = BigInt(Date.now()) * 1000n;
  for (let i = 0; ; i++) {
    const cp = await readCheckpoint(store, source);
    if (cp && cp.commitTsUs >= wanted - 1_000_000n && i > 3) return;
    assert.ok(i < tries, 'the checkpoint did not advance');
    await sleep(100);
  }
}
