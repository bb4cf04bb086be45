import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Lease, readLease } from '../../../src/archive/lease.js';
import { FsObjectStore } from '../../../src/storage/fs-object-store.js';
import type { LeaseLane, ObjectStore } from '../../../src/storage/object-store.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

// The writer lease renews through the store's own lane (ObjectStore.leaseLane), so a renewal
// never waits behind the flushes of the writer it fences. Each scenario runs twice: with the lane
// (renewed on time) and with the same store hiding its lane (the lease is lost): the second shows
// the scenario really holds the store up long enough to lose a lease.

const SOURCE = 'clinic';
const TTL_MS = 1_500; // renewed every 500 ms, lost 1,250 ms after the last renewal
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The same store without its lease lane: the lease falls back to the store itself. */
function withoutLane(store: ObjectStore): ObjectStore {
  return new Proxy(store, { get: (t, p) => (p === 'leaseLane' ? undefined : (Reflect.get(t, p, t) as unknown)) });
}

/** Holds `lease` for `ms` (it must be held already); how many renewals landed in the store, and whether it was lost. */
async function holdFor(lease: Lease, store: Pick<ObjectStore, 'getVersioned'>, ms: number): Promise<{ renewals: number; lost: boolean }> {
  const start = (await readLease(store as ObjectStore, SOURCE))!.renewals;
  await Promise.race([wait(ms), new Promise((r) => lease.signal.addEventListener('abort', r))]);
  const lost = lease.signal.aborted;
  await lease.release();
  const rec = await readLease(store as ObjectStore, SOURCE);
  return { renewals: (rec?.renewals ?? start) - start, lost };
}

/**
 * A store reached over one connection (an S3 client out of sockets, a saturated pool): requests
 * are answered one at a time in arrival order, and a part upload takes `uploadMs`. Its lane is a
 * connection of its own on the same objects.
 */
class OneConnectionStore extends MemoryObjectStore {
  private queue: Promise<unknown> = Promise.resolve();
  uploads = 0;
  constructor(private readonly uploadMs: number) {
    super();
  }
  private inTurn<T>(fn: () => Promise<T>, ms = 0): Promise<T> {
    const run = this.queue.then(async () => {
      if (ms > 0) await wait(ms);
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
  override putIfAbsent(...a: Parameters<MemoryObjectStore['putIfAbsent']>) {
    const part = a[0].includes('/parts/');
    return this.inTurn(() => {
      if (part) this.uploads++;
      return super.putIfAbsent(...a);
    }, part ? this.uploadMs : 0);
  }
  override putIfVersion(...a: Parameters<MemoryObjectStore['putIfVersion']>) {
    return this.inTurn(() => super.putIfVersion(...a));
  }
  override getVersioned(...a: Parameters<MemoryObjectStore['getVersioned']>) {
    return this.inTurn(() => super.getVersioned(...a));
  }
  leaseLane(): LeaseLane {
    // Straight to the objects, beside the queue.
    const objects = { getVersioned: MemoryObjectStore.prototype.getVersioned, putIfAbsent: MemoryObjectStore.prototype.putIfAbsent, putIfVersion: MemoryObjectStore.prototype.putIfVersion };
    return {
      description: this.description,
      getVersioned: (...a) => objects.getVersioned.apply(this, a),
      putIfAbsent: (...a) => objects.putIfAbsent.apply(this, a),
      putIfVersion: (...a) => objects.putIfVersion.apply(this, a),
      close: async () => {},
    };
  }
}

/** Part uploads back to back, as a compactor flushing a backlog does, until `stop`. */
async function flushBackToBack(store: ObjectStore, stop: { done: boolean }): Promise<void> {
  for (let i = 0; !stop.done; i++) await store.putIfAbsent(`${SOURCE}/parts/2026-12-05/11/part-${i}.avro`, Buffer.alloc(1024, i));
}

test('the file:// lane works on the store\'s own objects: what one writes the other reads, and compare-and-swap stays exact when both race', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-lease-lane-'));
  dirs.push(dir);
  const store = new FsObjectStore(join(dir, 'store'));
  const lane = store.leaseLane();
  const key = `${SOURCE}/state/lease.json`;
  assert.equal(await lane.putIfAbsent(key, Buffer.from('a')), true);
  assert.equal(await store.putIfAbsent(key, Buffer.from('b')), false);
  const v1 = (await store.getVersioned(key))!;
  assert.equal(Buffer.from(v1.bytes).toString(), 'a');
  assert.equal((await lane.getVersioned(key))!.version, v1.version);
  for (let round = 0; round < 5; round++) {
    const current = (await store.getVersioned(key))!.version;
    // Four replacers through the store (thread pool) and four through the lane, all at once.
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? lane : store).putIfVersion(key, Buffer.from(`r${round}-${i}`), current)));
    const winners = results.flatMap((v, i) => (v === null ? [] : [i]));
    assert.equal(winners.length, 1, `round ${round}: ${winners.length} winners`);
    assert.equal(Buffer.from((await lane.getVersioned(key))!.bytes).toString(), `r${round}-${winners[0]}`);
  }
  assert.equal(await lane.putIfVersion(`${SOURCE}/state/absent.json`, Buffer.from('x'), v1.version), null, 'a missing object is never created');
});

for (const lane of [true, false]) {
  test(`flushes whose uploads take 2 s each, back to back, on a one-connection store: ${lane ? 'the lease renews on time through its lane' : 'without the lane the lease is lost (the scenario can fail)'}`, async () => {
    const store = new OneConnectionStore(2_000);
    const lease = new Lease({ store: lane ? store : withoutLane(store), source: SOURCE, ttlMs: TTL_MS });
    assert.equal(await lease.acquire(), true);
    const stop = { done: false };
    const flushing = flushBackToBack(store, stop);
    const r = await holdFor(lease, store.leaseLane(), 4_000);
    stop.done = true;
    await flushing;
    assert.ok(store.uploads >= 1, 'a part upload was under way');
    if (lane) {
      assert.equal(r.lost, false, 'the lease was lost while uploads kept the connection busy');
      // Every 500 ms for 4 s: 8 when on time; a loaded machine's late timers still give well over 3.
      assert.ok(r.renewals >= 4, `only ${r.renewals} renewals in 4 s with a 1.5 s TTL`);
    } else {
      assert.equal(r.lost, true, 'the renewal queued behind 2 s uploads and still kept a 1.5 s lease');
      assert.match(lease.lost!.message, /its write to the store had been waiting/);
    }
  });
}

/**
 * Occupies every thread of libuv's pool (UV_THREADPOOL_SIZE, default 4) with an open of a FIFO
 * that no writer has opened yet: each waits until `release()`. What a flush's fsyncs of large
 * parts on a slow disk do to every other file call of the process.
 */
async function blockThreadPool(dir: string): Promise<() => Promise<void>> {
  const n = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos = Array.from({ length: n }, (_, i) => join(dir, `fifo-${i}`));
  execFileSync('mkfifo', fifos);
  const opens = fifos.map((f) => open(f, 'r'));
  await wait(100); // every open is on a thread now
  return async () => {
    for (const f of fifos) closeSync(openSync(f, 'w'));
    for (const fh of await Promise.all(opens)) await fh.close();
  };
}

for (const lane of [true, false]) {
  test(`file:// store, a part write stuck behind a busy thread pool for 3 s: ${lane ? 'the lease renews on time through its lane' : 'without the lane the lease is lost (the scenario can fail)'}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chartlog-lease-lane-'));
    dirs.push(dir);
    const store = new FsObjectStore(join(dir, 'store'));
    const lease = new Lease({ store: lane ? store : withoutLane(store), source: SOURCE, ttlMs: TTL_MS });
    assert.equal(await lease.acquire(), true);
    const unblock = await blockThreadPool(dir);
    // A flush under way: its write waits for a thread like every other file call of the process.
    let partDone = false;
    const part = store.putIfAbsent(`${SOURCE}/parts/2026-12-05/11/part-0.avro`, Buffer.alloc(4 << 20, 1)).then(() => (partDone = true));
    const held = holdFor(lease, store.leaseLane(), 3_000);
    await wait(3_000);
    assert.equal(partDone, false, 'the part write was not held up: the scenario proves nothing');
    await unblock();
    const r = await held;
    await part;
    if (lane) {
      assert.equal(r.lost, false, 'the lease was lost while the thread pool was busy');
      assert.ok(r.renewals >= 3, `only ${r.renewals} renewals in 3 s with a 1.5 s TTL`);
    } else {
      assert.equal(r.lost, true, 'the renewal waited for the busy thread pool and still kept a 1.5 s lease');
    }
  });
}
