import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { mariadbCommit, parseMariadbGtid } from '../../connectors/mysql/binlog-position.js';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { createLogger } from '../../src/core/logger.js';
import { COMMIT_SEQ, type Position } from '../../src/core/position.js';
import { requireEnv } from '../support/env.js';
import { Collector, type TestDatabase, createTestDatabase } from '../support/mariadb-instance.js';
import { createClinicTables, type Engine, mariadbEngine, prng, RunHarness, Workload } from '../support/run-harness.js';

describe('XA transactions', () => {
  let db: TestDatabase;
  let other: mysql.Connection;
  let connector: MysqlConnector;

  before(async () => {
    const url = requireEnv('CHARTLOG_TEST_MARIADB_URL');
    db = await createTestDatabase(url);
    const u = new URL(url);
    other = await mysql.createConnection({ host: u.hostname, port: Number(u.port), user: 'root', database: db.name });
    await db.conn.query('CREATE TABLE x (id INT PRIMARY KEY); CREATE TABLE y (id INT PRIMARY KEY)');
    connector = new MysqlConnector({ name: 'xa', url, tables: [`${db.name}.x`], mysql: { serverId: 600_000 + Math.floor(Math.random() * 100_000) } }, { log: createLogger({ level: 'silent', format: 'json' }) });
  });

  after(async () => {
    await connector?.close();
    await other?.end();
    await db?.drop();
  });

  it('two-phase rows appear at XA COMMIT, one-phase at once, rolled back never; XA elsewhere is harmless', async () => {
    let from: Position | null = null;
    for await (const b of connector.snapshot()) from = b.position;
    const col = new Collector((signal) => connector.stream({ from, signal }));
    try {
      await db.conn.query("INSERT INTO x VALUES (1); XA START 'a'; INSERT INTO x VALUES (2); XA END 'a'; XA PREPARE 'a'");
      await other.query('INSERT INTO x VALUES (20)'); // commits while 'a' is prepared
      await db.conn.query("XA COMMIT 'a'");
      await db.conn.query("XA START 'b'; INSERT INTO x VALUES (3); XA END 'b'; XA COMMIT 'b' ONE PHASE");
      await db.conn.query("XA START 'c'; INSERT INTO x VALUES (30); XA END 'c'; XA PREPARE 'c'; XA ROLLBACK 'c'");
      await db.conn.query("XA START 'd','q',7; INSERT INTO y VALUES (1); XA END 'd','q',7; XA PREPARE 'd','q',7; XA COMMIT 'd','q',7");
      await db.conn.query('INSERT INTO x VALUES (4)');
      const batches = await col.waitFor((bs) => bs.some((b) => b.events.some((e) => e.after?.id === 4)));
      assert.deepEqual(batches.map((b) => b.events.map((e) => e.after?.id)), [[1], [20], [2], [3], [4]], 'in commit order, the rolled-back row absent');
      assert.ok(batches.every((b, i) => i === 0 || b.position.commit > batches[i - 1]!.position.commit));
      assert.ok(batches.every((b) => b.events.every((e, k) => e.position.commit === b.position.commit && e.position.seq === k)), 'XA rows carry the XA COMMIT position');
      assert.equal(col.error, null);
    } finally {
      await col.stop();
    }
  });
});

/** The commit part of the newest transaction in the server's binlog. */
async function binlogHead(engine: Engine): Promise<string> {
  const [{ g }] = (await engine.query('SELECT @@gtid_binlog_pos AS g')) as [{ g: string }];
  return mariadbCommit(parseMariadbGtid(g));
}

async function checkpointCommit(h: RunHarness): Promise<Position | null> {
  return (await readCheckpoint(h.store, 'clinic'))?.position ?? null;
}

/**
 * XA COMMIT / XA ROLLBACK of a transaction another session prepared and then left: the server
 * detaches it from that session asynchronously, and until then answers XAER_NOTA (XA RECOVER
 * already lists it meanwhile, so listing proves nothing). Retried for up to 10 s on that answer only.
 */
async function xaFinish(engine: Engine, sql: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await engine.exec(sql);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'ER_XAER_NOTA' || i >= 100) throw err;
      await sleep(100);
    }
  }
}

/**
 * `chartlog run` as a real process: an XA transaction of 5,000 rows (past the 64 KiB spill
 * threshold, so its rows wait in an encrypted spill file) is PREPAREd, transactions commit
 * after it, chartlog is killed with SIGKILL, the XA transaction is committed while chartlog is
 * down (the server then lists it as prepared no more), and chartlog restarts. Its rows were held
 * only by the killed process: the checkpoint must not have passed the PREPARE, so the restart
 * reads it again. The archive must then equal the source row by row.
 */
test('kill -9 with an XA transaction prepared, XA COMMIT while chartlog is down: nothing lost after the restart', { timeout: 300_000 }, async () => {
  const engine = await mariadbEngine();
  const h = new RunHarness(engine, 'file', { flushIntervalMs: 200, mysql: 'spillThresholdBytes: 65536' });
  const xa = await mysql.createConnection({ uri: engine.url, multipleStatements: true });
  // XA ids are server-wide: unique per run.
  const k1 = `k1-${engine.db}`;
  const k2 = `k2-${engine.db}`;
  try {
    await createClinicTables(engine);
    await h.start();
    const workload = new Workload(engine, prng(41));
    for (let i = 0; i < 5; i++) await workload.transaction();
    // Control: with no XA transaction prepared the checkpoint reaches the binlog's head.
    const head = await binlogHead(engine);
    for (let cp = await checkpointCommit(h); !cp || cp.commit < head || cp.seq !== COMMIT_SEQ; cp = await checkpointCommit(h)) await sleep(200);

    await xa.query(
      `XA START '${k1}';
       INSERT INTO patients (id, full_name, ssn, note, visits_count) SELECT seq, CONCAT('CANARY-NAME-', seq), CONCAT('CANARY-SSN-', seq), CONCAT('xa ', seq), 1 FROM seq_2000001_to_2005000;
       XA END '${k1}'; XA PREPARE '${k1}'`,
    );
    const prepared = await binlogHead(engine);
    for (let i = 0; i < 10; i++) await workload.transaction();
    const after = await binlogHead(engine);
    assert.ok(after > prepared, 'transactions committed after the PREPARE');
    await sleep(3000); // many flush intervals: everything after the PREPARE could have been stored
    const cp = await checkpointCommit(h);
    assert.ok(cp && cp.commit < prepared, `the checkpoint (${cp?.commit}) does not pass the pending PREPARE (${prepared})`);
    assert.match(h.logText(), /later transactions are held until it commits or rolls back/);

    await h.kill('SIGKILL');
    await xa.end();
    await xaFinish(engine, `XA COMMIT '${k1}'`);
    // Another XA transaction, prepared on a session of its own (a prepared session takes no other statement), then rolled back.
    const xa2 = await mysql.createConnection({ uri: engine.url, multipleStatements: true });
    await xa2.query(`XA START '${k2}'; INSERT INTO patients (id, full_name, ssn, note) VALUES (3000001, 'CANARY-NAME-rb', 'CANARY-SSN-rb', 'rolled back'); XA END '${k2}'; XA PREPARE '${k2}'`);
    await xa2.end();
    await h.start();
    for (let i = 0; i < 3; i++) await workload.transaction();
    await xaFinish(engine, `XA ROLLBACK '${k2}'`);
    for (let i = 0; i < 3; i++) await workload.transaction();
    const [{ n }] = (await engine.query('SELECT COUNT(*) AS n FROM patients WHERE id > 2000000')) as [{ n: number | string }];
    assert.equal(Number(n), 5000, 'the source has the XA rows and not the rolled-back one');
    assert.equal(await h.converge(120_000), '', 'the archive equals the source row by row: the XA rows are there');
    assert.equal(await h.kill('SIGTERM'), 0, 'a clean stop exits 0');
    const last = await checkpointCommit(h);
    assert.ok(last && last.commit >= (await binlogHead(engine)), 'the checkpoint passed everything once no XA was pending');
  } finally {
    // A failed run must not leave its XA transactions prepared on the shared server.
    for (const k of [k1, k2]) await engine.exec(`XA ROLLBACK '${k}'`).catch(() => undefined);
    await xa.end().catch(() => undefined);
    await h.close();
    await engine.close();
  }
});
