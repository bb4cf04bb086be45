import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { formatUs } from '../../src/archive/layout.js';
import { replayArchive } from '../../src/archive/replay.js';
import { loadConfig } from '../../src/config/load.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { logLines, PausableWriter } from '../support/pausable-writer.js';
import { createMariadbDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on MariaDB: DDL that changes the values of rows a table already has, with no row
 * events (the binlog carries only the statement), under `chartlog run` and a concurrent writer:
 * a type change that rounds (DECIMAL(10,2) → DECIMAL(10,0)), a stored generated column, a
 * column redefinition. The connector asks for an automatic resync of each such table; once it
 * is written, a restore equals the source value by value, and a restore to a moment before the
 * ALTERs gives the old values. A harmless ALTER (an index) asks for none.
 */

const TABLES = ['t', 'g', 'm', 'w'] as const;

test('MariaDB: rewriting ALTERs under chartlog run are re-read automatically; restores before and after equal the source value by value', { timeout: 300_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('myddl', createMariadbDatabase);
  let run: ChartlogRun | null = null;
  let writerConn: mysql.Connection | null = null;
  onEnd(async () => {
    await run?.close();
    await writerConn?.end().catch(() => undefined);
  });

  await source.exec('CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(20))');
  await source.exec('CREATE TABLE g (id INT PRIMARY KEY, x INT)');
  await source.exec('CREATE TABLE m (id INT PRIMARY KEY, amount DECIMAL(10,2))');
  await source.exec('CREATE TABLE w (id INT PRIMARY KEY, x INT)');
  for (let i = 1; i <= 30; i++) {
    await source.exec(`INSERT INTO t VALUES (${i}, 'n${i}')`);
    await source.exec(`INSERT INTO g VALUES (${i}, ${i * 10})`);
    // Fractions that DECIMAL(10,0) rounds up or down: the ALTER changes every row's value.
    await source.exec(`INSERT INTO m VALUES (${i}, ${i}.${i % 2 === 0 ? '35' : '72'})`);
  }

  const q = (t: string): string => `${source.name}.${t}`;
  writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: mysql, url: "${source.url}", tables: [${TABLES.map(q).join(', ')}], mysql: { serverId: ${70000 + Math.floor(Math.random() * 10000)} }, resync: { rowsPerSecond: 5000 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns: reviewed as public, so they travel in clear.
    `  publicColumns: { ${q('t')}: [id, note], ${q('g')}: [id, x, c], ${q('m')}: [id, amount], ${q('w')}: [id, x] }`,
    // A strict table may name a column still to come (classified before the migration adds it).
    `  strict: [${q('g')}]`,
    `  columns: { ${q('g')}: [] }`,
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
  const moment = async (label: string): Promise<void> => {
    await writer.pause();
    await sleep(1100);
    const us = BigInt(Date.now()) * 1000n;
    const tables: Record<string, Captured> = {};
    for (const t of TABLES) tables[t] = await source.capture(t);
    moments.push({ label, iso: formatUs(us), us, tables });
    await sleep(1100);
    writer.resume();
  };

  await sleep(300);
  await source.exec(`UPDATE m SET amount = 99.99 WHERE id = 1`);
  await moment('before the ALTERs');

  // Harmless: asks for no resync. Then the three rewrites.
  await source.exec('ALTER TABLE w ADD INDEX i_x (x)');
  await source.exec('ALTER TABLE t MODIFY note VARCHAR(40)');
  await source.exec('UPDATE t SET note = CONCAT(note, \'-longer-than-twenty-chars\') WHERE id = 2');
  await source.exec('ALTER TABLE g ADD COLUMN c INT AS (id * 2) STORED');
  await source.exec('ALTER TABLE m MODIFY amount DECIMAL(10,0)');
  await source.exec('UPDATE m SET amount = amount + 1 WHERE id = 3');
  const rounded = await source.capture('m');
  assert.ok(rounded.every((r) => !Buffer.from(String(r.amount), 'hex').toString().includes('.')), 'the source rounded every amount (the ALTER changed existing values)');

  // Each rewritten table is re-read by chartlog run itself.
  const wanted = [q('t'), q('g'), q('m')];
  const finished = (): Set<string> => new Set(logLines(runLog, 'automatic table resync finished').flatMap((l) => l.tables as string[]));
  for (let i = 0; !wanted.every((t) => finished().has(t)); i++) {
    assert.ok(i < 1200, `automatic resyncs of ${wanted.join(', ')} finished (so far: ${[...finished()].join(', ') || 'none'}); see ${runLog}`);
    await sleep(100);
  }
  await source.exec(`UPDATE g SET x = x + 1 WHERE id = 4`);
  await source.exec(`UPDATE m SET amount = 5 WHERE id = 5`);
  await moment('after the automatic resyncs');
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

  // The log: requested with a reason for each rewritten table, never for the harmless ALTER.
  const requested = logLines(runLog, 'table resync requested');
  const requestedTables = new Set(requested.flatMap((l) => l.tables as string[]));
  for (const t of wanted) assert.ok(requestedTables.has(t), `a resync of ${t} was requested`);
  assert.ok(!requestedTables.has(q('w')), 'ADD INDEX asked for no resync');
  assert.ok(requested.some((l) => /generated/.test(String(l.reason))), 'the reason says why (generated column)');
  const started = logLines(runLog, 'automatic table resync started');
  assert.ok(started.length >= 1 && started.length <= 3, `${started.length} resyncs started`);
  const done = logLines(runLog, 'automatic table resync finished');
  assert.ok(done.every((l) => typeof l.rowCounts === 'object' && l.rowCounts !== null), 'finished lines carry rows per table');

  const args = ['restore', '--config', configFile, '--source', 'clinic'];
  const check = async (m: (typeof moments)[number]): Promise<void> => {
    const target = await newDb('myddltgt');
    const r = await runChartlog([...args, '--to', m.iso, '--target', target.url]);
    assert.equal(r.code, 0, `${m.label}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    assert.deepEqual(await target.tables(), [...TABLES].sort(), `${m.label}: the tables present`);
    for (const t of TABLES) {
      const diff = diffCaptures(await target.capture(t), m.tables[t]!, `${m.label}: ${t}`);
      assert.equal(diff, null, diff ?? '');
    }
  };
  const [before, afterResync] = moments as [(typeof moments)[0], (typeof moments)[0]];
  await check(before);
  await check(afterResync);

  // Negative control: without the table bases, the archive as the stream saw it keeps the
  // unrounded amounts and has no generated values — the comparison above would have failed.
  const config = loadConfig(configFile);
  const archive = openArchiveCodec(config, config.sources[0]!, store, true);
  const index = await readArchiveIndex(store, 'clinic');
  assert.ok((index.tableSnapshots?.length ?? 0) >= 1, 'table bases were written');
  const ignoring = await replayArchive({ store, source: 'clinic', codec: archive.codec, schemas: archive.schemas, envelopes: archive.envelopes, to: { kind: 'time', us: afterResync.us }, open: true, tables: [q('m'), q('g')], index: { ...index, tableSnapshots: [] } });
  const stale = [...ignoring.tables.get(q('m'))!.allRows()].filter((row) => String(row.amount).includes('.'));
  assert.ok(stale.length > 0, `without the resync the restore keeps unrounded amounts (${stale.length} rows)`);
  const noC = [...ignoring.tables.get(q('g'))!.allRows()].filter((row) => row.c === null || row.c === undefined);
  assert.ok(noC.length > 0, `without the resync the generated column is empty in old rows (${noC.length} rows)`);
});
