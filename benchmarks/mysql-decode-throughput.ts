/**
 * MySQL/MariaDB connector decode throughput from a binlog backlog: rows/s through the whole
 * stream path (zongji parse → BinlogRecord → RowsEventConverter → exact cell values →
 * ChangeBatch), and the process's peak RSS while doing it.
 *
 *   node --import tsx benchmarks/mysql-decode-throughput.ts [rows, default 500000] [reps, default 3]
 *
 * Starts a private MariaDB 10.11 (test/support/mariadb-instance.ts), writes the backlog (a
 * 7-column patient-like table, 1000 rows per transaction) BEFORE streaming, then streams it
 * from the position before the writes `reps` times with a fresh connector each time. Prints
 * rows/s (median and range) and the peak RSS, and writes benchmarks/results/mysql-decode.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { MysqlConnector } from '../connectors/mysql/mysql-connector.js';
import { createLogger } from '../src/core/logger.js';
import type { Position } from '../src/core/position.js';
import { startMariadbInstance } from '../test/support/mariadb-instance.js';

const ROWS = Number(process.argv[2] ?? 500_000);
const REPS = Math.max(1, Number(process.argv[3] ?? 3));
const PER_TX = 1000;

// Other work on the machine changes the numbers a lot (2 CPUs): the load is recorded with them.
const loadStart = Number(os.loadavg()[0]!.toFixed(2));
const server = await startMariadbInstance({ serverId: 77, args: ['--innodb-flush-log-at-trx-commit=0', '--sync-binlog=0'] });
let peakRss = 0;
const sample = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 20);
try {
  const conn = await server.connect();
  await conn.query(`CREATE DATABASE clinic; CREATE TABLE clinic.visits (
    id BIGINT PRIMARY KEY, patient VARCHAR(64), ssn CHAR(11), amount DECIMAL(12,2), seen DATETIME(6), status ENUM('open','closed'), note TEXT)`);
  const log = createLogger({ level: 'silent', format: 'json' });
  const first = new MysqlConnector({ name: 'bench', url: server.cdcUrl, tables: ['clinic.visits'], mysql: { serverId: 9001 } }, { log });
  let from: Position | null = null;
  for await (const b of first.snapshot()) from = b.position;
  await first.close();

  const t0 = Date.now();
  for (let start = 0; start < ROWS; start += PER_TX) {
    const values: string[] = [];
    for (let id = start; id < Math.min(ROWS, start + PER_TX); id++) {
      values.push(`(${id}, 'Patient ${id} Canary', '123-45-${String(id % 10000).padStart(4, '0')}', ${id % 100000}.${id % 100}, '2025-01-01 08:00:00.${String(id % 1_000_000).padStart(6, '0')}', '${id % 2 ? 'open' : 'closed'}', 'note ${id} 😀')`);
    }
    await conn.query(`INSERT INTO clinic.visits VALUES ${values.join(',')}`);
  }
  await conn.end();
  console.log(`backlog: ${ROWS} rows in ${Math.ceil(ROWS / PER_TX)} transactions written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const rssBefore = process.memoryUsage().rss;
  peakRss = 0; // from here on: the streaming only
  const rates: number[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    const c = new MysqlConnector({ name: 'bench', url: server.cdcUrl, tables: ['clinic.visits'], mysql: { serverId: 9100 + rep } }, { log });
    const ac = new AbortController();
    let rows = 0;
    const start = process.hrtime.bigint();
    for await (const b of c.stream({ from, signal: ac.signal })) {
      rows += b.events.length;
      if (rows >= ROWS) ac.abort();
    }
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    await c.close();
    rates.push(rows / secs);
    console.log(`rep ${rep + 1}: ${rows} rows in ${secs.toFixed(2)} s = ${Math.round(rows / secs)} rows/s`);
  }
  const sorted = [...rates].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const result = {
    benchmark: 'mysql-decode-throughput',
    command: `node --import tsx benchmarks/mysql-decode-throughput.ts ${ROWS} ${REPS}`,
    rows: ROWS,
    columns: 7,
    rowsPerTransaction: PER_TX,
    rowsPerSecond: { median: Math.round(median), min: Math.round(sorted[0]!), max: Math.round(sorted[sorted.length - 1]!) },
    rssBeforeStreamingMiB: Math.round(rssBefore / 1024 / 1024),
    peakRssWhileStreamingMiB: Math.round(peakRss / 1024 / 1024),
    loadAverage1m: { start: loadStart, end: Number(os.loadavg()[0]!.toFixed(2)) },
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, platform: `${os.type()} ${os.release()}` },
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(result, null, 2));
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/mysql-decode.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  clearInterval(sample);
  await server.destroy();
}
