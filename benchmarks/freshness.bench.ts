/**
 * Freshness: how long from a transaction's commit in PostgreSQL until it is durable in the
 * object store (its part written, the checkpoint updated, the position acknowledged), with the
 * default 1 s flush interval and a local directory, on the embedded bus and on the Kafka bus (the
 * 3-node Apache Kafka cluster of scripts/services.sh), side by side in one run.
 *
 *   node --import tsx benchmarks/freshness.bench.ts [--rate 5000] [--seconds 60] [--reps 3] [--bus embedded,kafka]
 *
 * The source is the private PostgreSQL 15 of scripts/services.sh (started when not running), a
 * fresh database per repetition. Writers commit every 100 ms a transaction of rate ÷ 10 rows of
 * the 12-column patient row with 4 PHI columns; the pipeline runs in this process, and every
 * transaction's latency is (time the flush holding it completed − its commit time; one clock).
 * On the Kafka bus "durable" is the same: the Kafka compactor's checkpoint in the store covers the
 * transaction (read every 20 ms; the compactor writes it after the parts holding it are durable).
 * Prints p50/p99/max per repetition and their medians; writes benchmarks/results/freshness.json.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config/load.js';
import { configureLogger } from '../src/core/logger.js';
import { runSourcePipeline } from '../src/pipeline/source-pipeline.js';
import { readCheckpoint } from '../src/archive/checkpoint.js';
import { Position } from '../src/core/position.js';
import { buildSourceRuntime } from '../src/pipeline/source-runtime.js';
import { FileKeyring } from '../src/phi/keyring/file-keyring.js';
import { openObjectStore } from '../src/storage/open-object-store.js';
import { createTestDb } from '../test/support/pg-test-db.js';
import { BenchRun, goal, measurement, toolVersion } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import { PATIENT_PHI_COLUMNS, publicPatientColumns } from './lib/patient-workload.js';

const { values: args } = parseArgs({
  options: { rate: { type: 'string', default: '5000' }, seconds: { type: 'string', default: '60' }, reps: { type: 'string', default: '3' }, bus: { type: 'string', default: 'embedded,kafka' } },
});
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const REPS = Math.max(1, Number(args.reps));
const TICK_MS = 100;
type Bus = 'embedded' | 'kafka';
const BUSES = args.bus.split(',') as Bus[];
if (BUSES.length === 0 || BUSES.some((b) => b !== 'embedded' && b !== 'kafka')) throw new Error('--bus takes embedded, kafka or both (comma-separated)');

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function once(rep: number, serverUrl: string, bus: Bus, brokers: readonly string[]): Promise<{ p50: number; p99: number; max: number; batches: number; rows: number; writerLagMs: number }> {
  const work = mkdtempSync(join(os.tmpdir(), 'chartlog-fresh-'));
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(join(work, 'keys', 'keyring.json'));
  const db = await createTestDb(serverUrl);
  const { url, client } = db;
  const table = `patients_${bus[0]}${rep}`;
  await client.query(`CREATE TABLE ${table} (id bigserial PRIMARY KEY, mrn varchar(20) NOT NULL, full_name text, ssn char(11), birth_date date, address text,
    ward text, admitted_at timestamptz, balance numeric(12,2), active boolean NOT NULL DEFAULT true, visits integer NOT NULL DEFAULT 0, external_id uuid)`);
  const config = parseConfig(
    [
      'sources:',
      `  - { name: clinic, type: postgres, url: "${url}", tables: [public.${table}], postgres: { slotName: ${db.name}, publicationName: fresh_${bus[0]}${rep} } }`,
      ...(bus === 'kafka' ? [`bus: { type: kafka, kafka: { brokers: [${brokers.map((b) => `"${b}"`).join(', ')}], topicPrefix: ${db.name}, groupId: ${db.name} } }`] : []),
      `storage: { url: "file://${work}/backup" }`,
      `phi: { keyring: "file://${work}/keys/keyring.json", columns: { public.${table}: [${PATIENT_PHI_COLUMNS.join(', ')}] }, publicColumns: { public.${table}: [${publicPatientColumns(PATIENT_PHI_COLUMNS).join(', ')}] } }`,
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
  const settle = (upTo: Position) => {
    const nowUs = BigInt(Date.now()) * 1000n;
    while (pending[0] && Position.compare(pending[0].position, upTo) <= 0) {
      const b = pending.shift()!;
      latencies.push(Number(nowUs - b.commitTsUs) / 1000);
      rows += b.rows;
    }
  };
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
      onDurable: (r) => settle(r.upTo),
    },
    stop.signal,
  );
  // The Kafka pipeline has no flush callback: its compactor's checkpoint says what is durable.
  const watching = new AbortController();
  const watcher =
    bus === 'kafka'
      ? (async () => {
          while (!watching.signal.aborted) {
            const cp = await readCheckpoint(store, 'clinic').catch(() => null);
            if (cp) settle(cp.position);
            await sleep(20);
          }
        })()
      : Promise.resolve();
  // Warm-up, not measured: the snapshot of the empty table, then one row through to durable (on
  // Kafka: topics made, the compactor's consumer group joined) — the steady state is measured.
  await sleep(1000);
  await client.query(`INSERT INTO ${table} (mrn) VALUES ('WARMUP')`);
  const warmUntil = Date.now() + 180_000;
  while (rows === 0 && Date.now() < warmUntil) await sleep(50);
  if (rows === 0) throw new Error(`${bus} bus: the warm-up row was not durable within 180 s`);
  latencies.length = 0;
  rows = 0;

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
  watching.abort();
  await watcher;
  stop.abort();
  await pipeline;
  await store.close();
  await db.drop(); // drops its slot too
  rmSync(work, { recursive: true, force: true });
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN, batches: latencies.length, rows, writerLagMs: lag };
}

configureLogger({ level: 'warn', format: 'json' });
const services = benchServices();
const run = new BenchRun('freshness', `Freshness: commit → durable in the object store at ${RATE} rows/s`, `node --import tsx benchmarks/freshness.bench.ts --rate ${RATE} --seconds ${SECONDS} --reps ${REPS} --bus ${BUSES.join(',')}`, {
  rowsPerSecond: RATE,
  seconds: SECONDS,
  reps: REPS,
  transactionsPerSecond: 1000 / TICK_MS,
  flushIntervalMs: 1000,
  bus: BUSES.join(', '),
  kafka: BUSES.includes('kafka') ? 'Apache Kafka 4.1.1, 3 KRaft nodes, RF 3, min.insync.replicas 2 (scripts/services.sh), gzip (default)' : 'not measured',
  store: 'file://',
  row: '12 columns, 4 PHI (sealed)',
  source: 'PostgreSQL 15 (scripts/services.sh)',
});
run.version('postgres', toolVersion('psql'));
const reps = new Map<Bus, Awaited<ReturnType<typeof once>>[]>(BUSES.map((b) => [b, []]));
try {
  for (let rep = 0; rep < REPS; rep++) {
    // Both buses in each repetition, their order rotating: the same machine state for both.
    for (let i = 0; i < BUSES.length; i++) {
      const bus = BUSES[(i + rep) % BUSES.length]!;
      const r = await once(rep, services.pgUrl, bus, services.kafkaBrokers);
      reps.get(bus)!.push(r);
      console.log(`rep ${rep + 1}, ${bus} bus: p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms, max ${r.max.toFixed(0)} ms over ${r.batches} transactions, ${r.rows} rows (writer fell behind by at most ${r.writerLagMs} ms)`);
    }
  }
} finally {
  stopBenchServices();
}
for (const bus of BUSES) {
  const rs = reps.get(bus)!;
  // The embedded bus keeps the measurement names of earlier results, so the series continue.
  const on = bus === 'embedded' ? '' : ' (Kafka bus)';
  run.add(measurement(`p50 commit → durable${on}`, 'ms', 'lower', 'chartlog', rs.map((r) => r.p50)));
  const p99 = run.add(measurement(`p99 commit → durable${on}`, 'ms', 'lower', 'chartlog', rs.map((r) => r.p99)));
  run.add(measurement(`max commit → durable${on}`, 'ms', 'lower', 'chartlog', rs.map((r) => r.max)));
  run.add(measurement(`rows made durable per second${on}`, 'rows/s', 'higher', 'detail', rs.map((r) => r.rows / SECONDS)));
  run.addGoal(goal(`p99 ≤ 1500 ms at the default 1 s flush (${bus} bus)`, p99.median, 'ms', p99.median <= 1500));
  if (rs.some((r) => r.writerLagMs > 200)) run.note(`${bus} bus: the writer fell behind its schedule by up to ${Math.max(...rs.map((r) => r.writerLagMs))} ms: the source could not take ${RATE} rows/s steadily`);
  if (rs.some((r) => r.rows < RATE * SECONDS * 0.99)) run.note(`${bus} bus: not every row written was durable before the end of the repetition (${rs.map((r) => r.rows).join(', ')} of ${RATE * SECONDS})`);
}
run.note('latency per transaction of rate/10 rows, from its commit time in PostgreSQL to the completion of the flush (parts, checkpoint) that made it durable; on the Kafka bus, to the moment the compactor\'s checkpoint (read every 20 ms) covered it');
run.write();
