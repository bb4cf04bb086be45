/**
 * PostgreSQL CDC throughput: a backlog of N changed rows made durable in the object store by
 * `chartlog run`, against `pg_recvlogical` reading the same backlog from the same publication
 * with pgoutput into /dev/null, and against Debezium (its embedded engine, benchmarks/debezium/)
 * writing every change event of the same backlog as JSON to a file.
 *
 *   node --import tsx benchmarks/cdc-postgres.bench.ts [--rows 1000000] [--reps 3] [--tx-rows 10000]
 *        [--kafka-rows N (default: --rows) | --no-kafka] [--kafka-compression none|gzip] [--no-debezium] [--debezium-schemas] [--stages]
 *        [--profile-dir DIR] [--timeout-s S] [--compare-bin OTHER-CHECKOUT/bin/chartlog.js]
 *
 * Per repetition, on the private PostgreSQL 15 of scripts/services.sh (started when not running),
 * in a fresh database, for the embedded bus:
 *
 *   1. the 12-column patient table (4 PHI columns, benchmarks/lib/patient-workload.ts);
 *      `chartlog run` establishes its slot, publication and checkpoint (snapshot of the empty
 *      table), streams one row to durable and stops — like a deployment that already runs;
 *   2. Debezium (embedded bus phase only; skipped with a note where Java 17 or Maven is missing,
 *      or with --no-debezium) runs once on the table holding that one row: its snapshot, its own
 *      slot (pgoutput, chartlog's publication), its offset file — also like a deployment;
 *   3. the baseline's slot is created, the backlog inserted in transactions of --tx-rows rows;
 *   4. one after the other (the order rotates per repetition):
 *      baseline  pg_recvlogical --start --endpos=<end LSN> -o proto_version=1
 *                -o publication_names=… --slot … -f /dev/null, timed from spawn to exit;
 *      chartlog  bin/chartlog.js run as a process (file:// store, file keyring, default 1 s
 *                flush), timed from spawn until <source>/state/checkpoint.json covers the
 *                backlog's last transaction — every row sealed, encoded, written, the position
 *                acknowledged — then SIGTERM; its peak RSS read from /proc at that moment;
 *      debezium  java -jar benchmarks/debezium/target/debezium-bench.jar (Debezium 3.6.1, default
 *                settings but JSON without the schema in every event unless --debezium-schemas),
 *                resuming from its offsets, timed from spawn until the backlog's last event is
 *                written to its file (flushed, fsynced); its JVM start-up (spawn → connector task
 *                started) reported apart, and its peak RSS (VmHWM).
 *
 * Then the same through the Kafka bus (the 3-node Apache Kafka cluster of scripts/services.sh),
 * on a second table with its own publication, slots and a backlog of the same size (--kafka-rows
 * defaults to --rows, and may only be smaller: a larger one is refused, exit 2), in the same repetition: the ratio "Kafka bus / embedded bus" is the goal
 * of issue 16 (≥ 0.8×). There the checkpoint is written by the Kafka compactor only once
 * transactions are complete in durable parts (src/compactor/kafka-compactor.ts).
 *
 * "Covers" is exact: the checkpoint's commit-end LSN is at or past the WAL insert position read
 * inside the last transaction just before its COMMIT (the previous commit ends before it).
 * chartlog's time without process start-up (log line "pipeline streaming" → durable) is a
 * detail figure. --stages adds in-process passes over the embedded-bus backlog from a slot of
 * their own: the connector alone, then connector + PHI sealing + Avro encoding (where the time
 * goes); --profile-dir writes V8 CPU profiles of the timed `chartlog run`s (named by their pids;
 * summarise them with benchmarks/lib/cpu-profile-summary.ts). --compare-bin times another
checkout's `chartlog run` (e.g. the main branch's, for an old-vs-new pair of a change) on the same
backlog in the same repetition (on each bus; its own slot and, on Kafka, its own topics and
consumer group, set up beside chartlog's), in the rotating order with the others.
 *
 * Prints rows/s and ratios; writes benchmarks/results/cdc-postgres.json. Databases, slots and
 * temporary directories are removed after each repetition (also on SIGINT/SIGTERM, and those of a
 * killed run at the next start); Kafka topics stay in the cluster until `scripts/services.sh down`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { configureLogger } from '../src/core/logger.js';
import { COMMIT_SEQ, type Position } from '../src/core/position.js';
import { BenchRun, goal, measurement, ratio, toolVersion } from './lib/bench-report.js';
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
import { PATIENT_PHI_COLUMNS, pgInsertPatients, pgPatientDdl } from './lib/patient-workload.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    reps: { type: 'string', default: '3' },
    'tx-rows': { type: 'string', default: '10000' },
    'no-kafka': { type: 'boolean', default: false },
    'kafka-rows': { type: 'string' },
    'kafka-compression': { type: 'string' },
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
const KAFKA = !args['no-kafka'];
const KAFKA_ROWS = Number(args['kafka-rows'] ?? ROWS);
// Was silently capped at --rows: `--rows 200000 --kafka-rows 1000000` measured 200k on Kafka.
if (!(KAFKA_ROWS > 0) || KAFKA_ROWS > ROWS) {
  console.error(`--kafka-rows ${args['kafka-rows']}: must be a positive number of rows, at most --rows (${ROWS}); raise --rows for a larger Kafka backlog`);
  process.exit(2);
}
/** bus.kafka.compression of the Kafka phase; unset: the default (none). */
const KAFKA_COMPRESSION = args['kafka-compression'] as 'none' | 'gzip' | undefined;
if (KAFKA_COMPRESSION !== undefined && KAFKA_COMPRESSION !== 'none' && KAFKA_COMPRESSION !== 'gzip') throw new Error('--kafka-compression must be none or gzip');
const TIMEOUT_MS = Number(args['timeout-s'] ?? 120 + ROWS / 2000) * 1000;
const PROFILE_DIR = args['profile-dir'];
const STAGES = args.stages;
const DEBEZIUM_SCHEMAS = args['debezium-schemas'];
/** Another checkout's bin/chartlog.js, timed on the same backlog beside this one's (embedded bus): an old-vs-new pair. */
const COMPARE_BIN = args['compare-bin'];
if (!(ROWS > 0) || !(TX_ROWS > 0)) throw new Error('--rows and --tx-rows must be positive numbers');

const PG_BIN = process.env.CHARTLOG_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const RECVLOGICAL = join(PG_BIN, 'pg_recvlogical');
const TABLE = 'public.patients';
const PUBLICATION = `${TAG}_pub`;

interface RepResult {
  embedded: PhaseResult;
  kafka: PhaseResult | null;
}

const lsn = (text: string): bigint => {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
};
/** A checkpoint position's commit part is the commit end LSN as 16 hex digits (connectors/postgres). */
const positionLsn = (p: Position): bigint => BigInt(`0x${p.commit}`);

function dbUrl(base: string, db: string): string {
  const u = new URL(base);
  u.pathname = `/${db}`;
  return u.toString();
}

/** Drops the slots and database of a bench database (waiting for walsenders to let go). */
async function dropDatabase(admin: pg.Client, db: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await admin.query<{ slot_name: string; active: boolean }>(`SELECT slot_name, active FROM pg_replication_slots WHERE database = $1`, [db]);
    if (rows.length === 0) break;
    for (const r of rows) if (!r.active) await admin.query(`SELECT pg_drop_replication_slot($1)`, [r.slot_name]).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
  await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
}

/** Slots and databases of killed earlier runs (their pid is gone). */
async function sweepServer(base: string): Promise<void> {
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    const { rows: slots } = await admin.query<{ slot_name: string; active: boolean }>(`SELECT slot_name, active FROM pg_replication_slots WHERE slot_name LIKE '${TAG}\\_%'`);
    for (const s of slots) if (!s.active && isLeftover(s.slot_name)) await admin.query(`SELECT pg_drop_replication_slot($1)`, [s.slot_name]).catch(() => undefined);
    const { rows: dbs } = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE '${TAG}\\_%'`);
    for (const d of dbs) {
      if (!isLeftover(d.datname)) continue;
      console.log(`removing ${d.datname}, left by a killed run`);
      await dropDatabase(admin, d.datname).catch((err: unknown) => console.error(`could not drop ${d.datname}: ${(err as Error).message}`));
    }
  } finally {
    await admin.end();
  }
}

/**
 * Rows first..last in transactions of perTx rows; returns the WAL insert position read inside
 * the last transaction just before its COMMIT: its commit ends after it, every earlier one before.
 */
async function insertBacklog(client: pg.Client, table: string, first: number, last: number, perTx: number): Promise<{ lastTxInsideLsn: bigint }> {
  let lastTxInsideLsn = 0n;
  for (let from = first; from <= last; from += perTx) {
    const to = Math.min(last, from + perTx - 1);
    await client.query('BEGIN');
    await client.query(pgInsertPatients(table, from, to));
    if (to === last) lastTxInsideLsn = lsn((await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn() AS l')).rows[0]!.l);
    await client.query('COMMIT');
  }
  return { lastTxInsideLsn };
}

interface PhaseResult {
  rows: number;
  /** pg_recvlogical, seconds. */
  baseline: number;
  chartlog: ChartlogTiming;
  /** The --compare-bin chartlog on the same backlog (same bus), or null. */
  compared: ChartlogTiming | null;
  /** Debezium's timed run (embedded phase, when Java and Maven are there). */
  debezium: DebeziumTiming | null;
  stages: { connector: number; codec: number } | null;
  insertSeconds: number;
  walBytes: bigint;
}

interface Database {
  db: string;
  url: string;
  client: pg.Client;
  dir: string;
  keyring: string;
}

/**
 * One comparison on one table: chartlog (`bus`) established on the empty table, the baseline's
 * slot (and the stage passes' slot), a backlog of `rows` rows, then pg_recvlogical and chartlog
 * one after the other (the order rotating with `rep`), then the stage passes.
 */
async function phase(d: Database, rep: number, bus: 'embedded' | 'kafka', rows: number, brokers: readonly string[], stages: boolean): Promise<PhaseResult> {
  const { db, url, client, dir, keyring } = d;
  const table = bus === 'embedded' ? TABLE : `${TABLE}_kafka`;
  const publication = `${PUBLICATION}_${bus[0]}`;
  await client.query(pgPatientDdl(table));
  const config = (name: string, slot: string, runKind: 'setup' | 'bench' | 'stages'): string => {
    const file = join(dir, `${name}-${runKind}.yaml`);
    writeChartlogConfig({
      file,
      source: `{ name: ${name}, type: postgres, url: "${url}", tables: [${table}], postgres: { slotName: ${slot}, publicationName: ${publication} } }`,
      storeDir: join(dir, `store-${name}`),
      keyring,
      table,
      phi: PATIENT_PHI_COLUMNS,
      // The timed Kafka run joins a consumer group of its own: see the note on the mock broker.
      ...(bus === 'kafka' && runKind !== 'stages' ? { kafka: { brokers, topicPrefix: `${db}-${rep}`, groupId: `${db}-${name}-${runKind}`, ...(KAFKA_COMPRESSION ? { compression: KAFKA_COMPRESSION } : {}) } } : {}),
    });
    return file;
  };
  const source = `pg_${bus}`;
  const withCompared = COMPARE_BIN !== undefined;
  const comparedSource = `pg_${bus}_compared`;
  const chartlog = (runKind: 'setup' | 'bench', compared = false): TimedChartlog => {
    const name = compared ? comparedSource : source;
    return new TimedChartlog(config(name, `${db}_${bus[0]}${compared ? 'c' : ''}`, runKind), join(dir, `store-${name}`), name, join(dir, `${name}.log`),
      runKind === 'bench' && PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [], compared ? COMPARE_BIN : undefined);
  };

  // Like a deployment that already runs: chartlog's slot, publication, checkpoint, data key and
  // (Kafka) topics exist. A snapshot of the empty table, then one row streamed and durable.
  // The --compare-bin chartlog is set up the same way at the same time, with a slot of its own.
  // One after the other: both create the same publication when it is missing, and two
  // concurrent CREATE PUBLICATIONs race (the loser exits on the unique index; seen 1 run in 4).
  const setups = withCompared ? [chartlog('setup'), chartlog('setup', true)] : [chartlog('setup')];
  for (const setup of setups) {
    setup.start();
    await setup.waitForLog('pipeline streaming', 120_000);
  }
  const first = await insertBacklog(client, table, 0, 0, 1);
  for (const setup of setups) {
    await setup.waitFor((p) => p.seq === COMMIT_SEQ && positionLsn(p) >= first.lastTxInsideLsn, 120_000);
    const setupCode = await setup.stop();
    if (setupCode !== 0) throw new Error(`chartlog run (set-up) exited with ${setupCode}; see ${setup.logFile}`);
  }

  // Debezium, like a deployment that already runs: its snapshot of the one-row table, its slot and offsets.
  const debeziumRun = (rows: number, lastId: number) => {
    const u = new URL(url);
    return runDebezium({
      jar: DEBEZIUM!.jars.postgres, connector: 'postgres', host: u.hostname, port: u.port || '5432', user: decodeURIComponent(u.username || 'postgres'),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}), database: db, table, workDir: join(dir, 'debezium'), rows, lastId,
      slot: `${db}_${bus[0]}d`, publication, jsonSchemas: DEBEZIUM_SCHEMAS, timeoutMs: TIMEOUT_MS, logFile: join(dir, 'debezium.log'),
    });
  };
  const withDebezium = DEBEZIUM !== null && bus === 'embedded';
  if (withDebezium) await debeziumRun(1, 0);

  const baselineSlot = `${db}_${bus[0]}b`;
  await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [baselineSlot]);
  const stagesSource = `pg_${bus}_stages`;
  const stagesConfig = stages ? config(stagesSource, `${db}_${bus[0]}s`, 'stages') : '';
  if (stages) await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [`${db}_${bus[0]}s`]);

  const startLsn = lsn((await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn() AS l')).rows[0]!.l);
  const t0 = performance.now();
  const { lastTxInsideLsn } = await insertBacklog(client, table, 1, rows, TX_ROWS);
  const insertSeconds = (performance.now() - t0) / 1000;
  // Flushed (synchronous_commit): the walsender can send everything up to here.
  const endLsnText = (await client.query<{ l: string }>('SELECT pg_current_wal_flush_lsn() AS l')).rows[0]!.l;
  const walBytes = lsn(endLsnText) - startLsn;
  console.log(`rep ${rep + 1}, ${bus} bus: backlog of ${rows} rows in ${Math.ceil(rows / TX_ROWS)} transactions inserted in ${insertSeconds.toFixed(1)} s (${(Number(walBytes) / 2 ** 20).toFixed(0)} MiB of WAL), end LSN ${endLsnText}`);

  const covers = (p: Position) => p.seq === COMMIT_SEQ && positionLsn(p) >= lastTxInsideLsn;
  const result: Partial<PhaseResult> = { rows, insertSeconds, walBytes, stages: null, debezium: null, compared: null };
  const all: readonly ('baseline' | 'chartlog' | 'debezium' | 'compared')[] = ['baseline', 'chartlog', ...(withCompared ? (['compared'] as const) : []), ...(withDebezium ? (['debezium'] as const) : [])];
  const readers = all.map((_, i) => all[(i + rep) % all.length]!);
  for (const reader of readers) {
    if (reader === 'debezium') {
      const t = await debeziumRun(rows, rows);
      result.debezium = t;
      console.log(`  Debezium ${DEBEZIUM!.versions.postgres} (JSON → file)   ${fmtRate(rows, t.seconds)}; without JVM start-up (${t.startupSeconds.toFixed(2)} s): ${fmtRate(rows, t.streamingSeconds)}; peak RSS ${t.peakRssMiB.toFixed(0)} MiB`);
    } else if (reader === 'baseline') {
      result.baseline = await timeCommand(RECVLOGICAL, [
        '-d', url, '--slot', baselineSlot, '--start', `--endpos=${endLsnText}`, '--no-loop',
        '-o', 'proto_version=1', '-o', `publication_names=${publication}`, '-f', '/dev/null',
      ], { timeoutMs: TIMEOUT_MS });
      console.log(`  pg_recvlogical                 ${fmtRate(rows, result.baseline)}`);
    } else if (reader === 'compared') {
      const t = await chartlog('bench', true).timeUntil(covers, TIMEOUT_MS);
      if (t.exitCode !== 0) throw new Error(`chartlog run (--compare-bin) exited with ${t.exitCode} after SIGTERM`);
      result.compared = t;
      console.log(`  chartlog --compare-bin         ${fmtRate(rows, t.seconds)}; without start-up (${t.startupSeconds?.toFixed(2)} s): ${t.streamingSeconds ? fmtRate(rows, t.streamingSeconds) : 'n/a'}; peak RSS ${t.peakRssMiB?.toFixed(0) ?? 'n/a'} MiB; CPU ${t.cpuSeconds === null ? 'n/a' : `${t.cpuSeconds.toFixed(2)} s = ${((t.cpuSeconds * 1e6) / rows).toFixed(1)} µs/row`}${PROFILE_DIR ? `; pid ${t.pid}` : ''}`);
    } else {
      const run = chartlog('bench');
      // A broker that drops unread data (retention; librdkafka's mock kept only ~5 MiB per partition).
      const lost = bus === 'kafka' ? () => (run.logHas('Offset out of range') ? `the Kafka broker dropped messages before the compactor read them; use a smaller --kafka-rows than ${rows}` : null) : undefined;
      const t = await run.timeUntil(covers, TIMEOUT_MS, lost);
      if (t.exitCode !== 0) throw new Error(`chartlog run (${bus}) exited with ${t.exitCode} after SIGTERM; see ${run.logFile}`);
      result.chartlog = t;
      console.log(`  chartlog (${bus.padEnd(8)} bus)      ${fmtRate(rows, t.seconds)}; without start-up (${t.startupSeconds?.toFixed(2)} s): ${t.streamingSeconds ? fmtRate(rows, t.streamingSeconds) : 'n/a'}; peak RSS ${t.peakRssMiB?.toFixed(0) ?? 'n/a'} MiB; CPU ${t.cpuSeconds === null ? 'n/a' : `${t.cpuSeconds.toFixed(2)} s = ${((t.cpuSeconds * 1e6) / rows).toFixed(1)} µs/row`}${PROFILE_DIR ? `; pid ${t.pid}` : ''}`);
    }
  }
  if (stages) {
    // Nothing is acknowledged, so the slot gives the second pass the same backlog.
    const store = join(dir, `store-${stagesSource}`);
    const connector = await stagePass(stagesConfig, store, null, covers, false, TIMEOUT_MS);
    const codec = await stagePass(stagesConfig, store, null, covers, true, TIMEOUT_MS);
    if (connector.events !== rows || codec.events !== rows) throw new Error(`stage passes saw ${connector.events} and ${codec.events} events, not ${rows}`);
    result.stages = { connector: connector.seconds, codec: codec.seconds };
    console.log(`  stages (in-process): connector ${fmtRate(rows, connector.seconds)}; connector + seal + Avro ${fmtRate(rows, codec.seconds)}`);
  }
  return result as PhaseResult;
}

async function once(rep: number, base: string, brokers: readonly string[]): Promise<RepResult> {
  const db = uniqueName();
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  onCleanup(() => admin.end());
  await admin.query(`CREATE DATABASE ${db}`);
  onCleanup(() => dropDatabase(admin, db));
  const url = dbUrl(base, db);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  onCleanup(() => client.end());
  const { dir, keyring } = makeWorkDir();
  const d: Database = { db, url, client, dir, keyring };
  const embedded = await phase(d, rep, 'embedded', ROWS, brokers, STAGES);
  const kafka = KAFKA ? await phase(d, rep, 'kafka', KAFKA_ROWS, brokers, false) : null;
  await runCleanups();
  return { embedded, kafka };
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
await sweepServer(services.pgUrl);

const run = new BenchRun(
  'cdc-postgres',
  `PostgreSQL CDC throughput: a backlog of ${ROWS.toLocaleString('en-US')} rows to durable in the object store`,
  `node --import tsx benchmarks/cdc-postgres.bench.ts --rows ${ROWS} --reps ${REPS}${TX_ROWS !== 10000 ? ` --tx-rows ${TX_ROWS}` : ''}${KAFKA ? ` --kafka-rows ${KAFKA_ROWS}${KAFKA_COMPRESSION ? ` --kafka-compression ${KAFKA_COMPRESSION}` : ''}` : ' --no-kafka'}${DEBEZIUM ? (DEBEZIUM_SCHEMAS ? ' --debezium-schemas' : '') : ' --no-debezium'}${STAGES ? ' --stages' : ''}${COMPARE_BIN ? ` --compare-bin ${COMPARE_BIN}` : ''}`,
  {
    rows: ROWS,
    kafkaRows: KAFKA ? KAFKA_ROWS : 0,
    reps: REPS,
    rowsPerTransaction: TX_ROWS,
    row: '12 columns, 4 PHI sealed (full_name, ssn, birth_date, address)',
    source: 'PostgreSQL 15 (scripts/services.sh), a fresh database per repetition',
    store: 'file:// (local directory)',
    flushIntervalMs: 1000,
    kafka: KAFKA ? `Apache Kafka 4.1.1, 3 KRaft nodes, RF 3, min.insync.replicas 2 (scripts/services.sh), ${KAFKA_COMPRESSION ?? 'none (default)'}` : 'not measured',
    baseline: 'pg_recvlogical --start --endpos, pgoutput proto_version 1, same publication, -f /dev/null',
    peer: DEBEZIUM
      ? `Debezium ${DEBEZIUM.versions.postgres} embedded engine (async engine, PostgresConnector, pgoutput, own slot, chartlog's publication, default settings), every change event as JSON (JsonConverter, ${DEBEZIUM_SCHEMAS ? 'with' : 'without'} the schema in each event) to a local file, file offset store; embedded-bus phase only`
      : `not measured (${DEBEZIUM_SKIPPED})`,
  },
);
if (DEBEZIUM) {
  run.version('debezium', DEBEZIUM.versions.postgres);
  run.version('java', DEBEZIUM.java);
}
run.version('pg_recvlogical', toolVersion(RECVLOGICAL));
run.version('postgres', toolVersion(join(PG_BIN, 'postgres')));
const reps: RepResult[] = [];
try {
  for (let rep = 0; rep < REPS; rep++) reps.push(await once(rep, services.pgUrl, services.kafkaBrokers));
} finally {
  await runCleanups();
  stopBenchServices();
}

/** The measurements and ratio of one phase; `label` tells the Kafka phase's apart. */
function report(phases: PhaseResult[], bus: 'embedded' | 'kafka'): ReturnType<typeof measurement> {
  const rows = phases[0]!.rows;
  const rate = (secs: number[]) => secs.map((s) => rows / s);
  const busName = bus === 'embedded' ? 'embedded bus' : 'Kafka bus';
  const suffix = bus === 'kafka' && rows !== ROWS ? `, ${rows.toLocaleString('en-US')} rows` : '';
  const baseline = run.add(measurement(`pg_recvlogical (pgoutput → /dev/null${suffix})`, 'rows/s', 'higher', 'baseline', rate(phases.map((p) => p.baseline))));
  const ours = run.add(measurement(`chartlog run (${busName}, file://${suffix})`, 'rows/s', 'higher', 'chartlog', rate(phases.map((p) => p.chartlog.seconds))));
  const streaming = phases.map((p) => p.chartlog.streamingSeconds);
  if (streaming.every((x): x is number => x !== null)) {
    run.add(measurement(`chartlog run (${busName}), without process start-up`, 'rows/s', 'higher', 'detail', rate(streaming)));
    run.add(measurement(`chartlog run process start-up (${busName})`, 's', 'lower', 'detail', phases.map((p) => p.chartlog.startupSeconds!)));
  }
  if (phases.every((p) => p.chartlog.cpuSeconds !== null)) {
    run.add(measurement(`chartlog run CPU per row (${busName}; user + system, all threads, start-up included)`, 'µs/row', 'lower', 'detail', phases.map((p) => (p.chartlog.cpuSeconds! * 1e6) / rows)));
  }
  if (phases.every((p) => p.stages)) {
    run.add(measurement('stage: connector alone (read, decode, ChangeBatch), in-process', 'rows/s', 'higher', 'detail', rate(phases.map((p) => p.stages!.connector))));
    run.add(measurement('stage: connector + PHI seal + Avro encode, in-process', 'rows/s', 'higher', 'detail', rate(phases.map((p) => p.stages!.codec))));
  }
  if (phases.every((p) => p.compared)) {
    const compared = run.add(measurement(`chartlog run of --compare-bin (${busName}, same backlog)`, 'rows/s', 'higher', 'detail', rate(phases.map((p) => p.compared!.seconds))));
    if (phases.every((p) => p.compared!.cpuSeconds !== null)) {
      run.add(measurement(`chartlog run of --compare-bin, CPU per row (${busName})`, 'µs/row', 'lower', 'detail', phases.map((p) => (p.compared!.cpuSeconds! * 1e6) / rows)));
    }
    run.add(measurement(`chartlog run of --compare-bin, peak RSS (${busName})`, 'MiB', 'lower', 'detail', phases.map((p) => p.compared!.peakRssMiB ?? NaN)));
    run.addRatio(ratio(ours, compared, undefined, `chartlog (${busName}) / --compare-bin (same run)`));
  }
  run.addRatio(ratio(ours, baseline, 0.5, `chartlog (${busName}) / pg_recvlogical`));
  run.addGoal(goal(`≥ 100k rows/s (${busName})`, ours.median, 'rows/s', ours.median >= 100_000));
  if (phases.every((p) => p.debezium)) {
    reportDebezium(run, {
      rows, version: DEBEZIUM!.versions.postgres, chartlog: ours, label: `chartlog run (${busName})`,
      chartlogStreaming: streaming.every((x): x is number => x !== null) ? rate(streaming) : null,
      chartlogRssMiB: phases.map((p) => p.chartlog.peakRssMiB), debezium: phases.map((p) => p.debezium!),
    });
  }
  return ours;
}

const embeddedRate = report(reps.map((r) => r.embedded), 'embedded');
if (KAFKA) {
  const kafkaRate = report(reps.map((r) => r.kafka!), 'kafka');
  // Issue 16's goal: the Kafka bus end to end at ≥ 0.8× the embedded bus on the same backlog, same run.
  const same = KAFKA_ROWS === ROWS ? 'same backlog size' : `NOT the same size: ${KAFKA_ROWS.toLocaleString('en-US')} vs ${ROWS.toLocaleString('en-US')} rows`;
  run.addRatio(ratio(kafkaRate, embeddedRate, 0.8, `chartlog Kafka bus / embedded bus (${same}, same run)`));
}
run.add(measurement('backlog insert (for reference)', 'rows/s', 'higher', 'detail', reps.map((r) => ROWS / r.embedded.insertSeconds)));
run.note(`WAL of the backlog: ${(Number(reps[0]!.embedded.walBytes) / 2 ** 20).toFixed(0)} MiB; chartlog's time runs from spawning the process until its checkpoint covers the last transaction, so it includes start-up, the last 1 s flush interval and writing the checkpoint; pg_recvlogical's from spawn to exit at --endpos`);
if (KAFKA) {
  run.note(`Kafka: a backlog of its own (${KAFKA_ROWS.toLocaleString('en-US')} rows, in a second table with its own publication, slots and pg_recvlogical run), inserted and read in the same repetition right after the embedded-bus phase; the timed run joins a consumer group of its own (fresh groupId, its join included)`);
}
run.note(`pg_recvlogical${DEBEZIUM ? ', Debezium' : ''} and chartlog ran one after the other on the same backlog, their order rotating per repetition; the machine has 2 cores, shared with PostgreSQL`);
if (DEBEZIUM) {
  run.note(debeziumNote(DEBEZIUM.versions.postgres, DEBEZIUM.java, DEBEZIUM_SCHEMAS, "it snapshots the one-row table once before the backlog (its own slot on chartlog's publication, its offsets: like chartlog's set-up run) and, timed, resumes from its offsets"));
} else run.note(`Debezium not measured: ${DEBEZIUM_SKIPPED}`);
run.write();
