import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { formatUs } from '../../src/archive/layout.js';
import { buildTimeline, renderTimeline } from '../../src/restore/timeline.js';
import { catalogStatesPrefix } from '../../src/archive/catalog-states.js';
import { tableSnapshotsPrefix } from '../../src/archive/snapshot-manifest.js';
import { unprovenPrefix } from '../../src/archive/unproven-tables.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { logLines } from '../support/pausable-writer.js';
import { createMariadbDatabase, createPgDatabase, diffCaptures, type Captured, type TestDatabase } from '../support/restore-engines.js';
import { checkpointPast as checkpointPastIn } from '../support/ddl-matrix.js';
import { testWorkspace } from '../support/test-workspace.js';

/**
 * Issue 14, the two holes around an automatic resync, on PostgreSQL and MariaDB under a concurrent
 * writer:
 * 1. A DDL that changes every row without row events (PostgreSQL `ALTER … TYPE … USING
 *    upper(note)`, a table rewrite; MariaDB `MODIFY amount DECIMAL(10,0)`, which rounds) makes `chartlog run` record
 *    the request in the archive (unproven/) and start a throttled resync; the run is killed with
 *    SIGKILL before the resync stores its base. The restarted run re-runs it from the record, and
 *    a restore after it equals the source value by value.
 * 2. Until that base, the table is unproven: a restore to a moment after the ALTER is refused
 *    (exit 2, naming the table, the window and the fix), before and after the new base too; the
 *    timeline shows the window; a restore before the ALTER and one after the base are unchanged.
 */

const ENGINES = [
  {
    label: 'PostgreSQL',
    create: createPgDatabase,
    table: (_db: TestDatabase) => 'public.t',
    ddl: 'ALTER TABLE t ALTER COLUMN note TYPE text USING upper(note)',
    sourceExtra: 'postgres: { catalogCheckIntervalMs: 200 }',
  },
  {
    label: 'MariaDB',
    create: createMariadbDatabase,
    table: (db: TestDatabase) => `${db.name}.t`,
    ddl: 'ALTER TABLE t MODIFY amount DECIMAL(10,0)',
    sourceExtra: `mysql: { serverId: ${80000 + Math.floor(Math.random() * 10000)} }`,
  },
] as const;

for (const engine of ENGINES) {
  test(`${engine.label}: a rewriting DDL's resync survives kill -9 (recorded in the archive, re-run at start); a restore inside the unproven window is refused`, { timeout: 420_000 }, async () => {
    const { work, source, newDb, keyring, configFile, onEnd } = await testWorkspace('rswin', engine.create);
    let run: ChartlogRun | null = null;
    let stopWriter = false;
    let writer: Promise<number> | null = null;
    onEnd(async () => {
      stopWriter = true;
      await writer?.catch(() => 0);
      await run?.close();
    });

    const t = engine.table(source);
    const w = t.replace(/\.t$/, '.w');
    await source.exec('CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(200), amount DECIMAL(10,2))');
    await source.exec('CREATE TABLE w (id INT PRIMARY KEY, x INT)');
    // Fractions DECIMAL(10,0) rounds up or down, notes upper() changes: the DDL changes every row.
    const rows = Array.from({ length: 2000 }, (_, i) => `(${i + 1}, 'note-${i + 1}', ${i + 1}.${i % 2 ? '35' : '72'})`);
    await source.exec(`INSERT INTO t VALUES ${rows.join(', ')}`);

    writeFileSync(configFile, [
      'sources:',
      // 50 rows/s: a resync of t's 2,000 rows takes ≈ 40 s, so the kill surely falls inside it —
      // it waits for the checkpoint to pass the ALTER first, seconds on a loaded machine (with 400
      // rows, 8 s, that wait could outlast the resync). The restart reads them unthrottled.
      `  - { name: clinic, type: ${source.type}, url: "${source.url}", tables: [${t}, ${w}], resync: { rowsPerSecond: 50 }, ${engine.sourceExtra} }`,
      `storage: { url: "file://${work}/backup" }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${keyring}"`,
      `  publicColumns: { ${t}: [id, note, amount], ${w}: [id, x] }`,
      'log: { level: info, format: json }',
    ].join('\n'));
    const runLog = join(work, 'run.log');
    run = new ChartlogRun(configFile, runLog);
    await run.start();

    writer = (async () => {
      let n = 0;
      while (!stopWriter) {
        n++;
        await source.exec(`INSERT INTO w VALUES (${n}, ${n})`);
        await sleep(20);
      }
      return n;
    })();

    const store = new FsObjectStore(`${work}/backup`);
    const keys = async (prefix: string): Promise<string[]> => {
      const out: string[] = [];
      for await (const o of store.listAll(prefix)) out.push(o.key);
      return out;
    };
    const checkpointPast = (us: bigint): Promise<void> => checkpointPastIn(store, 'clinic', us);
    const waitFor = async (what: string, ok: () => boolean | Promise<boolean>): Promise<void> => {
      for (let i = 0; !(await ok()); i++) {
        assert.ok(i < 1200, `${what}; see ${runLog}`);
        await sleep(100);
      }
    };
    const restore = async (us: bigint): Promise<{ code: number; stderr: string; target: TestDatabase }> => {
      const target = await newDb();
      const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', formatUs(us), '--target', target.url, '--tables', t]);
      return { code: r.code, stderr: r.stderr, target };
    };

    // Over a second after the initial snapshot: MariaDB commit times (the snapshot's too) are whole seconds.
    await sleep(1500);
    const beforeUs = BigInt(Date.now()) * 1000n;
    const before: Captured = await source.capture('t');
    // PostgreSQL: past a few catalog readings (every 200 ms) that still show the old table, as the
    // window starts after them; MariaDB: commit times are whole seconds, so over a second apart.
    // The window starts at the last reading that still saw the old table (its stream position and
    // statement time). Under load readings come late and the stream runs behind (seen on CI: the
    // window began 1.6 s before `beforeUs`), so the ALTER waits until the stream has durably
    // passed `beforeUs` by a second, then for about ten more reading intervals.
    await sleep(1500);
    await checkpointPast(beforeUs + 1_000_000n);
    await sleep(2000);
    await source.exec(engine.ddl);
    const afterAlter = await source.capture('t');
    assert.notEqual(diffCaptures(afterAlter, before, 't'), null, 'the ALTER changed the stored values');
    await sleep(50);
    const insideUs = BigInt(Date.now()) * 1000n;

    // 1. Recorded in the archive, the resync under way (throttled), then kill -9 before its base.
    await waitFor('the request was recorded under unproven/', async () => (await keys(`${unprovenPrefix('clinic')}${t}/`)).length === 1);
    await waitFor('the automatic resync started', () => logLines(runLog, 'table resync started').length >= 1);
    await checkpointPast(insideUs); // the stream acknowledged past the ALTER: only the record remembers it
    // Frozen while the log is read, so the resync cannot finish between the look and the kill.
    assert.ok(run.signal('SIGSTOP'), 'chartlog run is still running');
    assert.equal(logLines(runLog, 'automatic table resync finished').length, 0, 'still reading when killed');
    await run.stop('SIGKILL');
    // PostgreSQL: the catalog state with the new relfilenode is stored at the catalog check after
    // the request. A kill -9 before it is planted here by removing every state stored after the
    // request (if the kill did not already come first): the restart then finds the rewrite again
    // against the older state, and must know it from the request's record (its relfilenode),
    // not open a second window from that older state's reading (as far back as the snapshot:
    // the restore before the ALTER, below, would be refused; so it was before this fix).
    if (engine.label === 'PostgreSQL') {
      const requestedUs = BigInt(Date.parse(JSON.parse(readFileSync(join(`${work}/backup`, (await keys(`${unprovenPrefix('clinic')}${t}/`))[0]!), 'utf8')).requestedAt as string)) * 1000n;
      for (const key of await keys(catalogStatesPrefix('clinic'))) {
        if (BigInt(/-(\d{16})\.json$/.exec(key)![1]!) >= requestedUs) await store.delete(key);
      }
    }
    assert.deepEqual((await keys(tableSnapshotsPrefix('clinic'))).filter((k) => k.endsWith('/manifest.json')), [], 'the killed resync stored no base');

    // 2. Inside the window, no base yet: refused, naming the table, the window and the fix.
    const pending = await restore(insideUs);
    assert.equal(pending.code, 2, pending.stderr.slice(0, 2000));
    assert.ok(pending.stderr.includes(`${t}: unproven from `) && pending.stderr.includes('until a resync of the table stores its new base (pending)'), pending.stderr.slice(0, 2000));
    assert.ok(/pick a moment before /.test(pending.stderr) && pending.stderr.includes(`chartlog resync --tables ${t}`), pending.stderr.slice(0, 2000));
    assert.deepEqual(await pending.target.capture('t').catch(() => []), [], 'nothing written to the target');
    // The timeline, as `chartlog timeline` builds it (in this process: one CLI start less).
    const timeline = buildTimeline(await readArchiveIndex(store, 'clinic'));
    assert.deepEqual(timeline.unproven.map((u) => [u.table, u.until]), [[t, null]], 'timeline shows the pending window');
    assert.match(renderTimeline(timeline), new RegExp(`unproven windows \\(1\\)[^\\n]*\\n\\s+${t.replace('.', '\\.')}\\s+\\S+ → pending resync`));

    // 3. The restart re-runs the recorded resync (unthrottled now, to keep the test short); the
    // window closes at its base.
    writeFileSync(configFile, readFileSync(configFile, 'utf8').replace('rowsPerSecond: 50', 'rowsPerSecond: 0'));
    await run.start();
    await waitFor('the restarted run re-ran the recorded resync', () => logLines(runLog, 'automatic table resync finished').some((l) => (l.tables as string[]).includes(t)));
    assert.ok(logLines(runLog, 'table resyncs recorded before this start and not finished: running them again').length >= 1, 'it came from the record');
    if (engine.label === 'PostgreSQL') assert.ok(logLines(runLog, 'table rewrite already recorded in the archive before this start: no new window').length >= 1, 'the restart found the rewrite again and knew it recorded');
    // Over a second of the writer's commits after the new base (MariaDB: whole-second commit times).
    await sleep(1500);
    const afterUs = BigInt(Date.now()) * 1000n;
    await checkpointPast(afterUs);
    stopWriter = true;
    const commits = await writer;
    assert.ok(commits > 20, `the concurrent writer committed ${commits} times`);
    await run.stop();

    for (const [label, us, want] of [['before the ALTER', beforeUs, before], ['after the resync', afterUs, afterAlter]] as const) {
      const r = await restore(us);
      assert.equal(r.code, 0, `${label}: ${r.stderr.slice(0, 2000)}`);
      const diff = diffCaptures(await r.target.capture('t'), want, `t ${label}`);
      assert.equal(diff, null, diff ?? '');
    }
    // The window stays (the record is evidence, never deleted), now ending at the stored base:
    // a restore inside it is still refused (unit-tested in unproven-tables.test.ts).
    const closed = buildTimeline(await readArchiveIndex(store, 'clinic')).unproven;
    assert.equal(closed.length, 1);
    assert.ok(closed[0]!.until !== null && closed[0]!.base !== null, 'the window ends at the new base');
  });
}
