import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { logLines } from '../support/pausable-writer.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { insertWriter, waitResynced } from '../support/stopped-run.js';
import { createMariadbDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on MariaDB: an instant `ADD COLUMN … DEFAULT` made while `chartlog run` is stopped.
 * The binlog keeps the statement, so the next start reads it — but the start reads the tables'
 * columns from INFORMATION_SCHEMA first, which already has the column: compared with that, the
 * statement adds nothing, and rows older than it would read NULL where the source has the
 * default (on main the restore fails: NULL in a NOT NULL column). The statement committed before
 * the start read the columns (its GTID is within @@gtid_binlog_pos read after them), so the
 * connector cannot tell what it changed and re-reads the table (a resync with the statement's
 * unproven window). Under a concurrent writer; a restore after equals the source value by value.
 */

test('MariaDB: ADD COLUMN … DEFAULT made while run is stopped restores with the default for untouched rows', { timeout: 300_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('mystopcol', createMariadbDatabase);
  let run: ChartlogRun | null = null;
  let stopWriter = false;
  let writer: Promise<number> | null = null;
  onEnd(async () => {
    stopWriter = true;
    await writer?.catch(() => 0);
    await run?.close();
  });

  await source.exec('CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(40))');
  await source.exec('CREATE TABLE v (id INT PRIMARY KEY, note VARCHAR(40))');
  await source.exec('CREATE TABLE w (id INT PRIMARY KEY, x INT)');
  for (let i = 1; i <= 30; i++) {
    await source.exec(`INSERT INTO t VALUES (${i}, 't${i}')`);
    await source.exec(`INSERT INTO v VALUES (${i}, 'v${i}')`);
  }

  const q = (t: string): string => `${source.name}.${t}`;
  // The PHI configuration names the columns the tables have now (it is checked against them at start).
  const writeConfig = (publicColumns: string): void => writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: mysql, url: "${source.url}", tables: [${['t', 'v', 'w'].map(q).join(', ')}], mysql: { serverId: ${80000 + Math.floor(Math.random() * 10000)} }, resync: { rowsPerSecond: 0 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns: reviewed as public, so they travel in clear.
    `  publicColumns: { ${publicColumns} }`,
    'log: { level: info, format: json }',
  ].join('\n'));
  writeConfig(`${q('t')}: [id, note], ${q('v')}: [id, note], ${q('w')}: [id, x]`);
  const runLog = join(work, 'run.log');
  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
  const startWriter = (from: number): Promise<number> => insertWriter((sql) => source.exec(sql), 'w', from, () => stopWriter, 20);

  run = new ChartlogRun(configFile, runLog);
  await run.start();
  writer = startWriter(0);
  await source.exec(`UPDATE t SET note = 'changed' WHERE id = 1`);
  await source.exec(`UPDATE v SET note = 'changed' WHERE id = 1`);
  // Whole-second commit times: the checkpoint passes a moment a second after the last commit.
  await sleep(1500);
  await checkpointPast(BigInt(Date.now()) * 1000n - 500_000n);
  stopWriter = true;
  const first = await writer;
  await run.stop();

  // While stopped: an instant ADD COLUMN with a constant default, one with a volatile default.
  await source.exec('ALTER TABLE t ADD COLUMN flag INT NOT NULL DEFAULT 7, ALGORITHM=INSTANT');
  await source.exec('ALTER TABLE v ADD COLUMN u VARCHAR(36) DEFAULT (UUID())');
  await source.exec(`UPDATE t SET note = 'after' WHERE id = 2`);

  stopWriter = false;
  writeConfig(`${q('t')}: [id, note, flag], ${q('v')}: [id, note, u], ${q('w')}: [id, x]`);
  await run.start();
  writer = startWriter(first + 2000);
  await source.exec(`UPDATE t SET flag = 8 WHERE id = 3`);
  await source.exec(`UPDATE v SET note = 'after' WHERE id = 3`);
  const want: Record<string, Captured> = { t: await source.capture('t'), v: await source.capture('v') };
  assert.ok(want.t!.filter((r) => Buffer.from(String(r.flag), 'hex').toString() === '7').length >= 25, 'the source reads the default in untouched rows');
  // Both are re-read: the start read the columns after the statements (they show them already),
  // so what they did to older rows cannot be told; `v`'s volatile default would need it anyway.
  await waitResynced(runLog, [q('t'), q('v')]);
  const why = logLines(runLog, 'table resync requested').find((l) => (l.tables as string[]).includes(q('t')));
  assert.match(String(why?.reason), /committed before chartlog read the table's columns/, 'the reason says why');
  await sleep(1500);
  const afterUs = BigInt(Date.now()) * 1000n;
  await checkpointPast(afterUs);
  stopWriter = true;
  assert.ok((await writer) > 10, 'the concurrent writer committed');
  await run.stop();

  const failures: string[] = [];
  for (const t of ['t', 'v']) {
    const target = await newDb('mystopcolr');
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(afterUs), '--target', target.url, '--tables', q(t)]);
    if (r.code !== 0) {
      failures.push(`${t}: restore exit ${r.code}: ${r.stderr.slice(0, 600)}`);
      continue;
    }
    const diff = diffCaptures(await target.capture(t), want[t]!, `${t} after the restart`);
    if (diff) failures.push(diff.slice(0, 600));
  }
  assert.deepEqual(failures, []);
});
