/**
 * MariaDB CDC throughput: a backlog of N changed rows made durable in the object store by
 * `chartlog run`, against `mariadb-binlog --read-from-remote-server` reading the same binlog
 * range into /dev/null, and against Debezium (its embedded engine and MariaDB connector,
 * benchmarks/debezium/) writing every change event of the same backlog as JSON to a file.
 *
 *   node --import tsx benchmarks/cdc-mariadb.bench.ts [--rows 1000000] [--reps 3] [--tx-rows 10000]
 *        [--no-debezium] [--debezium-schemas] [--stages] [--profile-dir DIR] [--timeout-s S]
 *        [--compare-bin OTHER/bin/chartlog.js]
 *
 * Per repetition, on the private MariaDB 10.11 of scripts/services.sh (started when not running),
 * in a fresh database: the 12-column patient table (4 PHI columns, benchmarks/lib/patient-workload.ts).
 * `chartlog run` (the least-privilege `cdc` user of the services, embedded bus, file:// store,
 * file keyring, default 1 s flush) takes its snapshot of the empty table, streams one row to
 * durable and stops — like a deployment that already runs; so does Debezium (its snapshot of the
 * one-row table as root, its offsets and schema history files; skipped with a note where Java 17
 * or Maven is missing, or with --no-debezium). The binlog file/offset is noted, the
 * backlog inserted in transactions of --tx-rows rows, and then, one after the other (the order
 * rotates per repetition):
 *
 *   baseline   mariadb-binlog --read-from-remote-server -h 127.0.0.1 -P <port> -u root
 *              --start-position=<offset> <file> --to-last-log > /dev/null (without --stop-never
 *              it asks for a non-blocking dump and exits at the current end of the binlog);
 *   detail     the same with --verbose (rows decoded into pseudo-SQL comments);
 *   chartlog   bin/chartlog.js run as a process, timed from spawn until its checkpoint in the
 *              store covers the backlog's last transaction (its GTID, @@last_gtid of the writing
 *              session), then SIGTERM; its peak RSS read from /proc at that moment;
 *   debezium   java -jar benchmarks/debezium/target/mariadb/debezium-bench.jar (Debezium 3.5.0's
 *              MariaDB connector: see benchmarks/debezium/pom.xml for why not 3.6.1), default
 *              settings but JSON without the schema in every event unless --debezium-schemas,
 *              resuming from its offsets, timed from spawn until the backlog's last event is
 *              written to its file (flushed, fsynced); JVM start-up (spawn → connector task
 *              started) reported apart, and its peak RSS (VmHWM).
 *
 * --compare-bin runs another checkout's bin/chartlog.js (old code) the same way, with its own set-up
 * run, store and server id, on the same backlog in the same rotation; both runs' CPU time per row
 * (from /proc, start-up included) and peak RSS are reported.
 *
 * --stages adds in-process passes over the backlog from chartlog's checkpoint: the connector
 * alone, then connector + PHI sealing + Avro encoding; --profile-dir writes a V8 CPU profile of
 * the timed `chartlog run`.
 *
 * Prints rows/s and the ratio; writes benchmarks/results/cdc-mariadb.json. Databases and
 * temporary directories are removed after each repetition (also on SIGINT/SIGTERM, and those of
 * a killed run at the next start).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { configureLogger } from '../src/core/logger.js';
import { COMMIT_SEQ, type Position } from '../src/core/position.js';
import { BenchRun, measurement, ratio, toolVersion } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import {
  fmtRate,
  installSignalHandlers,
  isLeftover,
  makeWorkDir,
  onCleanup,
  runCleanups,
  stagePass,
  sweepLeftovers,
  TAG,
  TimedChartlog,
  timeCommand,
  uniqueName,
  writeChartlogConfig,
  type ChartlogTiming,
} from './lib/cdc-bench.js';
import { buildDebezium, debeziumNote, reportDebezium, runDebezium, type DebeziumTiming } from './lib/debezium-peer.js';
import { mariadbInsertPatients, mariadbPatientDdl, PATIENT_PHI_COLUMNS } from './lib/patient-workload.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    reps: { type: 'string', default: '3' },
    'tx-rows': { type: 'string', default: '10000' },
    stages: { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    'timeout-s': { type: 'string' },
    'no-debezium': { type: 'boolean', default: false },
    'debezium-schemas': { type: 'boolean', default: false },
    'compare-bin': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  // The header comment is the manual.
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  console.log(text.slice(text.indexOf('/**') + 3, text.indexOf('*/')).replace(/^ \* ?/gm, '').trim());
  process.exit(0);
}
const ROWS = Number(args.rows);
const REPS = Math.max(1, Number(args.reps));
const TX_ROWS = Number(args['tx-rows']);
const TIMEOUT_MS = Number(args['timeout-s'] ?? 120 + ROWS / 2000) * 1000;
const PROFILE_DIR = args['profile-dir'];
const STAGES = args.stages;
const DEBEZIUM_SCHEMAS = args['debezium-schemas'];
const COMPARE_BIN = args['compare-bin'];
if (!(ROWS > 0) || !(TX_ROWS > 0)) throw new Error('--rows and --tx-rows must be positive numbers');
const BINLOG_TOOL = 'mariadb-binlog';

type Reader = 'baseline' | 'verbose' | 'chartlog' | 'compare' | 'debezium';

interface RepResult {
  baseline: number;
  verbose: number;
  chartlog: ChartlogTiming;
  /** --compare-bin: the other checkout's chartlog run on the same backlog. */
  compare: ChartlogTiming | null;
  /** Debezium's timed run, when Java and Maven are there. */
  debezium: DebeziumTiming | null;
  /** In-process passes: connector alone, connector + codec (seal + Avro); --stages only. */
  stages: { connector: number; codec: number } | null;
  insertSeconds: number;
  binlogBytes: number | null;
}

interface Gtid {
  domain: number;
  server: number;
  seq: bigint;
}

function parseGtid(text: string): Gtid {
  const m = /^(\d+)-(\d+)-(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`not a MariaDB GTID: "${text}"`);
  return { domain: Number(m[1]), server: Number(m[2]), seq: BigInt(m[3]!) };
}

/** Whether a chartlog checkpoint (MariaDB commit part `<domain 8 hex>-<seq 16 hex>-<server 8 hex>`) is at or past a GTID. */
function coversGtid(p: Position, g: Gtid): boolean {
  if (p.seq !== COMMIT_SEQ) return false;
  const m = /^([0-9a-f]{8})-([0-9a-f]{16})-([0-9a-f]{8})$/.exec(p.commit);
  return m !== null && Number.parseInt(m[1]!, 16) === g.domain && BigInt(`0x${m[2]}`) >= g.seq;
}

type Conn = mysql.Connection;

async function masterStatus(conn: Conn): Promise<{ file: string; position: number }> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SHOW MASTER STATUS');
  const r = rows[0];
  if (!r) throw new Error('SHOW MASTER STATUS returned nothing: is the binlog on?');
  return { file: String(r.File), position: Number(r.Position) };
}

/** Rows first..last in transactions of perTx; returns the GTID of the last transaction. */
async function insertBacklog(conn: Conn, table: string, first: number, last: number, perTx: number): Promise<Gtid> {
  for (let from = first; from <= last; from += perTx) {
    const to = Math.min(last, from + perTx - 1);
    await conn.query('BEGIN');
    await conn.query(mariadbInsertPatients(table, from, to));
    await conn.query('COMMIT');
  }
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@last_gtid AS g');
  return parseGtid(String(rows[0]!.g));
}

async function sweepServer(url: string): Promise<void> {
  const conn = await mysql.createConnection(url);
  try {
    const [rows] = await conn.query<mysql.RowDataPacket[]>(`SELECT schema_name AS s FROM information_schema.schemata WHERE schema_name LIKE '${TAG}\\_%'`);
    for (const r of rows) {
      const name = String(r.s);
      if (!isLeftover(name)) continue;
      console.log(`removing ${name}, left by a killed run`);
      await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
    }
  } finally {
    await conn.end();
  }
}

function cdcUrl(rootUrl: string, db: string): string {
  const u = new URL(process.env.CHARTLOG_TEST_MARIADB_CDC_URL ?? rootUrl);
  u.pathname = `/${db}`;
  return u.toString();
}

async function once(rep: number, rootUrl: string): Promise<RepResult> {
  const server = new URL(rootUrl);
  const db = uniqueName();
  const table = `${db}.patients`;
  const conn = await mysql.createConnection({ uri: rootUrl, multipleStatements: false });
  onCleanup(() => conn.end());
  await conn.query("SET SESSION time_zone = '+00:00'");
  await conn.query(`CREATE DATABASE \`${db}\``);
  onCleanup(async () => void (await conn.query(`DROP DATABASE IF EXISTS \`${db}\``)));
  await conn.query(`USE \`${db}\``); // the Sequence engine's seq_… tables live in every database
  await conn.query(mariadbPatientDdl(table));

  const { dir, keyring } = makeWorkDir();
  const storeDir = join(dir, 'store');
  const configFile = join(dir, 'chartlog.yaml');
  const source = 'maria_embedded';
  writeChartlogConfig({
    file: configFile,
    // A server id of its own among the binlog readers (the services' other users, earlier reps).
    source: `{ name: ${source}, type: mysql, url: "${cdcUrl(rootUrl, db)}", tables: [${table}], mysql: { serverId: ${1_000_000 + (process.pid % 100_000) * 10 + (rep % 10)} } }`,
    storeDir,
    keyring,
    table,
    phi: PATIENT_PHI_COLUMNS,
  });
  const logFile = join(dir, 'chartlog.log');
  const flags = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];

  // Like a deployment that already runs: snapshot of the empty table, one row streamed, durable.
  const setup = new TimedChartlog(configFile, storeDir, source, logFile);
  setup.start();
  await setup.waitForLog('pipeline streaming', 120_000);
  const firstGtid = await insertBacklog(conn, table, 0, 0, 1);
  await setup.waitFor((p) => coversGtid(p, firstGtid), 120_000);
  const setupCode = await setup.stop();
  if (setupCode !== 0) throw new Error(`chartlog run (set-up) exited with ${setupCode}; see ${logFile}`);
  const resumeFrom = setup.checkpoint();

  // --compare-bin: the other checkout set up the same way, with its own store and server id.
  const compare = COMPARE_BIN ? { configFile: join(dir, 'compare.yaml'), storeDir: join(dir, 'store-compare'), source: 'maria_compare', logFile: join(dir, 'compare.log') } : null;
  if (compare) {
    writeChartlogConfig({
      file: compare.configFile,
      source: `{ name: ${compare.source}, type: mysql, url: "${cdcUrl(rootUrl, db)}", tables: [${table}], mysql: { serverId: ${2_000_000 + (process.pid % 100_000) * 10 + (rep % 10)} } }`,
      storeDir: compare.storeDir,
      keyring,
      table,
      phi: PATIENT_PHI_COLUMNS,
    });
    const c = new TimedChartlog(compare.configFile, compare.storeDir, compare.source, compare.logFile, [], COMPARE_BIN);
    c.start();
    await c.waitFor((p) => coversGtid(p, firstGtid), 120_000);
    if ((await c.stop()) !== 0) throw new Error(`chartlog run (set-up, --compare-bin) failed; see ${compare.logFile}`);
  }

  // Debezium, like a deployment that already runs: its snapshot of the one-row table, offsets, schema history.
  const debeziumRun = (rows: number, lastId: number) =>
    runDebezium({
      jar: DEBEZIUM!.jars.mariadb, connector: 'mariadb', host: server.hostname, port: server.port || '3306', user: decodeURIComponent(server.username || 'root'),
      ...(server.password ? { password: decodeURIComponent(server.password) } : {}), database: db, table, workDir: join(dir, 'debezium'), rows, lastId,
      // A server id of its own among the binlog readers.
      serverId: 3_000_000 + (process.pid % 100_000) * 10 + (rep % 10), jsonSchemas: DEBEZIUM_SCHEMAS, timeoutMs: TIMEOUT_MS, logFile: join(dir, 'debezium.log'),
    });
  if (DEBEZIUM) await debeziumRun(1, 0);

  const start = await masterStatus(conn);
  const t0 = performance.now();
  const lastGtid = await insertBacklog(conn, table, 1, ROWS, TX_ROWS);
  const insertSeconds = (performance.now() - t0) / 1000;
  const end = await masterStatus(conn);
  const binlogBytes = end.file === start.file ? end.position - start.position : null;
  console.log(
    `rep ${rep + 1}: backlog of ${ROWS} rows in ${Math.ceil(ROWS / TX_ROWS)} transactions inserted in ${insertSeconds.toFixed(1)} s ` +
      `(${binlogBytes === null ? 'binlog rotated' : `${(binlogBytes / 2 ** 20).toFixed(0)} MiB of binlog`}), ${start.file}:${start.position} → ${end.file}:${end.position}, last GTID ${lastGtid.domain}-${lastGtid.server}-${lastGtid.seq}`,
  );

  const binlogArgs = (verbose: boolean) => [
    '--no-defaults', '--read-from-remote-server', '-h', server.hostname, '-P', server.port || '3306', '-u', decodeURIComponent(server.username || 'root'),
    ...(server.password ? [`--password=${decodeURIComponent(server.password)}`] : []),
    `--start-position=${start.position}`, start.file, '--to-last-log', ...(verbose ? ['--verbose'] : []),
  ];
  const readers: Reader[] = ['baseline', 'chartlog', 'verbose', ...(compare ? ['compare' as const] : []), ...(DEBEZIUM ? ['debezium' as const] : [])];
  const order = readers.map((_, i) => readers[(i + rep) % readers.length]!);
  const result: Partial<RepResult> = { insertSeconds, binlogBytes, debezium: null, compare: null };
  const cpuPerRow = (t: ChartlogTiming): string => (t.cpuSeconds === null ? '' : `; CPU ${((t.cpuSeconds * 1e6) / ROWS).toFixed(1)} us/row`);
  for (const reader of order) {
    if (reader === 'debezium') {
      const t = await debeziumRun(ROWS, ROWS);
      result.debezium = t;
      console.log(`  Debezium ${DEBEZIUM!.versions.mariadb} (JSON → file)  ${fmtRate(ROWS, t.seconds)}; without JVM start-up (${t.startupSeconds.toFixed(2)} s): ${fmtRate(ROWS, t.streamingSeconds)}; peak RSS ${t.peakRssMiB.toFixed(0)} MiB`);
    } else if (reader === 'chartlog') {
      const run = new TimedChartlog(configFile, storeDir, source, logFile, flags);
      const t = await run.timeUntil((p) => coversGtid(p, lastGtid), TIMEOUT_MS);
      if (t.exitCode !== 0) throw new Error(`chartlog run exited with ${t.exitCode} after SIGTERM; see ${logFile}`);
      result.chartlog = t;
      console.log(`  chartlog (embedded bus)          ${fmtRate(ROWS, t.seconds)}; without start-up (${t.startupSeconds?.toFixed(2)} s): ${t.streamingSeconds ? fmtRate(ROWS, t.streamingSeconds) : 'n/a'}; peak RSS ${t.peakRssMiB?.toFixed(0) ?? 'n/a'} MiB${cpuPerRow(t)}${PROFILE_DIR ? `; pid ${t.pid}` : ''}`);
    } else if (reader === 'compare') {
      const run = new TimedChartlog(compare!.configFile, compare!.storeDir, compare!.source, compare!.logFile, [], COMPARE_BIN);
      const t = await run.timeUntil((p) => coversGtid(p, lastGtid), TIMEOUT_MS);
      if (t.exitCode !== 0) throw new Error(`chartlog run (--compare-bin) exited with ${t.exitCode} after SIGTERM; see ${compare!.logFile}`);
      result.compare = t;
      console.log(`  chartlog --compare-bin           ${fmtRate(ROWS, t.seconds)}; without start-up (${t.startupSeconds?.toFixed(2)} s): ${t.streamingSeconds ? fmtRate(ROWS, t.streamingSeconds) : 'n/a'}; peak RSS ${t.peakRssMiB?.toFixed(0) ?? 'n/a'} MiB${cpuPerRow(t)}`);
    } else {
      const seconds = await timeCommand(BINLOG_TOOL, binlogArgs(reader === 'verbose'), { timeoutMs: TIMEOUT_MS });
      result[reader] = seconds;
      console.log(`  mariadb-binlog${reader === 'verbose' ? ' --verbose' : '          '}        ${fmtRate(ROWS, seconds)}`);
    }
  }
  result.stages = null;
  if (STAGES) {
    // The binlog is read again from chartlog's checkpoint before the backlog, by new server ids.
    const stagesConfig = join(dir, 'stages.yaml');
    const stagesSource = `${source}_stages`;
    let serverId = 2_000_000 + (process.pid % 100_000) * 10 + (rep % 10);
    const pass = async (encode: boolean) => {
      writeChartlogConfig({
        file: stagesConfig,
        source: `{ name: ${stagesSource}, type: mysql, url: "${cdcUrl(rootUrl, db)}", tables: [${table}], mysql: { serverId: ${serverId++} } }`,
        storeDir: join(dir, 'store-stages'),
        keyring,
        table,
        phi: PATIENT_PHI_COLUMNS,
      });
      const r = await stagePass(stagesConfig, join(dir, 'store-stages'), resumeFrom, (p) => coversGtid(p, lastGtid), encode, TIMEOUT_MS);
      if (r.events !== ROWS) throw new Error(`stage pass saw ${r.events} events, not ${ROWS}`);
      return r.seconds;
    };
    const connector = await pass(false);
    const codec = await pass(true);
    result.stages = { connector, codec };
    console.log(`  stages (in-process): connector ${fmtRate(ROWS, connector)}; connector + seal + Avro ${fmtRate(ROWS, codec)}`);
  }
  await runCleanups();
  return result as RepResult;
}

configureLogger({ level: 'warn', format: 'json' }); // the in-process stage passes
installSignalHandlers();
const debeziumBuild = args['no-debezium'] ? { skipped: '--no-debezium' } : buildDebezium();
const DEBEZIUM = 'jars' in debeziumBuild ? debeziumBuild : null;
const DEBEZIUM_SKIPPED = 'skipped' in debeziumBuild ? debeziumBuild.skipped : '';
if (!DEBEZIUM) console.log(`Debezium not measured: ${DEBEZIUM_SKIPPED}`);
const services = benchServices();
const swept = await sweepLeftovers();
if (swept) console.log(`removed ${swept} temporary directories left by killed runs`);
await sweepServer(services.mariadbUrl);

const run = new BenchRun('cdc-mariadb', `MariaDB CDC throughput: a backlog of ${ROWS.toLocaleString('en-US')} rows to durable in the object store`, `node --import tsx benchmarks/cdc-mariadb.bench.ts --rows ${ROWS} --reps ${REPS}${TX_ROWS !== 10000 ? ` --tx-rows ${TX_ROWS}` : ''}${DEBEZIUM ? (DEBEZIUM_SCHEMAS ? ' --debezium-schemas' : '') : ' --no-debezium'}${STAGES ? ' --stages' : ''}${COMPARE_BIN ? ` --compare-bin ${COMPARE_BIN}` : ''}`, {
  rows: ROWS,
  reps: REPS,
  rowsPerTransaction: TX_ROWS,
  transactions: Math.ceil(ROWS / TX_ROWS),
  row: '12 columns, 4 PHI sealed (full_name, ssn, birth_date, address)',
  source: 'MariaDB 10.11 (scripts/services.sh; binlog ROW, FULL image, FULL metadata, GTID strict), a fresh database per repetition; chartlog as the cdc user (REPLICATION SLAVE, BINLOG MONITOR, SELECT)',
  bus: 'embedded',
  store: 'file:// (local directory)',
  flushIntervalMs: 1000,
  baseline: 'mariadb-binlog --read-from-remote-server --start-position=<offset before the backlog> <file> --to-last-log > /dev/null',
  peer: DEBEZIUM
    ? `Debezium ${DEBEZIUM.versions.mariadb} embedded engine (async engine, MariaDbConnector as root, default settings), every change event as JSON (JsonConverter, ${DEBEZIUM_SCHEMAS ? 'with' : 'without'} the schema in each event) to a local file, file offset store and schema history`
    : `not measured (${DEBEZIUM_SKIPPED})`,
});
if (DEBEZIUM) {
  run.version('debezium', DEBEZIUM.versions.mariadb);
  run.version('java', DEBEZIUM.java);
}
run.version('mariadb-binlog', toolVersion(BINLOG_TOOL));
run.version('mariadbd', toolVersion('mariadbd'));
const reps: RepResult[] = [];
try {
  for (let rep = 0; rep < REPS; rep++) reps.push(await once(rep, services.mariadbUrl));
} finally {
  await runCleanups();
  stopBenchServices();
}

const rate = (secs: number[]) => secs.map((s) => ROWS / s);
const baseline = run.add(measurement('mariadb-binlog --read-from-remote-server → /dev/null', 'rows/s', 'higher', 'baseline', rate(reps.map((r) => r.baseline))));
run.add(measurement('mariadb-binlog --verbose (rows decoded) → /dev/null', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.verbose))));
const chartlog = run.add(measurement('chartlog run (embedded bus, file://)', 'rows/s', 'higher', 'chartlog', rate(reps.map((r) => r.chartlog.seconds))));
if (reps.every((r) => r.chartlog.streamingSeconds !== null)) {
  run.add(measurement('chartlog run (embedded bus), without process start-up', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.chartlog.streamingSeconds!))));
  run.add(measurement('chartlog run process start-up', 's', 'lower', 'detail', reps.map((r) => r.chartlog.startupSeconds!)));
}
const cpuUs = (t: ChartlogTiming): number => (t.cpuSeconds! * 1e6) / ROWS;
if (reps.every((r) => r.chartlog.cpuSeconds !== null)) run.add(measurement('chartlog run CPU time per row (process total, start-up included)', 'us', 'lower', 'detail', reps.map((r) => cpuUs(r.chartlog))));
if (!DEBEZIUM) run.add(measurement('chartlog run (embedded bus) peak RSS', 'MiB', 'lower', 'detail', reps.map((r) => r.chartlog.peakRssMiB ?? NaN)));
if (COMPARE_BIN) {
  run.add(measurement(`chartlog run, --compare-bin ${COMPARE_BIN} (old code, same backlog)`, 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.compare!.seconds))));
  if (reps.every((r) => r.compare!.streamingSeconds !== null)) run.add(measurement('chartlog run, --compare-bin, without process start-up', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.compare!.streamingSeconds!))));
  if (reps.every((r) => r.compare!.cpuSeconds !== null)) run.add(measurement('chartlog run, --compare-bin, CPU time per row', 'us', 'lower', 'detail', reps.map((r) => cpuUs(r.compare!))));
  run.add(measurement('chartlog run, --compare-bin, peak RSS', 'MiB', 'lower', 'detail', reps.map((r) => r.compare!.peakRssMiB ?? NaN)));
}
if (STAGES) {
  run.add(measurement('stage: connector alone (binlog read, decode, ChangeBatch), in-process', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.stages!.connector))));
  run.add(measurement('stage: connector + PHI seal + Avro encode, in-process', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.stages!.codec))));
}
if (DEBEZIUM) {
  reportDebezium(run, {
    rows: ROWS, version: DEBEZIUM.versions.mariadb, chartlog, label: 'chartlog run (embedded bus)',
    chartlogStreaming: reps.every((r) => r.chartlog.streamingSeconds !== null) ? rate(reps.map((r) => r.chartlog.streamingSeconds!)) : null,
    chartlogRssMiB: reps.map((r) => r.chartlog.peakRssMiB), debezium: reps.map((r) => r.debezium!),
  });
}
run.add(measurement('backlog insert (for reference)', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.insertSeconds))));
run.addRatio(ratio(chartlog, baseline, 0.3, 'chartlog (embedded bus) / mariadb-binlog'));
const verbose = reps.map((r) => ROWS / r.verbose);
run.addRatio(ratio(chartlog, measurement('mariadb-binlog --verbose', 'rows/s', 'higher', 'baseline', verbose), undefined, 'chartlog (embedded bus) / mariadb-binlog --verbose'));
const bytes = reps[0]!.binlogBytes;
run.note(`binlog of the backlog: ${bytes === null ? 'spans a rotation' : `${(bytes / 2 ** 20).toFixed(0)} MiB`}; chartlog's time runs from spawning the process until its checkpoint covers the last transaction (start-up, the last 1 s flush interval and the checkpoint write included); mariadb-binlog's from spawn to exit`);
run.note('the readers ran one after the other on the same backlog, their order rotating per repetition; the machine has 2 cores, shared with MariaDB');
if (DEBEZIUM) {
  run.note(debeziumNote(DEBEZIUM.versions.mariadb, DEBEZIUM.java, DEBEZIUM_SCHEMAS, 'it snapshots the one-row table once before the backlog (its offsets and schema history: like chartlog\'s set-up run) and, timed, resumes from its offsets'));
  run.note('Debezium on MariaDB is 3.5.0.Final, not 3.6.1: the 3.6 MySQL connector takes MariaDB 10.11 for MySQL ≥ 8.4 (SHOW BINARY LOG STATUS fails) and debezium-connector-mariadb 3.6.x is not in the Maven repository this project reaches');
} else run.note(`Debezium not measured: ${DEBEZIUM_SKIPPED}`);
run.write();
