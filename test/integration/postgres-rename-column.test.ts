import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { formatUs } from '../../src/archive/layout.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { createPgDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14, RENAME COLUMN on PostgreSQL, mid-stream under a concurrent writer: the rows stored
 * before the rename hold the value under the old name; a restore to a moment after it must show
 * every row's value under the new name (value by value equal to the source), one before it the
 * old name. Also renamed twice, and a new column taking the old name.
 */
test('postgres: RENAME COLUMN mid-stream — restores before and after equal the source, values follow the column', { timeout: 180_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('rensrc', createPgDatabase);
  let run: ChartlogRun | null = null;
  const writer = new pg.Client({ connectionString: source.url });
  let writing = false;
  let loop: Promise<void> | null = null;
  onEnd(async () => {
    writing = false;
    await loop?.catch(() => undefined);
    await run?.close();
    await writer.end().catch(() => undefined);
  });

  await source.exec('CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL, n int)');
  await source.exec('CREATE TABLE w (id int PRIMARY KEY, x int)');
  for (let i = 1; i <= 20; i++) await source.exec(`INSERT INTO t VALUES (${i}, 'n${i}', ${i * 10})`);
  writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: postgres, url: "${source.url}", tables: [public.t, public.w] }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns, the names to come included.
    '  publicColumns: { public.t: [id, note, n, memo, text1], public.w: [id, x] }',
    // Strict tables may name columns still to come.
    '  strict: [public.t]',
    '  columns: { public.t: [] }',
    'log: { level: info, format: json }',
  ].join('\n'));
  run = new ChartlogRun(configFile, join(work, 'run.log'));
  await run.start();
  await writer.connect();
  let n = 0;
  let paused = false;
  let idle: Promise<void> = Promise.resolve();
  writing = true;
  loop = (async () => {
    while (writing) {
      if (paused) {
        await sleep(5);
        continue;
      }
      let done!: () => void;
      idle = new Promise((r) => (done = r));
      try {
        n++;
        await writer.query(`INSERT INTO w VALUES (${n}, ${n})`);
      } finally {
        done();
      }
      await sleep(2);
    }
  })();

  const moments: { label: string; iso: string; us: bigint; t: Captured }[] = [];
  const moment = async (label: string): Promise<void> => {
    paused = true;
    await idle;
    await sleep(50);
    const us = BigInt(Date.now()) * 1000n;
    moments.push({ label, iso: formatUs(us), us, t: await source.capture('t') });
    await sleep(50);
    paused = false;
  };

  // The DDL below must come after the connector's first catalog reading, made as the stream
  // starts (at load 38 seconds after "pipeline streaming"): what that reading finds counts as
  // changed while stopped. A stored change of the writer's made after the start shows it done.
  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
  await checkpointPast(BigInt(Date.now()) * 1000n);
  await source.exec(`UPDATE t SET note = 'before' WHERE id = 2`);
  await moment('before RENAME');
  await source.exec('ALTER TABLE t RENAME COLUMN note TO memo');
  await source.exec(`UPDATE t SET memo = 'after' WHERE id = 1`);
  await sleep(200);
  await moment('after RENAME note → memo');
  await source.exec('ALTER TABLE t RENAME COLUMN memo TO text1');
  await source.exec('ALTER TABLE t ADD COLUMN note int DEFAULT 5');
  await source.exec(`UPDATE t SET text1 = 'again', note = 6 WHERE id = 3`);
  await sleep(200);
  await moment('after RENAME memo → text1 and a new column note');
  writing = false;
  await loop;
  assert.ok(n > 20, `the concurrent writer committed ${n} transactions`);
  await source.exec(`UPDATE w SET x = 0 WHERE id = 1`);

  await checkpointPast(moments.at(-1)!.us);
  await run.stop();
  assert.match(readFileSync(join(work, 'run.log'), 'utf8'), /columns renamed: kept as the same columns/, 'the run logged the rename');

  for (const m of moments) {
    const target = await newDb('rentgt');
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', m.iso, '--target', target.url, '--tables', 'public.t']);
    assert.equal(r.code, 0, `${m.label}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    const restored = await target.capture('public.t');
    const diff = diffCaptures(restored, m.t, `${m.label}: t`);
    assert.equal(diff, null, diff ?? '');
  }
  // The source really moved the values: 20 rows under the new name, none NULL.
  assert.equal(moments[1]!.t.filter((r) => r.memo !== null && r.memo !== undefined).length, 20, 'every row has memo on the source');
  assert.equal(moments[2]!.t.filter((r) => String(r.note) === '5').length, 19, 'older rows read the new column note as 5');
});
