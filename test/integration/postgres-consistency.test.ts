import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresConnector } from '../../connectors/postgres/postgres-connector.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';
import type { Row } from '../../src/core/table-schema.js';
import { createTestDb, pgServers, sourceConfig, type TestDb } from '../support/pg-test-db.js';

/**
 * Snapshot + stream under 4 concurrent writers equals the final table, row by row. The snapshot
 * reads on three connections in key ranges (the table is analysed, so the planner's histogram
 * places them) and must hand the rows on in key order. Midway the
 * connector is closed without acknowledging its last batches and a new one resumes from the
 * last acknowledged position: batches come again and are dropped by position, none is lost.
 */
const WRITERS = 4;
const TX_PER_WRITER = 120;
/** Transactions each writer still commits after the snapshot ended, however fast it was. */
const TX_AFTER_SNAPSHOT = 30;
const quiet = createLogger({ level: 'warn', format: 'json' });
let committedTx = 0;
/**
 * Set when the snapshot has handed on its last row. The writers run until then and a little
 * past it, so the snapshot overlaps them on a machine of any speed (on a fast one the writers
 * used to finish all their transactions before the snapshot ended: CI stop 28).
 */
let snapshotEnded = false;

async function writer(url: string, w: number, seedRows: number, started: () => void): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let rnd = 1234567 + w;
  const next = (n: number) => {
    rnd = (rnd * 1103515245 + 12345) % 2147483648;
    return rnd % n;
  };
  let nextId = 100_000 * (w + 1);
  let afterSnapshot = 0;
  try {
    for (let i = 0; i < TX_PER_WRITER || afterSnapshot < TX_AFTER_SNAPSHOT; i++) {
      if (snapshotEnded) afterSnapshot++;
      if (i === 10) started();
      await c.query('BEGIN');
      const ops = 1 + next(3);
      for (let k = 0; k < ops; k++) {
        const kind = next(10);
        if (kind < 4) {
          await c.query(`INSERT INTO accounts VALUES ($1, $2, $3)`, [nextId++, `${next(1e9)}${next(1e9)}`, `w${w}-i${i}`]);
        } else if (kind < 8) {
          await c.query(`UPDATE accounts SET v = v + $2, note = $3 WHERE id = $1`, [next(seedRows), next(1000), `u${w}-${i}`]);
        } else {
          await c.query(`DELETE FROM accounts WHERE id = $1`, [next(seedRows)]);
        }
      }
      await c.query(next(7) === 0 ? 'ROLLBACK' : 'COMMIT');
      committedTx++;
    }
  } finally {
    await c.end();
  }
}

function apply(state: Map<number, Row>, batch: ChangeBatch): void {
  for (const e of batch.events) {
    if (e.schema.table !== 'accounts') continue;
    if (e.op === 'd') state.delete(e.before!.id as number);
    else state.set(e.after!.id as number, e.after!);
  }
}

for (const server of pgServers()) {
  describe(`PostgreSQL snapshot + stream under ${WRITERS} writers on ${server.label}`, () => {
    let db: TestDb;
    const state = new Map<number, Row>();
    const seen = new Set<string>();
    let duplicates = 0;
    let eventsSeen = 0;
    let expected: Map<number, Row>;
    let txAtSnapshotStart = 0;
    let txAtSnapshotEnd = 0;
    let txAtEnd = 0;
    const snapshotIds: number[] = [];
    let rangesRead = 0;

    before(async () => {
      await server.start();
      committedTx = 0;
      snapshotEnded = false;
      db = await createTestDb(server.url());
      await db.query(`CREATE TABLE accounts (id int4 PRIMARY KEY, v int8 NOT NULL, note text)`);
      await db.query(`CREATE TABLE marker (id int4 PRIMARY KEY)`);
      await db.query(`INSERT INTO accounts SELECT g, g * 1000000000000, 'seed' FROM generate_series(0, 999) g`);
      await db.query('ANALYZE accounts');
      const cfg = sourceConfig(db.url, { tables: ['public.accounts', 'public.marker'], snapshot: { connections: 3 } });

      let release!: () => void;
      const allStarted = new Promise<void>((r) => {
        let n = 0;
        release = () => {
          if (++n === WRITERS) r();
        };
      });
      const writers = Array.from({ length: WRITERS }, (_, w) => writer(db.url, w, 1000, release));
      await allStarted;

      const ranges: number[] = [];
      const first = new PostgresConnector(cfg, {
        maxBatchEvents: 7,
        // Its log says in how many key ranges each table was read.
        logger: createLogger({
          level: 'info',
          format: 'json',
          destination: new Writable({
            write(line: Buffer, _enc, done) {
              const m = /"table":"public\.accounts".*"ranges":(\d+)/.exec(line.toString('utf8'));
              if (m) ranges.push(Number(m[1]));
              done();
            },
          }),
        }),
      });
      let snapshotPos: Position | null = null;
      txAtSnapshotStart = committedTx;
      for await (const b of first.snapshot({ chunkRows: 97 })) {
        snapshotPos = b.position;
        for (const e of b.events) {
          const key = Position.format(e.position);
          if (seen.has(key)) duplicates++;
          seen.add(key);
          if (e.schema.table === 'accounts') snapshotIds.push(e.after!.id as number);
          state.set(e.after!.id as number, e.after!);
        }
      }
      rangesRead = ranges[0] ?? 0;
      await first.acknowledge(snapshotPos!);
      txAtSnapshotEnd = committedTx;
      snapshotEnded = true;

      // Stream until the writers are done and the marker arrives; close the first connector
      // midway with three batches unacknowledged.
      const consume = async (c: PostgresConnector, from: Position, stopAfter: number | null): Promise<Position> => {
        let acked = from;
        let count = 0;
        const pending: Position[] = [];
        for await (const b of c.stream({ from })) {
          count++;
          eventsSeen += b.events.length;
          const fresh = b.events.filter((e) => !seen.has(Position.format(e.position)));
          duplicates += b.events.length - fresh.length;
          for (const e of fresh) seen.add(Position.format(e.position));
          apply(state, { ...b, events: fresh });
          if (b.events.some((e) => e.schema.table === 'marker')) {
            await c.acknowledge(b.position);
            return b.position;
          }
          pending.push(b.position);
          if (pending.length > 3) {
            acked = pending.shift()!;
            await c.acknowledge(acked);
          }
          if (stopAfter !== null && count >= stopAfter) return acked;
        }
        throw new Error('stream ended early');
      };
      const resumeFrom = await consume(first, snapshotPos!, 40);
      await first.close();
      await Promise.all(writers);
      txAtEnd = committedTx;
      await db.query('INSERT INTO marker VALUES (1)');
      const second = new PostgresConnector(cfg, { logger: quiet, maxBatchEvents: 7 });
      await consume(second, resumeFrom, null);
      await second.close();

      const { rows } = await db.query('SELECT id, v::text AS v, note FROM accounts');
      expected = new Map(rows.map((r: { id: number; v: string; note: string | null }) => [r.id, { id: r.id, v: BigInt(r.v), note: r.note }]));
    });

    after(async () => {
      await db?.drop();
      await server.stop();
    });

    it('ends with exactly the rows of the final table, value by value', () => {
      assert.ok(expected.size > 900);
      assert.equal(state.size, expected.size);
      for (const [id, row] of expected) assert.deepStrictEqual(state.get(id), row, `row ${id}`);
    });

    it('read the snapshot in several key ranges and handed its rows on in key order', () => {
      assert.ok(rangesRead > 1, `the snapshot read ${rangesRead} key range(s)`);
      assert.ok(snapshotIds.length > 900);
      for (let i = 1; i < snapshotIds.length; i++) assert.ok(snapshotIds[i]! > snapshotIds[i - 1]!, `snapshot row ${i} (id ${snapshotIds[i]}) after id ${snapshotIds[i - 1]}`);
    });

    it('took the snapshot while the writers were writing', () => {
      // Writers started before the snapshot (10 transactions each) and went on after it ended.
      // Measured, not built in: writers committed while the snapshot was being read.
      assert.ok(txAtSnapshotEnd > txAtSnapshotStart, `writers committed during the snapshot (${txAtSnapshotStart} before it, ${txAtSnapshotEnd} at its end)`);
      assert.ok(txAtEnd - txAtSnapshotEnd >= WRITERS * TX_AFTER_SNAPSHOT, `writers still busy when the snapshot ended (${txAtSnapshotEnd} of ${txAtEnd})`);
    });

    it('delivered the unacknowledged batches again after the restart, dropped by position', () => {
      assert.ok(eventsSeen > 0);
      assert.ok(duplicates > 0, 'the unacknowledged batches came again after the restart');
    });
  });
}
