/**
 * `chartlog replicate`'s apply path alone (issue 18 item 1): source transactions of 100 updated
 * rows applied to a PostgreSQL replica by PostgresReplicaTarget.apply (and to MariaDB, below), in process, without the
 * archive reading and decoding around it (benchmarks/replicate.bench.ts measures the whole
 * process, spawn to no lag).
 *
 *   node --import tsx benchmarks/replicate-apply.bench.ts [--tx 300] [--reps 3]
 *
 * The replica is pgbench's `pgbench_accounts` (scale 1, 100 000 rows) in a fresh database on the
 * private PostgreSQL 15 of scripts/services.sh. Per repetition, the same `--tx` transactions (100
 * consecutive accounts each, every column set, as pgoutput gives an update) are applied:
 *   - chartlog, grouped (the replicator's path): consecutive settled source transactions grouped
 *     into one target transaction of at most GROUP_ROWS rows with the position row
 *     (transaction-groups.ts), as the replicator does when a round finds several settled;
 *   - chartlog, batched: one target transaction per source transaction, one UPDATE joined to a
 *     VALUES list each (the path before grouping);
 *   - chartlog, one statement per row (`batchRows` 1: the path before batching), same run;
 *   - baseline: pgbench applying the same row changes as one `UPDATE … WHERE aid BETWEEN` per
 *     transaction (1 client, prepared): the server's own cost of such a transaction, commit
 *     included — what no client applying row images can beat.
 * Each transaction moves the position row too (chartlog) and commits (synchronous_commit on).
 * The replica is checked to hold the last transaction's values after each chartlog run.
 *
 * The same on the private MariaDB (the issue's goal is on both target engines): a
 * `pgbench_accounts` of the same 100 000 rows in a fresh database, the same transactions applied
 * by MysqlReplicaTarget.apply grouped and batched, beside the baseline of the server running the
 * same row changes as one `UPDATE … WHERE aid BETWEEN` per transaction (one client, autocommit,
 * innodb_flush_log_at_trx_commit as the server has it).
 *
 * Writes benchmarks/results/replicate-apply.json (see lib/bench-report.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Position } from '../src/core/position.js';
import type { TableSchema } from '../src/core/table-schema.js';
import { MysqlReplicaTarget } from '../src/replicate/mysql-replica-target.js';
import { PostgresReplicaTarget } from '../src/replicate/postgres-replica-target.js';
import type { ReplicaChange, ReplicaTarget, ReplicaTransaction } from '../src/replicate/replica-target.js';
import { GROUP_ROWS, groupTransactions } from '../src/replicate/transaction-groups.js';
import { BenchRun, goal, measurement, ratio, toolVersion } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';
import { pgBin, timeProcess } from './lib/chartlog-pg-rig.js';

const { values: args } = parseArgs({ options: { tx: { type: 'string', default: '300' }, reps: { type: 'string', default: '3' } } });
const TX = Number(args.tx);
const REPS = Math.max(1, Number(args.reps));
const ROWS = 100;
const ACCOUNTS = 100_000;

const services = benchServices();
const admin = new pg.Client({ connectionString: services.pgUrl });
await admin.connect();
const db = `rab_${Math.random().toString(16).slice(2, 8)}`;
const url = services.pgUrl.replace(/\/[^/]*$/, `/${db}`);
const myBase = services.mariadbUrl.replace(/\/[^/]*$/, '');
const my = await mysql.createConnection({ uri: myBase });
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-replicate-apply-bench-'));
const bench = new BenchRun('replicate-apply', 'chartlog replicate: apply path, transactions of 100 updated rows, vs the server running the same transactions', `node --import tsx benchmarks/replicate-apply.bench.ts --tx ${TX} --reps ${REPS}`, { tx: TX, rowsPerTx: ROWS, reps: REPS, accounts: ACCOUNTS });
bench.version('pgbench', toolVersion(pgBin('pgbench')));

const schema: TableSchema = {
  schema: 'public',
  table: 'pgbench_accounts',
  primaryKey: ['aid'],
  columns: [
    { name: 'aid', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false },
    { name: 'bid', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: true },
    { name: 'abalance', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: true },
    { name: 'filler', sourceType: 'character(84)', type: { kind: 'string', length: 84 }, nullable: true },
  ],
};
const first = (i: number) => 1 + ((i * 997) % (ACCOUNTS - ROWS));
/** Transactions of repetition `rep`: abalance = rep * 1 000 000 + i, so each run changes every row it touches. */
function transactions(rep: number, base: number): ReplicaTransaction[] {
  const out: ReplicaTransaction[] = [];
  for (let i = 0; i < TX; i++) {
    const lsn = (base + i).toString(16).padStart(8, '0');
    const changes: ReplicaChange[] = [];
    for (let r = 0; r < ROWS; r++) {
      changes.push({ op: 'u', table: 'public.pgbench_accounts', schema, before: null, after: { aid: first(i) + r, bid: 1, abalance: rep * 1_000_000 + i, filler: ' '.repeat(84) }, position: Position.of(lsn, r), phiColumns: new Set() });
    }
    out.push({ position: Position.of(lsn), commitTsUs: BigInt(Date.now()) * 1000n, changes });
  }
  return out;
}

/**
 * Applies `txs` through `target` from `from`, then closes it: the first transaction's first change
 * alone and untimed (connects and learns the table's columns), then the rest timed, grouped as the
 * replicator groups them when `grouped` (grouping is part of the path; every change is of one
 * table version). The seconds the rest took, and the position reached.
 */
async function timedApply(target: ReplicaTarget, txs: ReplicaTransaction[], from: Position, grouped: boolean): Promise<{ seconds: number; reached: Position }> {
  await target.apply('bench', { ...txs[0]!, changes: txs[0]!.changes.slice(0, 1) }, from, 'open');
  let at = txs[0]!.position;
  const started = performance.now();
  const applied = grouped ? groupTransactions(txs.slice(1).map((t) => ({ ...t, versions: t.changes.map(() => 'v1') }))) : txs.slice(1);
  for (const tx of applied) {
    await target.apply('bench', tx, at, 'open');
    at = tx.position;
  }
  const seconds = (performance.now() - started) / 1000;
  await target.close();
  return { seconds, reached: at };
}

try {
  await admin.query(`CREATE DATABASE ${db}`);
  execFileSync(pgBin('pgbench'), ['-i', '-s', '1', '-q', url], { stdio: 'ignore' });
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined); // the database is dropped with FORCE at the end
  await c.connect();
  await c.query(`CREATE TABLE chartlog_replica (source text PRIMARY KEY, state text NOT NULL, position text NOT NULL, commit_ts_us bigint NOT NULL, phi text NOT NULL, tables text, transactions bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())`);
  let from = Position.of('00000100');
  await c.query(`INSERT INTO chartlog_replica (source, state, position, commit_ts_us, phi) VALUES ('bench', 'following', $1, 0, 'open')`, [Position.format(from)]);
  let base = 0x1000;
  const runChartlog = async (rep: number, batchRows: number | undefined, grouped = false): Promise<number> => {
    const txs = transactions(rep, base);
    base += TX + 1;
    const { seconds, reached } = await timedApply(new PostgresReplicaTarget(url, 'postgres', batchRows), txs, from, grouped);
    from = reached;
    const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pgbench_accounts WHERE aid BETWEEN $1 AND $2 AND abalance = $3', [first(TX - 1), first(TX - 1) + ROWS - 1, rep * 1_000_000 + TX - 1]);
    if (rows[0]!.n !== ROWS) throw new Error(`the replica does not hold the last transaction's values (${rows[0]!.n} of ${ROWS} rows)`);
    return Math.round(((TX - 1) * ROWS) / seconds);
  };
  const script = join(work, 'update100.sql');
  writeFileSync(script, `\\set a random(1, ${ACCOUNTS - ROWS})\nUPDATE pgbench_accounts SET bid = 1, abalance = :a::int + 1, filler = repeat(' ', 84) WHERE aid BETWEEN :a AND :a + ${ROWS - 1};\n`);
  const grouped: number[] = [];
  const batched: number[] = [];
  const perRow: number[] = [];
  const server: number[] = [];
  for (let rep = 1; rep <= REPS; rep++) {
    grouped.push(await runChartlog(rep * 3, undefined, true));
    batched.push(await runChartlog(rep * 3 + 1, undefined));
    perRow.push(await runChartlog(rep * 3 + 2, 1));
    const r = await timeProcess(pgBin('pgbench'), ['-n', '-M', 'prepared', '-c', '1', '-t', String(TX - 1), '-f', script, url]);
    if (r.code !== 0) throw new Error(`pgbench failed: ${r.stderr}`);
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout)?.[1]);
    server.push(Math.round(tps * ROWS));
  }
  const base0 = bench.add(measurement('baseline: pgbench, the same row changes as one UPDATE … BETWEEN per transaction (1 client)', 'rows/s', 'higher', 'baseline', server));
  const ours = bench.add(measurement(`chartlog apply, grouped (consecutive source transactions in one target transaction of ≤ ${GROUP_ROWS} rows, with the position row; the replicator's path)`, 'rows/s', 'higher', 'chartlog', grouped));
  const one = bench.add(measurement('chartlog apply, batched, one target transaction per source transaction (before grouping)', 'rows/s', 'higher', 'detail', batched));
  const before = bench.add(measurement('chartlog apply, one statement per row (before batching)', 'rows/s', 'higher', 'detail', perRow));
  bench.addRatio(ratio(ours, base0, undefined, 'grouped apply / the server running the same transactions one by one'));
  bench.addRatio(ratio(ours, one, undefined, 'grouped / one target transaction per source transaction'));
  bench.addRatio(ratio(one, before, undefined, 'batched / one statement per row'));
  bench.addGoal(goal('apply ≥ 50 000 rows/s in transactions of 100 rows', ours.median, 'rows/s', ours.median >= 50_000));
  bench.note('synchronous_commit on: every transaction waits for its WAL flush, on a shared 2-core machine (see loadAverage1m)');
  await c.end();

  // MariaDB: the same table and transactions.
  await my.query(`CREATE DATABASE ${db}`);
  const myUrl = `${myBase}/${db}`;
  const m = await mysql.createConnection({ uri: myUrl, multipleStatements: true });
  await m.query(`CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84)) ENGINE=InnoDB`);
  await m.query(`INSERT INTO pgbench_accounts SELECT seq, 1, 0, '' FROM seq_1_to_${ACCOUNTS}`);
  await m.query(`CREATE TABLE chartlog_replica (source varchar(255) NOT NULL PRIMARY KEY, state varchar(16) NOT NULL, position varchar(255) NOT NULL, commit_ts_us bigint NOT NULL, phi varchar(16) NOT NULL, tables longtext NULL, transactions bigint NOT NULL DEFAULT 0, updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB`);
  let myFrom = Position.of('00000100');
  await m.query(`INSERT INTO chartlog_replica (source, state, position, commit_ts_us, phi) VALUES ('bench', 'following', ?, 0, 'open')`, [Position.format(myFrom)]);
  const runMysql = async (rep: number, grouped: boolean): Promise<number> => {
    const txs = transactions(rep, base);
    base += TX + 1;
    const { seconds, reached } = await timedApply(new MysqlReplicaTarget(myUrl, 'postgres'), txs, myFrom, grouped);
    myFrom = reached;
    const [rows] = await m.query('SELECT count(*) AS n FROM pgbench_accounts WHERE aid BETWEEN ? AND ? AND abalance = ?', [first(TX - 1), first(TX - 1) + ROWS - 1, rep * 1_000_000 + TX - 1]);
    const n = Number((rows as { n: number }[])[0]!.n);
    if (n !== ROWS) throw new Error(`the MariaDB replica does not hold the last transaction's values (${n} of ${ROWS} rows)`);
    return Math.round(((TX - 1) * ROWS) / seconds);
  };
  const runMysqlServer = async (): Promise<number> => {
    const started = performance.now();
    for (let i = 1; i < TX; i++) {
      const a = 1 + Math.floor(Math.random() * (ACCOUNTS - ROWS));
      await m.query(`UPDATE pgbench_accounts SET bid = 1, abalance = ${a + 1}, filler = '${' '.repeat(84)}' WHERE aid BETWEEN ${a} AND ${a + ROWS - 1}`);
    }
    return Math.round(((TX - 1) * ROWS) / ((performance.now() - started) / 1000));
  };
  const myGrouped: number[] = [];
  const myBatched: number[] = [];
  const myServer: number[] = [];
  for (let rep = 1; rep <= REPS; rep++) {
    myGrouped.push(await runMysql(rep * 3 + 100, true));
    myBatched.push(await runMysql(rep * 3 + 101, false));
    myServer.push(await runMysqlServer());
  }
  const myBase0 = bench.add(measurement('MariaDB baseline: the same row changes as one UPDATE … BETWEEN per transaction (1 client, autocommit)', 'rows/s', 'higher', 'baseline', myServer));
  const myOurs = bench.add(measurement(`MariaDB: chartlog apply, grouped (≤ ${GROUP_ROWS} rows per target transaction, with the position row; the replicator's path)`, 'rows/s', 'higher', 'chartlog', myGrouped));
  const myOne = bench.add(measurement('MariaDB: chartlog apply, one target transaction per source transaction', 'rows/s', 'higher', 'detail', myBatched));
  bench.addRatio(ratio(myOurs, myBase0, undefined, 'MariaDB: grouped apply / the server running the same transactions one by one'));
  bench.addRatio(ratio(myOurs, myOne, undefined, 'MariaDB: grouped / one target transaction per source transaction'));
  bench.addGoal(goal('MariaDB: apply ≥ 50 000 rows/s in transactions of 100 rows', myOurs.median, 'rows/s', myOurs.median >= 50_000));
  await m.end();
  console.log(`wrote ${bench.write()}`);
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
  await admin.end();
  await my.query(`DROP DATABASE IF EXISTS ${db}`).catch(() => undefined);
  await my.end();
  rmSync(work, { recursive: true, force: true });
  stopBenchServices();
}
