import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { mariadbCommit, parseMariadbGtid } from '../../connectors/mysql/binlog-position.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { COMMIT_SEQ } from '../../src/core/position.js';
import { runChartlog } from '../support/chartlog-process.js';
import { describeHits, scanForCanaries, scanTextForCanaries } from '../support/leak-scan.js';
import { createMariadbDatabase } from '../support/restore-engines.js';
import { createClinicTables, type Engine, mariadbEngine, PHI_CANARIES, prng, RunHarness, Workload } from '../support/run-harness.js';

/**
 * MariaDB transactions too large for memory (issue 14, item 4), through `chartlog run` as a real
 * process on the embedded bus: the connector takes their rows out into the shared encrypted
 * TransactionBuffer and delivers them in pieces of 2,500 events, like PostgreSQL's. Restores
 * are compared with the source value by value (a digest of every row's text, or the harness's
 * row-by-row comparison).
 */

/**
 * Rows of the big transactions. 1M is the issue's figure and takes tens of minutes on a loaded
 * 2-core machine, so CI runs 200,000 (still 80 pieces, spilled well past the 8 MiB threshold);
 * `CHARTLOG_TEST_BIG_TXN_ROWS=1000000` runs the full size.
 */
const MILLION = Number(process.env.CHARTLOG_TEST_BIG_TXN_ROWS ?? 200_000);

/** Each table's row text: every column, NULL spelled out (the clinic tables of run-harness). */
const ROW_TEXT: Record<string, string> = {
  patients: `CONCAT_WS('|', id, IFNULL(full_name, '<null>'), IFNULL(ssn, '<null>'), IFNULL(note, '<null>'), visits_count)`,
  visits: `CONCAT_WS('|', id, IFNULL(patient_id, '<null>'), IFNULL(reason, '<null>'))`,
};

/** Row count and two order-independent digests of every row's text: equal digests, equal values. */
async function digest(url: string, table: 'patients' | 'visits'): Promise<{ rows: string; crc: string; md5: string }> {
  const c = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await c.query(
      `SELECT COUNT(*) AS n, COALESCE(SUM(CRC32(r)), 0) AS crc, COALESCE(BIT_XOR(CONV(LEFT(MD5(r), 15), 16, 10)), 0) AS md5
         FROM (SELECT ${ROW_TEXT[table]} AS r FROM ${table}) t`,
    );
    const r = (rows as Record<string, unknown>[])[0]!;
    return { rows: String(r.n), crc: String(r.crc), md5: String(r.md5) };
  } finally {
    await c.end();
  }
}

/** The commit part of the transaction the engine's connection committed last. */
async function lastCommit(engine: Engine): Promise<string> {
  const [{ g }] = (await engine.query('SELECT @@gtid_binlog_pos AS g')) as [{ g: string }];
  return mariadbCommit(parseMariadbGtid(g));
}

/** The position of the last whole transaction a restore summary names. */
function lastWhole(summary: string): string {
  const m = /last whole transaction: .* at position (\S+)/.exec(summary);
  assert.ok(m, `no last whole transaction in the restore summary: ${summary.slice(0, 500)}`);
  return m[1]!;
}

/** Waits until the durable checkpoint covers the whole transaction `commit`. */
async function settled(h: RunHarness, commit: string, timeoutMs: number): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const cp = await readCheckpoint(h.store, 'clinic');
    if (cp && (cp.position.commit > commit || (cp.position.commit === commit && cp.position.seq === COMMIT_SEQ))) return;
    assert.ok(Date.now() < deadline, `the checkpoint did not reach ${commit}: ${cp ? `${cp.position.commit}.${cp.position.seq}` : 'none'}`);
    await sleep(500);
  }
}

async function restoreLatest(h: RunHarness): Promise<{ url: string; drop: () => Promise<void>; output: string }> {
  const target = await createMariadbDatabase('rbig');
  const r = await runChartlog(['restore', '--config', h.configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url], h.env);
  assert.equal(r.code, 0, `restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
  return { url: target.url, drop: () => target.drop(), output: r.stdout + r.stderr };
}

test(`MariaDB: a ${MILLION.toLocaleString('en-US')}-row INSERT, then kill -9 inside a ${MILLION.toLocaleString('en-US')}-row UPDATE: restore --to latest has none of it; after a restart, all of it, equal to the source`, { timeout: 1_500_000 }, async () => {
  const engine = await mariadbEngine();
  const h = new RunHarness(engine, 'file', { flushIntervalMs: 500 });
  const targets: { drop: () => Promise<void> }[] = [];
  try {
    await createClinicTables(engine);
    await h.start();
    await engine.exec(
      `INSERT INTO patients (id, full_name, ssn, note, visits_count) SELECT seq, CONCAT('CANARY-NAME-', seq), CONCAT('CANARY-SSN-', seq), IF(seq % 10 = 0, NULL, CONCAT('bulk ', seq)), seq % 7 FROM seq_1000001_to_${1_000_000 + MILLION}`,
    );
    const inserted = await lastCommit(engine);
    const workload = new Workload(engine, prng(31));
    for (let i = 0; i < 5; i++) await workload.transaction();
    await settled(h, await lastCommit(engine), 900_000);
    assert.match(h.logText(), new RegExp(`"events":${MILLION},"spilled":true,"msg":"large transaction delivered in partial batches"`), 'the insert went to disk and out in pieces');
    const first = await restoreLatest(h);
    targets.push(first);
    assert.deepEqual(await digest(first.url, 'patients'), await digest(engine.url, 'patients'), 'restore after the insert: same rows, same values');
    assert.ok((await readCheckpoint(h.store, 'clinic'))!.position.commit > inserted);

    // One UPDATE of every bulk row; chartlog is killed while its pieces are being stored.
    await engine.exec(`UPDATE patients SET note = CONCAT('upd ', id), visits_count = visits_count + 1 WHERE id > 1000000`);
    const updated = await lastCommit(engine);
    // The run is frozen (SIGSTOP) while the test reads the checkpoint and let go (SIGCONT) for
    // 50 ms between reads, so the kill lands while the checkpoint stands where it was read:
    // free-running, the last piece could be stored between the read and the kill (a window that
    // a fast machine or a slow read can close; whole-transaction-cut missed its window this way).
    let inside = false;
    for (const deadline = Date.now() + 600_000; Date.now() < deadline; ) {
      assert.ok(h.signal('SIGSTOP'), 'chartlog run is still running');
      const cp = await readCheckpoint(h.store, 'clinic');
      inside = cp !== null && cp.position.commit === updated && cp.position.seq !== COMMIT_SEQ;
      if (inside) break;
      h.signal('SIGCONT');
      assert.ok(!cp || cp.position.commit < updated, 'the update was settled before the test could kill inside it');
      await sleep(50);
    }
    assert.ok(inside, 'the checkpoint stood inside the update (some pieces durable) before the kill');
    await h.kill('SIGKILL');
    // Killed inside the update, some of its pieces stored: restore --to latest holds none of it
    // (whole transactions only), and its summary names the transaction before it as the last whole one.
    const killed = await restoreLatest(h);
    targets.push(killed);
    assert.deepEqual(await digest(killed.url, 'patients'), await digest(first.url, 'patients'), 'restore after the kill -9: none of the update');
    assert.equal(lastWhole(killed.output), lastWhole(first.output), 'the cut is the last transaction before the update');
    await workload.transaction();
    await h.start();
    await settled(h, await lastCommit(engine), 900_000);
    assert.equal(await h.kill('SIGTERM'), 0, 'a clean stop exits 0');

    const second = await restoreLatest(h);
    targets.push(second);
    const source = await digest(engine.url, 'patients');
    assert.deepEqual(await digest(second.url, 'patients'), source, 'restore after the restart: all of the update, same values');
    assert.deepEqual(await digest(second.url, 'visits'), await digest(engine.url, 'visits'), 'visits too');
    // Negative control: the digest tells the state before the update from the state after it.
    assert.notDeepEqual(await digest(first.url, 'patients'), source, 'the digest sees the update');
  } finally {
    for (const t of targets) await t.drop();
    await h.close();
    await engine.close();
  }
});

test('MariaDB: a 30,000-row transaction of inserts, updates and deletes with a 64 KiB spill threshold restores exactly, PHI never in clear', { timeout: 300_000 }, async () => {
  const engine = await mariadbEngine();
  const h = new RunHarness(engine, 'file', { flushIntervalMs: 200, mysql: 'spillThresholdBytes: 65536' });
  try {
    await createClinicTables(engine);
    await h.start();
    await engine.exec(
      `BEGIN;
       INSERT INTO patients (id, full_name, ssn, note, visits_count) SELECT seq, CONCAT('CANARY-NAME-', seq), CONCAT('CANARY-SSN-', seq), CONCAT('n', seq), 0 FROM seq_1000100_to_1020099;
       UPDATE patients SET full_name = CONCAT('CANARY-NAME-u', id), visits_count = 2 WHERE id % 3 = 0;
       DELETE FROM patients WHERE id % 7 = 0;
       INSERT INTO visits (id, patient_id, reason) SELECT seq, seq, CONCAT('r', seq) FROM seq_1000001_to_1001000;
       COMMIT`,
    );
    const workload = new Workload(engine, prng(37));
    for (let i = 0; i < 10; i++) await workload.transaction();
    assert.equal(await h.converge(180_000), '', 'the archive equals the source row by row');
    assert.match(h.logText(), /"spilled":true,"msg":"large transaction delivered in partial batches"/, 'the transaction went to disk and out in pieces');
    assert.equal(await h.kill('SIGTERM'), 0, 'a clean stop exits 0');
    const leaks = [...scanForCanaries(await h.storedObjects(), PHI_CANARIES), ...scanTextForCanaries('log', h.logText(), ['CANARY'])];
    assert.deepEqual(leaks, [], `PHI in clear:\n${describeHits(leaks)}`);
  } finally {
    await h.close();
    await engine.close();
  }
});
