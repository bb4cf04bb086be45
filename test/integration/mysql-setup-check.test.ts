import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type mysql from 'mysql2/promise';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import type { Position } from '../../src/core/position.js';
import { Collector, type MariadbInstance, startMariadbInstance } from '../support/mariadb-instance.js';

const log = createLogger({ level: 'silent', format: 'json' });

async function refusal(p: Promise<unknown>): Promise<ChartlogError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ChartlogError, `a ChartlogError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('setup checks and server ids (private server: its settings are changed)', () => {
  let server: MariadbInstance;
  let root: mysql.Connection;
  const connectors: MysqlConnector[] = [];
  const make = (url: string, serverId: number, tables = ['app.t']): MysqlConnector => {
    const c = new MysqlConnector({ name: 'setup', url, tables, mysql: { serverId } }, { log, highWater: 50 });
    connectors.push(c);
    return c;
  };

  before(async () => {
    server = await startMariadbInstance({ serverId: 31 });
    root = await server.connect();
    await root.query('CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))');
  });

  after(async () => {
    for (const c of connectors) await c.close();
    await root?.end();
    await server?.destroy();
  });

  it('accepts a correctly set up server and the cdc user', async () => {
    await make(server.cdcUrl, 7001).check();
  });

  it('refuses without FULL row metadata, ROW format and FULL image, says each fix, creates nothing', async () => {
    const [before] = await root.query('SELECT @@gtid_binlog_pos AS pos, (SELECT COUNT(*) FROM information_schema.SCHEMATA) AS dbs');
    await root.query("SET GLOBAL binlog_row_metadata = 'MINIMAL', binlog_format = 'STATEMENT', binlog_row_image = 'MINIMAL'");
    try {
      const err = await refusal(make(server.cdcUrl, 7002).check());
      assert.equal(err.code, 'source_setup');
      assert.equal(err.retriable, false);
      assert.match(err.message, /binlog_row_metadata is MINIMAL; chartlog needs FULL: without it ENUM\/SET values and rows replayed across an ALTER TABLE decode wrongly/);
      assert.match(err.message, /binlog_format is STATEMENT/);
      assert.match(err.message, /binlog_row_image is MINIMAL/);
      assert.match(err.hint ?? '', /SET GLOBAL binlog_row_metadata = FULL; and add binlog_row_metadata=FULL under \[mariadbd\]/);
      assert.match(err.hint ?? '', /SET GLOBAL binlog_format = ROW/);
      // The stream refuses too, before reading anything.
      const stream = make(server.cdcUrl, 7003).stream({ from: null });
      await refusal((async () => { for await (const _ of stream) break; })());
    } finally {
      await root.query("SET GLOBAL binlog_row_metadata = 'FULL', binlog_format = 'ROW', binlog_row_image = 'FULL'");
    }
    const [afterward] = await root.query('SELECT @@gtid_binlog_pos AS pos, (SELECT COUNT(*) FROM information_schema.SCHEMATA) AS dbs');
    assert.deepEqual(afterward, before, 'the check wrote nothing');
  });

  it('names the missing privileges and the GRANT that fixes them', async () => {
    await root.query("SET sql_log_bin = 0; CREATE USER 'weak'@'%' IDENTIFIED BY 'weak'; GRANT SELECT ON app.t TO 'weak'@'%'; SET sql_log_bin = 1");
    const err = await refusal(make(`mysql://weak:weak@127.0.0.1:${server.port}/`, 7004).check());
    assert.equal(err.code, 'source_setup');
    assert.match(err.message, /lacks REPLICATION SLAVE/);
    assert.match(err.message, /lacks REPLICATION CLIENT/);
    assert.match(err.hint ?? '', /GRANT REPLICATION SLAVE ON \*\.\* TO 'weak'@'%'/);
    assert.doesNotMatch(err.message, /cannot SELECT/, 'table-level SELECT is enough');
  });

  it('refuses the server\'s own server_id', async () => {
    const err = await refusal(make(server.cdcUrl, 31).check());
    assert.match(err.message, /serverId 31 is the server's own server_id/);
  });

  it('a second reader with the same server id is detected and named, not retried', async () => {
    const first = make(server.cdcUrl, 7100);
    let from: Position | null = null;
    for await (const b of first.snapshot()) from = b.position;
    const a = new Collector((signal) => first.stream({ from, signal }));
    await root.query("INSERT INTO app.t VALUES (1, 'one')");
    await a.waitFor((bs) => bs.length >= 1);
    const b = new Collector((signal) => make(server.cdcUrl, 7100).stream({ from, signal }));
    try {
      await assert.rejects(a.waitFor(() => false), (err: unknown) => {
        assert.ok(err instanceof ChartlogError);
        assert.equal(err.code, 'source_setup');
        assert.equal(err.retriable, false);
        assert.match(err.message, /another binlog reader connected with server id 7100/);
        assert.match(err.message, /binlog readers connected now: thread \d+ \(cdc@127\.0\.0\.1/);
        assert.match(err.hint ?? '', /source\.mysql\.serverId/);
        return true;
      });
      await b.waitFor((bs) => bs.length >= 1);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('a slow consumer pauses the binlog instead of buffering it all', async () => {
    const c = make(server.cdcUrl, 7200);
    let from: Position | null = null;
    for await (const b of c.snapshot()) from = b.position;
    for (let i = 0; i < 20; i++) {
      const values = Array.from({ length: 100 }, (_, k) => `(${1000 + i * 100 + k}, 'v')`).join(',');
      await root.query(`INSERT INTO app.t VALUES ${values}`);
      await root.query(`UPDATE app.t SET v = 'w' WHERE id BETWEEN ${1000 + i * 100} AND ${1000 + i * 100 + 99}`);
    }
    const received: ChangeBatch[] = [];
    const ac = new AbortController();
    for await (const b of c.stream({ from, signal: ac.signal })) {
      received.push(b);
      await new Promise((r) => setTimeout(r, 20)); // a slow downstream
      if (received.length === 40) ac.abort();
    }
    assert.equal(received.length, 40);
    assert.ok(c.pauses > 0, 'the binlog connection was paused');
    assert.deepEqual(received.map((b) => b.events.length), Array.from({ length: 40 }, () => 100));
  });

  it('refuses a binlog with several GTID domains and names them', async () => {
    await root.query("SET SESSION gtid_domain_id = 5; INSERT INTO app.t VALUES (99999, 'other domain'); SET SESSION gtid_domain_id = 0");
    const err = await refusal(make(server.cdcUrl, 7300).check());
    assert.match(err.message, /several replication domains \(0, 5\)/);
  });
});
