import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { logLines, PausableWriter } from '../support/pausable-writer.js';
import { createMariadbDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on MariaDB: RENAME COLUMN and RENAME TABLE mid-stream, under `chartlog run` and a
 * concurrent writer. A renamed column keeps its history: rows written before the rename read
 * their value under the new name (the table version records `renamedFrom`, as on PostgreSQL), with no re-read.
 * A renamed table ends its history under the old name (op x) and is read again under the new
 * name (an automatic resync). Restores before the renames give the old names, after them the new
 * names with every row, value by value.
 */

const BEFORE = ['k', 'r', 'w'];
const AFTER = ['k2', 'r', 'w'];

test('MariaDB: RENAME COLUMN and RENAME TABLE under chartlog run keep each table\'s rows; restores before and after equal the source value by value', { timeout: 300_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('myren', createMariadbDatabase);
  let run: ChartlogRun | null = null;
  let writerConn: mysql.Connection | null = null;
  onEnd(async () => {
    await run?.close();
    await writerConn?.end().catch(() => undefined);
  });

  await source.exec('CREATE TABLE r (id INT PRIMARY KEY, note VARCHAR(20))');
  await source.exec('CREATE TABLE k (id INT PRIMARY KEY, x INT)');
  await source.exec('CREATE TABLE w (id INT PRIMARY KEY, x INT)');
  for (let i = 1; i <= 25; i++) {
    await source.exec(`INSERT INTO r VALUES (${i}, ${i % 5 === 0 ? 'NULL' : `'n${i}'`})`);
    await source.exec(`INSERT INTO k VALUES (${i}, ${i * 10})`);
  }

  const q = (t: string): string => `${source.name}.${t}`;
  writeFileSync(configFile, [
    'sources:',
    // k2 does not exist yet: captured once RENAME TABLE makes it.
    `  - { name: clinic, type: mysql, url: "${source.url}", tables: [${['r', 'k', 'k2', 'w'].map(q).join(', ')}], mysql: { serverId: ${80000 + Math.floor(Math.random() * 10000)} } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns; memo and k2's columns are left unclassified (sealed by default).
    `  publicColumns: { ${q('r')}: [id, note], ${q('k')}: [id, x], ${q('w')}: [id, x] }`,
    'log: { level: info, format: json }',
  ].join('\n'));
  const runLog = join(work, 'run.log');
  run = new ChartlogRun(configFile, runLog);
  await run.start();
  const conn = await mysql.createConnection({ uri: source.url });
  writerConn = conn;
  const writer = new PausableWriter(async (n) => {
    await conn.query(`INSERT INTO w VALUES (${n}, ${n})`);
    if (n > 3) await conn.query(`UPDATE w SET x = x + 1 WHERE id = ${1 + ((n * 7) % (n - 1))}`);
  });
  writer.start();

  const moments: { label: string; iso: string; us: bigint; tables: Record<string, Captured> }[] = [];
  // MariaDB binlog commit times have whole seconds: moments sit more than a second from every commit.
  const moment = async (label: string, tables: readonly string[]): Promise<void> => {
    await writer.pause();
    await sleep(1100);
    const us = BigInt(Date.now()) * 1000n;
    const captured: Record<string, Captured> = {};
    for (const t of tables) captured[t] = await source.capture(t);
    moments.push({ label, iso: formatUs(us), us, tables: captured });
    await sleep(1100);
    writer.resume();
  };

  await sleep(300);
  await source.exec(`UPDATE r SET note = 'before' WHERE id = 3`);
  await moment('before the renames', BEFORE);

  await source.exec('ALTER TABLE r RENAME COLUMN note TO memo');
  await source.exec(`UPDATE r SET memo = 'changed' WHERE id = 1`);
  await source.exec('RENAME TABLE k TO k2');
  await source.exec('UPDATE k2 SET x = x + 100 WHERE id = 2');

  const finished = (): Set<string> => new Set(logLines(runLog, 'automatic table resync finished').flatMap((l) => l.tables as string[]));
  for (let i = 0; !finished().has(q('k2')); i++) {
    assert.ok(i < 1200, `the automatic resync of ${q('k2')} finished; see ${runLog}`);
    await sleep(100);
  }
  await source.exec('UPDATE k2 SET x = 7 WHERE id = 3');
  await source.exec(`UPDATE r SET memo = 'later' WHERE id = 4`);
  await moment('after the renames', AFTER);
  await writer.stop();
  assert.ok(writer.commits > 20, `the concurrent writer committed ${writer.commits} transactions`);
  await source.exec('UPDATE w SET x = 0 WHERE id = 1');

  const store = new FsObjectStore(`${work}/backup`);
  const last = moments.at(-1)!.us;
  for (let i = 0; ; i++) {
    const cp = await readCheckpoint(store, 'clinic');
    if (cp && cp.commitTsUs > last) break;
    assert.ok(i < 600, 'the checkpoint did not pass the last moment');
    await sleep(100);
  }
  await run.stop();

  // RENAME COLUMN is followed by names: no table re-read. RENAME TABLE re-reads the new name.
  const requested = new Set(logLines(runLog, 'table resync requested').flatMap((l) => l.tables as string[]));
  assert.ok(!requested.has(q('r')), 'RENAME COLUMN asked for no resync');
  assert.ok(requested.has(q('k2')), 'RENAME TABLE asked for a resync of the new name');

  const args = ['restore', '--config', configFile, '--source', 'clinic'];
  const check = async (m: (typeof moments)[number], tables: readonly string[], emptyToo: readonly string[] = []): Promise<void> => {
    const target = await newDb('myrentgt');
    const r = await runChartlog([...args, '--to', m.iso, '--target', target.url]);
    assert.equal(r.code, 0, `${m.label}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    const present = await target.tables();
    // Known limit (issue 14, "CREATE TABLE in scope", not built): a table whose first stored record
    // is after the moment is created empty, as a table created after the moment is today.
    for (const t of emptyToo) if (present.includes(t)) assert.deepEqual(await target.capture(t), [], `${m.label}: ${t} is empty`);
    assert.deepEqual(present.filter((t) => !emptyToo.includes(t)), [...tables].sort(), `${m.label}: the tables present`);
    for (const t of tables) {
      const diff = diffCaptures(await target.capture(t), m.tables[t]!, `${m.label}: ${t}`);
      assert.equal(diff, null, diff ?? '');
    }
  };
  const [before, afterRenames] = moments as [(typeof moments)[0], (typeof moments)[0]];
  // The source's renamed column holds the old values: the comparison below can fail on a NULL.
  assert.equal(afterRenames.tables.r!.filter((row) => row.memo !== null).length, 20, 'memo holds a value in 20 of 25 rows on the source (5 are NULL)');
  await check(before, BEFORE, ['k2']);
  await check(afterRenames, AFTER);
});
