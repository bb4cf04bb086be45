import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { configureLogger } from '../../../src/core/logger.js';
import { Position } from '../../../src/core/position.js';
import { readCheckpoint, writeCheckpoint } from '../../../src/archive/checkpoint.js';
import { decodeRecord, Lease, readLease } from '../../../src/archive/lease.js';
import { leaseKey } from '../../../src/archive/layout.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const SOURCE = 'clinic';
const KEY = leaseKey(SOURCE);
const isLeaseError = (e: unknown) => e instanceof ChartlogError && e.code === 'lease' && !e.retriable;
const later = (ms: number) => () => Date.now() + ms;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * Waits until `ok()` (checked every 20 ms), at most `ms`: the renewal tests count renewals
 * instead of sleeping a fixed time, which a loaded machine (CI at load 40) overran.
 */
async function until(ok: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  for (const deadline = Date.now() + ms; !(await ok()) && Date.now() < deadline; ) await wait(20);
}

const leases: Lease[] = [];
function lease(store: MemoryObjectStore, o: Partial<ConstructorParameters<typeof Lease>[0]> = {}): Lease {
  const l = new Lease({ store, source: SOURCE, ttlMs: 60_000, ...o });
  leases.push(l);
  return l;
}
after(async () => {
  for (const l of leases) await l.release();
});

test('acquire on an empty store creates the lease: owner, host, pid, epoch 1, expiry one TTL ahead', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store, { host: 'host-a', pid: 101 });
  const t = Date.now();
  assert.equal(await a.acquire(), true);
  assert.equal(a.held, true);
  assert.equal(a.epoch, 1);
  const rec = (await readLease(store, SOURCE))!;
  assert.equal(rec.owner, a.ownerId);
  assert.equal(rec.host, 'host-a');
  assert.equal(rec.pid, 101);
  assert.equal(rec.epoch, 1);
  assert.equal(rec.released, false);
  assert.ok(Math.abs(Date.parse(rec.expiresAt) - (t + 60_000)) < 1000, rec.expiresAt);
  a.assertHeld();
  await a.check();
});

test('a second process waits while the lease is held, logs who holds it, and takes over at once when it is released (epoch + 1)', async () => {
  const lines = new PassThrough();
  const logged: string[] = [];
  lines.on('data', (c: Buffer) => logged.push(...c.toString('utf8').split('\n').filter(Boolean)));
  configureLogger({ level: 'info', format: 'json', destination: lines });
  try {
    const store = new MemoryObjectStore();
    const a = lease(store, { host: 'host-a', pid: 101, ttlMs: 600 });
    assert.equal(await a.acquire(), true);
    const b = lease(store, { host: 'host-b', pid: 202, ttlMs: 600, logEveryMs: 200 });
    let bHeld = false;
    const waiting = b.acquire().then((v) => (bHeld = v));
    // A renews every 200 ms, so its lease never expires: B keeps waiting well past one TTL.
    await wait(1500);
    assert.equal(bHeld, false, 'B took the lease while A held and renewed it');
    assert.equal(a.held, true);
    const waits = logged.map((l) => JSON.parse(l) as { msg: string; holder?: { host: string; pid: number }; expiresInMs?: number }).filter((l) => l.holder);
    assert.ok(waits.length >= 3, `expected a waiting line every 200 ms, got ${waits.length}`);
    assert.equal(waits[0]!.holder!.host, 'host-a');
    assert.equal(waits[0]!.holder!.pid, 101);
    assert.match(waits[0]!.msg, /another chartlog \(host host-a, pid 101\) writes this source's archive; waiting/);
    assert.ok(typeof waits[0]!.expiresInMs === 'number');

    const released = Date.now();
    await a.release();
    await waiting;
    const handoverMs = Date.now() - released;
    assert.equal(bHeld, true);
    assert.ok(handoverMs < 300, `handover after release took ${handoverMs} ms`);
    assert.equal(b.epoch, 2);
    assert.throws(() => a.assertHeld(), isLeaseError);
  } finally {
    configureLogger({ level: 'silent' });
  }
});

test('tryAcquire says who holds an unexpired lease and writes nothing', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store, { host: 'host-a', pid: 7 });
  await a.acquire();
  const writes = store.writes;
  const b = lease(store);
  const r = await b.tryAcquire();
  assert.equal(r.acquired, false);
  assert.equal(!r.acquired && r.holder.host, 'host-a');
  assert.equal(!r.acquired && r.holder.pid, 7);
  assert.equal(store.writes, writes);
});

test('an expired lease (its holder crashed) is taken over with epoch + 1, and the old holder is fenced off', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store);
  await a.acquire();
  // B's clock is past A's expiry: A stopped renewing (crashed, or paused).
  const b = lease(store, { now: later(61_000) });
  assert.equal(await b.acquire(), true);
  assert.equal(b.epoch, 2);
  const rec = (await readLease(store, SOURCE))!;
  assert.equal(rec.owner, b.ownerId);
  assert.equal(rec.epoch, 2);
  // A's own clock still says held; the store says otherwise.
  a.assertHeld();
  await assert.rejects(a.check(), (e: unknown) => isLeaseError(e) && /taken over/.test((e as Error).message));
  assert.equal(a.held, false);
  assert.ok(a.signal.aborted);
  assert.throws(() => a.assertHeld(), isLeaseError);
});

test('renewal moves the expiry forward every third of the TTL and keeps the epoch', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store, { ttlMs: 1_500 });
  await a.acquire();
  const first = (await readLease(store, SOURCE))!;
  await until(async () => (await readLease(store, SOURCE))!.renewals >= 3);
  const now = (await readLease(store, SOURCE))!;
  assert.ok(now.renewals >= 3, `renewals: ${now.renewals}`);
  assert.ok(Date.parse(now.expiresAt) > Date.parse(first.expiresAt) + 1_000);
  assert.equal(now.epoch, 1);
  assert.equal(a.held, true);
  await a.check();
});

test('a renewal that finds another owner loses the lease: signal aborted with a fatal lease error', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store, { ttlMs: 300 });
  await a.acquire();
  const b = lease(store, { ttlMs: 300, now: later(10_000) });
  await b.acquire();
  await until(() => a.signal.aborted);
  assert.ok(a.signal.aborted, 'A did not notice the takeover at its next renewal');
  assert.ok(isLeaseError(a.lost));
  assert.match(a.lost!.message, /taken over \(now: host .*epoch 2\)/);
  assert.throws(() => a.assertHeld(), isLeaseError);
  assert.equal(b.held, true);
});

test('renewal impossible until expiry (store unreachable) loses the lease before it could expire', async () => {
  const store = new MemoryObjectStore();
  // A TTL of 3 s: the loss is due at 2.5 s (TTL less a sixth), half a second before the expiry,
  // which a loaded machine's late timers stay within (with 600 ms the slack was 100 ms).
  const a = lease(store, { ttlMs: 3_000 });
  await a.acquire();
  const acquiredAt = Date.now();
  store.failNext(1_000_000);
  await new Promise<void>((resolve) => a.signal.addEventListener('abort', () => resolve()));
  const lostAfter = Date.now() - acquiredAt;
  store.failNext(0);
  assert.ok(lostAfter < 3_000, `lost after ${lostAfter} ms, not before the 3,000 ms expiry`);
  assert.ok(lostAfter >= 2_000, `lost after only ${lostAfter} ms`);
  assert.match(a.lost!.message, /before it expired: the renewal started \d+\.\d s after it was due; \d+ calls? to the store failed/);
  assert.equal((await readLease(store, SOURCE))!.owner, a.ownerId, 'the record stays until someone takes it over');
});

test('a store that never answers the renewal: the loss says the write was waiting on the store', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store, { ttlMs: 600 });
  await a.acquire();
  const real = store.putIfVersion.bind(store);
  let unstick: (v: string | null) => void = () => {};
  store.putIfVersion = () => new Promise<string | null>((resolve) => (unstick = resolve)); // a write stuck in the store (a disk stalled in fsync)
  await new Promise<void>((resolve) => a.signal.addEventListener('abort', () => resolve()));
  store.putIfVersion = real;
  unstick(null); // the late answer changes nothing: the lease stays lost
  assert.equal(a.held, false);
  assert.match(a.lost!.message, /before it expired: the renewal started \d+\.\d s after it was due; its write to the store had been waiting \d+\.\d s for an answer/);
});

test('a process too busy to run its renewal timer: the loss says the renewal started late, not the store', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store, { ttlMs: 600 });
  await a.acquire();
  const until = Date.now() + 800; // the event loop blocked past the expiry (a long synchronous stretch)
  while (Date.now() < until);
  await new Promise<void>((resolve) => (a.signal.aborted ? resolve() : a.signal.addEventListener('abort', () => resolve())));
  assert.match(a.lost!.message, /before it expired: the renewal (due \d+\.\d s ago never started|started \d+\.\d s after it was due)/);
  assert.doesNotMatch(a.lost!.message, /waiting .* for an answer/);
});

test('a renewal whose answer was lost (the write happened) keeps the lease', async () => {
  const store = new MemoryObjectStore();
  const real = store.putIfVersion.bind(store);
  let drop = 2;
  store.putIfVersion = async (key, body, version) => {
    const v = await real(key, body, version);
    if (drop-- > 0) throw new ChartlogError('connection', 'socket hang up after the write', { retriable: true });
    return v;
  };
  const a = lease(store, { ttlMs: 1_500 });
  await a.acquire();
  await until(async () => !a.held || (await readLease(store, SOURCE))!.renewals >= 2);
  assert.equal(a.held, true, a.lost?.message);
  await a.check();
  assert.ok((await readLease(store, SOURCE))!.renewals >= 2);
});

test('release marks the lease released; a released lease is never written again by its old owner', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store);
  await a.acquire();
  await a.release();
  const rec = (await readLease(store, SOURCE))!;
  assert.equal(rec.released, true);
  assert.ok(Date.parse(rec.expiresAt) <= Date.now());
  assert.throws(() => a.assertHeld(), isLeaseError);
  const writes = store.writes;
  await a.release();
  assert.equal(store.writes, writes);
});

test('fencing: a checkpoint write by a process whose lease was taken over is refused and the checkpoint stays', async () => {
  const store = new MemoryObjectStore();
  const a = lease(store);
  await a.acquire();
  const p1 = Position.of('0000000000000010', 0xffffffff);
  await writeCheckpoint(store, { source: SOURCE, position: p1, commitTsUs: 1n, snapshotId: null }, undefined, a);
  const b = lease(store, { now: later(61_000) });
  await b.acquire();
  const p2 = Position.of('0000000000000020', 0xffffffff);
  await assert.rejects(writeCheckpoint(store, { source: SOURCE, position: p2, commitTsUs: 2n, snapshotId: null }, undefined, a), isLeaseError);
  assert.deepEqual((await readCheckpoint(store, SOURCE))!.position, p1);
  // The new holder writes it.
  await writeCheckpoint(store, { source: SOURCE, position: p2, commitTsUs: 2n, snapshotId: null }, undefined, b);
  assert.deepEqual((await readCheckpoint(store, SOURCE))!.position, p2);
});

test('an unreadable lease object is an integrity error that says how to recover', () => {
  assert.throws(() => decodeRecord(Buffer.from('{"torn'), KEY), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity' && /delete clinic\/state\/lease\.json/.test(e.hint ?? ''));
});

test('of several processes racing for a free lease exactly one gets it', async () => {
  const store = new MemoryObjectStore();
  const racers = Array.from({ length: 6 }, () => lease(store));
  const results = await Promise.all(racers.map((r) => r.tryAcquire()));
  assert.equal(results.filter((r) => r.acquired).length, 1);
  // And again once it expired: one taker, epoch 2.
  const takers = Array.from({ length: 6 }, () => lease(store, { now: later(61_000) }));
  const taken = await Promise.all(takers.map((r) => r.tryAcquire()));
  assert.equal(taken.filter((r) => r.acquired).length, 1);
  assert.equal((await readLease(store, SOURCE))!.epoch, 2);
});


test('a holder that died on this machine (its pid is gone) is taken over at once; a live or remote one is not', async () => {
  const store = new MemoryObjectStore();
  const dead = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }));
  // The dead process held it: same host, boot and PID namespace as this one.
  const crashed = lease(store, { pid: dead });
  await crashed.tryAcquire();
  const rec = (await readLease(store, SOURCE))!;
  assert.ok(rec.bootId && rec.pidNamespace, 'boot id and PID namespace recorded');
  crashed['clearTimers']();
  const next = lease(store);
  const started = Date.now();
  assert.equal((await next.tryAcquire()).acquired, true);
  assert.ok(Date.now() - started < 1000);
  assert.equal(next.epoch, 2);
  // The same record under another host name must wait for the expiry.
  const store2 = new MemoryObjectStore();
  const remote = lease(store2, { pid: dead, host: 'elsewhere' });
  await remote.tryAcquire();
  remote['clearTimers']();
  assert.equal((await lease(store2).tryAcquire()).acquired, false);
});
