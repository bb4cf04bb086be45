import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CreateBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { ChartlogError } from '../../src/core/errors.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { compareKeys } from '../../src/storage/object-key.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { S3_AUTH_HINT, S3ObjectStore } from '../../src/storage/s3-object-store.js';
import { requireEnv } from '../support/env.js';

/**
 * One conformance suite (the ObjectStore contract in src/storage/object-store.ts) run against
 * every backend: file:// in a temporary folder and s3:// against the real radosgw of
 * scripts/services.sh. Each test works under its own random prefix so runs never collide.
 */

const MIB = 1024 * 1024;
const BIG = 50 * MIB;

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');
/** Every prefix a test used, so the suite can delete what it wrote (radosgw keeps objects in RAM). */
const usedPrefixes: string[] = [];
const prefixOf = (label: string): string => {
  const prefix = `conformance/${label}-${randomUUID()}/`;
  usedPrefixes.push(prefix);
  return prefix;
};
const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

async function readAll(stream: Readable): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return new Uint8Array(Buffer.concat(chunks));
}

async function sha256OfStream(stream: Readable): Promise<{ hash: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of stream) {
    const b = c as Buffer;
    h.update(b);
    size += b.length;
  }
  return { hash: h.digest('hex'), size };
}

/** A body delivered in uneven chunks, so part boundaries never line up with chunk boundaries. */
function chunked(data: Uint8Array): Readable {
  const sizes = [1, 65_536, 1_000_003, 7 * MIB + 5, 333];
  let i = 0;
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= data.byteLength) return void this.push(null);
      const n = sizes[i++ % sizes.length]!;
      this.push(Buffer.from(data.subarray(offset, Math.min(offset + n, data.byteLength))));
      offset += n;
    },
  });
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<ChartlogError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ChartlogError, `expected a ChartlogError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a ChartlogError('${code}'), but the call succeeded`);
}

async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: width }, worker));
}

async function listKeys(store: ObjectStore, prefix: string, limit?: number): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await store.list(prefix, { ...(cursor !== undefined ? { cursor } : {}), ...(limit !== undefined ? { limit } : {}) });
    pages++;
    if (limit !== undefined) assert.ok(page.objects.length <= limit, `page of ${page.objects.length} exceeds limit ${limit}`);
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { keys, pages };
}

export function conformance(name: string, makeStore: () => Promise<ObjectStore>): void {
  describe(`ObjectStore conformance: ${name}`, () => {
    let store: ObjectStore;
    let big: Uint8Array;
    before(async () => {
      store = await makeStore();
      big = new Uint8Array(randomBytes(BIG));
    });
    after(async () => {
      await store?.close();
    });

    it('puts and gets a 1-byte and a 0-byte object, buffered and streamed', async () => {
      const p = prefixOf('small');
      await store.put(`${p}one`, new Uint8Array([0xa7]));
      await store.put(`${p}empty`, new Uint8Array(0));
      await store.put(`${p}one-streamed`, Readable.from([Buffer.from([0x00])]));
      await store.put(`${p}empty-streamed`, Readable.from([]));
      assert.deepEqual([...(await store.get(`${p}one`))], [0xa7]);
      assert.deepEqual([...(await store.get(`${p}one-streamed`))], [0x00]);
      assert.equal((await store.get(`${p}empty`)).byteLength, 0);
      assert.equal((await store.get(`${p}empty-streamed`)).byteLength, 0);
      assert.deepEqual([...(await readAll(await store.getStream(`${p}one`)))], [0xa7]);
      assert.equal((await readAll(await store.getStream(`${p}empty`))).byteLength, 0);
      const one = await store.head(`${p}one`);
      assert.equal(one?.key, `${p}one`);
      assert.equal(one?.size, 1);
      assert.ok(one.lastModified instanceof Date && Math.abs(one.lastModified.getTime() - Date.now()) < 10 * 60_000, 'lastModified is about now');
      assert.equal((await store.head(`${p}empty`))?.size, 0);
    });

    it('overwrites with put; putIfAbsent creates once and leaves an existing object untouched', async () => {
      const p = prefixOf('overwrite');
      await store.put(`${p}k`, bytes('first'));
      await store.put(`${p}k`, bytes('second, longer'));
      assert.equal(text(await store.get(`${p}k`)), 'second, longer');
      assert.equal((await store.head(`${p}k`))?.size, 14);
      assert.equal(await store.putIfAbsent(`${p}new`, bytes('created')), true);
      assert.equal(await store.putIfAbsent(`${p}new`, bytes('intruder')), false);
      assert.equal(await store.putIfAbsent(`${p}new`, Readable.from([Buffer.from('streamed intruder')])), false);
      assert.equal(text(await store.get(`${p}new`)), 'created');
      assert.equal(await store.putIfAbsent(`${p}empty`, new Uint8Array(0)), true);
      assert.equal(await store.putIfAbsent(`${p}empty`, bytes('x')), false);
      assert.equal((await store.get(`${p}empty`)).byteLength, 0);
    });

    it('reads byte ranges, end exclusive and clamped to the size', async () => {
      const p = prefixOf('range');
      const data = new Uint8Array(1000).map((_, i) => (i * 7 + 3) & 0xff);
      await store.put(`${p}r`, data);
      const cases: [number, number][] = [[0, 1], [10, 20], [0, 1000], [999, 1000], [990, 5000], [500, 500], [1000, 1000], [1000, 2000], [4000, 5000]];
      for (const [s, e] of cases) {
        const got = await store.getRange(`${p}r`, s, e);
        assert.deepEqual([...got], [...data.subarray(s, Math.min(e, data.length))], `range [${s}, ${e})`);
      }
      await store.put(`${p}empty`, new Uint8Array(0));
      assert.equal((await store.getRange(`${p}empty`, 0, 10)).byteLength, 0);
      assert.equal((await store.getRange(`${p}empty`, 0, 0)).byteLength, 0);
      await rejectsWith(store.getRange(`${p}r`, 5, 4), 'usage');
      await rejectsWith(store.getRange(`${p}r`, -1, 4), 'usage');
    });

    it('treats missing keys as the contract says: get/getRange/getStream not_found, head null, delete quiet', async () => {
      const p = prefixOf('missing');
      await rejectsWith(store.get(`${p}nothing`), 'not_found');
      await rejectsWith(store.getRange(`${p}nothing`, 0, 10), 'not_found');
      await rejectsWith(store.getRange(`${p}nothing`, 3, 3), 'not_found');
      await rejectsWith(store.getStream(`${p}nothing`), 'not_found');
      assert.equal(await store.head(`${p}nothing`), null);
      await store.delete(`${p}nothing`);
      // A "folder" of other objects is not an object either.
      await store.put(`${p}dir/child`, bytes('c'));
      await rejectsWith(store.get(`${p}dir`), 'not_found');
      assert.equal(await store.head(`${p}dir`), null);
      await store.delete(`${p}dir`);
      assert.equal(text(await store.get(`${p}dir/child`)), 'c');
      assert.deepEqual((await store.list(`${p}nothing`)).objects, []);
    });

    it('deletes objects, leaving their neighbours', async () => {
      const p = prefixOf('delete');
      await store.put(`${p}a/x`, bytes('x'));
      await store.put(`${p}a/y`, bytes('y'));
      await store.delete(`${p}a/x`);
      assert.equal(await store.head(`${p}a/x`), null);
      await rejectsWith(store.get(`${p}a/x`), 'not_found');
      assert.deepEqual((await listKeys(store, p)).keys, [`${p}a/y`]);
      await store.delete(`${p}a/y`);
      assert.deepEqual((await listKeys(store, p)).keys, []);
      // The emptied folder must not stop a new write there.
      await store.put(`${p}a/z`, bytes('z'));
      assert.equal(text(await store.get(`${p}a/z`)), 'z');
    });

    it('lists by prefix in byte order, isolated from neighbouring prefixes', async () => {
      const p = prefixOf('list');
      const keys = [
        'a/b', 'a-c', 'a/b/c', 'a/bb', 'ab', 'b', 'a0', 'z', 'Z', 'é', 'e', '\u{1F9EA}', '\uFB01', 'seg/2026-11-24/05/x',
      ].map((k) => p + k);
      // 'a/b' and 'a/b/c' cannot coexist on a file system; keep the S3-compatible subset.
      const stored = keys.filter((k) => k !== `${p}a/b`);
      await inParallel(stored, 8, (k) => store.put(k, bytes(k)));
      usedPrefixes.push(`${p.slice(0, -1)}-neighbour/`);
      await store.put(`${p.slice(0, -1)}-neighbour/a`, bytes('outside'));
      const expected = [...stored].sort(compareKeys);
      assert.deepEqual((await listKeys(store, p)).keys, expected);
      assert.deepEqual((await listKeys(store, p, 3)).keys, expected, 'same keys across small pages');
      const all: string[] = [];
      for await (const o of store.listAll(p)) all.push(o.key);
      assert.deepEqual(all, expected);
      assert.deepEqual((await listKeys(store, `${p}a`)).keys, expected.filter((k) => k.startsWith(`${p}a`)));
      assert.deepEqual((await listKeys(store, `${p}a/`)).keys, [`${p}a/b/c`, `${p}a/bb`]);
      assert.deepEqual((await listKeys(store, `${p}a/b`)).keys, [`${p}a/b/c`, `${p}a/bb`]);
      assert.deepEqual((await listKeys(store, `${p}seg/2026-11-24/`)).keys, [`${p}seg/2026-11-24/05/x`]);
      const page = await store.list(p);
      for (const o of page.objects) assert.equal(o.size, Buffer.byteLength(o.key, 'utf8'), `size of ${o.key}`);
      assert.equal(page.cursor, undefined);
    });

    it('lists past 1000 keys with cursor pagination', async () => {
      const p = prefixOf('many');
      const keys = Array.from({ length: 1100 }, (_, i) => `${p}k/${String(i).padStart(5, '0')}`);
      await inParallel(keys, 32, (k) => store.put(k, bytes(k.slice(-5))));
      const first = await store.list(p);
      assert.ok(first.objects.length <= 1000 && first.objects.length > 0, `first page has ${first.objects.length} keys`);
      assert.ok(first.cursor !== undefined, 'a cursor after the first page');
      const { keys: listed, pages } = await listKeys(store, p);
      assert.ok(pages >= 2, `${pages} pages`);
      assert.deepEqual(listed, keys);
      const { keys: small, pages: smallPages } = await listKeys(store, p, 250);
      assert.deepEqual(small, keys);
      assert.ok(smallPages >= 5, `${smallPages} pages of 250`);
      let n = 0;
      for await (const o of store.listAll(p)) {
        assert.equal(o.key, keys[n]);
        n++;
      }
      assert.equal(n, 1100);
    });

    it('stores keys with spaces and unicode', async () => {
      const p = prefixOf('unicode');
      const key = `${p}patients/Zoë Ångström/über café 🩺 #1 +%20.avro`;
      await store.put(key, bytes('ü'));
      assert.equal(text(await store.get(key)), 'ü');
      assert.equal((await store.head(key))?.size, 2);
      assert.deepEqual((await listKeys(store, `${p}patients/Zoë `)).keys, [key]);
      assert.equal(await store.putIfAbsent(key, bytes('x')), false);
      await store.delete(key);
      assert.equal(await store.head(key), null);
    });

    it('rejects invalid keys with a clear usage error', async () => {
      for (const bad of ['', '/abs', 'a//b', 'a/../b', '..', './a', 'a/', 'a/.chartlog-tmp-x', 'nul\u0000x']) {
        const err = await rejectsWith(store.put(bad, bytes('x')), 'usage');
        assert.match(err.message, /invalid object key/);
        await rejectsWith(store.get(bad), 'usage');
      }
      await rejectsWith(store.list('/abs'), 'usage');
      await rejectsWith(store.list('a/../'), 'usage');
    });

    it('never shows a reader a torn object while it is being overwritten', async () => {
      const key = `${prefixOf('torn')}obj`;
      const size = 2 * MIB;
      await store.put(key, new Uint8Array(size).fill(255));
      let writing = true;
      const writer = (async () => {
        for (let i = 0; i < 8; i++) await store.put(key, i % 2 ? new Uint8Array(size).fill(i) : chunked(new Uint8Array(size).fill(i)));
        writing = false;
      })();
      let reads = 0;
      const reader = async () => {
        while (writing) {
          const got = await store.get(key);
          assert.equal(got.byteLength, size);
          assert.ok(got.every((b) => b === got[0]), 'one writer\'s bytes only');
          reads++;
        }
      };
      await Promise.all([writer, reader(), reader()]);
      assert.ok(reads > 0);
      assert.ok((await store.get(key)).every((b) => b === 7));
      await store.delete(key);
    });

    it('of 8 concurrent putIfAbsent racers exactly one wins and its body is stored', async () => {
      for (let round = 0; round < 3; round++) {
        const key = `${prefixOf('race')}obj`;
        const bodies = Array.from({ length: 8 }, (_, i) => bytes(`racer-${i}-${randomUUID()}`));
        const results = await Promise.all(bodies.map((b) => store.putIfAbsent(key, b)));
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        assert.equal(winners.length, 1, `round ${round}: winners ${JSON.stringify(winners)}`);
        assert.equal(text(await store.get(key)), text(bodies[winners[0]!]!));
      }
    });

    it('putIfVersion replaces only the version getVersioned returned; a missing object is never created', async () => {
      const key = `${prefixOf('cas')}lease.json`;
      assert.equal(await store.getVersioned(key), null);
      assert.equal(await store.putIfVersion(key, bytes('never'), 'some-version'), null);
      assert.equal(await store.head(key), null, 'putIfVersion created a missing object');
      assert.equal(await store.putIfAbsent(key, bytes('v1')), true);
      const v1 = await store.getVersioned(key);
      assert.ok(v1);
      assert.equal(text(v1.bytes), 'v1');
      const v2 = await store.putIfVersion(key, bytes('v2'), v1.version);
      assert.ok(v2, 'the current version was refused');
      assert.notEqual(v2, v1.version);
      assert.equal((await store.getVersioned(key))?.version, v2, 'the returned version is the one getVersioned reports');
      assert.equal(await store.putIfVersion(key, bytes('v3'), v1.version), null, 'a stale version replaced the object');
      assert.equal(text(await store.get(key)), 'v2');
      const v4 = await store.putIfVersion(key, bytes('v4'), v2);
      assert.ok(v4);
      assert.equal(text(await store.get(key)), 'v4');
      await store.delete(key);
      assert.equal(await store.putIfVersion(key, bytes('v5'), v4), null, 'a deleted object was replaced');
      assert.equal(await store.head(key), null);
    });

    it('of 8 concurrent putIfVersion replacers of one version exactly one wins, round after round', async () => {
      const key = `${prefixOf('cas-race')}lease.json`;
      await store.putIfAbsent(key, bytes(`start-${randomUUID()}`));
      for (let round = 0; round < 6; round++) {
        const current = await store.getVersioned(key);
        assert.ok(current);
        const bodies = Array.from({ length: 8 }, (_, i) => bytes(`round-${round}-racer-${i}-${randomUUID()}`));
        const results = await Promise.all(bodies.map((b) => store.putIfVersion(key, b, current.version)));
        const winners = results.flatMap((v, i) => (v !== null ? [i] : []));
        assert.equal(winners.length, 1, `round ${round}: winners ${JSON.stringify(winners)}`);
        const after = await store.getVersioned(key);
        assert.equal(text(after!.bytes), text(bodies[winners[0]!]!));
        assert.equal(after!.version, results[winners[0]!]);
      }
      await store.delete(key);
    });

    it('round-trips a 50 MiB object buffered and streamed (sha256), and refuses to create it twice', async () => {
      const p = prefixOf('big');
      const want = sha256(big);
      await store.put(`${p}buffered`, big);
      assert.equal((await store.head(`${p}buffered`))?.size, BIG);
      assert.equal(sha256(await store.get(`${p}buffered`)), want);
      await store.put(`${p}streamed`, chunked(big));
      assert.equal((await store.head(`${p}streamed`))?.size, BIG);
      assert.deepEqual(await sha256OfStream(await store.getStream(`${p}streamed`)), { hash: want, size: BIG });
      assert.equal(sha256(await store.get(`${p}streamed`)), want);
      // Ranges across the 8 MiB part boundaries of a multipart upload.
      for (const [s, e] of [[8 * MIB - 10, 8 * MIB + 10], [0, 3 * MIB], [BIG - 5, BIG + 5], [17 * MIB + 1, 33 * MIB - 1]] as const) {
        const want = sha256(big.subarray(s, Math.min(e, BIG)));
        assert.equal(sha256(await store.getRange(`${p}buffered`, s, e)), want, `buffered range [${s}, ${e})`);
        assert.equal(sha256(await store.getRange(`${p}streamed`, s, e)), want, `streamed range [${s}, ${e})`);
      }
      const other = new Uint8Array(randomBytes(BIG));
      assert.equal(await store.putIfAbsent(`${p}streamed`, chunked(other)), false);
      assert.equal(await store.putIfAbsent(`${p}buffered`, other), false);
      assert.equal(sha256(await store.get(`${p}streamed`)), want);
      assert.equal(sha256(await store.get(`${p}buffered`)), want);
      const listed = (await store.list(p)).objects;
      assert.deepEqual(listed.map((o) => [o.key, o.size]), [[`${p}buffered`, BIG], [`${p}streamed`, BIG]]);
      // Deleting big objects; radosgw holds them in memory until deleted.
      await Promise.all([store.delete(`${p}buffered`), store.delete(`${p}streamed`)]);
      assert.deepEqual((await store.list(p)).objects, []);
    });
  });
}

const fsRoots: string[] = [];
let s3Cleanup: (() => ObjectStore) | undefined;
after(async () => {
  for (const root of fsRoots) await rm(root, { recursive: true, force: true });
  if (s3Cleanup) {
    const store = s3Cleanup();
    try {
      for (const prefix of usedPrefixes) {
        const keys: string[] = [];
        for await (const o of store.listAll(prefix)) keys.push(o.key);
        await inParallel(keys, 16, (k) => store.delete(k));
      }
    } finally {
      await store.close();
    }
  }
});

conformance('file://', async () => {
  const root = await mkdtemp(join(tmpdir(), 'chartlog-objects-'));
  fsRoots.push(root);
  return openObjectStore({ url: `file://${root}` });
});

conformance('s3:// (radosgw)', async () => {
  const endpoint = requireEnv('CHARTLOG_TEST_S3_ENDPOINT');
  const accessKeyId = requireEnv('CHARTLOG_TEST_S3_ACCESS_KEY_ID');
  const secretAccessKey = requireEnv('CHARTLOG_TEST_S3_SECRET_ACCESS_KEY');
  const bucket = requireEnv('CHARTLOG_TEST_S3_BUCKET');
  const region = process.env.CHARTLOG_TEST_S3_REGION ?? 'us-east-1';
  await ensureBucket({ endpoint, accessKeyId, secretAccessKey, bucket, region });
  const open = () => openObjectStore({
    url: `s3://${bucket}/chartlog-test`,
    s3: { endpoint, region, forcePathStyle: true, accessKeyId, secretAccessKey },
  });
  s3Cleanup = open;
  return open();
});

async function ensureBucket(s3: { endpoint: string; accessKeyId: string; secretAccessKey: string; bucket: string; region: string }): Promise<void> {
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: s3.bucket }));
  } catch (err) {
    const name = (err as { name?: string }).name;
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
  } finally {
    client.destroy();
  }
}

function s3Settings() {
  return {
    endpoint: requireEnv('CHARTLOG_TEST_S3_ENDPOINT'),
    accessKeyId: requireEnv('CHARTLOG_TEST_S3_ACCESS_KEY_ID'),
    secretAccessKey: requireEnv('CHARTLOG_TEST_S3_SECRET_ACCESS_KEY'),
    bucket: requireEnv('CHARTLOG_TEST_S3_BUCKET'),
    region: process.env.CHARTLOG_TEST_S3_REGION ?? 'us-east-1',
  };
}

function rawClient(s3 = s3Settings(), endpoint = s3.endpoint): S3Client {
  return new S3Client({
    endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * A plain HTTP proxy in front of radosgw that lets `fault(n)` (n counts requests from 1) answer
 * a request itself: a status code for an S3 error reply, 'hang' to never answer, or undefined
 * to pass it through to the real server.
 */
async function faultyProxy(upstream: string, fault: (n: number) => number | 'hang' | undefined, errorCode?: string) {
  const target = new URL(upstream);
  let count = 0;
  const server = createHttpServer((req, res) => {
    const verdict = fault(++count);
    if (verdict === 'hang') return void req.resume();
    if (typeof verdict === 'number') {
      req.resume();
      req.on('end', () => {
        const code = errorCode ?? (verdict === 503 ? 'SlowDown' : 'InternalError');
        res.writeHead(verdict, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`);
      });
      return;
    }
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => count,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('S3ObjectStore specifics (radosgw)', () => {
  it('reports wrong credentials as a fatal auth error that names the fix', async () => {
    const s3 = s3Settings();
    const store = new S3ObjectStore({ ...s3, prefix: 'chartlog-test', forcePathStyle: true, secretAccessKey: 'wrong-secret-for-the-conformance-test' });
    try {
      for (const op of [() => store.put('auth/x', bytes('x')), () => store.get('auth/x'), () => store.list('auth/'), () => store.head('auth/x')]) {
        const err = await rejectsWith(op(), 'auth');
        assert.equal(err.retriable, false);
        assert.equal(err.hint, S3_AUTH_HINT);
        assert.match(err.hint ?? '', /CHARTLOG_S3_ACCESS_KEY_ID/);
        assert.doesNotMatch(err.message + (err.hint ?? ''), /wrong-secret/, 'the secret is not echoed');
      }
    } finally {
      await store.close();
    }
    const unknownKey = new S3ObjectStore({ ...s3, forcePathStyle: true, accessKeyId: 'NOSUCHACCESSKEY0000', secretAccessKey: 'whatever' });
    try {
      const err = await rejectsWith(unknownKey.get('auth/x'), 'auth');
      assert.equal(err.retriable, false);
    } finally {
      await unknownKey.close();
    }
  });

  it('uploads large bodies in parts and reads them back whole', async () => {
    const s3 = s3Settings();
    const store = new S3ObjectStore({ ...s3, prefix: 'chartlog-test', forcePathStyle: true, partSize: 5 * MIB });
    const client = rawClient(s3);
    try {
      const key = `${prefixOf('parts')}obj`;
      const data = new Uint8Array(randomBytes(10 * MIB + 3));
      await store.put(key, chunked(data));
      const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `chartlog-test/${key}` }));
      // A multipart object's ETag is "<md5 of part md5s>-<parts>": 10 MiB + 3 bytes is 3 parts of 5 MiB.
      assert.match(head.ETag ?? '', /-3"$/);
      assert.equal(sha256(await store.get(key)), sha256(data));
      await store.put(`${key}-small`, data.subarray(0, 5 * MIB));
      const small = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `chartlog-test/${key}-small` }));
      assert.doesNotMatch(small.ETag ?? '', /-\d+"$/, 'one part or less goes up in one PutObject');
    } finally {
      client.destroy();
      await store.close();
    }
  });

  it('aborts the multipart upload when the body fails, leaving no parts and no object', async () => {
    const s3 = s3Settings();
    const store = new S3ObjectStore({ ...s3, prefix: 'chartlog-test', forcePathStyle: true, partSize: 5 * MIB });
    const client = rawClient(s3);
    try {
      const key = `${prefixOf('abort')}obj`;
      let sent = 0;
      const failing = new Readable({
        read() {
          if (sent >= 12 * MIB) return void this.destroy(new Error('source broke after 12 MiB'));
          sent += MIB;
          this.push(randomBytes(MIB));
        },
      });
      await assert.rejects(store.put(key, failing), (err: unknown) => err instanceof ChartlogError && /source broke/.test(err.message));
      assert.equal(await store.head(key), null);
      const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `chartlog-test/${key}` }));
      assert.deepEqual(uploads.Uploads ?? [], [], 'no multipart upload left open');
    } finally {
      client.destroy();
      await store.close();
    }
  });

  it('multipart putIfAbsent (above exactCreateMax) refuses an existing object and creates a new one', async () => {
    const s3 = s3Settings();
    const store = new S3ObjectStore({ ...s3, prefix: 'chartlog-test', forcePathStyle: true, exactCreateMax: 0, partSize: 5 * MIB });
    const client = rawClient(s3);
    try {
      const p = prefixOf('mp-once');
      const data = new Uint8Array(randomBytes(11 * MIB));
      await store.put(`${p}existing`, bytes('first'));
      assert.equal(await store.putIfAbsent(`${p}existing`, chunked(data)), false);
      assert.equal(await store.putIfAbsent(`${p}existing`, data), false);
      assert.equal(text(await store.get(`${p}existing`)), 'first');
      assert.equal(await store.putIfAbsent(`${p}new`, chunked(data)), true);
      assert.equal(sha256(await store.get(`${p}new`)), sha256(data));
      assert.equal(await store.putIfAbsent(`${p}new`, chunked(data.subarray(0, 6 * MIB))), false);
      assert.equal(sha256(await store.get(`${p}new`)), sha256(data));
      const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `chartlog-test/${p}` }));
      assert.deepEqual(uploads.Uploads ?? [], [], 'refused creates leave no multipart upload open');
    } finally {
      client.destroy();
      await store.close();
    }
  });

  it('says when the bucket does not exist', async () => {
    const s3 = s3Settings();
    const store = new S3ObjectStore({ ...s3, bucket: `chartlog-missing-${randomUUID().slice(0, 8)}`, forcePathStyle: true });
    try {
      const err = await rejectsWith(store.get('x'), 'config');
      assert.match(err.hint ?? '', /create the bucket/);
      await rejectsWith(store.put('x', bytes('x')), 'config');
    } finally {
      await store.close();
    }
  });

  it('retries 5xx and throttling replies with backoff, then reports them as retriable', async () => {
    const s3 = s3Settings();
    // The first two requests are refused (503 SlowDown, 500), the rest reach radosgw.
    const flaky = await faultyProxy(s3.endpoint, (n) => (n === 1 ? 503 : n === 2 ? 500 : undefined));
    const down = await faultyProxy(s3.endpoint, () => 500);
    const viaFlaky = new S3ObjectStore({ ...s3, endpoint: flaky.endpoint, prefix: 'chartlog-test', forcePathStyle: true, maxAttempts: 5 });
    const viaDown = new S3ObjectStore({ ...s3, endpoint: down.endpoint, prefix: 'chartlog-test', forcePathStyle: true, maxAttempts: 3 });
    try {
      const key = `${prefixOf('retry')}obj`;
      await viaFlaky.put(key, bytes('made it'));
      assert.equal(flaky.requests(), 3, 'two refused attempts, then the one that reached radosgw');
      assert.equal(text(await viaFlaky.get(key)), 'made it');
      const err = await rejectsWith(viaDown.get(key), 'storage');
      assert.equal(err.retriable, true);
      assert.match(err.message, /InternalError, HTTP 500/);
      assert.equal(down.requests(), 3, 'maxAttempts requests, then the error');
    } finally {
      await viaFlaky.close();
      await viaDown.close();
      await flaky.close();
      await down.close();
    }
  });

  it('retries a create that met 409 ConditionalRequestConflict until the answer is exact', async () => {
    const s3 = s3Settings();
    // AWS answers 409 while another conditional write to the key is in flight; the SDK does not retry it.
    const conflicted = await faultyProxy(s3.endpoint, (n) => (n === 1 ? 409 : undefined), 'ConditionalRequestConflict');
    const store = new S3ObjectStore({ ...s3, endpoint: conflicted.endpoint, prefix: 'chartlog-test', forcePathStyle: true });
    try {
      const key = `${prefixOf('conflict')}obj`;
      assert.equal(await store.putIfAbsent(key, bytes('mine')), true);
      assert.equal(conflicted.requests(), 2);
      assert.equal(text(await store.get(key)), 'mine');
      assert.equal(await store.putIfAbsent(key, bytes('again')), false);
    } finally {
      await store.close();
      await conflicted.close();
    }
  });

  it('drops a silent connection after the socket timeout and reports a retriable timeout', async () => {
    const s3 = s3Settings();
    const silent = await faultyProxy(s3.endpoint, () => 'hang');
    const store = new S3ObjectStore({ ...s3, endpoint: silent.endpoint, forcePathStyle: true, maxAttempts: 2, socketTimeoutMs: 300 });
    try {
      const err = await rejectsWith(store.get('x'), 'timeout');
      assert.equal(err.retriable, true);
      assert.equal(silent.requests(), 2, 'the timed-out request was tried again');
    } finally {
      await store.close();
      await silent.close();
    }
  });

  it('reports an unreachable endpoint as a retriable connection error', async () => {
    const s3 = s3Settings();
    const store = new S3ObjectStore({ ...s3, endpoint: 'http://127.0.0.1:1', forcePathStyle: true, maxAttempts: 2 });
    try {
      const err = await rejectsWith(store.get('x'), 'connection');
      assert.equal(err.retriable, true);
      assert.match(err.message, /ECONNREFUSED/);
    } finally {
      await store.close();
    }
  });

  it('trusts a private endpoint through storage.s3.ca, and explains the failure without it', async () => {
    const s3 = s3Settings();
    const dir = await mkdtemp(join(tmpdir(), 'chartlog-tls-'));
    fsRoots.push(dir);
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'ca.pem'),
    ], { stdio: 'ignore' });
    // TLS in front of the real radosgw, as a private endpoint behind a TLS terminator would be.
    const upstream = new URL(s3.endpoint);
    const proxy = createHttpsServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'ca.pem')) }, (req, res) => {
      const up = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const endpoint = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const trusted = openObjectStore({
      url: `s3://${s3.bucket}/chartlog-test`,
      s3: { endpoint, region: s3.region, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, ca: join(dir, 'ca.pem') },
    });
    const untrusted = openObjectStore({
      url: `s3://${s3.bucket}/chartlog-test`,
      s3: { endpoint, region: s3.region, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    try {
      const key = `${prefixOf('tls')}obj`;
      await trusted.put(key, bytes('over tls'));
      assert.equal(text(await trusted.get(key)), 'over tls');
      const err = await rejectsWith(untrusted.get(key), 'connection');
      assert.equal(err.retriable, false);
      assert.match(err.hint ?? '', /storage\.s3\.ca/);
    } finally {
      await trusted.close();
      await untrusted.close();
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});

describe('FsObjectStore specifics', () => {
  let root: string;
  let store: FsObjectStore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'chartlog-fs-'));
    fsRoots.push(root);
    store = new FsObjectStore(root);
  });

  it('never lists temporary files and leaves none behind', async () => {
    await store.put('t/a', bytes('a'));
    await store.putIfAbsent('t/b', bytes('b'));
    await store.putIfAbsent('t/b', bytes('c'));
    await store.put('t/big', chunked(new Uint8Array(randomBytes(3 * MIB))));
    assert.deepEqual((await readdir(join(root, 't'))).sort(), ['a', 'b', 'big']);
    // An in-flight write of another process.
    await writeFile(join(root, 't', '.chartlog-tmp-0123456789abcdef'), 'partial');
    assert.deepEqual((await listKeys(store, '')).keys, ['t/a', 't/b', 't/big']);
  });

  it('cleans up after a failing body stream and keeps the old object', async () => {
    await store.put('f/obj', bytes('old'));
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(1024, 1));
        this.destroy(new Error('source broke'));
      },
    });
    await assert.rejects(store.put('f/obj', failing), (err: unknown) => err instanceof ChartlogError && err.message === 'cannot write object f/obj: source broke');
    assert.equal(text(await store.get('f/obj')), 'old');
    assert.deepEqual(await readdir(join(root, 'f')), ['obj']);
  });

  it('keeps writing while deletes prune the same folder', async () => {
    for (let i = 0; i < 40; i++) {
      await store.put(`race/${i}/a`, bytes('a'));
      // The delete empties and prunes race/<i>/ while the put needs it.
      await Promise.all([store.delete(`race/${i}/a`), store.put(`race/${i}/b`, bytes('b')), store.putIfAbsent(`race/${i}/c`, bytes('c'))]);
      assert.equal(text(await store.get(`race/${i}/b`)), 'b');
      assert.equal(text(await store.get(`race/${i}/c`)), 'c');
      assert.equal(await store.head(`race/${i}/a`), null);
    }
  });

  it('putIfVersion breaks a lock file left by a crashed holder, and waits for a live one', async () => {
    await store.putIfAbsent('lk/lease.json', bytes('v1'));
    const lock = join(root, 'lk', '.chartlog-tmp-lock-lease.json');
    // A holder on this host that died (a pid that exited): broken at once.
    const dead = execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await writeFile(lock, JSON.stringify({ host: hostname(), pid: Number(dead), token: 'x' }));
    let started = Date.now();
    const v1 = (await store.getVersioned('lk/lease.json'))!.version;
    const v2 = await store.putIfVersion('lk/lease.json', bytes('v2'), v1);
    assert.ok(v2, 'the dead holder\'s lock was not broken');
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    // A holder elsewhere that stopped touching it long ago: stale by age.
    await writeFile(lock, JSON.stringify({ host: 'elsewhere', pid: 1, token: 'y' }));
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    assert.ok(await store.putIfVersion('lk/lease.json', bytes('v3'), v2));
    // A live holder (this process): the replacer waits until it lets go.
    await writeFile(lock, JSON.stringify({ host: hostname(), pid: process.pid, token: 'z' }));
    const v3 = (await store.getVersioned('lk/lease.json'))!.version;
    started = Date.now();
    const release = setTimeout(() => void rm(lock, { force: true }), 300);
    const v4 = await store.putIfVersion('lk/lease.json', bytes('v4'), v3);
    clearTimeout(release);
    assert.ok(v4);
    assert.ok(Date.now() - started >= 250, `did not wait for the live holder (${Date.now() - started} ms)`);
    assert.deepEqual((await readdir(join(root, 'lk'))).sort(), ['lease.json'], 'a lock file was left behind');
  });

  it('explains that an object cannot also be a folder', async () => {
    await store.put('n/a', bytes('a'));
    const err = await rejectsWith(store.put('n/a/b', bytes('b')), 'storage');
    assert.match(err.hint ?? '', /cannot hold an object 'a' and an object 'a\/b'/);
  });
});
