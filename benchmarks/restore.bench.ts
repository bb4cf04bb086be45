/**
 * Restore throughput: `chartlog restore --to latest` of a PostgreSQL archive holding N patient
 * rows (8 columns, 2 of them sealed PHI) from its base snapshot, into an empty PostgreSQL
 * database (COPY) and a MariaDB database (multi-row INSERT), and as jsonl files. Each restore is
 * the real CLI as a process, so the time includes start-up, reading and opening the archive.
 *
 *   eval "$(bash scripts/services.sh env)"
 *   node --import tsx benchmarks/restore.bench.ts [rows, default 100000]
 *
 * Prints rows/s per target (whole process, and the write phase alone) and writes
 * benchmarks/results/restore.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../src/compactor/checkpoint.js';
import { FileKeyring } from '../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../test/support/chartlog-process.js';
import { createMariadbDatabase, createPgDatabase, type TestDatabase } from '../test/support/restore-engines.js';

const ROWS = Number(process.argv[2] ?? 100_000);
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-restore-bench-'));
const sourceName = `bench_${process.pid}`; // its own slot: one left by an interrupted run must not stop this one
const dbs: TestDatabase[] = [];
try {
  const source = await createPgDatabase('rbench');
  dbs.push(source);
  await source.exec(`CREATE TABLE patients (id bigint PRIMARY KEY, full_name text, ssn text, birth date, balance numeric(12,2), updated timestamptz, note text, flags int4)`);
  await source.exec(`INSERT INTO patients SELECT g, 'Patient ' || g, 'SSN-' || g, DATE '1950-01-01' + (g % 20000), (g % 100000) / 100.0, now(), CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('x', g % 40) END, g % 7 FROM generate_series(1, ${ROWS}) g`);
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  const configFile = join(work, 'chartlog.yaml');
  writeFileSync(configFile, [
    'sources:',
    `  - { name: ${sourceName}, type: postgres, url: "${source.url}", tables: [public.patients] }`,
    `storage: { url: "file://${work}/backup" }`,
    'phi:',
    `  keyring: "file://${keyring}"`,
    '  columns: { public.patients: [full_name, ssn] }',
    'log: { level: info, format: json }',
  ].join('\n'));
  const run = new ChartlogRun(configFile, join(work, 'run.log'));
  await run.start(300_000);
  const store = new FsObjectStore(join(work, 'backup'));
  for (let i = 0; !(await readCheckpoint(store, sourceName)); i++) {
    if (i > 3000) throw new Error('no checkpoint');
    await sleep(100);
  }
  await source.exec(`UPDATE patients SET flags = flags + 1 WHERE id <= 10`);
  await sleep(2000);
  await run.stop();
  await run.close();

  const results: Record<string, { seconds: number; rowsPerSecond: number; replaySeconds: number; writeSeconds: number; writeRowsPerSecond: number }> = {};
  const targets: [string, () => Promise<string[]>][] = [
    ['postgres', async () => { const t = await createPgDatabase('rbt'); dbs.push(t); return ['--target', t.url]; }],
    ['postgres --keep-sealed', async () => { const t = await createPgDatabase('rbt'); dbs.push(t); return ['--target', t.url, '--keep-sealed']; }],
    ['mariadb', async () => { const t = await createMariadbDatabase('rbt'); dbs.push(t); return ['--target', t.url]; }],
    ['jsonl', async () => ['--out', join(work, `out-${Date.now()}`), '--format', 'jsonl']],
  ];
  for (const [name, make] of targets) {
    const where = await make();
    const started = performance.now();
    const r = await runChartlog(['restore', '--config', configFile, '--source', sourceName, '--to', 'latest', '--json', ...where]);
    const seconds = (performance.now() - started) / 1000;
    if (r.code !== 0) throw new Error(`${name}: exit ${r.code}: ${r.stderr.slice(0, 2000)}`);
    const split = (JSON.parse(r.stdout) as { seconds: { replay: number; write: number } }).seconds;
    results[name] = { seconds: Number(seconds.toFixed(2)), rowsPerSecond: Math.round(ROWS / seconds), replaySeconds: split.replay, writeSeconds: split.write, writeRowsPerSecond: Math.round(ROWS / split.write) };
    console.log(`${name.padEnd(22)} ${ROWS} rows in ${seconds.toFixed(2)} s = ${Math.round(ROWS / seconds)} rows/s (whole process; replay ${split.replay.toFixed(2)} s, write ${split.write.toFixed(2)} s = ${Math.round(ROWS / split.write)} rows/s)`);
  }
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(join(import.meta.dirname, 'results', 'restore.json'), `${JSON.stringify({ rows: ROWS, node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, at: new Date().toISOString(), results }, null, 2)}\n`);
} finally {
  for (const db of dbs) await db.drop();
  if (process.env.KEEP) console.log(`kept the archive in ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
