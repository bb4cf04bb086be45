import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runChartlog, type ChartlogResult } from '../support/chartlog-process.js';
import { describeHits, scanForCanaries, scanTextForCanaries, type ScanStats } from '../support/leak-scan.js';
import { CANARY, createClinicTables, mariadbEngine, PHI_CANARIES, postgresEngine, prng, RunHarness, Workload, type Engine } from '../support/run-harness.js';

/**
 * Issue 13, item 1, "a typo leaks PHI", against real servers on both engines: a PHI column or
 * table name that matches nothing stops `chartlog run` (exit 2, the configuration path and the
 * closest name, nothing written), and a name in the wrong case (`SSN` for the column `ssn`)
 * seals the column. The leak scanner decodes every stored object; the negative control (ssn
 * not configured) shows it finds the canary when the column is not sealed.
 */

const engines: [string, () => Promise<Engine>][] = [
  ['postgres', postgresEngine],
  ['mariadb', mariadbEngine],
];

/** The same refusal from `chartlog run`, `chartlog snapshot --from-source` and `config check --source-check`. */
async function refusals(h: RunHarness): Promise<ChartlogResult[]> {
  const out: ChartlogResult[] = [];
  for (const args of [['run'], ['snapshot', '--from-source'], ['config', 'check', '--source-check']]) {
    out.push(await runChartlog([...args, '--config', h.configFile], h.env));
  }
  return out;
}

async function assertNothingWritten(h: RunHarness): Promise<void> {
  assert.deepEqual(await h.storedObjects(), [], 'the store stays empty');
  if (h.engine.type === 'postgres') {
    const slots = await h.engine.query(`SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, '${h.slotName}')`);
    assert.deepEqual(slots, [], 'no replication slot created on the source');
    const pubs = await h.engine.query(`SELECT pubname FROM pg_publication WHERE pubname = '${h.slotName}'`);
    assert.deepEqual(pubs, [], 'no publication created on the source');
  }
}

function assertNoCanaries(results: readonly ChartlogResult[]): void {
  for (const r of results) {
    const hits = [...scanTextForCanaries('stdout', r.stdout, PHI_CANARIES), ...scanTextForCanaries('stderr', r.stderr, PHI_CANARIES)];
    assert.deepEqual(hits, [], `PHI in CLI output:\n${describeHits(hits)}`);
  }
}

/** A run with these `phi:` lines until the archive equals the source; every stored object scanned. */
async function runAndScan(make: () => Promise<Engine>, phi: (patients: string) => string[]): Promise<{ ssnHits: number; nameHits: number; stats: ScanStats; log: string }> {
  const engine = await make();
  const h = new RunHarness(engine, 'file', { phi: (p) => phi(p) });
  try {
    await createClinicTables(engine);
    const checked = await runChartlog(['config', 'check', '--source-check', '--config', h.configFile], h.env);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /# source clinic: ready for CDC; every PHI name matches its 2 captured tables/);
    const workload = new Workload(engine, prng(13));
    await h.start();
    for (let i = 0; i < 40; i++) await workload.transaction();
    assert.equal(await h.converge(), '', 'the archive, PHI opened, equals the source');
    await sleep(300);
    assert.equal(await h.kill('SIGTERM'), 0, 'clean stop');
    const stats: ScanStats = { objects: 0, decoded: 0 };
    const hits = scanForCanaries(await h.storedObjects(), PHI_CANARIES, stats);
    assert.ok(stats.objects > 5 && stats.decoded > 5, `the scan decoded what it searched (${stats.objects} objects, ${stats.decoded} decoded views)`);
    return { ssnHits: hits.filter((x) => CANARY.startsWith(x.canary)).length, nameHits: hits.filter((x) => x.canary.startsWith('CANARY-NAME')).length, stats, log: h.logText() };
  } finally {
    await h.close();
    await engine.close();
  }
}

for (const [kind, make] of engines) {
  test(`${kind}: a misspelt PHI column (SNN) stops run, snapshot --from-source and config check --source-check with exit 2, naming it and suggesting ssn; nothing written`, { timeout: 300_000 }, async () => {
    const engine = await make();
    const h = new RunHarness(engine, 'file', { phi: (p) => [`columns: { ${p}: [full_name, SNN] }`] });
    try {
      await createClinicTables(engine);
      const results = await refusals(h);
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 2, `command ${i}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`phi\\.columns\\."${h.engine.qualified('patients').replace('.', '\\.')}"\\[1\\] = "SNN": table ${h.engine.qualified('patients').replace('.', '\\.')} of source clinic has no column "SNN"`));
        assert.match(r.stderr, /fix: phi\.columns\."[^"]+"\[1\]: did you mean "ssn"\?/);
      }
      const said = results.map((r) => r.stderr.slice(r.stderr.indexOf('chartlog: ')));
      assert.equal(said[1], said[0], 'snapshot --from-source says what run says');
      assert.equal(said[2], said[0], 'config check --source-check says what run says');
      assertNoCanaries(results);
      await assertNothingWritten(h);
      assert.equal(existsSync(join(h.work, 'backup')), false, 'not even the backup root was created');
    } finally {
      await h.close();
      await engine.close();
    }
  });

  test(`${kind}: a misspelt PHI table stops run with exit 2, suggesting the captured table; nothing written`, { timeout: 300_000 }, async () => {
    const engine = await make();
    const h = new RunHarness(engine, 'file', { phi: (p) => [`columns: { ${p.replace('patients', 'patinets')}: [ssn] }`] });
    try {
      await createClinicTables(engine);
      const r = await runChartlog(['run', '--config', h.configFile], h.env);
      assert.equal(r.code, 2, r.stderr);
      const wrong = h.engine.qualified('patinets').replace('.', '\\.');
      assert.match(r.stderr, new RegExp(`phi\\.columns\\."${wrong}": no table ${wrong} is captured by source clinic`));
      assert.match(r.stderr, new RegExp(`did you mean "${h.engine.qualified('patients').replace('.', '\\.')}"\\?`));
      assertNoCanaries([r]);
      await assertNothingWritten(h);
    } finally {
      await h.close();
      await engine.close();
    }
  });

  test(`${kind}: SSN (wrong case) for the column ssn is sealed — and the control without it leaves the canary findable`, { timeout: 240_000 }, async () => {
    const sealed = await runAndScan(make, (p) => [`columns: { ${p}: [full_name, SSN] }`]);
    assert.equal(sealed.ssnHits, 0, 'no SSN canary in any decoded object');
    assert.equal(sealed.nameHits, 0, 'no name canary either');
    const leaks = scanTextForCanaries('chartlog.log', sealed.log, PHI_CANARIES);
    assert.deepEqual(leaks, [], `PHI in the log:\n${describeHits(leaks)}`);

    // Negative control: the same run with ssn not configured on a non-strict table, and
    // unclassified columns explicitly in clear. The scanner must find its canary, or the
    // assertion above proves nothing.
    const control = await runAndScan(make, (p) => [`columns: { ${p}: [full_name] }`, 'unclassified: clear']);
    assert.ok(control.ssnHits > 0, 'the scanner finds the unsealed SSN canary');
    assert.equal(control.nameHits, 0, 'full_name is still sealed in the control');
  });
}
