/**
 * `chartlog replicate` (issue 18): the initial load of an empty replica against `pg_restore` of
 * the same table, and the apply rate of a backlog of transactions of 100 rows.
 *
 *   node --import tsx benchmarks/replicate.bench.ts [--scale 5] [--tx 300] [--reps 2] [--target postgres|mariadb]
 *        [--apply-reps 1] [--compare-bin OTHER/bin/chartlog.js] [--result NAME]
 *
 * The source is pgbench's `pgbench_accounts` (100 000 rows per scale unit; `filler` classified as
 * PHI) in a fresh database on the private PostgreSQL 15 of scripts/services.sh, backed up by
 * `chartlog run` as a real process (embedded bus, file:// store). Per repetition, into a new empty
 * database:
 *   - baseline: `pg_restore` (one job) of a `pg_dump -Fc -t public.pgbench_accounts`, spawn to exit;
 *   - `chartlog restore --to latest` of the same archive, spawn to exit (detail: the streaming
 *     restore path the load takes, with PHI opened as `--phi open` opens it);
 *   - chartlog: `chartlog replicate --phi open` as a process, spawn to its first status line (the
 *     load is done and the position recorded); then SIGTERM.
 * `--target mariadb`: the replicas (and chartlog restore's detail) are databases on the private
 * MariaDB instead, through MysqlReplicaTarget; pg_restore stays the load's baseline.
 * Every result is checked equal to the source (a sha256 over every row's values in key order,
 * filler without its blank padding, which MariaDB's CHAR drops on reading).
 * Apply: with the replicator stopped, `--tx` transactions each updating 100 consecutive accounts
 * run on the source; once the checkpoint covers them, the replicator is started again (resume) and
 * timed from spawn until the replica's position row counts every transaction of the backlog (read
 * every 20 ms from outside: the replicator's status lines come once a second, which on a backlog
 * of one or two seconds hid up to a second of idle time); rows/s = rows applied / that time.
 * Without start-up: from its first status line (resumed, nothing read yet) to the same moment.
 * Steady: from the position row's first move (the first group applied: the crypto thread, the
 * first read and the JIT's first pass are behind) to the same moment. Checked equal again.
 * `--apply-reps N`: N backlogs, one after the other, each applied the same way.
 *
 * With --compare-bin, the same run also loads a second replica and applies every backlog to it
 * with the chartlog of another checkout (the old code: e.g. main exported to a directory with its
 * node_modules), old and new in turn (the order alternates per backlog), each checked equal:
 * old against new at the same time on the same machine. CPU per row is the figure to compare on
 * a shared machine. `--result NAME` writes NAME.json instead (keeps committed results).
 *
 * Writes benchmarks/results/replicate.json (replicate-mariadb.json with --target mariadb; NAME.json with --result; see lib/bench-report.ts). BENCH_NODE_ARGS (e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/p`) go to node before each `chartlog replicate`, for diagnoses.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { FileKeyring } from '../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../src/storage/fs-object-store.js';
import { BenchRun, goal, measurement, ratio, toolVersion } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import { BackgroundRun, chartlogBin, parseLsn, pgBin, procCpuSeconds, timeProcess, waitForAnyCheckpoint, waitForCheckpoint, type BenchSetup } from './lib/chartlog-pg-rig.js';

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string', default: '5' },
    tx: { type: 'string', default: '300' },
    reps: { type: 'string', default: '2' },
    target: { type: 'string', default: 'postgres' },
    'apply-reps': { type: 'string', default: '1' },
    'compare-bin': { type: 'string' },
    result: { type: 'string' },
  },
});
if (args.target !== 'postgres' && args.target !== 'mariadb') {
  console.error(`--target ${args.target}: give postgres or mariadb`);
  process.exit(2);
}
if (args.result !== undefined && !/^[a-z0-9-]+$/.test(args.result)) {
  console.error(`--result ${args.result}: give a file name of a-z, 0-9 and -`);
  process.exit(2);
}
const COMPARE_BIN = args['compare-bin'];
const APPLY_REPS = Math.max(1, Number(args['apply-reps']));
const MARIADB = args.target === 'mariadb';
const SCALE = Number(args.scale);
const TX = Number(args.tx);
const REPS = Math.max(1, Number(args.reps));
const ROWS_PER_TX = 100;

const services = benchServices();
const admin = new pg.Client({ connectionString: services.pgUrl });
await admin.connect();
const dbUrl = (name: string) => services.pgUrl.replace(/\/[^/]*$/, `/${name}`);
const myAdmin = MARIADB ? await mysql.createConnection({ uri: services.mariadbUrl }) : null;
const myDatabases: string[] = [];
const mysqldPid = myAdmin ? Number(readFileSync(((await myAdmin.query('SELECT @@pid_file AS f'))[0] as { f: string }[])[0]!.f, 'utf8').trim()) : null;
/** A new empty database on the target engine (the source and pg_restore's are always PostgreSQL). */
const createTargetDb = async (name: string) => {
  if (!myAdmin) return createDb(name);
  await myAdmin.query(`CREATE DATABASE ${name}`);
  myDatabases.push(name);
  return services.mariadbUrl.replace(/\/[^/]*$/, `/${name}`);
};
const tag = Math.random().toString(16).slice(2, 8);
const databases: string[] = [];
const createDb = async (name: string) => {
  await admin.query(`CREATE DATABASE ${name}`);
  databases.push(name);
  return dbUrl(name);
};
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-replicate-bench-'));
const bench = new BenchRun(
  args.result ?? (MARIADB ? 'replicate-mariadb' : 'replicate'),
  `chartlog replicate into ${MARIADB ? 'MariaDB' : 'PostgreSQL'}: initial load vs pg_restore, apply rate of 100-row transactions`,
  `node --import tsx benchmarks/replicate.bench.ts --scale ${SCALE} --tx ${TX} --reps ${REPS} --target ${args.target}${APPLY_REPS > 1 ? ` --apply-reps ${APPLY_REPS}` : ''}${COMPARE_BIN ? ` --compare-bin ${COMPARE_BIN}` : ''}${args.result ? ` --result ${args.result}` : ''}`,
  { scale: SCALE, rows: SCALE * 100_000, tx: TX, rowsPerTx: ROWS_PER_TX, reps: REPS, applyReps: APPLY_REPS, target: args.target, ...(COMPARE_BIN ? { compareBin: COMPARE_BIN } : {}) },
);
bench.version('pg_restore', toolVersion(pgBin('pg_restore')));

/** sha256 over every account's values in key order, on either engine (filler without its blank padding: MariaDB's CHAR drops it). */
const digest = async (url: string): Promise<string> => {
  const sql = 'SELECT aid, bid, abalance, RTRIM(filler) AS filler FROM pgbench_accounts ORDER BY aid';
  let rows: Record<string, unknown>[];
  if (url.startsWith('mysql:')) {
    const c = await mysql.createConnection({ uri: url });
    rows = (await c.query(sql))[0] as Record<string, unknown>[];
    await c.end();
  } else {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    rows = (await c.query(sql)).rows as Record<string, unknown>[];
    await c.end();
  }
  const h = createHash('sha256');
  for (const r of rows) h.update(`${String(r.aid)}|${String(r.bid)}|${String(r.abalance)}|${String(r.filler)}\n`);
  return h.digest('hex');
};

/**
 * CPU seconds (user + system, every thread) of the replicator's process and of the replica's
 * server backend it applies through (application_name chartlog-replicate), read at a status line:
 * on a shared machine CPU time per row says more than wall time, which waits for the scheduler.
 */
interface ApplyCpu {
  replicator: number | null;
  backend: number | null;
}
async function applyCpu(pid: number | undefined, target: string): Promise<ApplyCpu> {
  // MariaDB serves connections on threads of one process: the whole private server's CPU (nothing
  // else uses it while the replicator applies; the source is on PostgreSQL).
  if (target.startsWith('mysql:')) return { replicator: pid === undefined ? null : procCpuSeconds(pid), backend: mysqldPid === null ? null : procCpuSeconds(mysqldPid) };
  const db = new URL(target).pathname.slice(1);
  const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'chartlog-replicate'`, [db]);
  return { replicator: pid === undefined ? null : procCpuSeconds(pid), backend: rows.length === 1 ? procCpuSeconds(rows[0]!.pid) : null };
}

/** `chartlog replicate --phi open --json` of `bin` into `target`, status every second, polling every 100 ms. */
function spawnReplicate(setup: BenchSetup, target: string, bin: string) {
  return spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), bin, 'replicate', '--config', setup.configFile, '--target', target, '--phi', 'open', '--json', '--status-interval', '1', '--poll-interval', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `chartlog replicate` (of `bin`) until its status lines satisfy `done`: seconds from spawn, the first and last lines, and CPU at both. */
function replicateUntil(
  setup: BenchSetup,
  target: string,
  done: (s: Record<string, unknown>) => boolean,
  log: string,
  bin = chartlogBin,
): Promise<{ seconds: number; status: Record<string, unknown>; first: Record<string, unknown>; cpuFirst: Promise<ApplyCpu>; cpuDone: ApplyCpu }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawnReplicate(setup, target, bin);
    let out = '';
    let err = '';
    let first: Record<string, unknown> | null = null;
    let cpuFirst: Promise<ApplyCpu> | null = null;
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    let stopping = false;
    child.stdout.on('data', (d: Buffer) => {
      if (stopping) return;
      out += d.toString();
      for (const line of out.split('\n').slice(0, -1)) {
        const s = JSON.parse(line) as Record<string, unknown>;
        first ??= s;
        cpuFirst ??= applyCpu(child.pid, target);
        if (done(s)) {
          const seconds = (performance.now() - started) / 1000;
          stopping = true; // one SIGTERM: a second one after the handler is gone would kill it
          void applyCpu(child.pid, target).then((cpuDone) => {
            child.once('exit', () => resolve({ seconds, status: s, first: first!, cpuFirst: cpuFirst!, cpuDone }));
            child.kill('SIGTERM');
          }, reject);
          return;
        }
      }
      out = out.slice(out.lastIndexOf('\n') + 1);
    });
    child.once('exit', (code) => {
      writeFileSync(log, err);
      if (code !== 0) reject(new Error(`chartlog replicate exited with ${code}: ${err.slice(-1500)}`));
    });
  });
}

/** What one backlog's apply measured (seconds from spawn; null when not seen). */
interface BacklogApply {
  /** Spawn → the position row counts the whole backlog. */
  seconds: number;
  /** First status line (resumed, nothing read yet) → the same moment. */
  afterStartSeconds: number;
  /** The position row's first move (the first group committed) → the same moment, and the rows applied after that move. */
  steadySeconds: number;
  steadyRows: number;
  cpuUsPerRow: { replicator: number | null; backend: number | null };
  steadyCpuUsPerRow: number | null;
}

/**
 * The backlog of `tx` transactions applied by `chartlog replicate` of `bin` to `target`: the end
 * is when the target's position row counts them all, read every 20 ms from outside (a status line
 * comes at most once a second, so on a short backlog it measured up to a second of waiting).
 */
async function applyBacklog(setup: BenchSetup, target: string, tx: number, log: string, bin = chartlogBin): Promise<BacklogApply> {
  const poll = target.startsWith('mysql:') ? await mysql.createConnection({ uri: target }) : new pg.Client({ connectionString: target });
  if (poll instanceof pg.Client) await poll.connect();
  const count = async (): Promise<number> => {
    const sql = `SELECT transactions FROM chartlog_replica WHERE source = 'bench'`;
    if (poll instanceof pg.Client) return Number((await poll.query<{ transactions: string }>(sql)).rows[0]!.transactions);
    return Number(((await poll.query(sql))[0] as { transactions: unknown }[])[0]!.transactions);
  };
  /** The position row's `transactions`: source transactions applied since the load. */
  const before = await count();
  const started = performance.now();
  let firstLine: { at: number; cpu: ApplyCpu } | null = null;
  let firstMove: { at: number; applied: number; cpu: number | null } | null = null;
  try {
    const r = await new Promise<BacklogApply>((resolve, reject) => {
      const child = spawnReplicate(setup, target, bin);
      let err = '';
      let finished = false;
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', () => {
        if (firstLine || finished) return;
        const at = performance.now();
        void applyCpu(child.pid, target).then((cpu) => (firstLine ??= { at, cpu }));
      });
      child.once('exit', (code) => {
        writeFileSync(log, err);
        if (!finished) reject(new Error(`chartlog replicate exited with ${code} before applying the backlog: ${err.slice(-1500)}`));
      });
      const watch = async (): Promise<void> => {
        while (!finished) {
          const applied = (await count()) - before;
          const at = performance.now();
          if (applied > 0 && !firstMove) firstMove = { at, applied, cpu: child.pid === undefined ? null : procCpuSeconds(child.pid) };
          if (applied >= tx) {
            finished = true;
            const cpuDone = await applyCpu(child.pid, target);
            child.once('exit', () => {
              const rows = tx * ROWS_PER_TX;
              const perRow = (a: number | null | undefined, b: number | null, n: number) => (a == null || b === null || n <= 0 ? null : Math.round(((b - a) * 1e6) / n));
              const steadyRows = (tx - firstMove!.applied) * ROWS_PER_TX;
              resolve({
                seconds: (at - started) / 1000,
                afterStartSeconds: (at - (firstLine?.at ?? started)) / 1000,
                steadySeconds: (at - firstMove!.at) / 1000,
                steadyRows,
                cpuUsPerRow: { replicator: perRow(firstLine?.cpu.replicator, cpuDone.replicator, rows), backend: perRow(firstLine?.cpu.backend, cpuDone.backend, rows) },
                steadyCpuUsPerRow: perRow(firstMove!.cpu, cpuDone.replicator, steadyRows),
              });
            });
            child.kill('SIGTERM');
            return;
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      watch().catch((e: unknown) => {
        finished = true;
        child.kill('SIGTERM');
        reject(e as Error);
      });
    });
    return r;
  } finally {
    await poll.end();
  }
}

let run: BackgroundRun | null = null;
try {
  const sourceUrl = await createDb(`rb_src_${tag}`);
  execFileSync(pgBin('pgbench'), ['-i', '-s', String(SCALE), '-q', '-I', 'dtgvp', sourceUrl], { stdio: 'ignore' });
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  const setup: BenchSetup = { work, sourceName: 'bench', configFile: join(work, 'chartlog.yaml'), backupDir: join(work, 'backup'), store: new FsObjectStore(join(work, 'backup')) };
  writeFileSync(
    setup.configFile,
    [
      'sources:',
      `  - { name: bench, type: postgres, url: "${sourceUrl}", tables: [public.pgbench_accounts], postgres: { slotName: rb_${tag} } }`,
      'bus: { type: embedded }',
      `storage: { url: "file://${setup.backupDir}" }`,
      'phi:',
      `  keyring: "file://${keyring}"`,
      '  columns: { public.pgbench_accounts: [filler] }',
      '  publicColumns: { public.pgbench_accounts: [aid, bid, abalance] }',
      `log: { level: ${process.env.BENCH_LOG_LEVEL ?? 'info'}, format: json }`,
      '',
    ].join('\n'),
  );
  run = new BackgroundRun(setup, join(work, 'run.log'));
  await run.streaming(600_000);
  await waitForAnyCheckpoint(setup, 600_000, run);
  const sourceDigest = await digest(sourceUrl);
  const dump = join(work, 'accounts.dump');
  execFileSync(pgBin('pg_dump'), ['-Fc', '-t', 'public.pgbench_accounts', '-f', dump, sourceUrl]);

  const restoreSeconds: number[] = [];
  const chartlogRestoreSeconds: number[] = [];
  const loadSeconds: number[] = [];
  let replica = '';
  for (let rep = 0; rep < REPS; rep++) {
    const base = await createDb(`rb_pgr_${tag}_${rep}`);
    const r = await timeProcess(pgBin('pg_restore'), ['-d', base, dump]);
    if (r.code !== 0) throw new Error(`pg_restore failed: ${r.stderr}`);
    if ((await digest(base)) !== sourceDigest) throw new Error('pg_restore result differs from the source');
    restoreSeconds.push(r.seconds);
    // The path the load takes (restore's streaming path, PHI opened), as its own command: what
    // the load costs beyond it is the replicator's own.
    const restored = await createTargetDb(`rb_clr_${tag}_${rep}`);
    const cr = await timeProcess(process.execPath, [chartlogBin, 'restore', '--config', setup.configFile, '--source', 'bench', '--to', 'latest', '--target', restored]);
    if (cr.code !== 0) throw new Error(`chartlog restore failed: ${cr.stderr.slice(-1500)}`);
    if ((await digest(restored)) !== sourceDigest) throw new Error('chartlog restore result differs from the source');
    chartlogRestoreSeconds.push(cr.seconds);
    replica = await createTargetDb(`rb_rep_${tag}_${rep}`);
    const l = await replicateUntil(setup, replica, (s) => s.started === 'load', join(work, `load-${rep}.log`));
    if ((await digest(replica)) !== sourceDigest) throw new Error('the replica differs from the source after its load');
    loadSeconds.push(l.seconds);
  }
  const restoreM = bench.add(measurement('pg_restore of pgbench_accounts (baseline)', 's', 'lower', 'baseline', restoreSeconds));
  bench.add(measurement('chartlog restore --to latest of the same archive (spawn → exit; the path the load takes)', 's', 'lower', 'detail', chartlogRestoreSeconds));
  const loadM = bench.add(measurement('chartlog replicate initial load (spawn → position recorded)', 's', 'lower', 'chartlog', loadSeconds));
  bench.addRatio(ratio(loadM, restoreM, 1.0, 'initial load speed relative to pg_restore (pg_restore s / replicate s; goal ≥ 1.0)'));

  // The old code's replica (--compare-bin): loaded by the old code, then given the same backlogs.
  const oldReplica = COMPARE_BIN ? await createTargetDb(`rb_old_${tag}`) : null;
  if (oldReplica) {
    await replicateUntil(setup, oldReplica, (s) => s.started === 'load', join(work, 'load-old.log'), COMPARE_BIN);
    if ((await digest(oldReplica)) !== sourceDigest) throw new Error('the old code\'s replica differs from the source after its load');
  }

  // Apply: backlogs of TX transactions of 100 rows each, with the replicators stopped.
  const script = join(work, 'update100.sql');
  writeFileSync(script, `\\set a random(1, ${SCALE * 100_000 - ROWS_PER_TX})\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :a AND :a + ${ROWS_PER_TX - 1};\n`);
  const runs = { new: [] as BacklogApply[], old: [] as BacklogApply[] };
  for (let rep = 0; rep < APPLY_REPS; rep++) {
    execFileSync(pgBin('pgbench'), ['-n', '-c', '1', '-t', String(TX), '-f', script, sourceUrl], { stdio: 'ignore' });
    const src = new pg.Client({ connectionString: sourceUrl });
    await src.connect();
    const lsn = parseLsn((await src.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l);
    await src.end();
    await waitForCheckpoint(setup, lsn, 300_000, run);
    const want = await digest(sourceUrl);
    const order: ('new' | 'old')[] = !oldReplica ? ['new'] : rep % 2 === 0 ? ['old', 'new'] : ['new', 'old'];
    for (const which of order) {
      const into = which === 'new' ? replica : oldReplica!;
      runs[which].push(await applyBacklog(setup, into, TX, join(work, `apply-${which}-${rep}.log`), which === 'new' ? chartlogBin : COMPARE_BIN));
      if ((await digest(into)) !== want) throw new Error(`the ${which} code's replica differs from the source after applying backlog ${rep}`);
    }
  }
  const rows = TX * ROWS_PER_TX;
  const report = (r: BacklogApply[], label: string, role: 'chartlog' | 'detail') => {
    const rate = bench.add(measurement(`${label}apply rate, ${TX} transactions × ${ROWS_PER_TX} rows (spawn → position row counts them all)`, 'rows/s', 'higher', role, r.map((a) => Math.round(rows / a.seconds))));
    bench.add(measurement(`${label}apply rate without start-up (first status line → the same)`, 'rows/s', 'higher', 'detail', r.map((a) => Math.round(rows / a.afterStartSeconds))));
    bench.add(measurement(`${label}apply rate, steady (first group committed → the same)`, 'rows/s', 'higher', 'detail', r.map((a) => Math.round(a.steadyRows / a.steadySeconds))));
    // CPU per applied row: what the rate costs, less bent by a loaded machine than the rate itself.
    const cpu = (name: string, get: (a: BacklogApply) => number | null) => {
      const v = r.map(get);
      if (v.every((x): x is number => x !== null)) bench.add(measurement(`${label}${name}`, 'us', 'lower', 'detail', v));
    };
    cpu('replicator CPU per applied row (user + system, every thread; first status line → done)', (a) => a.cpuUsPerRow.replicator);
    cpu('replicator CPU per applied row, steady (first group committed → done)', (a) => a.steadyCpuUsPerRow);
    cpu(MARIADB ? 'replica server CPU per applied row (the whole private mysqld)' : "replica server backend CPU per applied row (the replicator's connection)", (a) => a.cpuUsPerRow.backend);
    return rate;
  };
  const rate = report(runs.new, '', 'chartlog');
  if (COMPARE_BIN) {
    const old = report(runs.old, `old chartlog (${COMPARE_BIN}): `, 'detail');
    bench.addRatio(ratio(rate, old, undefined, 'apply rate, new / old chartlog (same backlogs, alternating order)'));
  }
  bench.addGoal(goal('apply ≥ 50 000 rows/s in transactions of 100 rows', rate.median, 'rows/s', rate.median >= 50_000));
  bench.note('one process per measurement, start-up included; the machine is shared (see loadAverage1m)');
  console.log(`wrote ${bench.write()}`);
} finally {
  await run?.stop();
  for (const d of databases) await admin.query(`DROP DATABASE IF EXISTS ${d} WITH (FORCE)`).catch(() => undefined);
  for (const d of myDatabases) await myAdmin?.query(`DROP DATABASE IF EXISTS ${d}`).catch(() => undefined);
  await myAdmin?.end();
  await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'rb_${tag}%' AND NOT active`).catch(() => undefined);
  await admin.end();
  if (process.env.BENCH_KEEP_WORK) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
  stopBenchServices();
}
