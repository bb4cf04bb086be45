import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runChartlog } from '../support/chartlog-process.js';
import { describeHits, scanForCanaries, scanTextForCanaries, type ScanStats } from '../support/leak-scan.js';
import { createClinicTables, mariadbEngine, PHI_CANARIES, postgresEngine, prng, RunHarness, Workload, type Engine } from '../support/run-harness.js';

/**
 * Issue 13, item 2, "fail closed by default, without stopping the backup", against real servers
 * on both engines: a column added by ALTER TABLE while `chartlog run` streams, classified neither
 * as PHI nor as reviewed public, is sealed under the default `phi.unclassified: seal` — the
 * decoding leak scanner finds its canary nowhere in clear in the store or the log — while the
 * backup goes on, the archive, PHI opened, equals the source (new column included), and
 * `chartlog restore` gives the column's values back. The
 * stored schema of the new table version records the column as sealed. The negative control,
 * `phi.unclassified: clear`, leaves the canary findable.
 */

const ALLERGY = 'CANARY-ALLERGY-';

const engines: [string, () => Promise<Engine>][] = [
  ['postgres', postgresEngine],
  ['mariadb', mariadbEngine],
];

interface Outcome {
  allergyHits: number;
  phiHits: number;
  stats: ScanStats;
  log: string;
  /** Per stored table version of patients that has the column: whether `allergy` is sealed. */
  allergySealed: boolean[];
}

async function runWithNewColumn(make: () => Promise<Engine>, extraPhi: string[]): Promise<Outcome> {
  const engine = await make();
  const h = new RunHarness(engine, 'file', {
    // Not strict: patients' own columns are classified; the column added below is not.
    phi: (p, v) => [`columns: { ${p}: [full_name, ssn] }`, `publicColumns: { ${p}: [id, note, visits_count], ${v}: [id, patient_id, reason] }`, ...extraPhi],
  });
  try {
    await createClinicTables(engine);
    const workload = new Workload(engine, prng(21));
    await h.start();
    for (let i = 0; i < 10; i++) await workload.transaction();
    await engine.exec(`ALTER TABLE patients ADD COLUMN allergy VARCHAR(100)`);
    for (let i = 0; i < 5; i++) {
      await engine.exec(`UPDATE patients SET allergy = '${ALLERGY}${i}' WHERE id = (SELECT MIN(id) FROM (SELECT id FROM patients) p)`);
      await engine.exec(`INSERT INTO patients (id, full_name, ssn, note, allergy) VALUES (${1000 + i}, 'CANARY-NAME-${1000 + i}', 'CANARY-SSN-${1000 + i}', 'n', '${ALLERGY}${1000 + i}')`);
    }
    // The backup goes on after the new column: more changes, all of them archived.
    for (let i = 0; i < 10; i++) await workload.transaction();
    assert.equal(await h.converge(), '', 'the archive, PHI opened, equals the source, the new column included');
    const withAllergy = await engine.query(`SELECT COUNT(*) AS n FROM patients WHERE allergy LIKE '${ALLERGY}%'`);
    assert.ok(Number(withAllergy[0]!.n) >= 5, 'the source holds canary values in the new column');
    await sleep(300);
    assert.equal(await h.kill('SIGTERM'), 0, 'clean stop: the new column did not stop the backup');
    // chartlog restore (PHI opened with the keyring) gives the new column's values back.
    const out = join(h.work, 'restored');
    const r = await runChartlog(['restore', '--config', h.configFile, '--source', 'clinic', '--to', 'latest', '--out', out, '--format', 'jsonl', '--tables', engine.qualified('patients')], h.env);
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    const file = readdirSync(out).find((f) => f.endsWith('patients.jsonl'))!;
    const restored = new Map(readFileSync(join(out, file), 'utf8').split('\n').filter((l) => l !== '').map((l) => { const o = JSON.parse(l) as { id: unknown; allergy: unknown }; return [String(o.id), o.allergy ?? null]; }));
    const expected = await engine.query(`SELECT id, allergy FROM patients`);
    assert.equal(restored.size, expected.length);
    for (const row of expected) assert.equal(restored.get(String(row.id)), row.allergy ?? null, `patient ${String(row.id)}: allergy restored`);
    const objects = await h.storedObjects();
    const stats: ScanStats = { objects: 0, decoded: 0 };
    const hits = scanForCanaries(objects, [ALLERGY, ...PHI_CANARIES], stats);
    assert.ok(stats.objects > 5 && stats.decoded > 5, `the scan decoded what it searched (${stats.objects} objects, ${stats.decoded} decoded views)`);
    const allergySealed: boolean[] = [];
    for (const o of objects.filter((x) => x.key.includes('/schemas/'))) {
      const schema = JSON.parse(Buffer.from(o.bytes).toString('utf8')) as { 'chartlog.table'?: { table: string; columns: { name: string; sealed: boolean }[] } };
      const t = schema['chartlog.table'];
      const c = t?.table === 'patients' ? t.columns.find((x) => x.name === 'allergy') : undefined;
      if (c) allergySealed.push(c.sealed);
    }
    return {
      // A hit is labelled with the canary's first characters, never the value found.
      allergyHits: hits.filter((x) => ALLERGY.startsWith(x.canary)).length,
      phiHits: hits.filter((x) => !ALLERGY.startsWith(x.canary)).length,
      stats,
      log: h.logText(),
      allergySealed,
    };
  } finally {
    await h.close();
    await engine.close();
  }
}

for (const [kind, make] of engines) {
  test(`${kind}: a column added mid-stream and not classified is sealed by default and the backup goes on; with unclassified: clear the scanner finds it`, { timeout: 300_000 }, async () => {
    const sealed = await runWithNewColumn(make, []);
    assert.equal(sealed.allergyHits, 0, 'the new column is nowhere in clear in any decoded object');
    assert.equal(sealed.phiHits, 0, 'nor are the configured PHI columns');
    assert.ok(sealed.allergySealed.length > 0 && sealed.allergySealed.every((s) => s), `the stored table version records allergy as sealed (${JSON.stringify(sealed.allergySealed)})`);
    const logLeaks = scanTextForCanaries('chartlog.log', sealed.log, [ALLERGY, ...PHI_CANARIES]);
    assert.deepEqual(logLeaks, [], `PHI in the log:\n${describeHits(logLeaks)}`);
    const reports = sealed.log.split('\n').filter((l) => l.includes('"phiColumn":"allergy"'));
    assert.equal(reports.length, 1, `the new column is reported once:\n${reports.join('\n')}`);
    assert.match(reports[0]!, /"level":40/);
    assert.match(reports[0]!, /"phiTable":"[^"]+\.patients"/);
    assert.match(reports[0]!, /sealed like PHI \(phi\.unclassified: seal\)/);

    // Negative control: the same run with unclassified columns explicitly in clear. The scanner
    // must find the canary, or the assertion above proves nothing.
    const control = await runWithNewColumn(make, ['unclassified: clear']);
    assert.ok(control.allergyHits > 0, 'the scanner finds the new column in clear under unclassified: clear');
    assert.equal(control.phiHits, 0, 'the configured PHI columns are still sealed in the control');
    assert.ok(control.allergySealed.length > 0 && control.allergySealed.every((s) => !s), 'and the stored version records it as clear');
    assert.match(control.log, /"phiColumn":"allergy".*stored in clear \(phi\.unclassified: clear\)/);
  });
}
