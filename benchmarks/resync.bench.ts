/**
 * `chartlog resync` of a large table while `chartlog run` streams it: wall time, rows/s and the
 * resync process's peak RSS (GNU time), with the stream's freshness (the checkpoint's
 * commit-to-now lag, sampled every 200 ms) during it. Same run, two cases: the source idle
 * (baseline), then under a concurrent writer (one workload transaction after another on the
 * same table), whose own latency is measured for 20 s before the resync (baseline) and during it.
 *
 *   node --import tsx benchmarks/resync.bench.ts [--engine postgres|mariadb] [--rows 1000000] [--out benchmarks/results/resync.json]
 *
 * Uses the services of scripts/services.sh (CHARTLOG_TEST_PG_URL, CHARTLOG_TEST_MARIADB_URL).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../src/archive/checkpoint.js';
import { chartlogBin } from '../test/support/chartlog-process.js';
import { createClinicTables, mariadbEngine, postgresEngine, prng, RunHarness, Workload } from '../test/support/run-harness.js';

const { values } = parseArgs({ options: { engine: { type: 'string', default: 'postgres' }, rows: { type: 'string', default: '1000000' }, out: { type: 'string' } } });
const rows = Number(values.rows);
if (values.engine !== 'postgres' && values.engine !== 'mariadb') {
  console.error('--engine: expected postgres or mariadb');
  process.exit(2);
}

const engine = values.engine === 'mariadb' ? await mariadbEngine() : await postgresEngine();
const h = new RunHarness(engine, 'file', { flushIntervalMs: 200 });

interface Quantiles {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

function quantiles(xs: number[]): Quantiles {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0;
  return { p50: Math.round(q(0.5) * 10) / 10, p99: Math.round(q(0.99) * 10) / 10, max: Math.round((s.at(-1) ?? 0) * 10) / 10, samples: s.length };
}

interface Case {
  load: boolean;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  peakRssMB: number;
  workloadTransactions: number;
  /** The writer's transaction latency: for 20 s before the resync on the same source, and during it (loaded case only). */
  writerLatencyMs?: { before: Quantiles; during: Quantiles };
  checkpointLagMs: Quantiles;
}

async function resync(load: boolean): Promise<Case> {
  const workload = new Workload(engine, prng(5));
  let running = load;
  let transactions = 0;
  const latencies: number[] = [];
  const writer = (async () => {
    while (running) {
      const t = performance.now();
      await workload.transaction();
      latencies.push(performance.now() - t);
      transactions++;
    }
  })();
  let before: Quantiles | undefined;
  if (load) {
    await sleep(20_000);
    before = quantiles(latencies.splice(0));
  }
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
  const child = spawn('/usr/bin/time', ['-f', 'TIME %M %e', process.execPath, chartlogBin, 'resync', '--config', h.configFile, '--source', 'clinic', '--tables', engine.qualified('patients'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: h.env });
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
  return {
    load,
    rows: result.rows,
    seconds: Number(m?.[2] ?? result.seconds),
    rowsPerSecond: Math.round(result.rows / Number(m?.[2] ?? result.seconds)),
    peakRssMB: Math.round(Number(m?.[1] ?? 0) / 1024),
    workloadTransactions: transactions,
    ...(before ? { writerLatencyMs: { before, during: quantiles(latencies) } } : {}),
    checkpointLagMs: quantiles(lags),
  };
}

/** Seeds the rows in one transaction; returns whether a checkpoint's commit is past it. */
async function seedPostgres(): Promise<(commit: string) => boolean> {
  await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'seed ' || g FROM generate_series(1000000, ${1_000_000 + rows - 1}) g`);
  // Durable once the checkpoint passes the WAL position read after the seed's commit (one more
  // transaction makes a commit after it).
  const [{ lsn }] = (await engine.query(`SELECT pg_current_wal_lsn()::text AS lsn`)) as [{ lsn: string }];
  const [hi, lo] = lsn.split('/').map((x) => BigInt(`0x${x}`)) as [bigint, bigint];
  const seeded = (hi << 32n) | lo;
  await engine.exec(`UPDATE patients SET visits_count = visits_count + 1 WHERE id = 1`);
  return (commit) => BigInt(`0x${commit}`) >= seeded;
}

/**
 * Seeds the rows in transactions of 100k (MariaDB's sequence engine); durable once the
 * checkpoint's GTID sequence (the middle of a MariaDB commit, binlog-position.ts) reaches the
 * last one's.
 */
async function seedMariadb(): Promise<(commit: string) => boolean> {
  for (let from = 1_000_000; from < 1_000_000 + rows; from += 100_000) {
    const to = Math.min(from + 100_000, 1_000_000 + rows) - 1;
    await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) SELECT seq, CONCAT('CANARY-NAME-', seq), CONCAT('CANARY-SSN-', seq), CONCAT('seed ', seq) FROM seq_${from}_to_${to}`);
  }
  await engine.exec(`UPDATE patients SET visits_count = visits_count + 1 WHERE id = 1`);
  const [{ pos }] = (await engine.query(`SELECT @@gtid_binlog_pos AS pos`)) as [{ pos: string }];
  const seq = BigInt(/(?:^|,)0-\d+-(\d+)/.exec(pos)![1]!);
  return (commit) => BigInt(`0x${commit.split('-')[1]}`) >= seq;
}

try {
  await createClinicTables(engine);
  await h.start();
  const stored = engine.type === 'postgres' ? await seedPostgres() : await seedMariadb();
  const t0 = Date.now();
  for (;;) {
    const cp = await readCheckpoint(h.store, 'clinic');
    if (cp && stored(cp.position.commit)) break;
    if (Date.now() - t0 > 900_000) throw new Error('the stream did not store the seed in 15 minutes');
    await sleep(1000);
  }
  console.error(`seed of ${rows} rows stored by chartlog run in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const idle = await resync(false);
  const loaded = await resync(true);
  const report = {
    benchmark: 'resync',
    command: `node --import tsx benchmarks/resync.bench.ts --engine ${values.engine} --rows ${rows}`,
    machine: `2 cores shared, Debian 12, Node 20, ${engine.type === 'postgres' ? 'PostgreSQL 15' : 'MariaDB 10.11'} (scripts/services.sh), file:// store`,
    measuredAt: new Date().toISOString(),
    cases: { baselineIdleSource: idle, concurrentWriter: loaded },
  };
  console.log(JSON.stringify(report, null, 2));
  if (values.out) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  await h.close();
  await engine.close();
}
