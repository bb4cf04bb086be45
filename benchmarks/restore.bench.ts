/**
 * Restore (issue 8, item 4): N patient rows (12 columns, 4 of them PHI) plus "an hour of
 * changes", restored into an empty PostgreSQL by `chartlog restore --to latest`, against
 * `pg_restore` of a `pg_dump -Fc` of the same final state.
 *
 *   node --import tsx benchmarks/restore.bench.ts [--rows 1000000] [--changes N/10]
 *        [--tx-size 100] [--reps 3] [--no-jobs2] [--profile auto|always|never]
 *        [--compare-bin OTHER/bin/chartlog.js] [--result NAME]
 *
 * The source is a fresh database on the private PostgreSQL 15 of scripts/services.sh. It is
 * backed up by `chartlog run` as a real process (embedded bus, file:// store in a temp
 * directory, file keyring): the base snapshot first, then a stream of updates, inserts and
 * deletes in many transactions, until the durable checkpoint covers the last commit. Then, per
 * repetition, each into a new empty database:
 *   - baseline: `pg_restore` (one job; `-j 2` as a detail) of a `pg_dump -Fc` of the source
 *     taken once after the changes (its time is a detail);
 *   - chartlog: the `chartlog restore` CLI as a process — start-up, reading the archive,
 *     opening PHI with the keyring, replaying, writing (COPY) — timed from spawn to exit.
 * After every restore the target table must equal the source: same column types and primary
 * key, same row count, and the same md5 over every row's text in primary-key order; otherwise
 * the benchmark fails. When chartlog misses its goal (or with --profile always), one more
 * restore runs under `node --cpu-prof` and the result says where its time went.
 *
 * With --compare-bin, every repetition also restores with the chartlog of another checkout (the
 * old code: e.g. main exported to a directory with its node_modules), on the same archive, in
 * the same rotation, checked the same way: old against new at the same time on the same machine.
 *
 * Writes benchmarks/results/restore.json, or NAME.json with --result (see lib/bench-report.ts).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { BenchRun, goal, measurement, ratio, toolVersion } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import { BackgroundRun, chartlogBin, parseLsn, pgBin, pgConnect, timeProcess, waitForAnyCheckpoint, waitForCheckpoint, writeBenchConfig } from './lib/chartlog-pg-rig.js';
import { formatSummary, summarise } from './lib/cpu-profile-summary.js';
import { restoreProfilePhases } from './lib/restore-profile.js';
import { PATIENT_COLUMNS, PATIENT_PHI_COLUMNS, pgInsertPatients, pgPatientDdl, transactionRanges } from './lib/patient-workload.js';
import { createPgDatabase, type TestDatabase } from '../test/support/restore-engines.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    changes: { type: 'string' },
    'tx-size': { type: 'string', default: '100' },
    reps: { type: 'string', default: '3' },
    'no-jobs2': { type: 'boolean', default: false },
    profile: { type: 'string', default: 'auto' },
    'compare-bin': { type: 'string' },
    result: { type: 'string', default: 'restore' },
  },
});
const ROWS = Number(args.rows);
const CHANGES = Number(args.changes ?? Math.round(ROWS / 10));
const TX_SIZE = Number(args['tx-size']);
const REPS = Math.max(1, Number(args.reps));
const JOBS2 = !args['no-jobs2'];
const PROFILE = args.profile as 'auto' | 'always' | 'never';
const COMPARE_BIN = args['compare-bin'];
const RESULT = args.result;
if (![ROWS, CHANGES, TX_SIZE].every((n) => Number.isInteger(n) && n > 0) || !['auto', 'always', 'never'].includes(PROFILE) || !/^[a-z0-9-]+$/.test(RESULT)) {
  console.error('usage: restore.bench.ts [--rows N] [--changes N] [--tx-size N] [--reps N] [--no-jobs2] [--profile auto|always|never] [--compare-bin OTHER/bin/chartlog.js] [--result NAME]');
  process.exit(2);
}

const TABLE = 'public.patients';
/** Transaction k of the change stream: 60 % updates (PHI and other columns), 25 % inserts, 15 % deletes. */
function changeTransaction(k: number, size: number): string {
  const u = Math.round(size * 0.6);
  const i = Math.round(size * 0.25);
  const d = size - u - i;
  const picks = (n: number, stride: number) => `SELECT 1 + ((${k}::bigint * ${n} + j) * ${stride}) % ${ROWS} FROM generate_series(0, ${n - 1}) j`;
  const parts = ['BEGIN'];
  if (u > 0) {
    parts.push(`UPDATE patients SET ward = 'ward-' || ((id + ${k}) % 40), balance = balance + 1.25, visits = visits + 1,
      admitted_at = admitted_at + interval '1 hour 0.000001 second', active = NOT active,
      address = CASE WHEN id % 3 = 0 THEN address ELSE 'Moved ' || ${k} || ', ' || (id % 9999) || ' Canary Street' END
      WHERE id IN (${picks(u, 7919)})`);
  }
  // New ids above the loaded ones, a block per transaction (sized for a full transaction).
  const first = ROWS + k * Math.round(TX_SIZE * 0.25) + 1;
  if (i > 0) parts.push(pgInsertPatients('patients', first, first + i - 1));
  if (d > 0) parts.push(`DELETE FROM patients WHERE id IN (${picks(d, 104729)})`);
  // WAL written after this point holds this transaction's commit: a checkpoint at or beyond it covers the commit.
  parts.push(`SELECT pg_current_wal_insert_lsn()::text AS lsn`, 'COMMIT');
  return parts.join(';\n');
}

interface Digest {
  definition: string;
  rows: number;
  md5: string;
}

/** The table's column types, primary key, row count and an md5 over every row's text in key order. */
async function digest(client: pg.Client): Promise<Digest> {
  const def = await client.query<{ cols: string; pk: string | null }>(
    `SELECT (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = 'public.patients'::regclass AND attnum > 0 AND NOT attisdropped) AS cols,
            (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.patients'::regclass AND contype = 'p') AS pk`,
  );
  const r = await client.query<{ n: string; md5: string | null }>(
    `SELECT count(*)::text AS n, md5(string_agg(md5(ROW(${PATIENT_COLUMNS.join(', ')})::text), '' ORDER BY id)) AS md5 FROM public.patients`,
  );
  return { definition: `${def.rows[0]!.cols}; ${def.rows[0]!.pk}`, rows: Number(r.rows[0]!.n), md5: r.rows[0]!.md5 ?? '' };
}

/** Fails loudly unless the target's table equals the source's (no values in the message). */
async function verify(target: TestDatabase, expected: Digest, label: string): Promise<void> {
  const c = await pgConnect(target.url);
  try {
    const got = await digest(c);
    if (got.definition !== expected.definition) throw new Error(`${label}: the restored table's definition differs:\n  got      ${got.definition}\n  expected ${expected.definition}`);
    if (got.rows !== expected.rows) throw new Error(`${label}: ${got.rows} rows restored, the source has ${expected.rows}`);
    if (got.md5 !== expected.md5) throw new Error(`${label}: the restored rows differ from the source's (md5 of the ordered rows ${got.md5} ≠ ${expected.md5})`);
  } finally {
    await c.end();
  }
}

const sec = (ms: number) => Math.round(ms) / 1000;

async function main(): Promise<void> {
  benchServices();
  const bench = new BenchRun(RESULT, `Restore: ${ROWS.toLocaleString('en-US')} rows plus an hour of changes into an empty PostgreSQL, against pg_restore`, 'node --import tsx benchmarks/restore.bench.ts' + (process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''), {
    rows: ROWS,
    changes: CHANGES,
    txSize: TX_SIZE,
    reps: REPS,
    table: 'benchmarks/lib/patient-workload.ts: 12 columns, 4 PHI (full_name, ssn, birth_date, address) sealed with AES-256-GCM',
    source: 'PostgreSQL 15 (scripts/services.sh), a fresh database',
    chartlog: 'chartlog run (embedded bus, file://, file keyring) then chartlog restore --to latest --target postgres://… as processes',
    baseline: 'pg_dump -Fc once, then pg_restore into an empty database (single job; -j 2 as a detail)',
  });
  bench.version('pg_restore', toolVersion(pgBin('pg_restore')));
  bench.version('pg_dump', toolVersion(pgBin('pg_dump')));
  bench.version('postgres', toolVersion(pgBin('postgres')));

  const work = mkdtempSync(join(os.tmpdir(), 'chartlog-restore-bench-'));
  const dbs: TestDatabase[] = [];
  let run: BackgroundRun | null = null;
  try {
    // 1. The source, its backup by chartlog run, and the hour of changes.
    const source = await createPgDatabase('rbench_src');
    dbs.push(source);
    const client = await pgConnect(source.url);
    await client.query(pgPatientDdl('patients'));
    let t = performance.now();
    for (const [first, last] of transactionRanges(ROWS, 100_000)) await client.query(pgInsertPatients('patients', first, last));
    await client.query('VACUUM ANALYZE patients');
    console.log(`source: ${ROWS} rows loaded in ${sec(performance.now() - t)} s`);

    const setup = writeBenchConfig(work, `rbench_${process.pid}`, source.url, TABLE, PATIENT_PHI_COLUMNS);
    t = performance.now();
    run = new BackgroundRun(setup, join(work, 'run.log'));
    await run.streaming(1_800_000);
    await waitForAnyCheckpoint(setup, 60_000, run);
    const snapshotSeconds = sec(performance.now() - t);
    console.log(`chartlog run: base snapshot durable and streaming after ${snapshotSeconds} s`);

    const txs = Math.ceil(CHANGES / TX_SIZE);
    t = performance.now();
    let lastLsn = 0n;
    for (let k = 0; k < txs; k++) {
      const size = Math.min(TX_SIZE, CHANGES - k * TX_SIZE);
      const results = (await client.query(changeTransaction(k, size))) as unknown as pg.QueryResult[];
      lastLsn = parseLsn((results.find((r) => r.command === 'SELECT')!.rows[0] as { lsn: string }).lsn);
    }
    const changesMs = performance.now() - t;
    const caughtUp = await waitForCheckpoint(setup, lastLsn, 1_800_000, run);
    console.log(`changes: ${txs} transactions (${CHANGES} changes) in ${sec(changesMs)} s; durable ${sec(caughtUp - t - changesMs)} s after the last commit`);
    const exit = await run.stop();
    run = null;
    if (exit !== 0) throw new Error(`chartlog run exited with ${exit}; see ${join(work, 'run.log')}`);

    const expected = await digest(client);
    await client.end();
    console.log(`source final state: ${expected.rows} rows`);

    // 2. The baseline's input: one pg_dump -Fc of the same final state.
    const dumpFile = join(work, 'patients.dump');
    const dump = await timeProcess(pgBin('pg_dump'), ['-Fc', '-t', TABLE, '-f', dumpFile, source.url]);
    if (dump.code !== 0) throw new Error(`pg_dump failed: ${dump.stderr}`);
    const dumpMiB = statSync(dumpFile).size / 2 ** 20;
    const archiveMiB = duMiB(setup.backupDir);
    console.log(`pg_dump -Fc: ${dump.seconds.toFixed(2)} s, ${dumpMiB.toFixed(1)} MiB; chartlog archive ${archiveMiB.toFixed(1)} MiB`);

    const pgRestore = async (jobs: number, label: string): Promise<number> => {
      const target = await createPgDatabase('rbench_pgr');
      dbs.push(target);
      const r = await timeProcess(pgBin('pg_restore'), ['--no-owner', '--no-privileges', '--exit-on-error', '-j', String(jobs), '-d', target.url, dumpFile]);
      if (r.code !== 0) throw new Error(`${label} failed: ${r.stderr}`);
      await verify(target, expected, label);
      await dropDb(dbs, target);
      return r.seconds;
    };
    const restoreArgs = (url: string) => ['restore', '--config', setup.configFile, '--source', setup.sourceName, '--to', 'latest', '--target', url, '--json'];
    const chartlogRestore = async (nodeArgs: string[] = [], bin = chartlogBin): Promise<{ seconds: number; replay: number; write: number; rss: number; cpu: number }> => {
      const target = await createPgDatabase('rbench_cl');
      dbs.push(target);
      const r = await timeProcess(process.execPath, [...nodeArgs, bin, ...restoreArgs(target.url)]);
      if (r.code !== 0) throw new Error(`chartlog restore exited with ${r.code}: ${r.stderr.slice(0, 4000)}`);
      const summary = JSON.parse(r.stdout) as { rows: number; seconds: { replay: number; write: number } };
      if (summary.rows !== expected.rows) throw new Error(`chartlog restore reported ${summary.rows} rows, the source has ${expected.rows}`);
      await verify(target, expected, 'chartlog restore');
      await dropDb(dbs, target);
      return { seconds: r.seconds, replay: summary.seconds.replay, write: summary.seconds.write, rss: r.peakRssMiB, cpu: r.cpuSeconds };
    };

    // 3. The repetitions, alternating which goes first so drift in the machine's load hits both.
    const base: number[] = [];
    const base2: number[] = [];
    const ours: { seconds: number; replay: number; write: number; rss: number; cpu: number }[] = [];
    const old: typeof ours = [];
    // Each repetition runs its restores in another order (a rotation), so drift in the machine's load hits all of them.
    const steps: (() => Promise<void>)[] = [
      async () => void base.push(await pgRestore(1, 'pg_restore')),
      async () => void ours.push(await chartlogRestore()),
      ...(COMPARE_BIN ? [async () => void old.push(await chartlogRestore([], COMPARE_BIN))] : []),
    ];
    for (let rep = 0; rep < REPS; rep++) {
      for (let i = 0; i < steps.length; i++) await steps[(rep + i) % steps.length]!();
      if (JOBS2) base2.push(await pgRestore(2, 'pg_restore -j 2'));
      const o = ours.at(-1)!;
      const p = old.at(-1);
      console.log(`rep ${rep + 1}/${REPS}: pg_restore ${base.at(-1)!.toFixed(2)} s${JOBS2 ? `, -j 2 ${base2.at(-1)!.toFixed(2)} s` : ''}; chartlog restore ${o.seconds.toFixed(2)} s (replay ${o.replay} s, write ${o.write} s, CPU ${o.cpu.toFixed(1)} s, peak RSS ${Math.round(o.rss)} MiB)${p ? `; old chartlog ${p.seconds.toFixed(2)} s (replay ${p.replay} s, write ${p.write} s, CPU ${p.cpu.toFixed(1)} s, peak RSS ${Math.round(p.rss)} MiB)` : ''}; all verified equal to the source`);
    }

    const rows = expected.rows;
    const baseline = bench.add(measurement('pg_restore (pg_dump -Fc, 1 job)', 's', 'lower', 'baseline', base));
    const chartlog = bench.add(measurement('chartlog restore --to latest (process)', 's', 'lower', 'chartlog', ours.map((o) => o.seconds)));
    bench.add(measurement('pg_restore rows/s', 'rows/s', 'higher', 'detail', base.map((s) => rows / s)));
    bench.add(measurement('chartlog restore rows/s', 'rows/s', 'higher', 'detail', ours.map((o) => rows / o.seconds)));
    if (JOBS2) bench.add(measurement('pg_restore -j 2', 's', 'lower', 'detail', base2));
    bench.add(measurement('chartlog restore: read the changes and collapse them per key (its own timer)', 's', 'lower', 'detail', ours.map((o) => o.replay)));
    bench.add(measurement('chartlog restore: stream the base snapshot past them into COPY, primary key', 's', 'lower', 'detail', ours.map((o) => o.write)));
    bench.add(measurement('chartlog restore: start-up, index, audit, exit', 's', 'lower', 'detail', ours.map((o) => o.seconds - o.replay - o.write)));
    bench.add(measurement('chartlog restore peak RSS (VmRSS every 50 ms)', 'MiB', 'lower', 'detail', ours.map((o) => o.rss)));
    // Wall-clock time on a shared machine mostly says how busy it was; the process's CPU time (not
    // PostgreSQL's, which COPY spends in the server) says what chartlog itself costs.
    bench.add(measurement('chartlog restore CPU time (user + system, all its threads, /proc every 50 ms)', 's', 'lower', 'detail', ours.map((o) => o.cpu)));
    if (COMPARE_BIN) {
      const before = bench.add(measurement(`old chartlog restore (${COMPARE_BIN}), same archive, same rotation`, 's', 'lower', 'detail', old.map((o) => o.seconds)));
      bench.add(measurement('old chartlog restore: read the changes and collapse them per key', 's', 'lower', 'detail', old.map((o) => o.replay)));
      bench.add(measurement('old chartlog restore: stream the base snapshot into COPY, primary key', 's', 'lower', 'detail', old.map((o) => o.write)));
      bench.add(measurement('old chartlog restore peak RSS', 'MiB', 'lower', 'detail', old.map((o) => o.rss)));
      bench.add(measurement('old chartlog restore CPU time', 's', 'lower', 'detail', old.map((o) => o.cpu)));
      const speedup = ratio(chartlog, before);
      speedup.name = 'old chartlog restore time / new chartlog restore time';
      bench.addRatio(speedup);
      const oldRatio = ratio(before, baseline);
      oldRatio.name = 'pg_restore time / old chartlog restore time';
      bench.addRatio(oldRatio);
    }
    bench.add(measurement('pg_dump -Fc (once, not in the ratio)', 's', 'lower', 'detail', [dump.seconds]));
    bench.add(measurement('chartlog run: base snapshot of the source (once)', 's', 'lower', 'detail', [snapshotSeconds]));
    const r = ratio(chartlog, baseline, 1.0);
    r.name = 'pg_restore time / chartlog restore time';
    bench.addRatio(r);
    bench.addGoal(goal('chartlog restore ≥ 1.0× pg_restore (pg_restore time / chartlog time)', r.value, '×', r.met === true));
    bench.note(`Final state restored: ${rows} rows = ${ROWS} loaded, then ${CHANGES} changes (60 % updates of PHI and other columns, 25 % inserts, 15 % deletes) in ${txs} transactions streamed by chartlog run into segments.`);
    bench.note(`Every restore (both tools) was checked against the source: column types, primary key, row count and md5 of every row's text in key order; all equal.`);
    bench.note(`Sizes: pg_dump -Fc ${dumpMiB.toFixed(1)} MiB; chartlog archive (snapshot + segments, PHI sealed) ${archiveMiB.toFixed(1)} MiB.`);
    bench.note('chartlog restore runs through bin/chartlog.js, which in a source checkout compiles src/ with tsx at start-up; an installed package runs compiled dist/.');

    // 4. Where chartlog's time goes.
    if (PROFILE === 'always' || (PROFILE === 'auto' && r.met !== true)) {
      const profDir = join(work, 'cpuprof');
      mkdirSync(profDir);
      const p = await chartlogRestore(['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
      // tsx's loader thread writes a profile of its own: the main thread's is the largest.
      const file = readdirSync(profDir)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(profDir, f))
        .sort((a, b) => statSync(b).size - statSync(a).size)[0];
      if (file) {
        const b = restoreProfilePhases(file);
        bench.note(`Profile (one extra chartlog restore under node --cpu-prof: ${p.seconds.toFixed(2)} s, replay ${p.replay} s, write ${p.write} s; ${b.totalMs} ms of samples, each charged to the innermost frame of a known phase): ${b.phases.map((x) => `${x.phase} ${x.percent} %`).join(', ')}.`);
        const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Parameters<typeof summarise>[0]);
        const top = s.byFunction.slice(0, 10).map(([fn, ms]) => `${fn} ${Math.round((ms / s.totalMs) * 1000) / 10} %`);
        bench.note(`Profile, top functions by self time: ${top.join('; ')}.`);
        console.log(formatSummary(s, 10));
      }
    }
    bench.write();
  } finally {
    if (run) await run.stop(10_000);
    for (const db of dbs.splice(0)) await db.drop();
    if (process.env.KEEP) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
    stopBenchServices();
  }
}

async function dropDb(dbs: TestDatabase[], db: TestDatabase): Promise<void> {
  await db.drop();
  dbs.splice(dbs.indexOf(db), 1);
}

function duMiB(dir: string): number {
  let bytes = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) bytes += statSync(join(e.parentPath, e.name)).size;
  return bytes / 2 ** 20;
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
}
// A client left open by a failure must not keep the process alive: cleanup ran in main's finally.
process.exit();
