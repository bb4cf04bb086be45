import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ArchiveCodec } from '../../../src/archive/archive-codec.js';
import { checkpointKey } from '../../../src/archive/layout.js';
import { ArchiveFollower, mergeNew } from '../../../src/replicate/archive-follower.js';
import { Position } from '../../../src/core/position.js';
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

test('readPrefix takes needed objects in position order up to the budget, and bounds what may be planned by the first one left', async () => {
  const { readPrefix } = await import('../../../src/replicate/archive-follower.js');
  const { Position } = await import('../../../src/core/position.js');
  const o = (key: string, first: string, last: string, bytes: number, needed = true) => ({ key, first: Position.of(first), last: Position.of(last), bytes, needed });
  const after = Position.of('00000010');
  // Listed out of order; one wholly applied (free), one out of scope (free), one that overlaps an
  // earlier one (a reordered delivery) — it starts before the one it overlaps ends.
  const listed = [o('c', '00000300', '00000400', 3), o('old', '00000001', '00000010', 9), o('a', '00000100', '00000200', 3), o('other', '00000500', '00000600', 9, false), o('b', '00000150', '00000350', 3)];
  const { take, bound } = readPrefix(listed, after, 6);
  assert.deepEqual([...take].sort(), ['a', 'b', 'old', 'other']);
  // 'c' is left: nothing at or past its first position may be planned yet, even though 'b' (taken) reaches past it.
  assert.equal(Position.format(bound!), Position.format(Position.of('00000300')));
  // The first needed object is taken even when it alone passes the budget; nothing left: no bound.
  const all = readPrefix([o('big', '00000100', '00000200', 100)], after, 6);
  assert.deepEqual([...all.take], ['big']);
  assert.equal(all.bound, null);
  // A budget that holds everything takes everything.
  assert.equal(readPrefix(listed, after, 1000).bound, null);
});

test('mergeNew keeps every record once, in position order: a read that follows is appended, one that brings kept records again (a segment written from parts already read) adds only the new ones', () => {
  const r = (commit: string, seq: number, tag = '') => ({ position: Position.of(commit, seq), tag });
  const ids = (rs: readonly { position: Position }[]) => rs.map((x) => Position.format(x.position));
  const kept = [r('0a', 0), r('0a', 1), r('0c', 0)];
  // Following: appended as they are.
  assert.deepEqual(ids(mergeNew(kept, [r('0d', 0), r('0d', 1)])), ['0a.00000000', '0a.00000001', '0c.00000000', '0d.00000000', '0d.00000001']);
  // Overlapping: the kept copies stay (not the fresh ones), the new ones join in order.
  const merged = mergeNew(kept, [r('0a', 1, 'again'), r('0b', 0), r('0c', 0, 'again'), r('0e', 0)]);
  assert.deepEqual(ids(merged), ['0a.00000000', '0a.00000001', '0b.00000000', '0c.00000000', '0e.00000000']);
  assert.ok(merged.every((x) => x.tag === ''), 'a record read again replaces nothing kept');
  // Only records read again: nothing added.
  assert.deepEqual(ids(mergeNew(kept, [r('0a', 0, 'again'), r('0c', 0, 'again')])), ids(kept));
  assert.deepEqual(ids(mergeNew([], kept)), ids(kept));
  assert.deepEqual(ids(mergeNew(kept, [])), ids(kept));
});

test('a seeded read takes its objects from the given index without listing the store; the read after it lists again', async (t) => {
  let listings = 0;
  const dir = mkdtempSync(join(os.tmpdir(), 'follower-seed-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new Proxy(new FsObjectStore(dir), {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...a: unknown[]) => {
        if (String(prop).startsWith('list')) listings++;
        return (v as (...x: unknown[]) => unknown).apply(target, a);
      };
    },
  });
  const follower = new ArchiveFollower(store, 'src', {} as ArchiveCodec, null, () => true);
  const at = Position.of('0000000000000010', 0);
  const empty = { source: 'src', hours: [], openParts: [], snapshots: [], checkpoint: null, unreadable: [] } as unknown as Parameters<ArchiveFollower['seed']>[0];
  follower.seed(empty);
  await follower.read(at);
  assert.equal(listings, 0, 'the seeded read listed the store');
  assert.equal(follower.lastIndex, empty);
  await follower.read(at).catch(() => undefined); // an empty store: what matters is that it is listed
  assert.ok(listings > 0, 'the read after the seeded one did not list the store');
});
