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
 * Issue 14 on PostgreSQL: DDL made while `chartlog run` is stopped reaches no stream and no
 * catalog check of the next process, unless that process compares the catalog with what the
 * archive last recorded (connectors/postgres/catalog-memory.ts). Here, with run stopped: a
 * rewrite (`ALTER … TYPE … USING upper(note)`), a `RENAME TO`, an `ATTACH PARTITION` and a
 * `DETACH PARTITION`; then run starts again, under a concurrent writer. Every changed table is
 * re-read by an automatic resync, and:
 * - a restore after the resyncs equals the source, value by value, for each table;
 * - a restore to a moment after the changes and before the resyncs is refused for the rewritten
 *   table (its unproven window, recorded durably at start).
 * On code without the recorded catalog (main before this change) none of this is found: the
 * restore after gives the old values (the negative control, run by hand; see the report).
 */

test('PostgreSQL: rewrite, rename, ATTACH and DETACH made while run is stopped are found at the next start and re-read', { timeout: 240_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('pgstop', createPgDatabase);
  let run: ChartlogRun | null = null;
  let stopWriter = false;
  let writer: Promise<number> | null = null;
  onEnd(async () => {
    stopWriter = true;
    await writer?.catch(() => 0);
    await run?.close();
  });

  await source.exec('CREATE TABLE t (id int4 PRIMARY KEY, note text)');
  await source.exec('CREATE TABLE r (id int4 PRIMARY KEY, note text)');
  await source.exec('CREATE TABLE w (id int4 PRIMARY KEY, x int4)');
  await source.exec('CREATE TABLE part (id int4, k int4, note text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)');
  await source.exec('CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100)');
  await source.exec('CREATE TABLE part_2 PARTITION OF part FOR VALUES FROM (100) TO (200)');
  await source.exec('CREATE TABLE part_3 (id int4, k int4, note text, PRIMARY KEY (id, k))');
  await source.exec(`INSERT INTO t SELECT g, 'note-' || g FROM generate_series(1, 200) g`);
  await source.exec(`INSERT INTO r SELECT g, 'r-' || g FROM generate_series(1, 50) g`);
  await source.exec(`INSERT INTO part SELECT g, g % 200, 'p-' || g FROM generate_series(1, 120) g`);
  await source.exec(`INSERT INTO part_3 SELECT g, 200 + g % 100, 'p3-' || g FROM generate_series(1, 30) g`);

  // The PHI configuration names the tables captured now (it is checked against them at start).
  const writeConfig = (tables: string[]): void => writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: postgres, url: "${source.url}", resync: { rowsPerSecond: 0 }, postgres: { catalogCheckIntervalMs: 200 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns: reviewed as public, so they travel in clear.
    `  publicColumns: { ${tables.map((t) => `public.${t}: [${t === 'w' ? 'id, x' : t.startsWith('part') ? 'id, k, note' : 'id, note'}]`).join(', ')} }`,
    'log: { level: info, format: json }',
  ].join('\n'));
  writeConfig(['t', 'r', 'w', 'part', 'part_3']);
  const runLog = join(work, 'run.log');
  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
  const startWriter = (from: number): Promise<number> =>
    (async () => {
      let n = from;
      while (!stopWriter) {
        n++;
        await source.exec(`INSERT INTO w VALUES (${n}, ${n})`);
        await sleep(10);
      }
      return n - from;
    })();

  run = new ChartlogRun(configFile, runLog);
  await run.start();
  writer = startWriter(0);
  // The source snapshot recorded the catalog (before streaming began); a second of catalog checks follows.
  await sleep(1000);
  await checkpointPast(BigInt(Date.now()) * 1000n);
  stopWriter = true;
  const first = await writer;
  await run.stop();

  // While stopped: a rewrite with USING, a rename, an ATTACH and a DETACH, and some writes.
  await source.exec('ALTER TABLE t ALTER COLUMN note TYPE varchar(200) USING upper(note)');
  await source.exec('ALTER TABLE r RENAME TO r2');
  await source.exec('ALTER TABLE part ATTACH PARTITION part_3 FOR VALUES FROM (200) TO (300)');
  await source.exec('ALTER TABLE part DETACH PARTITION part_2');
  await source.exec(`INSERT INTO w VALUES (${first + 1000}, 1)`);
  await sleep(300);
  const insideUs = BigInt(Date.now()) * 1000n;
  const want: Record<string, Captured> = {};
  for (const t of ['t', 'r2', 'part', 'part_2']) want[t] = await source.capture(t, 'id, 2');
  assert.ok(want.t!.length === 200 && want.part_2!.length > 0, 'the source has rows to compare');

  stopWriter = false;
  writeConfig(['t', 'r2', 'w', 'part', 'part_2']);
  await run.start();
  writer = startWriter(first + 2000);
  const expected = ['public.part', 'public.part_2', 'public.r2', 'public.t'];
  const resynced = (): Set<string> => new Set(logLines(runLog, 'automatic table resync finished').flatMap((l) => l.tables as string[]));
  for (let i = 0; !expected.every((t) => resynced().has(t)); i++) {
    assert.ok(i < 1200, `automatic resyncs of ${expected.join(', ')} finished (got ${[...resynced()].join(', ')}); see ${runLog}`);
    await sleep(100);
  }
  await sleep(500);
  const afterUs = BigInt(Date.now()) * 1000n;
  await checkpointPast(afterUs);
  stopWriter = true;
  assert.ok((await writer) > 10, 'the concurrent writer committed');
  await run.stop();

  for (const t of ['t', 'r2', 'part', 'part_2']) {
    const target = await newDb();
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(afterUs), '--target', target.url, '--tables', `public.${t}`]);
    assert.equal(r.code, 0, `${t} after: ${r.stderr.slice(0, 2000)}`);
    const diff = diffCaptures(await target.capture(t, 'id, 2'), want[t]!, `${t} after the resyncs`);
    assert.equal(diff, null, diff ?? '');
  }
  // Inside the window (after the ALTER, before the re-read): refused for the rewritten table.
  const target = await newDb();
  const inside = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(insideUs), '--target', target.url, '--tables', 'public.t']);
  assert.equal(inside.code, 2, `inside the window: ${inside.stderr.slice(0, 2000)}`);
  assert.ok(inside.stderr.includes('public.t: unproven from '), inside.stderr.slice(0, 2000));
});
