import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { insertWriter, waitResynced } from '../support/stopped-run.js';
import { createPgDatabase, diffCaptures, type Captured, type TestDatabase } from '../support/restore-engines.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on PostgreSQL, while `chartlog run` is running, under a concurrent writer: two changes
 * of stored values that carry no row events and no new column name.
 * - `rd`: DROP COLUMN note, then ADD COLUMN note text DEFAULT 'z' — a new column under the old
 *   name (its attnum differs): older rows read 'z', but their archived images hold the old notes
 *   under the same name, which the relation message alone cannot tell apart. One row is updated
 *   after it (its relation message arrives then).
 * - `en`: ALTER TYPE mood RENAME VALUE 'ok' TO 'fine' — every stored 'ok' reads 'fine' from then on,
 *   with no row event and no relation message; no row of `en` changes after it.
 * Restores to a moment before the changes equal the source then (old note values, the label
 * 'ok'); restores to a moment after the tables were re-read equal the source then ('z' and 'fine'
 * for the untouched rows). A moment after the change and before the re-read is refused for the
 * table, never restored with the old values.
 */
test('PostgreSQL: a column dropped and added again under its name, and an enum value renamed, while running restore exactly', { timeout: 240_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('pgruncols', createPgDatabase);
  let run: ChartlogRun | null = null;
  let stopWriter = false;
  let writer: Promise<number> | null = null;
  onEnd(async () => {
    stopWriter = true;
    await writer?.catch(() => 0);
    await run?.close();
  });

  await source.exec('CREATE TABLE rd (id int4 PRIMARY KEY, note text)');
  await source.exec(`INSERT INTO rd SELECT g, 'rd-' || g FROM generate_series(1, 40) g`);
  await source.exec(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
  await source.exec('CREATE TABLE en (id int4 PRIMARY KEY, m mood)');
  await source.exec(`INSERT INTO en SELECT g, (ARRAY['sad','ok','happy'])[1 + g % 3]::mood FROM generate_series(1, 40) g`);
  await source.exec('CREATE TABLE w (id int4 PRIMARY KEY, x int4)');

  // Synthetic, non-PHI columns: reviewed as public, so they travel in clear.
  writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: postgres, url: "${source.url}", resync: { rowsPerSecond: 0 }, postgres: { catalogCheckIntervalMs: 200 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    '  publicColumns: { public.rd: [id, note], public.en: [id, m], public.w: [id, x] }',
    'log: { level: info, format: json }',
  ].join('\n'));
  const runLog = join(work, 'run.log');
  const store = new FsObjectStore(`${work}/backup`);
  const nowUs = (): bigint => BigInt(Date.now()) * 1000n;

  run = new ChartlogRun(configFile, runLog);
  await run.start();
  writer = insertWriter((sql) => source.exec(sql), 'w', 0, () => stopWriter);
  // A row change of each table while running: its version from the stream is in the archive.
  await source.exec(`UPDATE rd SET note = note || '+' WHERE id = 1`);
  await source.exec(`UPDATE en SET m = 'happy' WHERE id = 1`);
  await sleep(1500);
  const before = { us: nowUs(), rd: await source.capture('rd', 'id'), en: await source.capture('en', 'id') };
  await sleep(1500);

  await source.exec('ALTER TABLE rd DROP COLUMN note');
  await source.exec(`ALTER TABLE rd ADD COLUMN note text DEFAULT 'z'`);
  await source.exec(`UPDATE rd SET note = 'u' WHERE id = 2`);
  await source.exec(`ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'`);
  // Before the catalog check can have found the changes (so before any re-read of the tables).
  const inside = { us: nowUs(), rd: await source.capture('rd', 'id'), en: await source.capture('en', 'id') };
  await waitResynced(runLog, ['public.rd', 'public.en']);
  await sleep(1000);
  const later = { us: nowUs(), rd: await source.capture('rd', 'id'), en: await source.capture('en', 'id') };
  await checkpointPastIn(store, 'clinic', later.us);
  stopWriter = true;
  assert.ok((await writer) > 10, 'the concurrent writer committed');
  await run.stop();

  // The source really changed the untouched rows' values.
  assert.equal(later.rd.filter((r) => r.note === 'z').length, 39, 'rows other than id 2 read the new default');
  assert.ok(before.en.some((r) => r.m === 'ok') && later.en.some((r) => r.m === 'fine') && !later.en.some((r) => r.m === 'ok'), 'the label was renamed');

  const failures: string[] = [];
  const restore = async (us: bigint): Promise<{ code: number; stderr: string; target: TestDatabase }> => {
    const target = await newDb();
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(us), '--target', target.url, '--tables', 'public.rd,public.en']);
    return { code: r.code, stderr: r.stderr, target };
  };
  for (const [label, m] of [['before', before], ['after the re-read', later]] as const) {
    const r = await restore(m.us);
    if (r.code !== 0) {
      failures.push(`${label}: restore exit ${r.code}: ${r.stderr.slice(0, 600)}`);
      continue;
    }
    for (const t of ['rd', 'en'] as const) {
      const diff = diffCaptures(await r.target.capture(t, 'id'), m[t] as Captured, `${t} ${label}`);
      if (diff) failures.push(diff.slice(0, 600));
    }
  }
  // Between the changes and the re-reads the archive holds the old values: refused for both
  // tables (exit 2, each named), not restored with them.
  const r = await restore(inside.us);
  if (r.code !== 2 || !/cannot prove/.test(r.stderr) || !r.stderr.includes('public.rd') || !r.stderr.includes('public.en')) {
    failures.push(`inside the windows: exit ${r.code}, not the refusal of both tables: ${r.stderr.slice(0, 600)}`);
  }
  assert.deepEqual(failures, []);
});
