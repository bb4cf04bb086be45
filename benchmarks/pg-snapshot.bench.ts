/**
 * Base snapshot at source speed (issue 15, item 3): a consistent snapshot of the N-row patient
 * table (12 columns, 4 PHI) written to a file:// archive by `chartlog snapshot --from-source`
 * (the same code `chartlog run` takes its first base snapshot with: connector read, encoding,
 * PHI sealing, compression, writes), against `pg_dump -Fc` of the same table, side by side.
 *
 *   node --import tsx benchmarks/pg-snapshot.bench.ts [--rows 1000000] [--reps 2]
 *        [--compare-bin OTHER/bin/chartlog.js] [--connections 1,4] [--connector-only] [--result NAME]
 *
 * Per repetition, in a rotated order so drift in the machine's load hits each alike: `pg_dump
 * -Fc -t public.patients`, and `chartlog snapshot --from-source` as a process (as shipped:
 * bin/chartlog.js's node flags and environment) into a new archive; with --compare-bin the
 * chartlog of another checkout (the old code) the same way. Each chartlog snapshot must report
 * every row of the table; its replication slot is dropped after it. Rates are rows ÷ seconds
 * from spawn to exit; peak RSS and CPU time are sampled from /proc.
 *
 * --connections N,M also runs this checkout's chartlog with `sources[].snapshot.connections` set
 * to each of N, M (the default run keeps the configuration's default), in the same rotation: what
 * reading in key ranges on several connections of one exported snapshot is worth.
 *
 * --connector-only also times the connector's read alone, in this process (no encoding or
 * writing): what the source side costs by itself.
 *
 * Writes benchmarks/results/pg-snapshot.json, or NAME.json with --result.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PostgresConnector } from '../connectors/postgres/postgres-connector.js';
import { createLogger } from '../src/core/logger.js';
import { chartlogNodeEnv, chartlogNodeFlags } from '../test/support/chartlog-process.js';
import { sourceConfig } from '../test/support/pg-test-db.js';
import { createPgDatabase, type TestDatabase } from '../test/support/restore-engines.js';
import { BenchRun, goal, measurement, ratio, toolVersion } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import { chartlogBin, pgBin, pgConnect, timeProcess, writeBenchConfig } from './lib/chartlog-pg-rig.js';
import { PATIENT_PHI_COLUMNS, pgInsertPatients, pgPatientDdl, transactionRanges } from './lib/patient-workload.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    reps: { type: 'string', default: '2' },
    'compare-bin': { type: 'string' },
    connections: { type: 'string', default: '' },
    'connector-only': { type: 'boolean', default: false },
    result: { type: 'string', default: 'pg-snapshot' },
  },
});
const ROWS = Number(args.rows);
const REPS = Math.max(1, Number(args.reps));
const COMPARE_BIN = args['compare-bin'];
const RESULT = args.result;
const CONNECTIONS = args.connections ? args.connections.split(',').map(Number) : [];
if (!Number.isInteger(ROWS) || ROWS <= 0 || !/^[a-z0-9-]+$/.test(RESULT) || !CONNECTIONS.every((n) => Number.isInteger(n) && n >= 1 && n <= 16)) {
  console.error('usage: pg-snapshot.bench.ts [--rows N] [--reps N] [--compare-bin OTHER/bin/chartlog.js] [--connections N,M (1-16)] [--connector-only] [--result NAME]');
  process.exit(2);
}
const TABLE = 'public.patients';
/** `sources[].snapshot.connections` when the configuration leaves it out (src/config/schema.ts). */
const DEFAULT_CONNECTIONS = sourceConfig('postgres://bench@127.0.0.1/bench').snapshot.connections;

interface Timed {
  seconds: number;
  rss: number;
  cpu: number;
}

async function main(): Promise<void> {
  benchServices();
  const bench = new BenchRun(RESULT, `Base snapshot of ${ROWS.toLocaleString('en-US')} rows (PHI sealed) against pg_dump -Fc of the same table`, 'node --import tsx benchmarks/pg-snapshot.bench.ts' + (process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''), {
    rows: ROWS,
    reps: REPS,
    table: 'benchmarks/lib/patient-workload.ts: 12 columns, 4 PHI (full_name, ssn, birth_date, address) sealed',
    source: 'PostgreSQL 15 (scripts/services.sh), a fresh database',
    chartlog: `chartlog snapshot --from-source (file:// archive, file keyring) as a process, as shipped (snapshot.connections ${DEFAULT_CONNECTIONS}, the default)`,
    baseline: 'pg_dump -Fc -t public.patients to a file',
  });
  bench.version('pg_dump', toolVersion(pgBin('pg_dump')));
  bench.version('postgres', toolVersion(pgBin('postgres')));

  const work = mkdtempSync(join(os.tmpdir(), 'chartlog-snapshot-bench-'));
  let source: TestDatabase | null = null;
  try {
    source = await createPgDatabase('sbench_src');
    const client = await pgConnect(source.url);
    await client.query(pgPatientDdl('patients'));
    let t = performance.now();
    for (const [first, last] of transactionRanges(ROWS, 100_000)) await client.query(pgInsertPatients('patients', first, last));
    await client.query('VACUUM ANALYZE patients');
    console.log(`source: ${ROWS} rows loaded in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    let dumpBytes = 0;
    const pgDump = async (): Promise<Timed> => {
      const file = join(work, 'patients.dump');
      const r = await timeProcess(pgBin('pg_dump'), ['-Fc', '-t', TABLE, '-f', file, source!.url]);
      if (r.code !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
      dumpBytes = statSync(file).size;
      rmSync(file);
      return { seconds: r.seconds, rss: r.peakRssMiB, cpu: r.cpuSeconds };
    };
    let archiveBytes = 0;
    let attempt = 0;
    const snapshot = async (bin: string, label: string, snapshotConnections?: number): Promise<Timed> => {
      const dir = join(work, `snap-${++attempt}`);
      mkdirSync(dir);
      const setup = writeBenchConfig(dir, `sbench_${process.pid}_${attempt}`, source!.url, TABLE, PATIENT_PHI_COLUMNS, {}, {}, snapshotConnections ? { snapshotConnections } : {});
      const r = await timeProcess(process.execPath, [...chartlogNodeFlags, bin, 'snapshot', '--config', setup.configFile, '--from-source', '--json'], { ...process.env, ...chartlogNodeEnv });
      if (r.code !== 0) throw new Error(`${label} exited with ${r.code}: ${r.stderr.slice(-4000)}`);
      const rows = (JSON.parse(r.stdout) as { snapshot: { rows: number } | null }[])[0]?.snapshot?.rows;
      if (rows !== ROWS) throw new Error(`${label} wrote ${rows} rows, the table has ${ROWS}`);
      archiveBytes = duBytes(setup.backupDir);
      rmSync(dir, { recursive: true, force: true });
      // Each archive made a slot of its own: it would hold WAL for nothing.
      await client.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active`);
      return { seconds: r.seconds, rss: r.peakRssMiB, cpu: r.cpuSeconds };
    };

    const dump: Timed[] = [];
    const ours: Timed[] = [];
    const old: Timed[] = [];
    const byConnections = CONNECTIONS.map((n) => ({ n, runs: [] as Timed[] }));
    const steps: (() => Promise<void>)[] = [
      async () => void dump.push(await pgDump()),
      async () => void ours.push(await snapshot(chartlogBin, 'chartlog snapshot --from-source')),
      ...(COMPARE_BIN ? [async () => void old.push(await snapshot(COMPARE_BIN, 'old chartlog snapshot --from-source'))] : []),
      ...byConnections.map((c) => async () => void c.runs.push(await snapshot(chartlogBin, `chartlog snapshot --from-source (connections ${c.n})`, c.n))),
    ];
    const line = (what: string, x: Timed) => `${what} ${x.seconds.toFixed(2)} s (${Math.round(ROWS / x.seconds).toLocaleString('en-US')} rows/s, CPU ${x.cpu.toFixed(1)} s, peak RSS ${Math.round(x.rss)} MiB)`;
    for (let rep = 0; rep < REPS; rep++) {
      for (let i = 0; i < steps.length; i++) await steps[(rep + i) % steps.length]!();
      console.log(`rep ${rep + 1}/${REPS}, load ${os.loadavg()[0]!.toFixed(1)}: ${line('pg_dump -Fc', dump.at(-1)!)}; ${line('chartlog', ours.at(-1)!)}${old.length ? `; ${line('old chartlog', old.at(-1)!)}` : ''}${byConnections.map((c) => `; ${line(`chartlog connections ${c.n}`, c.runs.at(-1)!)}`).join('')}`);
    }

    const rate = (xs: Timed[]) => xs.map((x) => Math.round(ROWS / x.seconds));
    const baseline = bench.add(measurement('pg_dump -Fc of the table', 'rows/s', 'higher', 'baseline', rate(dump)));
    const chartlog = bench.add(measurement('chartlog snapshot --from-source (process)', 'rows/s', 'higher', 'chartlog', rate(ours)));
    bench.add(measurement('chartlog snapshot --from-source: peak RSS', 'MiB', 'lower', 'detail', ours.map((x) => Math.round(x.rss))));
    bench.add(measurement('chartlog snapshot --from-source: CPU time (all threads)', 's', 'lower', 'detail', ours.map((x) => x.cpu)));
    bench.add(measurement('pg_dump -Fc: CPU time (pg_dump only, not the server)', 's', 'lower', 'detail', dump.map((x) => x.cpu)));
    const r = ratio(chartlog, baseline, 0.5);
    r.name = 'chartlog snapshot rows/s / pg_dump -Fc rows/s';
    bench.addRatio(r);
    bench.addGoal(goal('base snapshot ≥ 0.5× the rate of pg_dump -Fc', r.value, '×', r.met === true));
    bench.addGoal(goal('base snapshot peak RSS ≤ 512 MiB', chartlog.reps.length ? Math.max(...ours.map((x) => Math.round(x.rss))) : 0, 'MiB', ours.every((x) => x.rss <= 512)));
    if (old.length) {
      const before = bench.add(measurement('old chartlog snapshot --from-source (process, --compare-bin)', 'rows/s', 'higher', 'detail', rate(old)));
      bench.add(measurement('old chartlog snapshot --from-source: peak RSS', 'MiB', 'lower', 'detail', old.map((x) => Math.round(x.rss))));
      bench.add(measurement('old chartlog snapshot --from-source: CPU time (all threads)', 's', 'lower', 'detail', old.map((x) => x.cpu)));
      const o = ratio(chartlog, before);
      o.name = 'chartlog snapshot rows/s / old chartlog rows/s (same run)';
      bench.addRatio(o);
      const ob = ratio(before, baseline);
      ob.name = 'old chartlog snapshot rows/s / pg_dump -Fc rows/s (same run)';
      bench.addRatio(ob);
    }
    for (const c of byConnections) {
      const m = bench.add(measurement(`chartlog snapshot --from-source, snapshot.connections ${c.n} (process)`, 'rows/s', 'higher', 'detail', rate(c.runs)));
      bench.add(measurement(`chartlog snapshot --from-source, snapshot.connections ${c.n}: peak RSS`, 'MiB', 'lower', 'detail', c.runs.map((x) => Math.round(x.rss))));
      bench.add(measurement(`chartlog snapshot --from-source, snapshot.connections ${c.n}: CPU time (all threads)`, 's', 'lower', 'detail', c.runs.map((x) => x.cpu)));
      const rc = ratio(m, chartlog);
      rc.name = `snapshot.connections ${c.n} rows/s / default (${DEFAULT_CONNECTIONS}) rows/s (same run)`;
      bench.addRatio(rc);
    }
    bench.note(`Sizes: pg_dump -Fc ${(dumpBytes / 2 ** 20).toFixed(1)} MiB; chartlog archive (base snapshot, PHI sealed) ${(archiveBytes / 2 ** 20).toFixed(1)} MiB.`);
    bench.note('Times are spawn to exit: chartlog includes its start-up (bin/chartlog.js compiles src/ with tsx in a source checkout) and the slot creation; pg_dump its connection and catalog reads.');

    if (args['connector-only']) {
      const connector = new PostgresConnector(sourceConfig(source.url, { tables: [TABLE] }), { logger: createLogger({ level: 'warn', format: 'json' }) });
      t = performance.now();
      let events = 0;
      for await (const b of connector.snapshot({})) events += b.events.length;
      const seconds = (performance.now() - t) / 1000;
      await connector.close();
      await client.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active`);
      if (events !== ROWS) throw new Error(`the connector read ${events} rows, the table has ${ROWS}`);
      bench.add(measurement('PostgreSQL connector read alone (in process, no encoding or writing)', 'rows/s', 'higher', 'detail', [Math.round(ROWS / seconds)]));
    }
    await client.end();
    bench.write();
  } finally {
    await source?.drop();
    rmSync(work, { recursive: true, force: true });
    stopBenchServices();
  }
}

function duBytes(dir: string): number {
  let bytes = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) bytes += statSync(join(e.parentPath, e.name)).size;
  return bytes;
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
}
// A client left open by a failure must not keep the process alive: cleanup ran in main's finally.
process.exit();
