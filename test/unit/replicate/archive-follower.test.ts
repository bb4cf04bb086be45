import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ArchiveCodec } from '../../../src/archive/archive-codec.js';
import { checkpointKey } from '../../../src/archive/layout.js';
import { ArchiveFollower } from '../../../src/replicate/archive-follower.js';
import { FsObjectStore } from '../../../src/storage/fs-object-store.js';

/** The wait between a replica's reads: ends once the checkpoint moves, else after the poll interval. */

test('waitForCheckpoint ends soon after the checkpoint object changes, and waits the whole interval while it does not', async (t) => {
  const dir = mkdtempSync(join(os.tmpdir(), 'follower-wait-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FsObjectStore(dir);
  // The wait reads only the checkpoint object: no codec is needed.
  const follower = new ArchiveFollower(store, 'src', {} as ArchiveCodec, null, () => true);
  const signal = new AbortController().signal;

  // No checkpoint before and none now (not found): nothing moved, the whole interval passes.
  let started = performance.now();
  await follower.waitForCheckpoint(400, 20, signal);
  assert.ok(performance.now() - started >= 390, 'returned before the interval with no checkpoint written');

  // A checkpoint written 100 ms into a 5 s wait ends it well before the 5 s.
  started = performance.now();
  setTimeout(() => void store.put(checkpointKey('src'), Buffer.from('{"position":"x"}')), 100);
  await follower.waitForCheckpoint(5000, 20, signal);
  const took = performance.now() - started;
  assert.ok(took >= 90 && took < 2500, `the wait took ${Math.round(took)} ms after the checkpoint moved`);

  // An abort ends it at once.
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 50);
  started = performance.now();
  await follower.waitForCheckpoint(5000, 20, stop.signal);
  assert.ok(performance.now() - started < 2500);
});
