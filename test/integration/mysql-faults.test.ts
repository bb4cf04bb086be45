import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';
import { requireEnv } from '../support/env.js';
import { Collector, type MariadbInstance, type TestDatabase, createTestDatabase, startMariadbInstance } from '../support/mariadb-instance.js';

const log = createLogger({ level: 'silent', format: 'json' });
const CHILD = fileURLToPath(new URL('./mysql-fault-child.ts', import.meta.url));
const sid = (): number => 400_000 + Math.floor(Math.random() * 100_000);
const idsOf = (bs: readonly ChangeBatch[]): number[] => bs.flatMap((b) => b.events.map((e) => Number(e.after?.id)));

interface Line { pos: string; ids: string[] }

/** A connector process whose batches arrive as parsed lines. */
function child(url: string, table: string, serverId: number, from: string): { proc: ChildProcessWithoutNullStreams; lines: Line[]; next(n: number): Promise<void> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, url, table, String(serverId), from], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => {
    lines.push(JSON.parse(l) as Line);
    for (const w of waiters.splice(0)) w();
  });
  let exited = false;
  proc.on('exit', () => {
    exited = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    proc,
    lines,
    async next(n: number) {
      while (lines.length < n) {
        if (exited) throw new Error(`connector process exited after ${lines.length} batches`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

/** Inserts ids from..to, one transaction each, retrying through a server restart. */
async function insertRows(connect: () => Promise<mysql.Connection>, table: string, from: number, to: number, pauseMs = 0): Promise<void> {
  let c = await connect();
  for (let id = from; id <= to; ) {
    try {
      await c.query(`INSERT INTO ${table} (id, v) VALUES (?, ?)`, [id, `row-${id}`]);
      id++;
      if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    } catch (err) {
      const e = err as { errno?: number };
      if (e.errno === 1062) { id++; continue; } // committed before the connection broke
      await c.end().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      c = await connect().catch(() => c);
    }
  }
  await c.end().catch(() => undefined);
}

describe('faults', () => {
  describe('killing the connector before acknowledgement', () => {
    let db: TestDatabase;
    let url: string;
    before(async () => {
      url = requireEnv('CHARTLOG_TEST_MARIADB_URL');
      db = await createTestDatabase(url);
      await db.conn.query('CREATE TABLE k (id INT PRIMARY KEY, v VARCHAR(20))');
    });
    after(async () => db?.drop());

    it('a restarted connector resumes after the last durable batch and loses nothing', async () => {
      const table = `${db.name}.k`;
      const snapper = new MysqlConnector({ name: 'kill', url, tables: [table], mysql: { serverId: sid() } }, { log });
      let from: Position | null = null;
      for await (const b of snapper.snapshot()) from = b.position;
      await snapper.close();

      const u = new URL(url);
      const connect = (): Promise<mysql.Connection> => mysql.createConnection({ host: u.hostname, port: Number(u.port), user: 'root', database: db.name });
      const first = child(url, table, sid(), Position.format(from!));
      const writes = insertRows(connect, 'k', 1, 400, 2);
      await first.next(120);
      // Batches 1..60 reached durable storage (the pipeline acknowledged them); 61.. did not.
      const durable = first.lines.slice(0, 60);
      first.proc.kill('SIGKILL');
      await new Promise((r) => first.proc.once('exit', r));
      const seenBeforeKill = first.lines.slice();
      await writes;
      await db.conn.query("INSERT INTO k (id, v) VALUES (1000, 'marker')");

      const second = child(url, table, sid(), durable[durable.length - 1]!.pos);
      try {
        for (;;) {
          await second.next(second.lines.length + 1);
          if (second.lines.some((l) => l.ids.includes('1000'))) break;
        }
      } finally {
        second.proc.kill('SIGKILL');
      }
      const ids = [...durable, ...second.lines].flatMap((l) => l.ids.map(Number));
      assert.deepEqual(ids, [...Array.from({ length: 400 }, (_, i) => i + 1), 1000], 'every row once, in commit order');
      assert.ok(Position.compare(Position.parse(second.lines[0]!.pos), Position.parse(durable[durable.length - 1]!.pos)) > 0);
      // What the killed process had read but not made durable comes again, at the same positions.
      const redelivered = new Map(second.lines.map((l) => [l.pos, l.ids.join()]));
      for (const l of seenBeforeKill.slice(60)) assert.equal(redelivered.get(l.pos), l.ids.join(), `batch ${l.pos} redelivered identically`);
    });
  });

  describe('server restart and a silent server', () => {
    let server: MariadbInstance;
    let connector: MysqlConnector;
    let conn: mysql.Connection;
    before(async () => {
      server = await startMariadbInstance({ serverId: 11 });
      conn = await server.connect();
      await conn.query('CREATE DATABASE f; CREATE TABLE f.r (id INT PRIMARY KEY, v VARCHAR(20))');
      await conn.end();
      connector = new MysqlConnector({ name: 'restart', url: server.cdcUrl, tables: ['f.r'], mysql: { serverId: 500, watchdogMs: 3000 }, reconnect: { maxAttempts: 21 } }, { log });
    });
    after(async () => {
      server?.thaw();
      await connector?.close();
      await server?.destroy();
    });

    it('restarting MariaDB mid-stream, then freezing it past the watchdog, loses and repeats nothing', async () => {
      let from: Position | null = null;
      for await (const b of connector.snapshot()) from = b.position;
      const col = new Collector((signal) => connector.stream({ from, signal }));
      try {
        const connect = (): Promise<mysql.Connection> => server.connect('f');
        await insertRows(connect, 'r', 1, 100);
        await col.waitFor((bs) => idsOf(bs).includes(100));
        // Idle for longer than the watchdog: the server's heartbeats keep the connection alive.
        await new Promise((r) => setTimeout(r, 5000));
        assert.equal(connector.reconnects, 0, 'an idle but healthy connection is not torn down');
        const restarted = insertRows(connect, 'r', 101, 400, 5);
        await col.waitFor((bs) => idsOf(bs).includes(150));
        await server.stop();
        await server.start();
        await restarted;
        await col.waitFor((bs) => idsOf(bs).includes(400));
        const afterRestart = connector.reconnects;
        assert.ok(afterRestart >= 1, 'the lost connection was noticed and re-opened');

        // SIGSTOP: the TCP connection stays open but nothing comes, not even heartbeats; only the
        // watchdog can notice.
        server.freeze();
        await new Promise((r) => setTimeout(r, 7000));
        server.thaw();
        await insertRows(connect, 'r', 401, 450);
        await col.waitFor((bs) => idsOf(bs).includes(450), 90_000);
        assert.ok(connector.reconnects > afterRestart, 'the watchdog noticed the silent connection');
        assert.deepEqual(idsOf(col.items), Array.from({ length: 450 }, (_, i) => i + 1), 'every row once, in order');
        assert.equal(col.error, null);
      } finally {
        await col.stop();
      }
    });
  });
});
