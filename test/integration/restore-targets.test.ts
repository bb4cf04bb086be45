import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ChartlogError } from '../../src/core/errors.js';
import type { ColumnSchema, ColumnType, Row, TableSchema } from '../../src/core/table-schema.js';
import { MysqlTarget } from '../../src/restore/targets/mysql-target.js';
import { PostgresTarget } from '../../src/restore/targets/postgres-target.js';
import type { RestoreTarget, SourceEngine, TablePlan } from '../../src/restore/targets/restore-target.js';
import { createMariadbDatabase, createPgDatabase, type TestDatabase } from '../support/restore-engines.js';

/**
 * The database targets on their own, against the real servers: a table that fails half-way
 * leaves nothing behind (nor do the tables written before it, once aborted), driver errors
 * carry no values, and restores across engines (best effort) create tables that hold the
 * value model's values.
 */

const c = (name: string, type: ColumnType, sourceType: string, nullable = true): ColumnSchema => ({ name, type, sourceType, nullable });
const plan = (table: TableSchema, engine: SourceEngine, sealed: string[] = []): TablePlan => ({ name: `${table.schema}.${table.table}`, table, sealed: new Set(sealed), sourceEngine: engine });

async function write(target: RestoreTarget, plans: { plan: TablePlan; rows: Row[] }[]): Promise<void> {
  await target.check(plans.map((p) => p.plan.table));
  await target.prepare(plans.map((p) => p.plan));
  for (const p of plans) await target.writeTable(p.plan, p.rows, () => undefined);
}

describe('restore targets', () => {
  const dbs: TestDatabase[] = [];
  after(async () => {
    for (const db of dbs) await db.drop();
  });

  for (const engine of ['postgres', 'mysql'] as const) {
    it(`${engine}: a failing table leaves nothing; abort drops what was written; errors carry no values`, async () => {
      const db = engine === 'postgres' ? await createPgDatabase('rtg') : await createMariadbDatabase('rtg');
      dbs.push(db);
      const target = engine === 'postgres' ? new PostgresTarget(db.url) : new MysqlTarget(db.url);
      const schema = engine === 'postgres' ? 'public' : db.name;
      const ok: TableSchema = { schema, table: 'ok_table', primaryKey: ['id'], columns: [c('id', { kind: 'int', bits: 32 }, engine === 'postgres' ? 'integer' : 'int(11)', false), c('v', { kind: 'string' }, 'text')] };
      const bad: TableSchema = { schema, table: 'bad_table', primaryKey: ['id'], columns: [c('id', { kind: 'int', bits: 32 }, engine === 'postgres' ? 'integer' : 'int(11)', false), c('n', { kind: 'int', bits: 32 }, engine === 'postgres' ? 'integer' : 'int(11)', false)] };
      const rows = Array.from({ length: 2000 }, (_, i) => ({ id: i + 1, n: i === 1500 ? 'CANARY-NOT-A-NUMBER' : i }));
      let error: unknown;
      try {
        await write(target, [{ plan: plan(ok, engine), rows: [{ id: 1, v: 'x' }] }, { plan: plan(bad, engine), rows }]);
      } catch (err) {
        error = err;
      }
      assert.ok(error instanceof ChartlogError, 'the failure is a ChartlogError');
      assert.match(error.message, /writing .*bad_table into the target/);
      assert.ok(!error.message.includes('CANARY') && !(error.hint ?? '').includes('CANARY'), 'no value in the error');
      assert.deepEqual(await db.tables(), ['ok_table'], 'the failed table is gone, the one before it committed');
      await target.abort();
      assert.deepEqual(await db.tables(), [], 'abort removed what this restore wrote');
      await target.close();
    });
  }

  it('PostgreSQL: enum types and schemas the restore made are removed by abort; an existing different enum is refused', async () => {
    const db = await createPgDatabase('rtg');
    dbs.push(db);
    const t: TableSchema = { schema: 'clinic_x', table: 'e', primaryKey: [], columns: [c('m', { kind: 'enum', values: ['a', 'b'] }, 'mood2')] };
    const target = new PostgresTarget(db.url);
    await write(target, [{ plan: plan(t, 'postgres'), rows: [{ m: 'b' }, { m: null }] }]);
    assert.deepEqual(await db.capture('clinic_x.e', 'm'), [{ m: 'b' }, { m: null }]);
    await target.abort();
    await target.close();
    const other = await createPgDatabase('rtg');
    dbs.push(other);
    await other.exec(`CREATE TYPE mood2 AS ENUM ('a', 'c')`);
    const refusing = new PostgresTarget(other.url);
    await refusing.check([t]);
    await assert.rejects(refusing.prepare([plan(t, 'postgres')]), (err: unknown) => err instanceof ChartlogError && err.exitCode === 2 && /already has a type "mood2"/.test(err.message));
    await refusing.close();
    assert.equal((await other.capture(`(SELECT nspname AS id FROM pg_namespace WHERE nspname = 'clinic_x') s`)).length, 0, 'no schema created');
  });

  it('across engines (best effort): MySQL values into PostgreSQL, PostgreSQL values into MariaDB', async () => {
    const pgDb = await createPgDatabase('rtx');
    const myDb = await createMariadbDatabase('rtx');
    dbs.push(pgDb, myDb);
    const fromMysql: TableSchema = {
      schema: 'shop', table: 'm', primaryKey: ['id'],
      columns: [
        c('id', { kind: 'int', bits: 32 }, 'int(11)', false), c('biu', { kind: 'int', bits: 64, unsigned: true }, 'bigint(20) unsigned'),
        c('d', { kind: 'decimal', precision: 65, scale: 30 }, 'decimal(65,30)'), c('dt', { kind: 'date' }, 'date'), c('tm', { kind: 'time' }, 'time(6)'),
        c('ts', { kind: 'timestamptz' }, 'timestamp(6)'), c('y', { kind: 'year' }, 'year(4)'), c('s', { kind: 'set', values: ['p', 's'] }, "set('p','s')"),
        c('e', { kind: 'enum', values: ['a,b', 'x'] }, "enum('a,b','x')"), c('bn', { kind: 'bytes', length: 4 }, 'binary(4)'), c('bt', { kind: 'bit', length: 10 }, 'bit(10)'),
      ],
    };
    const mysqlRows: Row[] = [
      { id: 1, biu: 18446744073709551615n, d: '-0.000000000000000000000000000001', dt: '2024-02-29', tm: '-838:59:59.000000', ts: '2038-01-19 03:14:07.999999+00', y: 2155, s: ['p', 's'], e: 'a,b', bn: Uint8Array.of(0, 1, 0, 0), bt: '1010101010' },
      { id: 2, biu: 0n, d: '0.5', dt: '0000-00-00', tm: '00:00:00', ts: '0000-00-00 00:00:00.000000+00', y: 0, s: [], e: 'x', bn: null, bt: null },
    ];
    const pgTarget = new PostgresTarget(pgDb.url);
    await write(pgTarget, [{ plan: plan(fromMysql, 'mysql'), rows: mysqlRows }]);
    await pgTarget.close();
    const got = await pgDb.capture('shop.m');
    assert.equal(got[0]!.biu, '18446744073709551615');
    assert.equal(got[0]!.d, '-0.000000000000000000000000000001');
    assert.equal(got[0]!.tm, '-838:59:59');
    assert.equal(got[0]!.ts, '2038-01-19 03:14:07.999999+00');
    assert.equal(got[0]!.s, '{p,s}');
    assert.equal(got[0]!.bn, '\\x00010000');
    assert.equal(got[0]!.bt, '1010101010');
    assert.equal(got[1]!.dt, null, 'a MySQL zero date becomes NULL');
    assert.equal(got[1]!.s, '{}');

    const fromPg: TableSchema = {
      schema: 'public', table: 'p', primaryKey: ['id'],
      columns: [
        c('id', { kind: 'int', bits: 64 }, 'bigint', false), c('num', { kind: 'decimal' }, 'numeric'), c('f8', { kind: 'float', bits: 64 }, 'double precision'),
        c('b', { kind: 'boolean' }, 'boolean'), c('tstz', { kind: 'timestamptz' }, 'timestamp with time zone'), c('u', { kind: 'uuid' }, 'uuid'),
        c('ta', { kind: 'array', element: { kind: 'string' } }, 'text[]'), c('js', { kind: 'json' }, 'jsonb'), c('iv', { kind: 'interval' }, 'interval'),
      ],
    };
    const pgRows: Row[] = [
      { id: 9223372036854775807n, num: '12345678901234567890.123456789012345678901234567890', f8: 0.1, b: true, tstz: '2024-06-01 10:00:00.123456+00', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ta: ['a,b', null], js: '{"big": 123456789012345678901234567890}', iv: '1 year 2 mons' },
      { id: 1n, num: 'NaN', f8: NaN, b: false, tstz: 'infinity', u: null, ta: [], js: null, iv: null },
    ];
    const myTarget = new MysqlTarget(myDb.url);
    await write(myTarget, [{ plan: plan(fromPg, 'postgres'), rows: pgRows }]);
    await myTarget.close();
    const text = (hex: string | null | undefined) => (hex === null || hex === undefined ? null : Buffer.from(hex, 'hex').toString('utf8'));
    const mine = await myDb.capture('p');
    const big = mine.find((r) => text(r.id) === '9223372036854775807')!;
    assert.equal(text(big.num), '12345678901234567890.123456789012345678901234567890', 'unbounded numeric keeps its digits');
    assert.equal(text(big.f8), '0.1');
    assert.equal(text(big.b), '1');
    assert.equal(text(big.tstz), '2024-06-01 10:00:00.123456');
    assert.equal(text(big.ta), '["a,b",null]');
    assert.equal(text(big.js), '{"big": 123456789012345678901234567890}');
    const one = mine.find((r) => text(r.id) === '1')!;
    assert.equal(one.f8, null, 'NaN has no MySQL form');
    assert.equal(one.tstz, null, 'infinity has no MySQL form');
    assert.equal(text(one.num), 'NaN', 'an unbounded numeric travels as text');
  });
});
