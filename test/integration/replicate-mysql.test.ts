import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { runChartlog } from '../support/chartlog-process.js';
import { multisetDiff, ReplicaProcess } from '../support/replica-process.js';
import { createMariadbDatabase } from '../support/restore-engines.js';
import { postgresEngine, RunHarness } from '../support/run-harness.js';

/**
 * `chartlog replicate --target mysql://…` against real servers: a PostgreSQL source captured by
 * `chartlog run` (a real process, embedded bus, file store), replicated into a MariaDB database.
 */

const EDGE_TABLE = `CREATE TABLE edge (
  id int8 PRIMARY KEY, i8 int8, num numeric(30,10), numx numeric, ts timestamp(6), tstz timestamptz(6),
  tm time(6), d date, by bytea, js json, jb jsonb, t text, b boolean)`;

/** Edge values: 64-bit extremes, 40-digit decimals, microsecond times, bytes, JSON with big numbers, quotes and emoji, NULLs. */
const EDGE_ROWS = [
  `(1, 9223372036854775807, 12345678901234567890.1234567890, 1234567890123456789012345678901234567890.123456789, '1970-01-01 00:00:00.000001', '2024-06-01 12:00:00.123456+02', '23:59:59.999999', '2024-02-29', '\\x00ff10', '{"big": 123456789012345678901234567890, "f": 1.0000000000000001}', '{"big": -123456789012345678901234567890}', 'quote''s "dq" \\ back ✓ 日本 😀', true)`,
  `(2, -9223372036854775808, -0.0000000001, -0.000000000000000000000000000001, '2262-04-11 23:47:16.854775', '1999-12-31 23:59:59.999999+00', '00:00:00', '1000-01-01', '\\x', '[]', '{"a": [1, 2.50, null]}', '', false)`,
  `(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
];

/** Each row as text, the same on both engines (times with all six fraction digits, bytes as hex, booleans as 0/1). */
const PG_TEXT = `SELECT id::text AS id, i8::text AS i8, num::text AS num, numx::text AS numx, to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US') AS ts,
  to_char(tstz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS tstz, to_char(tm::interval, 'HH24:MI:SS.US') AS tm, d::text AS d,
  encode(by, 'hex') AS by, js::text AS js, jb::text AS jb, t, CASE WHEN b IS NULL THEN NULL WHEN b THEN '1' ELSE '0' END AS b FROM edge`;
const MY_TEXT = `SELECT CAST(id AS CHAR) AS id, CAST(i8 AS CHAR) AS i8, CAST(num AS CHAR) AS num, numx, DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f') AS ts,
  DATE_FORMAT(tstz, '%Y-%m-%d %H:%i:%s.%f') AS tstz, TIME_FORMAT(tm, '%H:%i:%s.%f') AS tm, CAST(d AS CHAR) AS d,
  LOWER(HEX(\`by\`)) AS \`by\`, CAST(js AS CHAR) AS js, CAST(jb AS CHAR) AS jb, t, CAST(b AS CHAR) AS b FROM edge`;

const keys = ['id', 'i8', 'num', 'numx', 'ts', 'tstz', 'tm', 'd', 'by', 'js', 'jb', 't', 'b'];
const lines = (rows: Record<string, unknown>[]) => rows.map((r) => JSON.stringify(keys.map((k) => (r[k] === null || r[k] === undefined ? null : String(r[k])))));

test('PG → MariaDB with edge values, replicator killed with SIGKILL once: the replica equals the source value by value', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  await engine.exec(EDGE_TABLE);
  await engine.exec(`INSERT INTO edge VALUES ${EDGE_ROWS.join(', ')}`);
  const h = new RunHarness(engine, 'file', { tables: ['public.edge'], phi: () => ['columns: { public.edge: [t] }', 'publicColumns: { public.edge: [id, i8, num, numx, ts, tstz, tm, d, by, js, jb, b] }'] });
  const target = await createMariadbDatabase('rep');
  const my = await mysql.createConnection({ uri: target.url, charset: 'utf8mb4', dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });
  const source = new pg.Client({ connectionString: engine.url, options: '-c TimeZone=UTC' });
  await source.connect();
  const replica = new ReplicaProcess(['--config', h.configFile, '--target', target.url, '--phi', 'open'], h.env, join(h.work, 'replicate.log'));
  const compare = async () => multisetDiff(lines((await source.query(PG_TEXT)).rows), lines(((await my.query(MY_TEXT).catch(() => [[]]))[0] as Record<string, unknown>[])));
  try {
    await h.start();
    replica.start();
    await replica.waitFor((s) => s.started === 'load', 90_000, 'the initial load');
    // Transactions of several rows of each kind (batched inserts, updates, deletes), and a key change.
    const burst = async (from: number, n: number) => {
      for (let i = 0; i < n; i++) {
        const id = from + i * 10;
        await source.query('BEGIN');
        await source.query(`INSERT INTO edge SELECT ${id} + g, -g * 1000000000000, g + 0.0000000001, g::numeric ^ 30, '2024-01-01 00:00:00.000001'::timestamp + g * interval '1 microsecond', now(), '12:00:00.5'::time, current_date, decode(lpad(to_hex(g), 4, '0'), 'hex'), ('{"g": ' || g || '}')::json, '{"x": 9007199254740993}', 'row ' || g, g % 2 = 0 FROM generate_series(0, 7) g`);
        await source.query(`UPDATE edge SET i8 = i8 - 1, js = '{"updated": true}', tm = '01:02:03.000004' WHERE id BETWEEN ${id} AND ${id + 4}`);
        await source.query(`DELETE FROM edge WHERE id BETWEEN ${id + 5} AND ${id + 6}`);
        await source.query(`UPDATE edge SET id = ${id} + 9 WHERE id = ${id} + 7`);
        await source.query('COMMIT');
      }
    };
    await burst(100, 30);
    await replica.waitFor((s) => s.appliedTransactions >= 3, 60_000, 'transactions applied after the load');
    assert.equal(await replica.kill('SIGKILL'), null, 'killed by the signal');
    await burst(1000, 10);
    await source.query(`UPDATE edge SET num = 99999999999999999999.9999999999, b = NULL, by = '\\x00' WHERE id IN (1, 2)`);
    await source.query(`DELETE FROM edge WHERE id = 3`);
    await source.query(`INSERT INTO edge (id) VALUES (3)`);
    await sleep(500);
    replica.start();
    const resumed = await replica.waitFor(() => true, 60_000, 'the restart');
    assert.equal(resumed.started, 'resume', 'the restart resumes from the position row, it does not load again');

    let diff = 'not compared';
    for (const deadline = Date.now() + 90_000; diff && Date.now() < deadline; await sleep(500)) diff = await compare();
    assert.equal(diff, '', 'the MariaDB replica equals the PostgreSQL source value by value');
    const { rows } = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM edge');
    assert.ok(rows[0]!.n > 200, `the source holds the workload (${rows[0]!.n} rows)`);
    // Negative control: the comparison catches one changed microsecond.
    await my.query(`UPDATE edge SET ts = ts + INTERVAL 1 MICROSECOND WHERE id = 1`);
    assert.match(await compare(), /1 missing, 1 extra/, 'negative control: a changed value is found');
    await my.query(`UPDATE edge SET ts = ts - INTERVAL 1 MICROSECOND WHERE id = 1`);

    const [pos] = await my.query('SELECT source, state, phi FROM chartlog_replica');
    assert.deepEqual(pos, [{ source: 'clinic', state: 'following', phi: 'open' }]);
  } finally {
    await replica.kill('SIGKILL');
    await my.end().catch(() => undefined);
    await source.end();
    await target.drop();
    await h.close();
    await engine.close();
  }
});

test('a MariaDB target with tables but no replica position is refused: exit 2, the target untouched', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  await engine.exec(EDGE_TABLE);
  const h = new RunHarness(engine, 'file', { tables: ['public.edge'], phi: () => ['publicColumns: { public.edge: [id, i8, num, numx, ts, tstz, tm, d, by, js, jb, t, b] }'] });
  const target = await createMariadbDatabase('rep');
  try {
    await h.start();
    await target.exec('CREATE TABLE edge (id bigint PRIMARY KEY, note text)');
    await target.exec(`INSERT INTO edge VALUES (7, 'kept')`);
    const r = await runChartlog(['replicate', '--config', h.configFile, '--target', target.url, '--phi', 'omit'], h.env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /holds tables \(edge\) but no replica position/);
    assert.match(r.stderr, /fix: replicate into an empty database/);
    assert.deepEqual(await target.tables(), ['edge'], 'no table created (no chartlog_replica either)');
    assert.deepEqual(await target.capture('edge'), [{ id: Buffer.from('7').toString('hex'), note: Buffer.from('kept').toString('hex') }]);
  } finally {
    await target.drop();
    await h.close();
    await engine.close();
  }
});
