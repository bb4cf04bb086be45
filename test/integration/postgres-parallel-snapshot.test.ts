import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createClinicTables, postgresEngine, prng, RunHarness, type Engine } from '../support/run-harness.js';
import { createPgDatabase, type TestDatabase } from '../support/restore-engines.js';

/**
 * A base snapshot read in parallel key ranges (`snapshot.connections: 3`, every connection in
 * the one exported snapshot) while pgbench-style writers commit, then the stream after it:
 * `chartlog restore --to T` for a moment T after the snapshot, with later writes in the archive
 * that T must leave out, equals the source as it was at T, value by value, PHI opened. The
 * test also shows the premises: the snapshot was read in several ranges, and writers committed
 * between its start and its end (so rows changed under the reading connections).
 */

const SEED_ROWS = 10_000;
const WRITERS = 3;

/** Every column of both tables as text, in key order: how the source and a restored target are compared. */
async function sourceImage(engine: Engine): Promise<string> {
  const patients = await engine.query(`SELECT id::text, full_name, ssn, note, visits_count::text FROM patients ORDER BY patients.id`);
  const visits = await engine.query(`SELECT id::text, patient_id::text, reason FROM visits ORDER BY visits.id`);
  return JSON.stringify({ patients: patients.map((r) => Object.values(r)), visits: visits.map((r) => Object.values(r)) });
}

async function targetImage(target: TestDatabase): Promise<string> {
  const pick = (rows: Record<string, unknown>[], cols: string[]) => rows.map((r) => cols.map((c) => r[c] ?? null));
  return JSON.stringify({
    patients: pick(await target.capture('patients'), ['id', 'full_name', 'ssn', 'note', 'visits_count']),
    visits: pick(await target.capture('visits'), ['id', 'patient_id', 'reason']),
  });
}

/**
 * A TPC-B-like transaction loop until `stop`: update a patient, add a visit, and now and then
 * delete a patient and admit a new one; some transactions roll back. Returns each commit's
 * wall-clock time (ms).
 */
async function writer(url: string, w: number, stop: { done: boolean }): Promise<number[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const rand = prng(9100 + w);
  const commits: number[] = [];
  let nextPatient = 1_000_000 * (w + 1);
  let nextVisit = 1_000_000 * (w + 1);
  try {
    while (!stop.done) {
      await c.query('BEGIN');
      const id = 2 + Math.floor(rand() * (SEED_ROWS - 1));
      await c.query(`UPDATE patients SET visits_count = visits_count + 1, note = $2 WHERE id = $1`, [id, `w${w}-${commits.length}`]);
      await c.query(`INSERT INTO visits (id, patient_id, reason) VALUES ($1, $2, $3)`, [nextVisit++, id, `r${Math.floor(rand() * 1e6)}`]);
      if (rand() < 0.2) {
        await c.query(`DELETE FROM patients WHERE id = $1`, [2 + Math.floor(rand() * (SEED_ROWS - 1))]);
        const p = nextPatient++;
        await c.query(`INSERT INTO patients (id, full_name, ssn, note) VALUES ($1, $2, $3, 'admitted')`, [p, `CANARY-NAME-${p}`, `CANARY-SSN-${p}`]);
      }
      if (rand() < 0.1) {
        await c.query('ROLLBACK');
        continue;
      }
      await c.query('COMMIT');
      commits.push(Date.now());
    }
  } finally {
    await c.end();
  }
  return commits;
}

/** Where two images differ: table, key and the names of the columns (never the values: they hold PHI canaries). */
function firstDifference(actualJson: string, expectedJson: string): string {
  const actual = JSON.parse(actualJson) as Record<string, (string | null)[][]>;
  const expected = JSON.parse(expectedJson) as Record<string, (string | null)[][]>;
  for (const table of Object.keys(expected)) {
    const a = actual[table]!;
    const e = expected[table]!;
    for (let i = 0; i < Math.max(a.length, e.length); i++) {
      if (JSON.stringify(a[i]) === JSON.stringify(e[i])) continue;
      const columns = (e[i] ?? a[i] ?? []).map((_, c) => c).filter((c) => a[i]?.[c] !== e[i]?.[c]);
      return `${table}: row ${i} (restored id ${a[i]?.[0] ?? 'none'}, source id ${e[i]?.[0] ?? 'none'}), column positions ${columns.join(', ')}; ${a.length} rows restored, ${e.length} at the source`;
    }
  }
  return 'no row differs';
}

/** The `time` (ms) of the first JSON log line whose message is `msg`. */
function logTime(log: string, msg: string): number {
  const line = log.split('\n').find((l) => l.includes(`"msg":"${msg}"`));
  assert.ok(line, `the log says "${msg}"`);
  return (JSON.parse(line) as { time: number }).time;
}

test('a base snapshot read in parallel key ranges under concurrent writers restores equal to the source at a later moment', { timeout: 420_000 }, async () => {
  const engine = await postgresEngine();
  const h = new RunHarness(engine, 'file', { sourceExtra: 'snapshot: { connections: 3, chunkRows: 250 }' });
  const targets: TestDatabase[] = [];
  const stop = { done: false };
  let writers: Promise<number[]>[] = [];
  try {
    await createClinicTables(engine);
    await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || lpad(g::text, 6, '0'), 'seed' FROM generate_series(2, ${SEED_ROWS}) g`);
    // Statistics place the key ranges; without them the table is read on one connection.
    await engine.exec('ANALYZE patients');

    writers = Array.from({ length: WRITERS }, (_, w) => writer(engine.url, w, stop));
    await sleep(500);
    await h.start([], 180_000);
    await sleep(1500);
    stop.done = true;
    const commits = (await Promise.all(writers)).flat();
    writers = [];

    const log = h.logText();
    const ranges = [...log.matchAll(/"table":"public\.patients","rows":\d+,"ranges":(\d+)/g)].map((m) => Number(m[1]));
    assert.ok(ranges.length === 1 && ranges[0]! > 1, `the snapshot read patients in several key ranges (log: ${ranges.join(', ') || 'none'})`);
    const started = logTime(log, 'snapshot started at the slot consistent point');
    const written = logTime(log, 'snapshot written');
    const during = commits.filter((t) => t > started && t < written).length;
    assert.ok(during > 0, `writers committed while the snapshot was read (${commits.length} commits, none between ${started} and ${written})`);

    // T: after every writer commit; the source as it is now is what a restore to T must give.
    await sleep(1100);
    const at = new Date().toISOString();
    const expected = await sourceImage(engine);
    await sleep(1100);
    // After T: changes the restore to T must leave out (caught below if the cut let them in).
    await engine.exec(`UPDATE patients SET note = 'after T' WHERE id % 7 = 0`);
    await engine.exec(`INSERT INTO visits (id, patient_id, reason) VALUES (99000001, 2, 'after T')`);
    assert.equal(await h.converge(120_000), '', 'the archive caught up with the source');
    assert.notEqual(await sourceImage(engine), expected, 'the source changed after T');

    const target = await createPgDatabase('psnap');
    targets.push(target);
    const r = await h.runToEnd(['restore', '--source', 'clinic', '--to', at, '--target', target.url], 180_000);
    assert.equal(r.code, 0, r.output.slice(-4000));
    const restored = await targetImage(target);
    assert.ok(restored === expected, `restore --to ${at} differs from the source at that moment: ${firstDifference(restored, expected)}`);
  } finally {
    stop.done = true;
    await Promise.allSettled(writers);
    await h.close();
    for (const t of targets) await t.drop();
    await engine.close();
  }
});
