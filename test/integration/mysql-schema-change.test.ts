import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import type { Position } from '../../src/core/position.js';
import { requireEnv } from '../support/env.js';
import { Collector, type TestDatabase, createTestDatabase, takeUntil } from '../support/mariadb-instance.js';

const log = createLogger({ level: 'silent', format: 'json' });
const events = (bs: readonly ChangeBatch[]): ChangeEvent[] => bs.flatMap((b) => b.events);
const serverId = (): number => 200_000 + Math.floor(Math.random() * 100_000);

/** The writes: rows between ALTERs whose columns move, vanish, appear and change type. */
async function writeAcrossAlters(db: TestDatabase, step?: (n: number) => Promise<void>): Promise<void> {
  const w = async (n: number, sql: string): Promise<void> => {
    await db.conn.query(sql);
    await step?.(n);
  };
  await w(1, "INSERT INTO p (id, a, b, c) VALUES (1, 'a1', 10, 'c1'), (2, 'a2', 20, 'c2')");
  await w(2, 'ALTER TABLE p DROP COLUMN a, ADD COLUMN d DECIMAL(6,2) AFTER id');
  await w(3, "INSERT INTO p (id, d, b, c) VALUES (3, 1.50, 30, 'c3')");
  await w(4, "ALTER TABLE p ADD COLUMN e ENUM('x,y','z') FIRST, MODIFY b BIGINT UNSIGNED, CHANGE c c2 VARCHAR(20)");
  await w(5, "INSERT INTO p (e, id, d, b, c2) VALUES ('x,y', 4, 2.25, 18446744073709551615, 'c4')");
  await w(6, "UPDATE p SET c2 = 'c1-new' WHERE id = 1");
  await w(7, 'TRUNCATE TABLE p');
  await w(8, "INSERT INTO p (e, id, d, b, c2) VALUES ('z', 5, NULL, 5, 'c5')");
}

function checkRowsUnderTheirColumns(evs: readonly ChangeEvent[]): void {
  const rows = evs.filter((e) => e.op !== 't').map((e) => ({ op: e.op, before: e.before, after: e.after }));
  assert.deepStrictEqual(rows, [
    { op: 'c', before: null, after: { id: 1, a: 'a1', b: 10, c: 'c1' } },
    { op: 'c', before: null, after: { id: 2, a: 'a2', b: 20, c: 'c2' } },
    { op: 'c', before: null, after: { id: 3, d: '1.50', b: 30, c: 'c3' } },
    { op: 'c', before: null, after: { e: 'x,y', id: 4, d: '2.25', b: 18446744073709551615n, c2: 'c4' } },
    { op: 'u', before: { e: null, id: 1, d: null, b: 10n, c2: 'c1' }, after: { e: null, id: 1, d: null, b: 10n, c2: 'c1-new' } },
    { op: 'c', before: null, after: { e: 'z', id: 5, d: null, b: 5n, c2: 'c5' } },
  ]);
  for (const e of evs) {
    const row = e.after ?? e.before;
    if (row) assert.deepEqual(Object.keys(row), e.schema.columns.map((c) => c.name), 'each event carries the version it was decoded with');
  }
  const truncate = evs.filter((e) => e.op === 't');
  assert.equal(truncate.length, 1, 'TRUNCATE is one op t event');
  assert.equal(truncate[0]!.schema.table, 'p');
  assert.equal(truncate[0]!.before, null);
}

describe('ALTER TABLE mid-stream', () => {
  let db: TestDatabase;
  let url: string;
  const connectors: MysqlConnector[] = [];
  const make = (name: string): MysqlConnector => {
    const c = new MysqlConnector({ name, url, tables: [`${db.name}.p`], mysql: { serverId: serverId() } }, { log });
    connectors.push(c);
    return c;
  };

  before(async () => {
    url = requireEnv('CHARTLOG_TEST_MARIADB_URL');
    db = await createTestDatabase(url);
  });

  after(async () => {
    for (const c of connectors) await c.close();
    await db?.drop();
  });

  it('replaying a backlog across ALTERs keeps every value under its column (table map names, not today\'s catalogue)', async () => {
    await db.conn.query('CREATE TABLE p (id INT PRIMARY KEY, a VARCHAR(10), b INT, c VARCHAR(10))');
    const connector = make('alter-backlog');
    let from: Position | null = null;
    for await (const b of connector.snapshot()) from = b.position;
    await writeAcrossAlters(db);
    const batches = await takeUntil((signal) => connector.stream({ from, signal }), (bs) => events(bs).some((e) => e.after?.id === 5));
    checkRowsUnderTheirColumns(events(batches));
    // The catalogue already shows the final shape when the backlog is read; the events still
    // carry the three versions the rows were written under.
    const versions = new Set(events(batches).filter((e) => e.op !== 't').map((e) => e.schema.columns.map((c) => c.name).join(',')));
    assert.deepEqual([...versions], ['id,a,b,c', 'id,d,b,c', 'e,id,d,b,c2']);
    assert.equal(events(batches).find((e) => e.after?.id === 4)?.schema.columns[0]?.type.kind, 'enum');
  });

  it('live: each ALTER is a batch of its own whose schemaChanges is the new version', async () => {
    await db.conn.query('DROP TABLE IF EXISTS p');
    await db.conn.query('CREATE TABLE p (id INT PRIMARY KEY, a VARCHAR(10), b INT, c VARCHAR(10))');
    const connector = make('alter-live');
    let from: Position | null = null;
    for await (const b of connector.snapshot()) from = b.position;
    const col = new Collector((signal) => connector.stream({ from, signal }));
    try {
      // Each write waits until the stream has caught up, so every DDL is read while it is the
      // table's current shape.
      await writeAcrossAlters(db, async (n) => {
        await col.waitFor((bs) => bs.length >= n);
      });
      await col.waitFor((bs) => events(bs).some((e) => e.after?.id === 5));
      const batches = col.items;
      assert.equal(batches.length, 8, 'one batch per statement');
      checkRowsUnderTheirColumns(events(batches));
      const alter1 = batches[1]!;
      assert.equal(alter1.events.length, 0);
      assert.deepEqual(alter1.schemaChanges?.[0]?.columns.map((c) => c.name), ['id', 'd', 'b', 'c']);
      const alter2 = batches[3]!;
      assert.deepEqual(alter2.schemaChanges?.[0]?.columns.map((c) => `${c.name}:${c.type.kind}`), ['e:enum', 'id:int', 'd:decimal', 'b:int', 'c2:string']);
      assert.deepEqual(alter2.schemaChanges?.[0]?.columns[0]?.type.values, ['x,y', 'z']);
      assert.equal(batches[6]!.events[0]!.op, 't');
      assert.ok(batches.every((b, i) => i === 0 || b.position.commit > batches[i - 1]!.position.commit), 'positions increase');
    } finally {
      await col.stop();
    }
  });
});
