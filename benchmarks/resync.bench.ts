/**
 * `chartlog resync` of a large PostgreSQL table while `chartlog run` streams it: wall time,
 * rows/s and the resync process's peak RSS (GNU time), with the stream's freshness (the
 * checkpoint's commit-to-now lag, sampled every 200 ms) during it. Same run, two cases: the
 * source idle (baseline), then under a concurrent writer (one workload transaction after
 * another on the same table).
 *
 *   node --import tsx benchmarks/resync.bench.ts [--rows 1000000] [--out benchmarks/results/resync.json]
 *
 * Uses the services of scripts/services.sh (CHARTLOG_TEST_PG_URL).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../src/archive/checkpoint.js';
import { chartlogBin } from '../test/support/chartlog-process.js';
import { createClinicTables, postgresEngine, prng, RunHarness, Workload } from '../test/support/run-harness.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, out: { type: 'string' } } });
const rows = Number(values.rows);

const engine = await postgresEngine();
const h = new RunHarness(engine, 'file', { flushIntervalMs: 200 });

interface Case {
  load: boolean;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  peakRssMB: number;
  workloadTransactions: number;
  checkpointLagMs: { p50: number; p99: number; max: number; samples: number };
}

async function resync(load: boolean): Promise<Case> {
  const workload = new Workload(engine, prng(5));
  let running = load;
  let transactions = 0;
  const writer = (async () => {
    while (running) {
      await workload.transaction();
      transactions++;
    }
  })();
  const lags: number[] = [];
  let sampling = true;
  // Lag counts once the stream has stored a commit made during the resync: before that (and on
  // an idle source) it is only the time since the last commit.
  const initial = await readCheckpoint(h.store, 'clinic');
  const sampler = (async () => {
    while (sampling) {
      const cp = await readCheckpoint(h.store, 'clinic');
      if (cp && initial && cp.position.commit !== initial.position.commit) lags.push(Date.now() - Number(cp.commitTsUs / 1000n));
      await sleep(200);
    }
  })();
  const child = spawn('/usr/bin/time', ['-f', 'TIME %M %e', process.execPath, chartlogBin, 'resync', '--config', h.configFile, '--source', 'clinic', '--tables', 'public.patients', '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: h.env });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  running = false;
  sampling = false;
  await writer;
  await sampler;
  if (code !== 0) throw new Error(`resync exited ${code}: ${err.slice(-2000)}`);
  const m = /TIME (\d+) ([\d.]+)/.exec(err);
  const result = JSON.parse(out) as { rows: number; seconds: number; rowsPerSecond: number };
  lags.sort((a, b) => a - b);
  const q = (p: number) => lags[Math.min(lags.length - 1, Math.floor(lags.length * p))] ?? 0;
  return {
    load,
    rows: result.rows,
    seconds: Number(m?.[2] ?? result.seconds),
    rowsPerSecond: Math.round(result.rows / Number(m?.[2] ?? result.seconds)),
    peakRssMB: Math.round(Number(m?.[1] ?? 0) / 1024),
    workloadTransactions: transactions,
    checkpointLagMs: { p50: q(0.5), p99: q(0.99), max: lags.at(-1) ?? 0, samples: lags.length },
  };
}

try {
  await createClinicTables(engine);
  await h.start();
  await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'seed ' || g FROM generate_series(1000000, ${1_000_000 + rows - 1}) g`);
  // Durable once the checkpoint passes the WAL position read after the seed's commit (one more
  // transaction makes a commit after it).
  const [{ lsn }] = (await engine.query(`SELECT pg_current_wal_lsn()::text AS lsn`)) as [{ lsn: string }];
  const [hi, lo] = lsn.split('/').map((x) => BigInt(`0x${x}`)) as [bigint, bigint];
  const seeded = (hi << 32n) | lo;
  await engine.exec(`UPDATE patients SET visits_count = visits_count + 1 WHERE id = 1`);
  const t0 = Date.now();
  for (;;) {
    const cp = await readCheckpoint(h.store, 'clinic');
    if (cp && BigInt(`0x${cp.position.commit}`) >= seeded) break;
    if (Date.now() - t0 > 900_000) throw new Error('the stream did not store the seed in 15 minutes');
    await sleep(1000);
  }
  console.error(`seed of ${rows} rows stored by chartlog run in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const idle = await resync(false);
  const loaded = await resync(true);
  const report = {
    benchmark: 'resync',
    command: `node --import tsx benchmarks/resync.bench.ts --rows ${rows}`,
    machine: '2 cores shared, Debian 12, Node 20, PostgreSQL 15 (scripts/services.sh), file:// store',
    measuredAt: new Date().toISOString(),
    cases: { baselineIdleSource: idle, concurrentWriter: loaded },
  };
  console.log(JSON.stringify(report, null, 2));
  if (values.out) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  await h.close();
  await engine.close();
}
