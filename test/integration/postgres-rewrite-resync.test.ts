import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { logLines } from '../support/pausable-writer.js';
import { createPgDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on PostgreSQL, end to end: `ALTER … TYPE … USING upper(note)` rewrites every row with
 * no row events, and no change of the table follows (so no relation message either). Under
 * `chartlog run` and a concurrent writer, the connector's relfilenode check finds the rewrite and
 * the run re-reads the table by itself (an automatic resync). Then a restore to a moment after it
 * equals the source value by value, and one to a moment before the ALTER gives the old values.
 * The two captures differ (the ALTER changed every note), so equality after is the resync's doing.
 */

test('PostgreSQL: a table rewrite no change follows is re-read by chartlog run itself; restores before and after equal the source', { timeout: 240_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('pgrw', createPgDatabase);
  let run: ChartlogRun | null = null;
  let stopWriter = false;
  let writer: Promise<number> | null = null;
  onEnd(async () => {
    stopWriter = true;
    await writer?.catch(() => 0);
    await run?.close();
  });

  await source.exec('CREATE TABLE t (id int4 PRIMARY KEY, note text)');
  await source.exec('CREATE TABLE w (id int4 PRIMARY KEY, x int4)');
  await source.exec(`CREATE TABLE mk (id int4 PRIMARY KEY, note text); INSERT INTO mk VALUES (1, 'marker')`);
  await source.exec(`INSERT INTO t SELECT g, 'note-' || g FROM generate_series(1, 200) g`);

  writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: postgres, url: "${source.url}", tables: [public.t, public.w, public.mk], resync: { rowsPerSecond: 5000 }, postgres: { catalogCheckIntervalMs: 200 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns: reviewed as public, so they travel in clear.
    '  publicColumns: { public.t: [id, note], public.w: [id, x], public.mk: [id, note] }',
    'log: { level: info, format: json }',
  ].join('\n'));
  const runLog = join(work, 'run.log');
  run = new ChartlogRun(configFile, runLog);
  await run.start();

  // A concurrent client: small transactions on another table all along.
  writer = (async () => {
    let n = 0;
    while (!stopWriter) {
      n++;
      await source.exec(`INSERT INTO w VALUES (${n}, ${n})`);
      if (n > 3) await source.exec(`UPDATE w SET x = x + 1 WHERE id = ${1 + (n % (n - 1))}`);
      await sleep(10);
    }
    return n;
  })();

  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);

  await sleep(500);
  const beforeUs = BigInt(Date.now()) * 1000n;
  const before: Captured = await source.capture('t');
  // The rewrite is known to have happened only after the last catalog reading that showed the
  // old table (every 200 ms here): the moment "before" must precede that reading, or its restore
  // is refused as inside the table's unproven window (resync-window.test.ts). That reading is
  // waited for, not slept for (1.5 s of 200 ms checks held none on a loaded machine): the one
  // that finds a rewrite of the marker table mk, made after "before", shows t unchanged.
  await source.exec('ALTER TABLE mk ALTER COLUMN note TYPE varchar(100) USING upper(note)');
  for (let i = 0; !logLines(runLog, 'table resync requested').some((l) => (l.tables as string[]).includes('public.mk')); i++) {
    assert.ok(i < 1200, `the marker rewrite of public.mk was requested; see ${runLog}`);
    await sleep(100);
  }

  await source.exec('ALTER TABLE t ALTER COLUMN note TYPE varchar(200) USING upper(note)');
  const afterAlter = await source.capture('t');
  assert.notEqual(diffCaptures(afterAlter, before, 't'), null, 'the ALTER changed the stored values');

  const finished = (): boolean => logLines(runLog, 'automatic table resync finished').some((l) => (l.tables as string[]).includes('public.t'));
  for (let i = 0; !finished(); i++) {
    assert.ok(i < 1200, `an automatic resync of public.t finished; see ${runLog}`);
    await sleep(100);
  }
  const requested = logLines(runLog, 'table resync requested').filter((l) => (l.tables as string[]).includes('public.t'));
  assert.ok(requested.length >= 1, 'the rewrite was requested');
  assert.ok(requested.every((l) => !/NOTE-|note-/.test(String(l.reason))), 'the reason carries no value');

  await sleep(50);
  const afterUs = BigInt(Date.now()) * 1000n;
  await checkpointPast(afterUs);
  stopWriter = true;
  const commits = await writer;
  assert.ok(commits > 20, `the concurrent writer committed ${commits} times`);
  await run.stop();

  for (const [label, us, want] of [['before the ALTER', beforeUs, before], ['after the automatic resync', afterUs, afterAlter]] as const) {
    const target = await newDb();
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(us), '--target', target.url, '--tables', 'public.t']);
    assert.equal(r.code, 0, `${label}: ${r.stderr.slice(0, 2000)}`);
    const diff = diffCaptures(await target.capture('t'), want, `t ${label}`);
    assert.equal(diff, null, diff ?? '');
  }
});
