import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { CryptoJobBuilder, JOB_FIELDS, sealJobs } from '../../../src/phi/crypto-jobs.js';
import { CryptoPool } from '../../../src/phi/crypto-pool.js';
import { Position } from '../../../src/core/position.js';
import { openedLength, openParts, positionBytes, sealedLength, sealedPosition, type DataKey, type SealAlgorithm } from '../../../src/phi/sealer.js';

let made = 0;
/** Data keys of both algorithms, in turn. */
function dek(algorithm: SealAlgorithm = made++ % 2 === 0 ? 'XChaCha20-Poly1305' : 'AES-256-GCM'): DataKey {
  const id = new Uint8Array(randomBytes(16));
  return { id, idHex: Buffer.from(id).toString('hex'), key: new Uint8Array(randomBytes(32)), algorithm };
}

/** Job i's position: events of 4 values each, so consecutive jobs share one. */
const posOf = (i: number) => positionBytes(Position.of('00000000016b3a10', Math.floor(i / 4)));

const place = new TextEncoder().encode('clinic public.patients ssn');

/** `n` values under two keys, each in a hole after 3 bytes of filler that must stay as it was. */
function jobsFor(n: number, keys: DataKey[]): { builder: CryptoJobBuilder; out: Uint8Array; holes: { at: number; len: number; plain: string; key: Uint8Array; dek: DataKey; seq: number }[] } {
  const builder = new CryptoJobBuilder();
  const holes: { at: number; len: number; plain: string; key: Uint8Array; dek: DataKey; seq: number }[] = [];
  let pos = posOf(0);
  let at = 0;
  for (let i = 0; i < n; i++) {
    at += 3;
    const plain = `CANARY-${i}-${'x'.repeat(i % 50)}`;
    const key = new TextEncoder().encode(`row-${i}`);
    const d = keys[i % keys.length]!;
    if (i % 4 === 0) pos = posOf(i);
    const len = sealedLength(d, pos, plain.length);
    builder.add(d, new TextEncoder().encode(plain), place, key, pos, at);
    holes.push({ at, len, plain, key, dek: d, seq: Math.floor(i / 4) });
    at += len;
  }
  const out = new Uint8Array(at).fill(0xee);
  return { builder, out, holes };
}

function assertSealed(out: Uint8Array, holes: ReturnType<typeof jobsFor>['holes']): void {
  let prev = 0;
  for (const h of holes) {
    assert.deepEqual([...out.subarray(prev, h.at)], [0xee, 0xee, 0xee], 'bytes between holes untouched');
    const sealed = out.subarray(h.at, h.at + h.len);
    assert.equal(sealedPosition(sealed)?.seq, h.seq, 'each value carries its own position');
    assert.equal(Buffer.from(sealed).includes(h.plain), false, 'no plaintext in the sealed bytes');
    assert.equal(Buffer.from(openParts(h.dek, sealed, place, h.key, 'test')).toString(), h.plain);
    prev = h.at + h.len;
  }
}

const pools: CryptoPool[] = [];
after(() => Promise.all(pools.map((p) => p.close())));

test('sealJobs fills every hole with a value that opens under its key and AAD, and nothing else', () => {
  const keys = [dek(), dek()];
  const { builder, out, holes } = jobsFor(200, keys);
  sealJobs(builder.take(), out);
  assertSealed(out, holes);
});

test('a pool thread seals a batch exactly as the calling thread would, moving the buffer instead of copying it', async () => {
  const pool = new CryptoPool(1);
  pools.push(pool);
  const { builder, out, holes } = jobsFor(1000, [dek(), dek()]);
  const sealed = await pool.seal(builder.take(), out);
  assert.equal(pool.stats.onThread, 1);
  assert.equal(pool.stats.inline, 0);
  assertSealed(sealed!, holes);
  assert.equal(out.byteLength, 0, 'the buffer went to the thread (detached here), not a copy');
});

test('concurrent batches on two threads each come back whole and in their own buffer', async () => {
  const pool = new CryptoPool(2);
  pools.push(pool);
  const batches = Array.from({ length: 6 }, (_, i) => jobsFor(100 + i * 37, [dek()]));
  const sealed = await Promise.all(batches.map((b) => pool.seal(b.builder.take(), b.out)));
  for (const [i, b] of batches.entries()) assertSealed(sealed[i]!, b.holes);
  assert.equal(new Set(sealed.map((x) => x!.buffer)).size, 6);
  assert.equal(pool.stats.onThread, 6);
});

test('warm starts the thread before any batch (once), and the first batch then runs on that thread', async () => {
  const pool = new CryptoPool(1);
  pools.push(pool);
  assert.equal(threadOf(pool), null, 'no thread before a batch or warm');
  pool.warm();
  const started = threadOf(pool);
  assert.ok(started, 'warm started the thread');
  pool.warm();
  assert.equal(threadOf(pool), started, 'a second warm keeps the running thread');
  const { builder, out, holes } = jobsFor(100, [dek()]);
  assertSealed((await pool.seal(builder.take(), out))!, holes);
  assert.equal(threadOf(pool), started, 'the batch ran on the warmed thread');
  assert.deepEqual(pool.stats, { onThread: 1, inline: 0 });
});

test('a thread that dies mid-batch is reported (null: the caller encodes again), and the next batch gets a new thread', async () => {
  const pool = new CryptoPool(1);
  pools.push(pool);
  // A first batch starts the thread (and proves it works).
  const warm = jobsFor(10, [dek()]);
  await pool.seal(warm.builder.take(), warm.out);
  const { builder, out } = jobsFor(20_000, [dek()]);
  const sealing = pool.seal(builder.take(), out);
  const worker = threadOf(pool);
  assert.ok(worker, 'the thread is running');
  await worker.terminate();
  assert.equal(await sealing, null);
  assert.deepEqual(pool.stats, { onThread: 1, inline: 0 });
  const next = jobsFor(50, [dek()]);
  assertSealed((await pool.seal(next.builder.take(), next.out))!, next.holes);
  assert.equal(pool.stats.onThread, 2);
});

test('an opening whose thread dies mid-batch is done on the calling thread', async () => {
  const pool = new CryptoPool(1);
  pools.push(pool);
  const { builder, out, holes } = jobsFor(20_000, [dek()]);
  sealJobs(builder.take(), out);
  const b = new CryptoJobBuilder();
  let at = 0;
  for (const h of holes) {
    b.add(h.dek, out.subarray(h.at, h.at + h.len), place, h.key, new Uint8Array(0), at);
    at += openedLength(h.dek, out.subarray(h.at, h.at + h.len));
  }
  const warm = jobsFor(1, [dek()]);
  await pool.seal(warm.builder.take(), warm.out);
  const opening = pool.open(b.take(), at, () => 'x');
  await threadOf(pool)!.terminate();
  assert.equal(Buffer.from(await opening).toString(), holes.map((h) => h.plain).join(''));
  assert.deepEqual(pool.stats, { onThread: 1, inline: 1 });
});

function threadOf(pool: CryptoPool): { terminate(): Promise<number> } | null | undefined {
  return (pool as unknown as { workers: ({ terminate(): Promise<number> } | null)[] }).workers[0];
}

test('a closed pool seals on the calling thread', async () => {
  const pool = new CryptoPool(1);
  await pool.close();
  const { builder, out, holes } = jobsFor(30, [dek()]);
  assertSealed((await pool.seal(builder.take(), out))!, holes);
  assert.deepEqual(pool.stats, { onThread: 0, inline: 1 });
});

test('truncate forgets the jobs of an event written another way', () => {
  const b = new CryptoJobBuilder();
  const d = dek();
  const pos = posOf(0);
  b.add(d, Uint8Array.of(1), place, Uint8Array.of(), pos, 0);
  b.add(d, Uint8Array.of(2), place, Uint8Array.of(), pos, 100);
  b.truncate(1);
  const batch = b.take();
  assert.equal(batch.jobs.length / JOB_FIELDS, 1);
  const out = new Uint8Array(200);
  sealJobs(batch, out);
  assert.deepEqual([...out.subarray(100)], new Array(100).fill(0), 'the forgotten hole is not written');
  assert.deepEqual([...openParts(d, out.subarray(0, sealedLength(d, pos, 1)), place, Uint8Array.of(), 't')], [1]);
});

test('a pool thread opens sealed values to their plaintexts; one that does not authenticate fails naming its column', async () => {
  const pool = new CryptoPool(1);
  pools.push(pool);
  const keys = [dek(), dek()];
  const { builder, out, holes } = jobsFor(500, keys);
  sealJobs(builder.take(), out);
  const opening = (damage: number | null) => {
    const b = new CryptoJobBuilder();
    let at = 0;
    for (const [i, h] of holes.entries()) {
      const sealed = Buffer.from(out.subarray(h.at, h.at + h.len));
      if (i === damage) sealed[sealed.length - 1]! ^= 0x80;
      b.add(h.dek, sealed, place, h.key, new Uint8Array(0), at);
      at += openedLength(h.dek, sealed);
    }
    return { batch: b.take(), length: at };
  };
  const ok = opening(null);
  const plain = await pool.open(ok.batch, ok.length, (i) => `column ${i}`);
  assert.equal(Buffer.from(plain).toString(), holes.map((h) => h.plain).join(''));
  assert.equal(pool.stats.onThread, 1);

  const bad = opening(321);
  await assert.rejects(pool.open(bad.batch, bad.length, (i) => `column ${i}`), (e: unknown) => {
    assert.ok(e instanceof ChartlogError);
    assert.equal(e.code, 'integrity');
    assert.match(e.message, /^column 321: sealed value failed authentication/);
    assert.ok(!e.message.includes('CANARY'));
    return true;
  });
});
