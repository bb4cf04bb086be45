import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mariadbGtidOf } from '../../connectors/mysql/binlog-position.js';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';
import { Collector, type MariadbInstance, startMariadbInstance } from '../support/mariadb-instance.js';

const log = createLogger({ level: 'silent', format: 'json' });
const idsOf = (bs: readonly ChangeBatch[]): number[] => bs.flatMap((b) => b.events.filter((e) => e.op === 'c').map((e) => Number(e.after!.id)));

describe('failover to a promoted replica', () => {
  let primary: MariadbInstance;
  let replica: MariadbInstance;
  const connectors: MysqlConnector[] = [];

  before(async () => {
    [primary, replica] = await Promise.all([
      startMariadbInstance({ serverId: 21, args: ['--log-slave-updates'] }),
      startMariadbInstance({ serverId: 22, args: ['--log-slave-updates'] }),
    ]);
    const r = await replica.connect();
    await r.query(`CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${primary.port}, MASTER_USER = 'root', MASTER_PASSWORD = '', MASTER_USE_GTID = slave_pos; START SLAVE`);
    await r.end();
  });

  after(async () => {
    for (const c of connectors) await c.close();
    await Promise.all([primary?.destroy(), replica?.destroy()]);
  });

  it('the connector pointed at the promoted replica resumes by GTID and loses nothing', async () => {
    const p = await primary.connect();
    await p.query('CREATE DATABASE clinic; CREATE TABLE clinic.visits (id INT PRIMARY KEY, note VARCHAR(40), seen DATETIME(6))');
    const onPrimary = new MysqlConnector({ name: 'failover', url: primary.cdcUrl, tables: ['clinic.visits'], mysql: { serverId: 900 } }, { log });
    connectors.push(onPrimary);
    let from: Position | null = null;
    for await (const b of onPrimary.snapshot()) from = b.position;
    const colA = new Collector((signal) => onPrimary.stream({ from, signal }));
    for (let id = 1; id <= 200; id++) {
      await p.query('INSERT INTO clinic.visits VALUES (?, ?, ?)', [id, `visit ${id}`, `2025-03-01 08:00:00.${String(id).padStart(6, '0')}`]);
    }
    await colA.waitFor((bs) => idsOf(bs).includes(200));
    await colA.stop();
    // The pipeline had made batches up to id 120 durable when the primary died.
    const durableIndex = colA.items.findIndex((b) => idsOf([b]).includes(120));
    const durable = colA.items.slice(0, durableIndex + 1);
    const checkpoint = durable[durable.length - 1]!.position;

    const [pos] = await p.query('SELECT @@gtid_binlog_pos AS pos');
    await p.end();
    const r = await replica.connect();
    const [waited] = await r.query('SELECT MASTER_GTID_WAIT(?, 30) AS w', [(pos as { pos: string }[])[0]!.pos]);
    assert.equal((waited as { w: number }[])[0]!.w, 0, 'the replica caught up before the failover');
    await primary.kill();
    await r.query('STOP SLAVE; RESET SLAVE ALL');

    const onReplica = new MysqlConnector({ name: 'failover', url: replica.cdcUrl, tables: ['clinic.visits'], mysql: { serverId: 900 } }, { log });
    connectors.push(onReplica);
    await onReplica.check();
    const colB = new Collector((signal) => onReplica.stream({ from: checkpoint, signal }));
    try {
      for (let id = 201; id <= 300; id++) {
        await r.query('INSERT INTO clinic.visits VALUES (?, ?, ?)', [id, `visit ${id}`, `2025-03-02 08:00:00.${String(id).padStart(6, '0')}`]);
      }
      await colB.waitFor((bs) => idsOf(bs).includes(300));
      assert.deepEqual([...idsOf(durable), ...idsOf(colB.items)], Array.from({ length: 300 }, (_, i) => i + 1), 'every row once across the failover');
      // The transactions both servers delivered have the same position on both: a consumer that
      // had them from the primary drops the replica's copies by position.
      const fromPrimary = new Map(colA.items.map((b) => [Position.format(b.position), idsOf([b]).join()]));
      const overlap = colB.items.filter((b) => fromPrimary.has(Position.format(b.position)));
      assert.equal(overlap.length, colA.items.length - durable.length, 'what the primary sent after the checkpoint comes again from the replica');
      for (const b of overlap) assert.equal(idsOf([b]).join(), fromPrimary.get(Position.format(b.position)));
      const last = mariadbGtidOf(colB.items[colB.items.length - 1]!.position.commit)!;
      assert.equal(last.server, 22, 'new writes carry the promoted server id');
      assert.ok(colB.items.every((b, i) => i === 0 || b.position.commit > colB.items[i - 1]!.position.commit), 'positions keep increasing across the failover');
      const rows = colB.items.flatMap((b) => b.events).find((e) => e.after?.id === 250)!.after!;
      assert.deepStrictEqual(rows, { id: 250, note: 'visit 250', seen: '2025-03-02 08:00:00.000250' });
    } finally {
      await colB.stop();
      await r.end();
    }
  });
});
