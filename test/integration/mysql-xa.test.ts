import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import { createLogger } from '../../src/core/logger.js';
import type { Position } from '../../src/core/position.js';
import { requireEnv } from '../support/env.js';
import { Collector, type TestDatabase, createTestDatabase } from '../support/mariadb-instance.js';

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
