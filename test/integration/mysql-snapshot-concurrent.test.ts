import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { mariadbPosition, parseMariadbGtidList } from '../../connectors/mysql/binlog-position.js';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import type { Row } from '../../src/core/table-schema.js';
import { requireEnv } from '../support/env.js';
import { Collector, type TestDatabase, createTestDatabase } from '../support/mariadb-instance.js';

const log = createLogger({ level: 'silent', format: 'json' });

/**
 * Applies snapshot then stream to a map by primary key, checking every step against the state
 * so far: an insert of a present key, a change of an absent one, or a before image that differs
 * from the row as the map has it, are all errors. Returns the map.
 */
function applyByKey(batches: readonly ChangeBatch[]): Map<string, Row> {
  const rows = new Map<string, Row>();
  const key = (r: Row): string => String(r.id);
  for (const b of batches) {
    for (const e of b.events) {
      if (e.op === 'r' || e.op === 'c') {
        assert.ok(!rows.has(key(e.after!)), `${e.op} of key ${key(e.after!)} which is present`);
        rows.set(key(e.after!), e.after!);
      } else if (e.op === 'u') {
        assert.deepStrictEqual(e.before, rows.get(key(e.before!)), `update before image of key ${key(e.before!)}`);
        rows.delete(key(e.before!));
        rows.set(key(e.after!), e.after!);
      } else if (e.op === 'd') {
        assert.deepStrictEqual(e.before, rows.get(key(e.before!)), `delete before image of key ${key(e.before!)}`);
        rows.delete(key(e.before!));
      } else if (e.op === 't') {
        rows.clear();
      }
    }
  }
  return rows;
}

/**
 * What the writers and the test share: the writers count their commits, the test says when the
 * snapshot point is fixed, and the writers count the commits of transactions begun after it.
 */
interface Gate {
  committed: number;
  pointTaken: boolean;
  afterPoint: number;
}

/** Commits begun after the snapshot point that the writers make before they stop. */
const AFTER_POINT = 40;

/**
 * Writes `transactions` transactions, and goes on until the writers together have committed
 * AFTER_POINT transactions begun after the snapshot point: the stream then has changes to carry
 * however fast this machine is relative to the snapshot.
 */
async function writer(url: string, database: string, k: number, transactions: number, gate: Gate): Promise<void> {
  const u = new URL(url);
  const c = await mysql.createConnection({ host: u.hostname, port: Number(u.port), user: 'root', database });
  let next = 0;
  try {
    for (let t = 0; t < transactions || gate.afterPoint < AFTER_POINT; t++) {
      const afterPoint = gate.pointTaken;
      try {
        await c.query('START TRANSACTION');
        const statements = 1 + (t % 4);
        for (let s = 0; s < statements; s++) {
          const pick = (t * 7 + s * 3 + k) % 10;
          const target = Math.floor(Math.random() * 3000);
          if (pick < 5) {
            const id = 100_000 * (k + 1) + next++;
            await c.query('INSERT INTO w (id, val, n, amount, at) VALUES (?, ?, ?, ?, ?)', [
              id, `w${k}-${t}-😀`, (2n ** 62n + BigInt(id)).toString(), (id % 100000) / 100, `2025-01-0${1 + (t % 9)} 10:00:00.${String(id % 1_000_000).padStart(6, '0')}`,
            ]);
          } else if (pick < 8) {
            await c.query('UPDATE w SET val = CONCAT(val, ?), n = n + 1 WHERE id = ? OR id = ?', [`+${k}`, target, 100_000 * (k + 1) + Math.max(0, next - 1)]);
          } else {
            await c.query('DELETE FROM w WHERE id = ?', [target]);
          }
        }
        await c.query('COMMIT');
        gate.committed++;
        if (afterPoint) gate.afterPoint++;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        if ((err as { errno?: number }).errno !== 1213) throw err; // deadlock: rolled back, fine
      }
    }
  } finally {
    await c.end();
  }
}

describe('snapshot + stream under 4 concurrent writers', () => {
  let db: TestDatabase;
  let url: string;
  let connector: MysqlConnector;

  before(async () => {
    url = requireEnv('CHARTLOG_TEST_MARIADB_URL');
    db = await createTestDatabase(url);
    await db.conn.query('CREATE TABLE w (id INT PRIMARY KEY, val VARCHAR(2000), n BIGINT UNSIGNED, amount DECIMAL(12,2), at DATETIME(6))');
    const values = Array.from({ length: 3000 }, (_, i) => `(${i}, 'seed-${i}', ${i}, ${i}.25, '2024-12-31 23:59:59.${String(i).padStart(6, '0')}')`);
    await db.conn.query(`INSERT INTO w VALUES ${values.join(',')}`);
    connector = new MysqlConnector({ name: 'concurrent', url, tables: [`${db.name}.w`], mysql: { serverId: 300_000 + Math.floor(Math.random() * 100_000) } }, { log });
  });

  after(async () => {
    await connector?.close();
    await db?.drop();
  });

  it('equals the final table row by row', async () => {
    const [pre] = await db.conn.query('SELECT @@gtid_binlog_pos AS pos');
    const seeded = mariadbPosition(parseMariadbGtidList((pre as { pos: string }[])[0]!.pos)[0]!);
    const gate: Gate = { committed: 0, pointTaken: false, afterPoint: 0 };
    const writers = [0, 1, 2, 3].map((k) => writer(url, db.name, k, 150, gate));
    // The snapshot runs while the writers write: it starts once they have committed (not after a
    // fixed pause, which a loaded machine spends connecting), and they go on past its point
    // (gate.pointTaken, set at the first batch: the point is fixed before it); small chunks make
    // it span many of their commits.
    for (const deadline = Date.now() + 120_000; gate.committed < 20; await new Promise((r) => setTimeout(r, 20))) {
      assert.ok(Date.now() < deadline, `the writers committed ${gate.committed} transactions in 120 s`);
    }
    const snap: ChangeBatch[] = [];
    try {
      for await (const b of connector.snapshot({ chunkRows: 97 })) {
        gate.pointTaken = true;
        snap.push(b);
      }
    } finally {
      gate.pointTaken = true; // a failed snapshot lets the writers end too
    }
    assert.ok(snap.length > 10);
    const from = snap[0]!.position;
    assert.ok(from.commit > seeded.commit, 'writers committed before the snapshot point');
    const col = new Collector((signal) => connector.stream({ from, signal }));
    try {
      await Promise.all(writers);
      // A marker written after every writer finished: once it arrives, so has everything before it.
      await db.conn.query("INSERT INTO w (id, val) VALUES (-1, 'marker')");
      await col.waitFor((bs) => bs.some((b) => b.events.some((e) => e.after?.id === -1)), 120_000);
      assert.ok(col.items.length > 5, 'writers committed after the snapshot point');
      const replayed = applyByKey([...snap, ...col.items]);
      const final: ChangeBatch[] = [];
      for await (const b of connector.snapshot({ chunkRows: 1000 })) final.push(b);
      const truth = applyByKey(final);
      assert.ok(truth.size > 3000, 'the writers added rows');
      assert.equal(replayed.size, truth.size, 'same number of rows');
      for (const [k, row] of truth) assert.deepStrictEqual(replayed.get(k), row, `row ${k}`);
      assert.ok(col.items.every((b, i) => i === 0 || b.position.commit > col.items[i - 1]!.position.commit), 'positions strictly increase');
    } finally {
      await col.stop();
    }
  });

  it('takes no lock: a write during the open snapshot commits at once, lands after it, and is streamed', async () => {
    await db.conn.query('CREATE TABLE lf (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO lf VALUES (1, \'before\'), (2, \'before\'), (3, \'before\')');
    const c = new MysqlConnector({ name: 'lockfree', url, tables: [`${db.name}.lf`], mysql: { serverId: 310_000 + Math.floor(Math.random() * 10_000) } }, { log });
    try {
      const it = c.snapshot({ chunkRows: 1 })[Symbol.asyncIterator]();
      const first = await it.next(); // the snapshot transaction is open and holds its read view
      assert.equal(first.done, false);
      // A writer with a 1-second lock wait: it would fail if the snapshot held any lock.
      await db.conn.query('SET SESSION lock_wait_timeout = 1, innodb_lock_wait_timeout = 1');
      await db.conn.query("INSERT INTO lf VALUES (4, 'during'); UPDATE lf SET v = 'during' WHERE id = 3; DELETE FROM lf WHERE id = 2");
      const batches: ChangeBatch[] = [first.value as ChangeBatch];
      for (let n = await it.next(); !n.done; n = await it.next()) batches.push(n.value);
      assert.deepEqual(batches.flatMap((b) => b.events.map((e) => [e.after!.id, e.after!.v])), [[1, 'before'], [2, 'before'], [3, 'before']], 'the snapshot does not see the later writes');
      const from = batches[0]!.position;
      const streamed = new Collector((signal) => c.stream({ from, signal }));
      try {
        const items = await streamed.waitFor((bs) => bs.flatMap((b) => b.events).length >= 3);
        assert.deepEqual(items.flatMap((b) => b.events.map((e) => [e.op, (e.after ?? e.before)!.id])), [['c', 4], ['u', 3], ['d', 2]]);
      } finally {
        await streamed.stop();
      }
    } finally {
      await c.close();
    }
  });
});
