/**
 * PostgreSQL CDC throughput: a backlog of N changed rows made durable in the object store by
 * `chartlog run`, against `pg_recvlogical` reading the same backlog from the same publication
 * with pgoutput into /dev/null.
 *
 *   node --import tsx benchmarks/cdc-postgres.bench.ts [--rows 1000000] [--reps 3] [--tx-rows 10000]
 *        [--no-kafka] [--stages] [--profile-dir DIR] [--timeout-s S]
 *
 * Per repetition, on the private PostgreSQL 15 of scripts/services.sh (started when not running),
 * in a fresh database: the 12-column patient table (4 PHI columns, benchmarks/lib/patient-workload.ts);
 * `chartlog run` establishes its slot and checkpoint on the empty table (embedded bus, and again
 * on the Kafka bus with a slot and archive of its own), then stops; the baseline's slot is
 * created; the backlog is inserted in transactions of --tx-rows rows. Then, one after the other
 * (the order rotates per repetition):
 *
 *   baseline   pg_recvlogical --start --endpos=<end LSN> -o proto_version=1 -o publication_names=…
 *              --slot … -f /dev/null, timed from spawn to exit;
 *   chartlog   bin/chartlog.js run as a process (embedded bus, file:// store, file keyring, the
 *              default 1 s flush), timed from spawn until <source>/state/checkpoint.json covers
 *              the backlog's last transaction — every row sealed, encoded, written, the position
 *              acknowledged — then SIGTERM; the same through the Kafka bus (librdkafka mock
 *              brokers), where the checkpoint is written by the Kafka compactor only once the
 *              transactions are complete in durable parts (src/compactor/kafka-compactor.ts).
 *
 * "Covers" is exact: the checkpoint's commit-end LSN is at or past the WAL insert position read
 * inside the last transaction just before its COMMIT (the previous commit ends before it).
 * chartlog's time without process start-up (log line "pipeline streaming" → durable) is a
 * detail figure. --stages adds in-process passes over the same backlog from a slot of their own:
 * the connector alone, then connector + PHI sealing + Avro encoding (where the time goes);
 * --profile-dir writes a V8 CPU profile of the timed embedded-bus `chartlog run`
 * (summarise it with benchmarks/lib/cpu-profile-summary.ts). Prints rows/s and ratios; writes benchmarks/results/cdc-postgres.json.
 * Databases, slots and temporary directories are removed after each repetition (also on
 * SIGINT/SIGTERM, and leftovers of a killed run at the next start); Kafka topics stay in the
 * mock broker, which cannot delete them.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { configureLogger } from '../src/core/logger.js';
import { COMMIT_SEQ, type Position } from '../src/core/position.js';
import { BenchRun, goal, measurement, ratio, toolVersion, type Measurement } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import {
  fmtRate,
  installSignalHandlers,
  isLeftover,
  makeWorkDir,
  onCleanup,
  runCleanups,
  stagePass,
  sweepTempDirs,
  TAG,
  TimedChartlog,
  timeCommand,
  uniqueName,
  writeChartlogConfig,
  type ChartlogTiming,
} from './lib/cdc-bench.js';
import { PATIENT_PHI_COLUMNS, pgInsertPatients, pgPatientDdl } from './lib/patient-workload.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    reps: { type: 'string', default: '3' },
    'tx-rows': { type: 'string', default: '10000' },
    'no-kafka': { type: 'boolean', default: false },
    stages: { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    'timeout-s': { type: 'string' },
  },
});
const ROWS = Number(args.rows);
const REPS = Math.max(1, Number(args.reps));
const TX_ROWS = Number(args['tx-rows']);
const KAFKA = !args['no-kafka'];
const TIMEOUT_MS = Number(args['timeout-s'] ?? 120 + ROWS / 2000) * 1000;
const PROFILE_DIR = args['profile-dir'];
const STAGES = args.stages;
if (!(ROWS > 0) || !(TX_ROWS > 0)) throw new Error('--rows and --tx-rows must be positive numbers');

const PG_BIN = process.env.CHARTLOG_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const RECVLOGICAL = join(PG_BIN, 'pg_recvlogical');
const TABLE = 'public.patients';
const PUBLICATION = `${TAG}_pub`;

type Reader = 'baseline' | 'embedded' | 'kafka';

interface RepResult {
  baseline: number;
  embedded: ChartlogTiming;
  kafka: ChartlogTiming | null;
  /** In-process passes: connector alone, connector + codec (seal + Avro); --stages only. */
  stages: { connector: number; codec: number } | null;
  insertSeconds: number;
  walBytes: bigint;
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
async function insertBacklog(client: pg.Client, first: number, last: number, perTx: number): Promise<{ lastTxInsideLsn: bigint }> {
  let lastTxInsideLsn = 0n;
  for (let from = first; from <= last; from += perTx) {
    const to = Math.min(last, from + perTx - 1);
    await client.query('BEGIN');
    await client.query(pgInsertPatients(TABLE, from, to));
    if (to === last) lastTxInsideLsn = lsn((await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn() AS l')).rows[0]!.l);
    await client.query('COMMIT');
  }
  return { lastTxInsideLsn };
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
  await client.query(pgPatientDdl(TABLE));

  const { dir, keyring } = makeWorkDir();
  /** A chartlog run of one bus; `phase` setup or bench (the Kafka bench run joins a consumer group of its own, see the note). */
  const chartlog = (reader: 'embedded' | 'kafka', phase: 'setup' | 'bench'): TimedChartlog => {
    const source = `pg_${reader}`;
    const storeDir = join(dir, `store-${reader}`);
    const configFile = join(dir, `${reader}-${phase}.yaml`);
    writeChartlogConfig({
      file: configFile,
      source: `{ name: ${source}, type: postgres, url: "${url}", tables: [${TABLE}], postgres: { slotName: ${db}_${reader[0]}, publicationName: ${PUBLICATION} } }`,
      storeDir,
      keyring,
      table: TABLE,
      phi: PATIENT_PHI_COLUMNS,
      ...(reader === 'kafka' ? { kafka: { brokers, topicPrefix: db, groupId: `${db}-${phase}` } } : {}),
    });
    const flags = phase === 'bench' && reader === 'embedded' && PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
    return new TimedChartlog(configFile, storeDir, source, join(dir, `${reader}.log`), flags);
  };
  const readers: Reader[] = KAFKA ? ['baseline', 'embedded', 'kafka'] : ['baseline', 'embedded'];

  // Like a deployment that already runs: chartlog's slot, publication, checkpoint, data key
  // and (Kafka) topics exist. A snapshot of the empty table, then one row streamed and durable.
  const setups = readers.filter((r): r is 'embedded' | 'kafka' => r !== 'baseline').map((r) => chartlog(r, 'setup'));
  for (const setup of setups) {
    setup.start();
    await setup.waitForLog('pipeline streaming', 120_000);
  }
  const first = await insertBacklog(client, 0, 0, 1);
  for (const setup of setups) {
    await setup.waitFor((p) => p.seq === COMMIT_SEQ && positionLsn(p) >= first.lastTxInsideLsn, 120_000);
    const code = await setup.stop();
    if (code !== 0) throw new Error(`chartlog run (set-up) exited with ${code}; see ${setup.logFile}`);
  }
  const baselineSlot = `${db}_b`;
  await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [baselineSlot]);
  const stagesConfig = join(dir, 'stages.yaml');
  if (STAGES) {
    writeChartlogConfig({
      file: stagesConfig,
      source: `{ name: pg_stages, type: postgres, url: "${url}", tables: [${TABLE}], postgres: { slotName: ${db}_s, publicationName: ${PUBLICATION} } }`,
      storeDir: join(dir, 'store-stages'),
      keyring,
      table: TABLE,
      phi: PATIENT_PHI_COLUMNS,
    });
    await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [`${db}_s`]);
  }

  const startLsn = lsn((await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn() AS l')).rows[0]!.l);
  const t0 = performance.now();
  const { lastTxInsideLsn } = await insertBacklog(client, 1, ROWS, TX_ROWS);
  const insertSeconds = (performance.now() - t0) / 1000;
  // Flushed (synchronous_commit): the walsender can send everything up to here.
  const endLsnText = (await client.query<{ l: string }>('SELECT pg_current_wal_flush_lsn() AS l')).rows[0]!.l;
  const walBytes = lsn(endLsnText) - startLsn;
  console.log(`rep ${rep + 1}: backlog of ${ROWS} rows in ${Math.ceil(ROWS / TX_ROWS)} transactions inserted in ${insertSeconds.toFixed(1)} s (${(Number(walBytes) / 2 ** 20).toFixed(0)} MiB of WAL), end LSN ${endLsnText}`);

  const covers = (p: Position) => p.seq === COMMIT_SEQ && positionLsn(p) >= lastTxInsideLsn;
  const runs = { embedded: chartlog('embedded', 'bench'), kafka: KAFKA ? chartlog('kafka', 'bench') : null };
  const result: Partial<RepResult> = { insertSeconds, walBytes, kafka: null };
  const order = readers.map((_, i) => readers[(i + rep) % readers.length]!);
  for (const reader of order) {
    if (reader === 'baseline') {
      result.baseline = await timeCommand(RECVLOGICAL, [
        '-d', url, '--slot', baselineSlot, '--start', `--endpos=${endLsnText}`, '--no-loop',
        '-o', 'proto_version=1', '-o', `publication_names=${PUBLICATION}`, '-f', '/dev/null',
      ], { timeoutMs: TIMEOUT_MS });
      console.log(`  pg_recvlogical                 ${fmtRate(ROWS, result.baseline)}`);
    } else {
      const t = await runs[reader]!.timeUntil(covers, TIMEOUT_MS);
      if (t.exitCode !== 0) throw new Error(`chartlog run (${reader}) exited with ${t.exitCode} after SIGTERM; see ${runs[reader]!.logFile}`);
      result[reader] = t;
      console.log(`  chartlog (${reader.padEnd(8)} bus)      ${fmtRate(ROWS, t.seconds)}; without start-up (${t.startupSeconds?.toFixed(2)} s): ${t.streamingSeconds ? fmtRate(ROWS, t.streamingSeconds) : 'n/a'}`);
    }
  }
  result.stages = null;
  if (STAGES) {
    // Nothing is acknowledged, so the slot gives the second pass the same backlog.
    const connector = await stagePass(stagesConfig, join(dir, 'store-stages'), null, covers, false, TIMEOUT_MS);
    const codec = await stagePass(stagesConfig, join(dir, 'store-stages'), null, covers, true, TIMEOUT_MS);
    if (connector.events !== ROWS || codec.events !== ROWS) throw new Error(`stage passes saw ${connector.events} and ${codec.events} events, not ${ROWS}`);
    result.stages = { connector: connector.seconds, codec: codec.seconds };
    console.log(`  stages (in-process): connector ${fmtRate(ROWS, connector.seconds)}; connector + seal + Avro ${fmtRate(ROWS, codec.seconds)}`);
  }
  await runCleanups();
  return result as RepResult;
}

configureLogger({ level: 'warn', format: 'json' }); // the in-process stage passes
installSignalHandlers();
const services = benchServices();
const swept = sweepTempDirs();
if (swept) console.log(`removed ${swept} temporary directories left by killed runs`);
await sweepServer(services.pgUrl);

const run = new BenchRun('cdc-postgres', `PostgreSQL CDC throughput: a backlog of ${ROWS.toLocaleString('en-US')} rows to durable in the object store`, `node --import tsx benchmarks/cdc-postgres.bench.ts --rows ${ROWS} --reps ${REPS}${TX_ROWS !== 10000 ? ` --tx-rows ${TX_ROWS}` : ''}${KAFKA ? '' : ' --no-kafka'}${STAGES ? ' --stages' : ''}`, {
  rows: ROWS,
  reps: REPS,
  rowsPerTransaction: TX_ROWS,
  transactions: Math.ceil(ROWS / TX_ROWS),
  row: '12 columns, 4 PHI sealed (full_name, ssn, birth_date, address)',
  source: 'PostgreSQL 15 (scripts/services.sh), a fresh database per repetition',
  store: 'file:// (local directory)',
  flushIntervalMs: 1000,
  kafka: KAFKA ? 'librdkafka mock cluster (3 brokers, kcat), gzip (default)' : 'not measured',
  baseline: 'pg_recvlogical --start --endpos, pgoutput proto_version 1, same publication, -f /dev/null',
});
run.version('pg_recvlogical', toolVersion(RECVLOGICAL));
run.version('postgres', toolVersion(join(PG_BIN, 'postgres')));
const reps: RepResult[] = [];
try {
  for (let rep = 0; rep < REPS; rep++) reps.push(await once(rep, services.pgUrl, services.kafkaBrokers));
} finally {
  await runCleanups();
  stopBenchServices();
}

const rate = (secs: number[]) => secs.map((s) => ROWS / s);
const baseline = run.add(measurement('pg_recvlogical (pgoutput → /dev/null)', 'rows/s', 'higher', 'baseline', rate(reps.map((r) => r.baseline))));
const embedded = run.add(measurement('chartlog run (embedded bus, file://)', 'rows/s', 'higher', 'chartlog', rate(reps.map((r) => r.embedded.seconds))));
const detail = (m: string, t: (ChartlogTiming | null)[]): Measurement | null => {
  const s = t.map((x) => x?.streamingSeconds ?? null);
  return s.every((x): x is number => x !== null) ? run.add(measurement(m, 'rows/s', 'higher', 'detail', rate(s))) : null;
};
detail('chartlog run (embedded bus), without process start-up', reps.map((r) => r.embedded));
run.add(measurement('chartlog run process start-up (embedded bus)', 's', 'lower', 'detail', reps.map((r) => r.embedded.startupSeconds ?? NaN)));
let kafka: Measurement | null = null;
if (KAFKA) {
  kafka = run.add(measurement('chartlog run (Kafka bus, file://)', 'rows/s', 'higher', 'chartlog', rate(reps.map((r) => r.kafka!.seconds))));
  detail('chartlog run (Kafka bus), without process start-up', reps.map((r) => r.kafka));
}
if (STAGES) {
  run.add(measurement('stage: connector alone (read, decode, ChangeBatch), in-process', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.stages!.connector))));
  run.add(measurement('stage: connector + PHI seal + Avro encode, in-process', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.stages!.codec))));
}
run.add(measurement('backlog insert (for reference)', 'rows/s', 'higher', 'detail', rate(reps.map((r) => r.insertSeconds))));
run.addRatio(ratio(embedded, baseline, 0.5, 'chartlog (embedded bus) / pg_recvlogical'));
if (kafka) run.addRatio(ratio(kafka, baseline, 0.5, 'chartlog (Kafka bus) / pg_recvlogical'));
run.addGoal(goal('≥ 100k rows/s (embedded bus)', embedded.median, 'rows/s', embedded.median >= 100_000));
if (kafka) run.addGoal(goal('≥ 100k rows/s (Kafka bus)', kafka.median, 'rows/s', kafka.median >= 100_000));
run.note(`WAL of the backlog: ${(Number(reps[0]!.walBytes) / 2 ** 20).toFixed(0)} MiB; chartlog's time runs from spawning the process until its checkpoint covers the last transaction, so it includes start-up, the last 1 s flush interval and writing the checkpoint; pg_recvlogical's from spawn to exit at --endpos`);
run.note('Kafka: the timed run joins a consumer group of its own (fresh groupId, the ~3 s initial join of a new group included): the librdkafka mock ignores LeaveGroup and makes a restarted member of the same group wait a whole session timeout (30 s by default), which a real broker does not');
run.note('the readers ran one after the other on the same backlog, their order rotating per repetition; the machine has 2 cores, shared with PostgreSQL');
run.write();
