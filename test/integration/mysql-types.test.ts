import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import type { Row } from '../../src/core/table-schema.js';
import { requireEnv } from '../support/env.js';
import { type TestDatabase, createTestDatabase, takeUntil } from '../support/mariadb-instance.js';
import { expectedRow, MARIADB_CASES, MARIADB_COLUMNS, MARIADB_SESSION, mariadbMatrixTable } from '../support/type-matrix.js';

// The type matrix of test/support/type-matrix.ts: every type of the issue with its edge values,
// each expected value written out by hand, so snapshot and stream are checked against the truth,
// not only against each other.
// An odd process time zone (UTC+12:45/+13:45): DATETIME and TIMESTAMP values must not move with it.
process.env.TZ = 'Pacific/Chatham';

const COLS = ['id', ...MARIADB_COLUMNS].join(',');
const INSERTS = MARIADB_CASES.map((c, i) => `(${i + 1}, ${c.sql.join(', ')})`);
/** The row inserted under `id` (1 to 5, the cases in order). */
const expected = (id: number): Row => expectedRow(id, MARIADB_CASES[id - 1]!);

const rowsOf = (batches: readonly ChangeBatch[]): ChangeEvent[] => batches.flatMap((b) => b.events);

function assertRow(actual: Row | null, expected: Row, label: string): void {
  assert.ok(actual, `${label}: row missing`);
  assert.deepEqual(Object.keys(actual), Object.keys(expected), `${label}: columns in table order`);
  for (const k of Object.keys(expected)) {
    assert.deepStrictEqual(actual[k], expected[k], `${label}: column ${k}`);
  }
}

describe('MariaDB type matrix', () => {
  let db: TestDatabase;
  let connector: MysqlConnector;
  const log = createLogger({ level: 'silent', format: 'json' });

  before(async () => {
    const url = requireEnv('CHARTLOG_TEST_MARIADB_URL');
    db = await createTestDatabase(url);
    await db.conn.query(MARIADB_SESSION);
    await db.conn.query(mariadbMatrixTable('m'));
    await db.conn.query(`INSERT INTO m (${COLS}) VALUES ${INSERTS.join(',\n')}`);
    connector = new MysqlConnector({ name: 'types', url, tables: [`${db.name}.m`], mysql: { serverId: 4000 + Math.floor(Math.random() * 100000) } }, { log });
    await connector.check();
  });

  after(async () => {
    await connector?.close();
    await db?.drop();
  });

  it('snapshot and stream read every edge value exactly, before images included', async () => {
    assert.notEqual(new Date(0).getTimezoneOffset(), 0, 'the process runs in a non-UTC zone');
    const snap: ChangeBatch[] = [];
    for await (const b of connector.snapshot({ chunkRows: 2 })) snap.push(b);
    const read = rowsOf(snap);
    assert.equal(read.length, 5);
    assert.ok(read.every((e) => e.op === 'r' && e.before === null));
    assert.equal(snap[0]!.schemaChanges?.[0]?.table, 'm', 'the first batch carries the table version');
    assert.deepEqual(snap[0]!.schemaChanges?.[0]?.columns.find((c) => c.name === 'u')?.type, { kind: 'uuid' });
    assert.deepEqual(snap[0]!.schemaChanges?.[0]?.columns.find((c) => c.name === 'j')?.type, { kind: 'json' });
    assert.deepEqual(snap[0]!.schemaChanges?.[0]?.columns.find((c) => c.name === 'e')?.type.values, ['a,b', "it's", 'x', 'back\\slash']);
    for (const e of read) assertRow(e.after, expected(e.after!.id as number), `snapshot row ${String(e.after!.id)}`);
    assert.equal(new Set(read.map((e) => e.position.seq)).size, 5, 'snapshot events have distinct positions');

    const from = snap[0]!.position;
    await db.conn.query(`INSERT INTO m (${COLS}) SELECT id + 100, ${MARIADB_COLUMNS.join(',')} FROM m ORDER BY id`);
    await db.conn.query('UPDATE m SET v = v WHERE id = 0'); // no-op statement: no rows, no batch
    await db.conn.query("UPDATE m SET ti = 7 WHERE id IN (101, 102, 103, 104, 105)");
    await db.conn.query('DELETE FROM m WHERE id >= 101');
    const batches = await takeUntil((signal) => connector.stream({ from, signal }), (bs) => rowsOf(bs).length >= 15);
    assert.equal(batches.length, 3, 'one batch per transaction');
    const events = rowsOf(batches);
    assert.deepEqual(events.map((e) => e.op), [...'ccccc', ...'uuuuu', ...'ddddd']);
    for (let i = 0; i < 5; i++) {
      const id = i + 1;
      const inserted = { ...expected(id), id: id + 100 };
      assertRow(events[i]!.after, inserted, `stream insert ${id + 100}`);
      assertRow(events[5 + i]!.before, inserted, `stream update before ${id + 100}`);
      assertRow(events[5 + i]!.after, { ...inserted, ti: 7 }, `stream update after ${id + 100}`);
      assertRow(events[10 + i]!.before, { ...inserted, ti: 7 }, `stream delete before ${id + 100}`);
      assert.equal(events[10 + i]!.after, null);
    }
    for (const b of batches) {
      assert.ok(b.position.commit > from.commit, 'stream positions follow the snapshot position');
      assert.ok(b.commitTsUs > 1_600_000_000_000_000n && b.commitTsUs % 1_000_000n === 0n, 'commit time in µs, whole seconds');
      assert.ok(b.events.every((e, k) => e.position.commit === b.position.commit && e.position.seq === k));
    }
  });

  it('snapshots tables with a composite key and without a key, chunk by chunk, every row once', async () => {
    await db.conn.query('CREATE TABLE ck (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b)); CREATE TABLE nk (v VARCHAR(10), n INT)');
    const ck = Array.from({ length: 23 }, (_, i) => `(${i % 4}, 'k${String(i).padStart(2, '0')}', ${i})`);
    const nk = Array.from({ length: 17 }, (_, i) => `('dup', ${i % 3})`); // duplicate rows, no key at all
    await db.conn.query(`INSERT INTO ck VALUES ${ck.join(',')}; INSERT INTO nk VALUES ${nk.join(',')}`);
    const c = new MysqlConnector({ name: 'keys', url: requireEnv('CHARTLOG_TEST_MARIADB_URL'), tables: [`${db.name}.ck`, `${db.name}.nk`], mysql: { serverId: 4_000_000 + Math.floor(Math.random() * 100000) } }, { log });
    try {
      const batches: ChangeBatch[] = [];
      for await (const b of c.snapshot({ chunkRows: 4 })) batches.push(b);
      const byTable = (t: string) => batches.filter((b) => b.events[0]?.schema.table === t || b.schemaChanges?.[0]?.table === t);
      const ckRows = rowsOf(byTable('ck')).map((e) => e.after!);
      assert.equal(ckRows.length, 23);
      const expected = Array.from({ length: 23 }, (_, i) => ({ a: i % 4, b: `k${String(i).padStart(2, '0')}`, v: i }))
        .sort((x, y) => x.a - y.a || (x.b < y.b ? -1 : 1));
      assert.deepStrictEqual(ckRows, expected, 'primary-key order, no row twice');
      assert.ok(byTable('ck').length >= 6, 'read in chunks');
      const nkRows = rowsOf(byTable('nk')).map((e) => e.after!);
      assert.equal(nkRows.length, 17, 'every row of a keyless table, duplicates included');
      assert.deepEqual(nkRows.map((r) => r.n).sort(), Array.from({ length: 17 }, (_, i) => i % 3).sort());
      assert.ok(byTable('nk').length >= 5, 'a keyless table is streamed in chunks too');
      assert.deepEqual(byTable('nk')[0]!.schemaChanges?.[0]?.primaryKey, []);
    } finally {
      await c.close();
    }
  });
});
