/**
 * The writer lease's compare-and-swap on a file:// store while part writes go on back to back:
 * through the store itself (libuv's thread pool, shared with the parts' deflate and fsyncs)
 * against through its lease lane (FsObjectStore.leaseLane: synchronous calls).
 *
 *   node --import tsx benchmarks/lease-lane.bench.ts [--seconds 30] [--busy-ms 0] [--dir /tmp]
 *
 * One process: a flusher deflates 64 blocks of 64 KiB (level 1, on the pool, as a part's
 * containers are) and writes them as one part (putIfAbsent), again and again; beside it two
 * loops each replace a small lease-like object every 300 ms by putIfVersion, one through the
 * store, one through the lane, and time each call. --busy-ms N keeps the event loop busy as a
 * compactor taking fetched batches does: N ms of computing in every N + 10 ms. Prints the latencies (ms) and the load
 * average; writes nothing else (a temporary folder, removed at the end).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { deflateRaw } from 'node:zlib';
import { FsObjectStore } from '../src/storage/fs-object-store.js';
import type { LeaseLane } from '../src/storage/object-store.js';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, 'busy-ms': { type: 'string', default: '0' }, dir: { type: 'string', default: tmpdir() }, help: { type: 'boolean' } } });
if (args.help) {
  console.log('node --import tsx benchmarks/lease-lane.bench.ts [--seconds 30] [--busy-ms 0] [--dir /tmp]');
  process.exit(0);
}
const deflate = promisify(deflateRaw);
const root = mkdtempSync(join(args.dir!, 'chartlog-lease-lane-'));
const store = new FsObjectStore(root);
const lane = store.leaseLane();
const stopAt = Date.now() + Number(args.seconds) * 1000;
const load0 = loadavg()[0]!;

let parts = 0;
async function flusher(): Promise<void> {
  const raw = randomBytes(64 << 10);
  while (Date.now() < stopAt) {
    const blocks: Buffer[] = [];
    for (let i = 0; i < 64; i++) blocks.push(await deflate(raw, { level: 1 }));
    await store.putIfAbsent(`src/parts/part-${parts++}.avro`, Buffer.concat(blocks));
  }
}

async function renewals(through: LeaseLane, key: string): Promise<number[]> {
  await store.put(key, Buffer.from('0'));
  let version = (await through.getVersioned(key))!.version;
  const ms: number[] = [];
  for (let n = 1; Date.now() < stopAt; n++) {
    const t = performance.now();
    version = (await through.putIfVersion(key, Buffer.from(String(n)), version))!;
    ms.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 300));
  }
  return ms;
}

const BUSY_MS = Number(args['busy-ms']);
async function busy(): Promise<void> {
  while (BUSY_MS > 0 && Date.now() < stopAt) {
    for (const until = Date.now() + BUSY_MS; Date.now() < until; );
    await new Promise((r) => setTimeout(r, 10));
  }
}

const summary = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]!);
  return { calls: s.length, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: q(1) };
};
try {
  const [, , viaStore, viaLane] = await Promise.all([flusher(), busy(), renewals(store, 'src/state/lease-store.json'), renewals(lane, 'src/state/lease-lane.json')]);
  console.log(JSON.stringify({ seconds: Number(args.seconds), busyMs: BUSY_MS, parts, loadAverage: [load0, loadavg()[0]].map((l) => +l!.toFixed(1)), throughStore: summary(viaStore), throughLane: summary(viaLane) }));
} finally {
  rmSync(root, { recursive: true, force: true });
}
