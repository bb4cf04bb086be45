/**
 * Put/get throughput of one 50 MiB object on each ObjectStore backend (buffered and streamed).
 *
 *   eval "$(bash scripts/services.sh env)"
 *   node --import tsx benchmarks/object-store-throughput.ts [file|s3] [rounds]
 *
 * file:// writes under $TMPDIR; s3:// goes to the radosgw of scripts/services.sh
 * (CHARTLOG_TEST_S3_*). Prints MiB/s per operation: the median of the rounds, and the range.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ObjectStore } from '../src/storage/object-store.js';
import { openObjectStore } from '../src/storage/open-object-store.js';

const MIB = 1024 * 1024;
const SIZE = 50 * MIB;

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: eval "$(bash scripts/services.sh env)" first`);
  return v;
}

function chunks(data: Buffer, size = 64 * 1024): Readable {
  let offset = 0;
  return new Readable({
    read() {
      if (offset >= data.length) return void this.push(null);
      this.push(data.subarray(offset, offset + size));
      offset += size;
    },
  });
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function bench(name: string, store: ObjectStore, rounds: number): Promise<void> {
  const data = randomBytes(SIZE);
  const want = createHash('sha256').update(data).digest('hex');
  const results: Record<string, number[]> = { 'put (buffered)': [], 'put (streamed)': [], 'get (buffered)': [], 'get (streamed)': [] };
  const base = `bench/${randomUUID()}/`;
  for (let r = 0; r < rounds; r++) {
    const key = `${base}obj-${r}`;
    results['put (buffered)']!.push(await timed(() => store.put(key, data)));
    results['put (streamed)']!.push(await timed(() => store.put(`${key}-s`, chunks(data))));
    let hash = '';
    results['get (buffered)']!.push(await timed(async () => {
      hash = createHash('sha256').update(await store.get(key)).digest('hex');
    }));
    if (hash !== want) throw new Error('read back different bytes');
    results['get (streamed)']!.push(await timed(async () => {
      const h = createHash('sha256');
      for await (const c of await store.getStream(`${key}-s`)) h.update(c as Buffer);
      hash = h.digest('hex');
    }));
    if (hash !== want) throw new Error('read back different bytes (stream)');
    await store.delete(key);
    await store.delete(`${key}-s`);
  }
  console.log(`${name} (${store.description}), 50 MiB, ${rounds} rounds, MiB/s (includes sha256 of what is read):`);
  for (const [op, secs] of Object.entries(results)) {
    const rates = secs.map((s) => 50 / s).sort((a, b) => a - b);
    const median = rates[Math.floor(rates.length / 2)]!;
    console.log(`  ${op.padEnd(16)} median ${median.toFixed(0).padStart(5)}   range ${rates[0]!.toFixed(0)}–${rates[rates.length - 1]!.toFixed(0)}`);
  }
}

const which = process.argv[2] ?? 'both';
const rounds = Number(process.argv[3] ?? 5);
if (which === 'file' || which === 'both') {
  const root = await mkdtemp(join(tmpdir(), 'chartlog-bench-'));
  const store = openObjectStore({ url: `file://${root}` });
  try {
    await bench('file://', store, rounds);
  } finally {
    await store.close();
    await rm(root, { recursive: true, force: true });
  }
}
if (which === 's3' || which === 'both') {
  const store = openObjectStore({
    url: `s3://${env('CHARTLOG_TEST_S3_BUCKET')}/chartlog-bench`,
    s3: {
      endpoint: env('CHARTLOG_TEST_S3_ENDPOINT'),
      region: process.env.CHARTLOG_TEST_S3_REGION ?? 'us-east-1',
      forcePathStyle: true,
      accessKeyId: env('CHARTLOG_TEST_S3_ACCESS_KEY_ID'),
      secretAccessKey: env('CHARTLOG_TEST_S3_SECRET_ACCESS_KEY'),
    },
  });
  try {
    await bench('s3:// radosgw', store, rounds);
  } finally {
    await store.close();
  }
}
