import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PostgresConnector } from '../../connectors/postgres/postgres-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';
import type { ResyncRequest } from '../../src/core/resync-request.js';
import { requireEnv } from '../support/env.js';
import { createTestDb, sourceConfig, type TestDb } from '../support/pg-test-db.js';

/**
 * Table rewrites on a real PostgreSQL 15: a rewrite with no row events (ALTER … TYPE … USING,
 * ADD COLUMN with a volatile default) makes the connector call its requestResync with that
 * table, both when a change of the table follows (relation message) and when none does (the
 * periodic relfilenode check); a TRUNCATE (carried by the stream as op 't') does not. That the
 * resync itself then restores right is test/integration/resync.test.ts (the same ALTER … USING).
 */

const quiet = createLogger({ level: 'silent', format: 'json' });

describe('PostgreSQL table rewrites ask for a resync', () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb(requireEnv('CHARTLOG_TEST_PG_URL'));
  });
  after(async () => {
    await db?.drop();
  });

  it('ALTER … USING and a volatile default request the table; TRUNCATE does not; the values never appear in the reason', { timeout: 90_000 }, async () => {
    await db.query(`CREATE TABLE rw (id int4 PRIMARY KEY, note text)`);
    await db.query(`CREATE TABLE tr (id int4 PRIMARY KEY, note text)`);
    await db.query(`CREATE TABLE other (id int4 PRIMARY KEY, note text)`);
    await db.query(`INSERT INTO rw SELECT g, 'CANARY-NOTE-' || g FROM generate_series(1, 50) g`);
    await db.query(`INSERT INTO tr SELECT g, 'CANARY-NOTE-' || g FROM generate_series(1, 50) g`);
    await db.query(`INSERT INTO other SELECT g, 'CANARY-NOTE-' || g FROM generate_series(1, 5) g`);
    const requests: ResyncRequest[] = [];
    const c = new PostgresConnector(sourceConfig(db.url, { tables: ['public.rw', 'public.tr', 'public.other'], postgres: { heartbeatIntervalMs: 1000 } }, 'rewrite'), {
      logger: quiet,
      requestResync: (r) => requests.push(r),
      rewriteCheckIntervalMs: 200,
      statusIntervalMs: 300,
    });
    let from: Position | null = null;
    for await (const b of c.snapshot()) from = b.position;
    const batches: ChangeBatch[] = [];
    const stop = new AbortController();
    const streaming = (async () => {
      for await (const b of c.stream({ from, signal: stop.signal })) {
        batches.push(b);
        await c.acknowledge(b.position);
      }
    })();
    const requested = (table: string) => requests.filter((r) => r.tables.includes(table)).length;
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      for (let i = 0; i < 600 && !ok(); i++) await sleep(100);
      assert.ok(ok(), `${what} (requests: ${JSON.stringify(requests, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))})`);
    };
    try {
      // The stream is live: a change arrives.
      await db.query(`UPDATE other SET note = 'x' WHERE id = 1`);
      await waitFor('the stream delivers', () => batches.length >= 1);

      // 1. A TRUNCATE, then reloaded rows; then a rewrite of another table as a marker: once
      //    the marker is requested, the truncated table's new relfilenode has been decided too.
      await db.query(`TRUNCATE tr`);
      await db.query(`INSERT INTO tr SELECT g, 'CANARY-NOTE-' || g FROM generate_series(1, 20) g`);
      await db.query(`ALTER TABLE other ALTER COLUMN note TYPE varchar(100) USING upper(note)`);
      await waitFor('the marker rewrite is requested', () => requested('public.other') === 1);
      assert.ok(batches.some((b) => b.events.some((e) => e.op === 't' && e.schema.table === 'tr')), 'the truncate was streamed as op t');
      assert.equal(requested('public.tr'), 0, 'a TRUNCATE the stream carried is no rewrite');

      // 2. A rewrite no change follows: found by the periodic check alone.
      const lastBefore = batches.at(-1)!.position;
      // A catalog reading after lastBefore was handed on, showing rw unchanged: the one that finds
      // a second marker rewrite (waited for — a fixed 600 ms of "a few readings" holds no reading
      // when a loaded machine delays the 200 ms checks). It is also recent when the ALTER comes.
      await db.query(`ALTER TABLE other ALTER COLUMN note TYPE varchar(150) USING lower(note)`);
      await waitFor('the second marker rewrite is requested', () => requested('public.other') === 2);
      const beforeAlterUs = BigInt(Date.now()) * 1000n;
      await db.query(`ALTER TABLE rw ALTER COLUMN note TYPE varchar(200) USING upper(note)`);
      const afterAlterUs = BigInt(Date.now()) * 1000n;
      await waitFor('the idle rewrite is requested', () => requested('public.rw') === 1);
      // Its unproven window: it starts after what the stream had handed on before the ALTER and
      // at most one reading interval before it, and ends at a position the ALTER precedes.
      const w = requests.find((r) => r.tables.includes('public.rw'))!.window!;
      assert.ok(w, 'the request carries its window');
      assert.ok(Position.compare(w.from, lastBefore) > 0, 'the window starts after every commit streamed before the ALTER');
      assert.ok(Position.compare(w.from, w.seenAt) <= 0);
      assert.ok(w.fromCommitTsUs <= afterAlterUs && w.fromCommitTsUs >= beforeAlterUs - 2_000_000n, `window start ${w.fromCommitTsUs} within a reading interval (plus slack) before the ALTER at ${beforeAlterUs}`);

      // 3. A volatile default, then a change of the table (relation message path).
      await db.query(`ALTER TABLE rw ADD COLUMN r float8 DEFAULT random()`);
      await db.query(`UPDATE rw SET note = 'y' WHERE id = 1`);
      await waitFor('the volatile default is requested', () => requested('public.rw') === 2);

      // Negative control for (1): a rewrite after a truncate of the same table is requested.
      await db.query(`TRUNCATE tr`);
      await db.query(`INSERT INTO tr VALUES (1, 'CANARY-NOTE-1')`);
      await db.query(`ALTER TABLE tr ALTER COLUMN note TYPE varchar(50) USING lower(note)`);
      await waitFor('a rewrite after a truncate is requested', () => requested('public.tr') === 1);

      assert.equal(requested('public.other'), 2, 'each rewrite is requested once (other: the two markers)');
      for (const r of requests) {
        assert.deepEqual(r.tables.length, 1);
        assert.doesNotMatch(r.reason, /CANARY|upper|lower/i, 'the reason names the table, never a value or the statement');
      }
    } finally {
      stop.abort();
      await streaming.catch(() => undefined);
      await c.close();
    }
  });

  it('DROP TABLE is streamed as the table\'s end (op x) after every change of it and before later transactions', { timeout: 90_000 }, async () => {
    await db.query(`CREATE TABLE gone (id int4 PRIMARY KEY, note text)`);
    await db.query(`CREATE TABLE stays (id int4 PRIMARY KEY)`);
    const c = new PostgresConnector(sourceConfig(db.url, { tables: ['public.gone', 'public.stays'], postgres: { heartbeatIntervalMs: 1000 } }, 'dropper'), {
      logger: quiet,
      rewriteCheckIntervalMs: 200,
      statusIntervalMs: 300,
    });
    let from: Position | null = null;
    for await (const b of c.snapshot()) from = b.position;
    const batches: ChangeBatch[] = [];
    const stop = new AbortController();
    const streaming = (async () => {
      for await (const b of c.stream({ from, signal: stop.signal })) {
        batches.push(b);
        await c.acknowledge(b.position);
      }
    })();
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      for (let i = 0; i < 600 && !ok(); i++) await sleep(100);
      assert.ok(ok(), what);
    };
    const ends = () => batches.filter((b) => b.events.some((e) => e.op === 'x'));
    try {
      await db.query(`INSERT INTO gone VALUES (1, 'a')`);
      await waitFor('the insert is streamed', () => batches.length >= 1);
      await sleep(1000); // several checks while the table exists: no end
      assert.equal(ends().length, 0, 'no end while the table exists');
      await db.query(`BEGIN; DELETE FROM gone; DROP TABLE gone; COMMIT`);
      await waitFor('the end is streamed', () => ends().length === 1);
      await db.query(`INSERT INTO stays VALUES (1)`);
      await waitFor('a later transaction is streamed', () => batches.some((b) => b.events.some((e) => e.schema.table === 'stays')));
      const end = ends()[0]!;
      assert.deepEqual(end.events.map((e) => [e.op, e.schema.table, e.before, e.after]), [['x', 'gone', null, null]]);
      const at = (p: (b: ChangeBatch) => boolean) => batches.findIndex(p);
      const del = at((b) => b.events.some((e) => e.op === 'd' && e.schema.table === 'gone'));
      const x = at((b) => b === end);
      const later = at((b) => b.events.some((e) => e.schema.table === 'stays'));
      assert.ok(del >= 0 && del < x && x < later, `order: delete ${del}, end ${x}, later ${later}`);
      for (let i = 1; i < batches.length; i++) assert.ok(Position.compare(batches[i - 1]!.position, batches[i]!.position) < 0, 'positions strictly increase');
    } finally {
      stop.abort();
      await streaming.catch(() => undefined);
      await c.close();
    }
  });
});
