import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { logLines, PausableWriter } from '../support/pausable-writer.js';
import { createPgDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on PostgreSQL: ALTER TABLE a RENAME TO b mid-stream, under `chartlog run` and a
 * concurrent writer. Logical decoding carries no DDL; the relation keeps its OID under the new
 * name. As on MariaDB, the archive ends `a`'s history (op x) and re-reads the table as `b` (an
 * automatic resync): a restore after the rename has `b` with every row and no `a`, one before it
 * has `a` — value by value equal to the source at each moment.
 */

test('postgres: ALTER TABLE a RENAME TO b under chartlog run — restores before and after equal the source, tables present or absent included', { timeout: 180_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('pgrent', createPgDatabase);
  let run: ChartlogRun | null = null;
  const writerClient = new pg.Client({ connectionString: source.url });
  let writer: PausableWriter | null = null;
  onEnd(async () => {
    await writer?.stop().catch(() => undefined);
    await run?.close();
    await writerClient.end().catch(() => undefined);
  });

  await source.exec('CREATE TABLE a (id int PRIMARY KEY, note text, n bigint)');
  await source.exec('CREATE TABLE w (id int PRIMARY KEY, x int)');
  for (let i = 1; i <= 40; i++) await source.exec(`INSERT INTO a VALUES (${i}, ${i % 6 === 0 ? 'NULL' : `'n${i}'`}, ${i * 1000})`);

  writeFileSync(configFile, [
    'sources:',
    // No table list: the publication is FOR ALL TABLES, so the renamed table stays in scope.
    `  - { name: clinic, type: postgres, url: "${source.url}" }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns; b's columns are unclassified (sealed by default, opened by restore).
    '  publicColumns: { public.a: [id, note, n], public.w: [id, x] }',
    'log: { level: info, format: json }',
  ].join('\n'));
  const runLog = join(work, 'run.log');
  run = new ChartlogRun(configFile, runLog);
  await run.start();
  await writerClient.connect();
  writer = new PausableWriter(async (n) => {
    await writerClient.query(`INSERT INTO w VALUES (${n}, ${n})`);
    if (n > 3) await writerClient.query(`UPDATE w SET x = x + 1 WHERE id = ${1 + ((n * 7) % (n - 1))}`);
  });
  writer.start();

  const moments: { label: string; iso: string; us: bigint; tables: Record<string, Captured> }[] = [];
  const moment = async (label: string, tables: readonly string[]): Promise<void> => {
    await writer!.pause();
    await sleep(50);
    const us = BigInt(Date.now()) * 1000n;
    const captured: Record<string, Captured> = {};
    for (const t of tables) captured[t] = await source.capture(t);
    moments.push({ label, iso: formatUs(us), us, tables: captured });
    await sleep(50);
    writer!.resume();
  };

  // A rename the connector's first catalog reading finds counts as made while stopped, with an
  // unproven window back to the last recorded reading (the base snapshot), and the restore to
  // "before" is then rightly refused. That reading is made as the stream starts, which at load 38
  // came seconds after "pipeline streaming"; a stored change of the writer's made after the start
  // shows it done.
  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
  await checkpointPast(BigInt(Date.now()) * 1000n);
  await source.exec(`UPDATE a SET note = 'before' WHERE id = 3`);
  await moment('before the rename', ['a', 'w']);

  await source.exec('ALTER TABLE a RENAME TO b');
  await source.exec(`UPDATE b SET note = 'renamed' WHERE id = 2`);
  const finished = (): Set<string> => new Set(logLines(runLog, 'automatic table resync finished').flatMap((l) => l.tables as string[]));
  for (let i = 0; !finished().has('public.b'); i++) {
    assert.ok(i < 600, `the automatic resync of public.b finished; see ${runLog}`);
    await sleep(100);
  }
  await source.exec(`UPDATE b SET n = -7 WHERE id = 4`);
  await source.exec(`DELETE FROM b WHERE id = 5`);
  // The old name's end is recorded once the stream has passed the catalog reading that found it.
  for (let i = 0; logLines(runLog, "table renamed (ALTER TABLE … RENAME TO): the old name's history ends here").length === 0; i++) {
    assert.ok(i < 600, `the end of public.a was recorded; see ${runLog}`);
    await sleep(100);
  }
  await moment('after the rename', ['b', 'w']);
  await writer.stop();
  assert.ok(writer.commits > 20, `the concurrent writer committed ${writer.commits} transactions`);
  await source.exec('UPDATE w SET x = 0 WHERE id = 1');

  await checkpointPast(moments.at(-1)!.us);
  await run.stop();
  const requested = new Set(logLines(runLog, 'table resync requested').flatMap((l) => l.tables as string[]));
  assert.ok(requested.has('public.b'), 'the rename asked for a resync of the new name');

  const check = async (m: (typeof moments)[number], tables: readonly string[], emptyToo: readonly string[] = []): Promise<void> => {
    const target = await newDb('pgrentgt');
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', m.iso, '--target', target.url]);
    assert.equal(r.code, 0, `${m.label}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    const present = await target.tables();
    // A table whose first stored record is after the moment is created empty (as any table created after it).
    for (const t of emptyToo) if (present.includes(t)) assert.deepEqual(await target.capture(t), [], `${m.label}: ${t} is empty`);
    assert.deepEqual(present.filter((t) => !emptyToo.includes(t)), [...tables].sort(), `${m.label}: the tables present`);
    for (const t of tables) {
      const diff = diffCaptures(await target.capture(t), m.tables[t]!, `${m.label}: ${t}`);
      assert.equal(diff, null, diff ?? '');
    }
  };
  const [before, afterRename] = moments as [(typeof moments)[0], (typeof moments)[0]];
  assert.equal(afterRename.tables.b!.length, 39, 'the source has b with 39 rows');
  await check(before, ['a', 'w'], ['b']);
  await check(afterRename, ['b', 'w']);
});
