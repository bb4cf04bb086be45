import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { formatUs } from '../../src/archive/layout.js';
import { createClinicTables, mariadbEngine, RunHarness } from '../support/run-harness.js';
import mysql from 'mysql2/promise';
import { createMariadbDatabase, diffCaptures, type Captured, type TestDatabase } from '../support/restore-engines.js';

/**
 * Issue 14, "one commit with a clock stepped forward": on real MariaDB under `chartlog run`, one
 * transaction is committed with its session clock stepped 5 s forward (`SET timestamp`, which
 * stamps the binlog events as a source whose clock was stepped would), then the clock is right
 * again. `restore --to` a moment inside the stepped range — after a later transaction stamped
 * earlier, before the stepped one — is refused (exit 2, nothing written), naming both
 * positions; each position it offers restores exactly the source at that point; a moment before
 * the step and one after it restore as before; `timeline --json` shows the stretch.
 */

const STEP_S = 5;

test('MariaDB: a clock stepped forward for one commit makes a --to time inside the step refused with the positions to use; positions and times outside restore exactly', { timeout: 300_000 }, async () => {
  const engine = await mariadbEngine();
  const h = new RunHarness(engine, 'file');
  const visits = engine.qualified('visits');
  const targets: TestDatabase[] = [];
  // The source's rows as the server's text bytes in hex, as restore-engines captures a target.
  const reader = await mysql.createConnection({ uri: engine.url, typeCast: (field) => field.buffer()?.toString('hex') ?? null });
  const rows = async (): Promise<Captured> => (await reader.query('SELECT * FROM visits ORDER BY id'))[0] as Captured;
  /** A moment more than a second after the last commit (commit times have whole seconds), with the source's rows then. */
  const moment = async (): Promise<{ iso: string; us: bigint; rows: Captured }> => {
    await sleep(1100);
    const us = BigInt(Date.now()) * 1000n;
    const at = { iso: formatUs(us), us, rows: await rows() };
    await sleep(1100);
    return at;
  };
  const restore = async (to: string): Promise<{ code: number | null; output: string; rows: Captured; tables: string[] }> => {
    const target = await createMariadbDatabase('clkstep');
    targets.push(target);
    const r = await h.runToEnd(['restore', '--source', 'clinic', '--to', to, '--tables', visits, '--target', target.url], 120_000);
    const tables = await target.tables();
    return { ...r, rows: tables.includes('visits') ? await target.capture('visits') : [], tables };
  };
  const same = (actual: Captured, expected: Captured, label: string): void => {
    const diff = diffCaptures(actual, expected, label);
    assert.equal(diff, null, diff ?? '');
  };
  try {
    await createClinicTables(engine);
    await engine.exec(`INSERT INTO visits VALUES (1, 1, 'before')`);
    await h.start();
    await engine.exec(`INSERT INTO visits VALUES (2, 1, 'normal clock')`);
    const beforeStep = await moment();
    // The stepped commit, then the clock set right: later commits are stamped before it.
    await engine.exec(`SET timestamp = UNIX_TIMESTAMP() + ${STEP_S}; INSERT INTO visits VALUES (3, 1, 'stepped'); SET timestamp = DEFAULT`);
    const throughStepped = await rows();
    await engine.exec(`INSERT INTO visits VALUES (4, 1, 'clock set right')`);
    const inside = await moment();
    // Past the stepped commit's second: every commit so far is within.
    const stepEnd = BigInt(Date.now()) * 1000n + BigInt(STEP_S) * 1_000_000n;
    while (BigInt(Date.now()) * 1000n < stepEnd) await sleep(250);
    await engine.exec(`INSERT INTO visits VALUES (5, 1, 'after the step')`);
    const afterStep = await moment();
    await engine.exec(`INSERT INTO visits VALUES (6, 1, 'last')`);
    for (const deadline = Date.now() + 120_000; ; ) {
      const cp = await readCheckpoint(h.store, 'clinic');
      if (cp && cp.commitTsUs > afterStep.us) break;
      assert.ok(Date.now() < deadline, `the checkpoint passed the last moment (see ${h.logFile})`);
      await sleep(200);
    }

    // The planted case is in the archive: the timeline shows one stretch, from the stepped commit to the one after it.
    const timeline = await h.runToEnd(['timeline', '--source', 'clinic', '--json']);
    assert.equal(timeline.code, 0, timeline.output);
    // The JSON array on stdout, among the JSON log lines on stderr.
    const start = timeline.output.indexOf('[\n');
    const [section] = JSON.parse(timeline.output.slice(start, timeline.output.indexOf('\n]', start) + 2)) as [{ nonMonotonic: { fromPosition: string; toPosition: string; from: string; to: string }[] }];
    const stretches = section.nonMonotonic;
    assert.equal(stretches.length, 1, JSON.stringify(stretches));
    const [stretch] = stretches as [(typeof stretches)[0]];
    assert.ok(BigInt(Date.parse(stretch.from)) * 1000n > inside.us, `the stepped commit is stamped after the moment inside (${stretch.from})`);

    // Inside: refused, naming both positions and their stamps; nothing written to the target.
    const refused = await restore(inside.iso);
    assert.equal(refused.code, 2, refused.output);
    assert.ok(refused.output.includes(`position ${stretch.fromPosition} is stamped ${stretch.from}`), refused.output);
    assert.ok(refused.output.includes(`precedes position ${stretch.toPosition}, stamped ${stretch.to}`), refused.output);
    assert.deepEqual(refused.tables, [], 'nothing was written');
    const offered = /--to (\S+) \(everything before \S+\) or --to (\S+) \(through/.exec(refused.output);
    assert.ok(offered, refused.output);
    const [, beforePos, throughPos] = offered as unknown as [string, string, string];
    assert.equal(throughPos, stretch.toPosition);

    // The positions offered restore exactly: everything before the stepped commit, and through the one after it.
    const before = await restore(beforePos);
    assert.equal(before.code, 0, before.output);
    same(before.rows, beforeStep.rows, `--to ${beforePos}`);
    assert.equal(before.rows.length + 1, throughStepped.length, 'the stepped commit is left out');
    const through = await restore(throughPos);
    assert.equal(through.code, 0, through.output);
    same(through.rows, inside.rows, `--to ${throughPos}`);
    assert.equal(through.rows.length, 4, 'the stepped commit and the one after it are in');

    // Outside the stretch: times restore as before.
    for (const m of [beforeStep, afterStep]) {
      const r = await restore(m.iso);
      assert.equal(r.code, 0, r.output);
      same(r.rows, m.rows, `--to ${m.iso}`);
    }
  } finally {
    await reader.end();
    for (const t of targets) await t.drop();
    await h.close();
    await engine.close();
  }
});
