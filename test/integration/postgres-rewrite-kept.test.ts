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
import { createPgDatabase, diffCaptures } from '../support/restore-engines.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14 on PostgreSQL: VACUUM FULL and CLUSTER give a table a new relfilenode, as a rewrite that
 * changes values does (ALTER … TYPE … USING), but keep every value. The connector tells them apart
 * by the table's pg_attribute rows (rewrite-watch.ts classifyRelfileChange): none written since
 * the last reading → values kept, no resync; the ALTER rewrites its column's row → resync. Under
 * `chartlog run` with a concurrent writer, and VACUUM FULL again while run is stopped (found at the
 * next start against the recorded catalog). Restores after equal the source value by value.
 * Negative control: main's code re-reads `k` after each of them (the no-resync assertion fails).
 */

test('PostgreSQL: VACUUM FULL and CLUSTER are not re-read, ALTER … TYPE … USING is; restores equal the source', { timeout: 300_000 }, async () => {
  const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('pgkept', createPgDatabase);
  let run: ChartlogRun | null = null;
  let stopWriter = false;
  let writer: Promise<number> | null = null;
  onEnd(async () => {
    stopWriter = true;
    await writer?.catch(() => 0);
    await run?.close();
  });

  for (const t of ['k', 'u']) {
    await source.exec(`CREATE TABLE ${t} (id int4 PRIMARY KEY, note text)`);
    await source.exec(`INSERT INTO ${t} SELECT g, '${t}-' || g FROM generate_series(1, 300) g`);
  }
  // Dead rows for VACUUM FULL to drop, so the new file really differs from the old.
  await source.exec(`UPDATE k SET note = note || '+' WHERE id % 3 = 0`);
  await source.exec('CREATE TABLE w (id int4 PRIMARY KEY, x int4)');

  writeFileSync(configFile, [
    'sources:',
    `  - { name: clinic, type: postgres, url: "${source.url}", resync: { rowsPerSecond: 0 }, postgres: { catalogCheckIntervalMs: 200 } }`,
    `storage: { url: "file://${work}/backup" }`,
    'segments: { flushIntervalMs: 200 }',
    'phi:',
    `  keyring: "file://${keyring}"`,
    // Synthetic, non-PHI columns: reviewed as public, so they travel in clear.
    '  publicColumns: { public.k: [id, note], public.u: [id, note], public.w: [id, x] }',
    'log: { level: info, format: json }',
  ].join('\n'));
  const runLog = join(work, 'run.log');
  const store = new FsObjectStore(`${work}/backup`);
  const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
  const startWriter = (from: number): Promise<number> => insertWriter((sql) => source.exec(sql), 'w', from, () => stopWriter);
  const relfilenode = async (t: string): Promise<string> => String((await source.capture(`(SELECT relfilenode FROM pg_class WHERE oid = 'public.${t}'::regclass) x`, '1'))[0]!.relfilenode);
  const kept = (): number => logLines(runLog, 'table rewritten with its values kept: not re-read').filter((l) => l.table === 'public.k').length;
  const waitKept = async (n: number): Promise<void> => {
    for (let i = 0; kept() < n; i++) {
      assert.ok(i < 1200, `the rewrite of k was classified ${n} times (got ${kept()}); see ${runLog}`);
      await sleep(100);
    }
  };

  run = new ChartlogRun(configFile, runLog);
  await run.start();
  writer = startWriter(0);
  await sleep(1000);
  let before = await relfilenode('k');
  await source.exec('CLUSTER k USING k_pkey');
  assert.notEqual(await relfilenode('k'), before, 'CLUSTER gave k a new relfilenode');
  await waitKept(1);
  before = await relfilenode('k');
  await source.exec('VACUUM FULL k');
  assert.notEqual(await relfilenode('k'), before, 'VACUUM FULL gave k a new relfilenode');
  await waitKept(2);
  await source.exec('ALTER TABLE u ALTER COLUMN note TYPE text USING upper(note)');
  await waitResynced(runLog, ['public.u']);
  await source.exec(`UPDATE k SET note = 'running' WHERE id = 1`);
  await sleep(500);
  await checkpointPast(BigInt(Date.now()) * 1000n);
  stopWriter = true;
  const first = await writer;
  await run.stop();

  // While stopped: VACUUM FULL again, and a change.
  before = await relfilenode('k');
  await source.exec('VACUUM FULL k');
  assert.notEqual(await relfilenode('k'), before, 'VACUUM FULL gave k a new relfilenode');
  await source.exec(`UPDATE k SET note = 'stopped' WHERE id = 2`);

  stopWriter = false;
  await run.start();
  writer = startWriter(first + 2000);
  await waitKept(3);
  await sleep(1000);
  const afterUs = BigInt(Date.now()) * 1000n;
  await checkpointPast(afterUs);
  stopWriter = true;
  assert.ok((await writer) > 10, 'the concurrent writer committed');
  await run.stop();

  const requested = new Set(logLines(runLog, 'table resync requested').flatMap((l) => l.tables as string[]));
  assert.ok(requested.has('public.u'), 'ALTER … TYPE … USING is re-read');
  assert.ok(!requested.has('public.k'), 'VACUUM FULL and CLUSTER are not re-read');

  for (const t of ['k', 'u']) {
    const target = await newDb();
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(afterUs), '--target', target.url, '--tables', `public.${t}`]);
    assert.equal(r.code, 0, `${t}: ${r.stderr.slice(0, 2000)}`);
    const diff = diffCaptures(await target.capture(t, 'id'), await source.capture(t, 'id'), `${t} after`);
    assert.equal(diff, null, diff ?? '');
  }
});
