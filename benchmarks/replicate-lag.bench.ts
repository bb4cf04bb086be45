/**
 * `chartlog replicate` lag at a steady load (issue 18 goal: lag p99 ≤ 2 s at a steady 5k rows/s,
 * on both target engines), side by side with the archive's own freshness in the same run.
 *
 *   node --import tsx benchmarks/replicate-lag.bench.ts [--rate 5000] [--seconds 60] [--warmup 5]
 *
 * Source: a fresh database on the private PostgreSQL 15 of scripts/services.sh, backed up by
 * `chartlog run` as a real process (embedded bus, file:// store, default 1 s flush interval).
 * Writers commit 50 transactions a second, each of rate ÷ 50 rows: rows − 1 inserts into `load_<e>`
 * (its `note` column PHI) and one into `probe_<e>` carrying the source's clock_timestamp() in µs
 * just before the commit. Per target engine (PostgreSQL, then MariaDB, each a new empty
 * database, each following its own pair of tables with --tables, so each starts empty),
 * `chartlog replicate --phi open` runs with its default settings (250 ms poll) while
 * the load runs `--seconds`, after a warm-up whose transactions are not counted:
 *   - replica lag (chartlog): a poller reads the target's new `probe` rows every 50 ms; a
 *     transaction's lag is the time it was seen minus its source timestamp;
 *   - archive freshness (baseline, same run): a poller reads state/checkpoint.json every 50 ms;
 *     a transaction is durable once the checkpoint's commit time reaches its timestamp. This is
 *     the floor of any replica fed from the archive.
 * Both include up to 50 ms of polling. p50/p99/max per engine, the time from the load's start to
 * the first transaction seen in the replica (the replicator's start-up backlog) and the p99 of the
 * second half of the window (whether that backlog drained); the achieved row rate is checked
 * (a run that could not keep the rate says so). The replicas are checked equal to the source
 * (row counts and sums of `load`) after the lag drained.
 *
 * Writes benchmarks/results/replicate-lag.json (see lib/bench-report.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { readCheckpoint } from '../src/archive/checkpoint.js';
import { BenchRun, goal, measurement, ratio } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import { BackgroundRun, chartlogBin, waitForAnyCheckpoint, writeBenchConfig } from './lib/chartlog-pg-rig.js';

const { values: args } = parseArgs({ options: { rate: { type: 'string', default: '5000' }, seconds: { type: 'string', default: '60' }, warmup: { type: 'string', default: '5' } } });
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const WARMUP = Number(args.warmup);
const TX_PER_S = 50;
const ROWS_PER_TX = Math.max(2, Math.round(RATE / TX_PER_S));

const services = benchServices();
const admin = new pg.Client({ connectionString: services.pgUrl });
await admin.connect();
const tag = Math.random().toString(16).slice(2, 8);
const pgDbs: string[] = [];
const myDbs: string[] = [];
const pgUrl = (name: string) => services.pgUrl.replace(/\/[^/]*$/, `/${name}`);
const myBase = process.env.CHARTLOG_TEST_MARIADB_URL!.replace(/\/$/, '');
const my = await mysql.createConnection({ uri: myBase });
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-replicate-lag-'));
const bench = new BenchRun('replicate-lag', 'chartlog replicate: lag at a steady row rate, PostgreSQL and MariaDB targets, beside the archive freshness', `node --import tsx benchmarks/replicate-lag.bench.ts --rate ${RATE} --seconds ${SECONDS} --warmup ${WARMUP}`, { rate: RATE, seconds: SECONDS, warmup: WARMUP, txPerSecond: TX_PER_S, rowsPerTx: ROWS_PER_TX, pollMs: 50 });

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

let run: BackgroundRun | null = null;
let replicator: ChildProcess | null = null;
try {
  const srcName = `rl_src_${tag}`;
  await admin.query(`CREATE DATABASE ${srcName}`);
  pgDbs.push(srcName);
  const sourceUrl = pgUrl(srcName);
  const src = new pg.Client({ connectionString: sourceUrl });
  await src.connect();
  src.on('error', () => undefined);
  // One pair of tables per target engine, each replica following its own (--tables): each starts
  // from empty tables, so neither run's rows are an initial load for the other.
  for (const e of ['pg', 'my']) {
    await src.query(`CREATE TABLE load_${e} (id bigint PRIMARY KEY, tx int NOT NULL, v int NOT NULL, note text)`);
    await src.query(`CREATE TABLE probe_${e} (tx int PRIMARY KEY, us bigint NOT NULL)`);
  }
  const setup = writeBenchConfig(work, 'bench', sourceUrl, 'public.load_pg', ['note']);
  const { readFileSync, writeFileSync } = await import('node:fs');
  writeFileSync(
    setup.configFile,
    readFileSync(setup.configFile, 'utf8')
      .replace('tables: [public.load_pg]', `tables: [public.load_pg, public.probe_pg, public.load_my, public.probe_my], postgres: { slotName: rl_${tag} }`)
      .replace('columns: { public.load_pg: [note] }', 'columns: { public.load_pg: [note], public.load_my: [note] }')
      .replace(/publicColumns: \{ public\.load_pg: \[[^\]]*\] \}/, 'publicColumns: { public.load_pg: [id, tx, v], public.probe_pg: [tx, us], public.load_my: [id, tx, v], public.probe_my: [tx, us] }'),
  );
  run = new BackgroundRun(setup, join(work, 'run.log'));
  await run.streaming(120_000);
  await waitForAnyCheckpoint(setup, 120_000, run);

  let nextTx = 1;
  let nextId = 1;
  for (const engine of ['postgres', 'mysql'] as const) {
    const e = engine === 'postgres' ? 'pg' : 'my';
    const dbName = `rl_rep_${tag}_${engine === 'postgres' ? 'pg' : 'my'}`;
    let target: string;
    let readProbes: (after: number) => Promise<{ tx: number; us: number }[]>;
    let loadSum: () => Promise<string>;
    let closeTarget: () => Promise<void>;
    if (engine === 'postgres') {
      await admin.query(`CREATE DATABASE ${dbName}`);
      pgDbs.push(dbName);
      target = pgUrl(dbName);
      const c = new pg.Client({ connectionString: target });
      c.on('error', () => undefined);
      await c.connect();
      readProbes = async (after) => (await c.query<{ tx: number; us: string }>(`SELECT tx, us::text AS us FROM probe_${e} WHERE tx > $1 ORDER BY tx`, [after]).catch(() => ({ rows: [] }))).rows.map((r) => ({ tx: r.tx, us: Number(r.us) }));
      loadSum = async () => JSON.stringify((await c.query(`SELECT count(*)::text AS n, sum(v)::text AS s, sum(tx)::text AS t FROM load_${e}`)).rows[0]);
      closeTarget = () => c.end();
    } else {
      await my.query(`CREATE DATABASE ${dbName}`);
      myDbs.push(dbName);
      target = `${myBase}/${dbName}`;
      const c = await mysql.createConnection({ uri: target, supportBigNumbers: true, bigNumberStrings: true });
      readProbes = async (after) => ((await c.query(`SELECT tx, CAST(us AS CHAR) AS us FROM probe_${e} WHERE tx > ? ORDER BY tx`, [after]).catch(() => [[]]))[0] as { tx: number; us: string }[]).map((r) => ({ tx: Number(r.tx), us: Number(r.us) }));
      loadSum = async () => {
        const [rows] = await c.query(`SELECT CAST(count(*) AS CHAR) AS n, CAST(sum(v) AS CHAR) AS s, CAST(sum(tx) AS CHAR) AS t FROM load_${e}`);
        return JSON.stringify((rows as Record<string, unknown>[])[0]);
      };
      closeTarget = () => c.end();
    }

    // The replicator, default poll interval; its first status line means the initial load is done.
    const log = createWriteStream(join(work, `replicate-${engine}.log`));
    replicator = spawn(process.execPath, [chartlogBin, 'replicate', '--config', setup.configFile, '--target', target, '--tables', `public.load_${e},public.probe_${e}`, '--phi', 'open', '--json', '--status-interval', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    replicator.stderr!.pipe(log);
    let firstStatus = false;
    replicator.stdout!.on('data', (d: Buffer) => {
      log.write(d);
      firstStatus = true;
    });
    for (const deadline = Date.now() + 120_000; !firstStatus; await sleep(50)) {
      if (replicator.exitCode !== null || Date.now() > deadline) throw new Error(`chartlog replicate did not start (see ${join(work, `replicate-${engine}.log`)})`);
    }

    // Pollers: the replica's probe rows and the archive's checkpoint.
    const seen = new Map<number, number>(); // tx → ms seen in the replica
    const checkpoints: { at: number; us: number }[] = [];
    let polling = true;
    const pollReplica = (async () => {
      let last = nextTx - 1;
      while (polling) {
        const rows = await readProbes(last);
        const at = Date.now();
        for (const r of rows) {
          seen.set(r.tx, at);
          last = Math.max(last, r.tx);
        }
        await sleep(50);
      }
    })();
    const pollArchive = (async () => {
      while (polling) {
        const cp = await readCheckpoint(setup.store, 'bench').catch(() => null);
        if (cp) checkpoints.push({ at: Date.now(), us: Number(cp.commitTsUs) });
        await sleep(50);
      }
    })();

    // The steady load: one transaction every 20 ms on a schedule (late ones catch up).
    const probes: { tx: number; us: number; counted: boolean }[] = [];
    const started = Date.now();
    const countFrom = started + WARMUP * 1000;
    const end = countFrom + SECONDS * 1000;
    let committedRows = 0;
    for (let i = 0; Date.now() < end; i++) {
      const due = started + (i * 1000) / TX_PER_S;
      if (due > Date.now()) await sleep(due - Date.now());
      const tx = nextTx++;
      const id = nextId;
      nextId += ROWS_PER_TX - 1;
      const r = await src.query(
        `BEGIN; INSERT INTO load_${e} SELECT ${id} + g, ${tx}, g, 'note ' || g FROM generate_series(0, ${ROWS_PER_TX - 2}) g; ` +
          `INSERT INTO probe_${e} VALUES (${tx}, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) RETURNING us::text; COMMIT`,
      );
      const us = Number((r as unknown as pg.QueryResult<{ us: string }>[])[2]!.rows[0]!.us);
      const counted = Date.now() >= countFrom;
      probes.push({ tx, us, counted });
      if (counted) committedRows += ROWS_PER_TX;
    }
    const achieved = committedRows / ((Date.now() - countFrom) / 1000);

    // Drain: every probe seen in the replica.
    // A generous limit: on a saturated machine the backlog can take minutes; its lags are measured all the same.
    for (const deadline = Date.now() + 900_000; probes.some((p) => !seen.has(p.tx)); await sleep(100)) {
      if (Date.now() > deadline) throw new Error(`the ${engine} replica did not catch up within 900 s`);
    }
    polling = false;
    await Promise.all([pollReplica, pollArchive]);
    const srcSum = JSON.stringify((await src.query(`SELECT count(*)::text AS n, sum(v)::text AS s, sum(tx)::text AS t FROM load_${e}`)).rows[0]);
    const repSum = await loadSum();
    if (srcSum !== repSum) throw new Error(`the ${engine} replica differs from the source: ${repSum} vs ${srcSum}`);
    replicator.kill('SIGTERM');
    await new Promise((r) => replicator!.once('exit', r));
    replicator = null;
    await closeTarget();

    const counted = probes.filter((p) => p.counted);
    const lags = counted.map((p) => seen.get(p.tx)! - p.us / 1000);
    const fresh = counted.map((p) => {
      const c = checkpoints.find((k) => k.us >= p.us);
      return c ? c.at - p.us / 1000 : NaN;
    }).filter((x) => !Number.isNaN(x));
    const label = engine === 'postgres' ? 'PostgreSQL' : 'MariaDB';
    const p99 = bench.add(measurement(`replica lag p99, ${label} target (source commit → row in the replica)`, 'ms', 'lower', 'chartlog', [Math.round(pct(lags, 99))]));
    bench.add(measurement(`replica lag p50, ${label} target`, 'ms', 'lower', 'detail', [Math.round(pct(lags, 50))]));
    bench.add(measurement(`replica lag max, ${label} target`, 'ms', 'lower', 'detail', [Math.round(Math.max(...lags))]));
    // Where the lag goes: the replicator's start (its first look at the archive, the first round)
    // leaves a backlog that drains only as fast as applying outruns the source; the second half
    // of the window shows whether it drained.
    const firstSeen = Math.min(...probes.map((p) => seen.get(p.tx)!)) - started;
    const late = counted.slice(Math.floor(counted.length / 2)).map((p) => seen.get(p.tx)! - p.us / 1000);
    bench.add(measurement(`${label}: from the load's start to its first transaction seen in the replica (the replicator's start-up backlog)`, 'ms', 'lower', 'detail', [Math.round(firstSeen)]));
    bench.add(measurement(`replica lag p99 over the second half of the window, ${label} target`, 'ms', 'lower', 'detail', [Math.round(pct(late, 99))]));
    const f99 = bench.add(measurement(`archive freshness p99 during the ${label} run (source commit → checkpoint; baseline: the floor of any archive-fed replica)`, 'ms', 'lower', 'baseline', [Math.round(pct(fresh, 99))]));
    bench.add(measurement(`archive freshness p50 during the ${label} run`, 'ms', 'lower', 'detail', [Math.round(pct(fresh, 50))]));
    bench.add(measurement(`achieved source rate during the ${label} run`, 'rows/s', 'higher', 'detail', [Math.round(achieved)]));
    bench.addRatio(ratio(p99, f99, undefined, `${label}: archive freshness p99 / replica lag p99 (1.0 would be a replica as fresh as the archive)`));
    bench.addGoal(goal(`lag p99 ≤ 2 s at a steady ${RATE} rows/s, ${label} target`, Math.round(pct(lags, 99)), 'ms', pct(lags, 99) <= 2000 && achieved >= RATE * 0.95));
    console.log(`${label}: ${counted.length} tx, ${Math.round(achieved)} rows/s; lag p50 ${Math.round(pct(lags, 50))} ms p99 ${Math.round(pct(lags, 99))} ms max ${Math.round(Math.max(...lags))} ms (second half p99 ${Math.round(pct(late, 99))} ms; first seen after ${Math.round(firstSeen)} ms); freshness p50 ${Math.round(pct(fresh, 50))} ms p99 ${Math.round(pct(fresh, 99))} ms`);
  }
  await src.end();
  bench.note('one repetition per engine, measured one after the other against the same source and chartlog run; the machine is shared (see loadAverage1m): lag on a loaded 2-core machine includes waiting for CPU');
  bench.note('a goal counts as met only when the source kept ≥ 95% of the asked row rate');
  console.log(`wrote ${bench.write()}`);
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  replicator?.kill('SIGKILL');
  await run?.stop();
  // The slot first: a database with a replication slot cannot be dropped.
  await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'rl_${tag}%' AND NOT active`).catch(() => undefined);
  for (const d of pgDbs.reverse()) await admin.query(`DROP DATABASE IF EXISTS ${d} WITH (FORCE)`).catch(() => undefined);
  for (const d of myDbs) await my.query(`DROP DATABASE IF EXISTS ${d}`).catch(() => undefined);
  await admin.end();
  await my.end();
  if (process.env.BENCH_KEEP_WORK) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
  stopBenchServices();
}
