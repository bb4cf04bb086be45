import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeHits, scanTextForCanaries } from '../support/leak-scan.js';
import { createClinicTables, mariadbEngine, postgresEngine, RunHarness, type Engine } from '../support/run-harness.js';

/**
 * Issue 13, item 3, the PHI guard in the stream, against real servers: `chartlog run` with the
 * ssn column reviewed (wrongly) as public warns, within seconds, naming the table, the column
 * and the detector, never the value; the clean clear column (note) raises nothing. The negative
 * control for "never the value": the same scan finds the values in the source rows it wrote.
 */

const engines: [string, () => Promise<Engine>][] = [
  ['postgres', postgresEngine],
  ['mariadb', mariadbEngine],
];

/** Synthetic SSN-shaped values (valid area, group and serial), not anyone's. */
const ssnOf = (i: number) => `${200 + i}-${String(20 + i)}-${String(4000 + i)}`;

for (const [kind, make] of engines) {
  test(`${kind}: a clear column carrying SSN-shaped values raises the PHI guard's warning; a clean one does not`, { timeout: 300_000 }, async () => {
    const engine = await make();
    const h = new RunHarness(engine, 'file', {
      phi: (p, v) => [`columns: { ${p}: [full_name] }`, `publicColumns: { ${p}: [id, ssn, note, visits_count], ${v}: [id, patient_id, reason] }`],
    });
    try {
      await createClinicTables(engine);
      await h.start();
      const ssns: string[] = [];
      const guardLines = () => h.logText().split('\n').filter((l) => l.includes('PHI guard'));
      for (let i = 0; i < 40 && guardLines().length === 0; i++) {
        ssns.push(ssnOf(i));
        await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) VALUES (${100 + i}, 'CANARY-NAME-${100 + i}', '${ssnOf(i)}', 'routine visit ${i}')`);
        await sleep(250);
      }
      // The warning comes once the run has read the rows: waited for in clock time, generous (a
      // loaded machine's run can trail the 10 s of inserts by more than a fixed 500 ms).
      for (const deadline = Date.now() + 120_000; guardLines().length === 0 && Date.now() < deadline; ) await sleep(250);
      await sleep(500);
      const lines = guardLines();
      assert.ok(lines.length >= 1, `the guard warned (see ${h.logFile})`);
      for (const l of lines) {
        assert.match(l, /"level":40/);
        assert.match(l, /"phiTable":"[^"]+\.patients"/);
        assert.match(l, /"phiColumn":"ssn"/, 'only ssn is named');
        assert.match(l, /"detector":"national-id"/);
      }
      assert.equal(lines.filter((l) => /"phiColumn":"(note|id|visits_count)"/.test(l)).length, 0, 'the clean clear columns raise nothing');
      assert.equal(await h.kill('SIGTERM'), 0, 'the guard warns; the backup goes on and stops cleanly');
      const leaks = scanTextForCanaries('chartlog.log', h.logText(), ssns);
      assert.deepEqual(leaks, [], `an SSN value in the log:\n${describeHits(leaks)}`);
      // Negative control: the scan finds the values where they are (the source rows).
      const rows = JSON.stringify(await engine.query(`SELECT ssn FROM patients WHERE id >= 100`));
      assert.ok(scanTextForCanaries('source rows', rows, ssns).length > 0);
    } finally {
      await h.close();
      await engine.close();
    }
  });
}
