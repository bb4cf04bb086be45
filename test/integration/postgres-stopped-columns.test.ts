import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { insertWriter, resyncedTables, waitResynced } from '../support/stopped-run.js';
import { createPgDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on PostgreSQL: column changes made while `chartlog run` is stopped. The stream shows a
 * table's new columns only in the relation message before its next row change, and the process
 * that starts after the DDL reads the catalog as it is then: without the column list the archive
 * recorded (catalog-memory.ts, format 2) it takes a renamed column for a new one (older rows read
 * NULL in it) and a column dropped and added again under its name for the old one (older rows
 * keep the old values). With run stopped, one table each:
 * - `ad`: ADD COLUMN flag int NOT NULL DEFAULT 7 (a constant PostgreSQL keeps in attmissingval);
 * - `av`: ADD COLUMN v float8 DEFAULT random() (a volatile default: a rewrite);
 * - `rn`: RENAME COLUMN note TO memo;
 * - `dc`: DROP COLUMN extra;
 * - `ty`: ALTER COLUMN note TYPE varchar(50) (no rewrite);
 * - `rd`: DROP COLUMN note, then ADD COLUMN note text DEFAULT 'z' (a new column under an old name);
 * - `en`: ALTER TYPE mood RENAME VALUE 'ok' TO 'fine' (its column `m`: every stored 'ok' reads
 *   'fine', with no row event; found against the labels the record keeps, format 3).
 * Then run starts again under a concurrent writer, one row of each table changes, and a restore
 * after equals the source for each table, value by value. `av`, `rd` and `en` are re-read by
 * automatic resyncs (their rows changed without row events, or cannot be told from the old
 * column's); the others are exact from the stream, with no re-read.
 * Negative control (main's code, same test): `rn` restores NULL in memo, `rd` the old notes, and
 * `rd` is never re-read; `ad`, `av`, `dc` and `ty` were already exact. Without the recorded
 * labels (the record's labels not recalled), `en` is never re-read and restores 'ok'.
 */

const TABLES = ['ad', 'av', 'rn', 'dc', 'ty', 'rd', 'en'] as const;

test('PostgreSQL: columns added, dropped, renamed, retyped or replaced while run is stopped restore exactly', { timeout: 300_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('pgcols', createPgDatabase);
  let run: ChartlogRun | null = null;
  let stopWriter = false;
  let writer: Promise<number> | null = null;
  onEnd(async () => {
    stopWriter = true;
    await writer?.catch(() => 0);
    await run?.close();
  });

  for (const t of ['ad', 'av', 'rn', 'rd']) {
    await source.exec(`CREATE TABLE ${t} (id int4 PRIMARY KEY, note text)`);
    await source.exec(`INSERT INTO ${t} SELECT g, '${t}-' || g FROM generate_series(1, 40) g`);
  }
  await source.exec('CREATE TABLE dc (id int4 PRIMARY KEY, note text, extra text)');
  await source.exec(`INSERT INTO dc SELECT g, 'dc-' || g, 'x-' || g FROM generate_series(1, 40) g`);
  await source.exec('CREATE TABLE ty (id int4 PRIMARY KEY, note varchar(20))');
  await source.exec(`INSERT INTO ty SELECT g, 'ty-' || g FROM generate_series(1, 40) g`);
  await source.exec(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
  await source.exec('CREATE TABLE en (id int4 PRIMARY KEY, note text, m mood)');
  await source.exec(`INSERT INTO en SELECT g, 'en-' || g, (ARRAY['sad','ok','happy'])[1 + g % 3]::mood FROM generate_series(1, 40) g`);
  await source.exec('CREATE TABLE w (id int4 PRIMARY KEY, x int4)');

  // Synthetic, non-PHI columns: reviewed as public, so they travel in clear. The PHI
  // configuration names the columns the tables have now (it is checked against them at start).
  const writeConfig = (publicColumns: string): void => writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: postgres, url: "${source.url}", resync: { rowsPerSecond: 0 }, postgres: { catalogCheckIntervalMs: 200 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    `  publicColumns: { ${publicColumns} }`,
    'log: { level: info, format: json }',
  ].join('\n'));
  writeConfig('public.ad: [id, note], public.av: [id, note], public.rn: [id, note], public.dc: [id, note, extra], public.ty: [id, note], public.rd: [id, note], public.en: [id, note, m], public.w: [id, x]');
  const runLog = join(work, 'run.log');
  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
  const startWriter = (from: number): Promise<number> => insertWriter((sql) => source.exec(sql), 'w', from, () => stopWriter);

  run = new ChartlogRun(configFile, runLog);
  await run.start();
  writer = startWriter(0);
  // Row changes while running, so each table's version from the stream is in the archive too.
  for (const t of TABLES) await source.exec(`UPDATE ${t} SET note = note || '+' WHERE id = 1`);
  await sleep(1000);
  await checkpointPast(BigInt(Date.now()) * 1000n);
  stopWriter = true;
  const first = await writer;
  await run.stop();

  // While stopped.
  await source.exec('ALTER TABLE ad ADD COLUMN flag int4 NOT NULL DEFAULT 7');
  await source.exec('ALTER TABLE av ADD COLUMN v float8 DEFAULT random()');
  await source.exec('ALTER TABLE rn RENAME COLUMN note TO memo');
  await source.exec('ALTER TABLE dc DROP COLUMN extra');
  await source.exec('ALTER TABLE ty ALTER COLUMN note TYPE varchar(50)');
  await source.exec('ALTER TABLE rd DROP COLUMN note');
  await source.exec(`ALTER TABLE rd ADD COLUMN note text DEFAULT 'z'`);
  await source.exec(`ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'`);

  stopWriter = false;
  writeConfig('public.ad: [id, note, flag], public.av: [id, note, v], public.rn: [id, memo], public.dc: [id, note], public.ty: [id, note], public.rd: [id, note], public.en: [id, note, m], public.w: [id, x]');
  await run.start();
  writer = startWriter(first + 2000);
  // One row of each table changes after the start: its relation message brings the new version.
  for (const t of TABLES) await source.exec(`UPDATE ${t} SET id = id WHERE id = 2`);
  await source.exec(`UPDATE rn SET memo = 'moved' WHERE id = 3`);
  const want: Record<string, Captured> = {};
  for (const t of TABLES) want[t] = await source.capture(t, 'id');
  assert.ok(want.en!.some((r) => r.m === 'fine') && !want.en!.some((r) => r.m === 'ok'), 'the label was renamed on the source');
  const expected = ['public.av', 'public.rd', 'public.en'];
  await waitResynced(runLog, expected);
  await sleep(500);
  const afterUs = BigInt(Date.now()) * 1000n;
  await checkpointPast(afterUs);
  stopWriter = true;
  assert.ok((await writer) > 10, 'the concurrent writer committed');
  await run.stop();
  // Only the tables whose rows cannot be proved are re-read: the others are exact from the stream.
  for (const t of ['ad', 'rn', 'dc', 'ty']) assert.ok(!resyncedTables(runLog).has(`public.${t}`), `${t} was not re-read`);

  const failures: string[] = [];
  for (const t of TABLES) {
    const target = await newDb();
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(afterUs), '--target', target.url, '--tables', `public.${t}`]);
    if (r.code !== 0) {
      failures.push(`${t}: restore exit ${r.code}: ${r.stderr.slice(0, 600)}`);
      continue;
    }
    const diff = diffCaptures(await target.capture(t, 'id'), want[t]!, `${t} after the restart`);
    if (diff) failures.push(diff.slice(0, 600));
  }
  assert.deepEqual(failures, []);
});
