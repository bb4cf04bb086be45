import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { ChartlogRun } from '../support/chartlog-process.js';
import { createTargetDb, ReplicaProcess } from '../support/replica-process.js';
import { capturePg, createMariadbDatabase, createPgDatabase, diffCaptures, type Captured, type TestDatabase } from '../support/restore-engines.js';

/**
 * Issue 18, schema evolution through table resyncs: DDL that rewrites a table's rows without row
 * events makes `chartlog run` re-read the table (a new base at a known position); the replica
 * waits before the DDL (the table's unproven window) and then rebuilds the table from that base
 * in one target transaction. PostgreSQL → PostgreSQL (ALTER … TYPE … USING, with a kill -9 of
 * the replicator in the middle of the rebuild: the replica keeps the old table whole, and the
 * next start rebuilds it) and MariaDB → PostgreSQL (MODIFY, RENAME TABLE). After each, the
 * replica equals the source value by value.
 */

const work = mkdtempSync(join(tmpdir(), 'chartlog-represync-'));
const created: TestDatabase[] = [];
const targets: { drop(): Promise<void> }[] = [];
const replicas: ReplicaProcess[] = [];
const runs: ChartlogRun[] = [];
after(async () => {
  for (const r of replicas) await r.kill('SIGKILL').catch(() => undefined);
  for (const r of runs) await r.close();
  for (const t of targets) await t.drop().catch(() => undefined);
  for (const db of created) await db.drop();
  if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
});

function configFor(name: string, sourceLine: string, publicColumns: string): string {
  const dir = join(work, name);
  mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
  const keyring = join(dir, 'keys', 'keyring.json');
  FileKeyring.create(keyring);
  const file = join(dir, 'chartlog.yaml');
  writeFileSync(file, ['sources:', sourceLine, `storage: { url: "file://${dir}/backup" }`, 'segments: { flushIntervalMs: 200 }', 'phi:', `  keyring: "file://${keyring}"`, `  publicColumns: ${publicColumns}`, 'log: { level: info, format: json }'].join('\n'));
  return file;
}

/** Waits until every table's replica capture equals the source's (text form); fails with the difference and the replicator's output. */
async function waitEqual(tables: [string, () => Promise<Captured>, () => Promise<Captured>][], replica: ReplicaProcess, what: string, timeoutMs = 60_000): Promise<void> {
  let diff: string | null = 'not compared';
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(200)) {
    diff = null;
    for (const [label, want, got] of tables) diff ??= diffCaptures(await got().catch((e: Error) => [{ error: e.message }]), await want(), label);
    if (!diff) return;
    assert.equal(replica.exitCode, null, `the replicator stopped (${what}): ${replica.output.slice(-1500)}`);
  }
  assert.fail(`${what}: the replica differs from the source: ${diff}`);
}

test('PostgreSQL → PostgreSQL, the DDL matrix: ALTER … TYPE … USING rebuilt from its resync base in one transaction (a kill -9 in the rebuild leaves the old table whole), RENAME TO, volatile and sealed defaults, TRUNCATE, DROP/CREATE TABLE; equal value by value after each', { timeout: 420_000 }, async () => {
  const source = await createPgDatabase('represync');
  created.push(source);
  const target = await createTargetDb();
  targets.push(target);
  // The server notices a killed replicator within 200 ms even while its transaction waits on a
  // lock (the gate below), as it would once that transaction read from the socket again.
  await target.client.query(`ALTER DATABASE "${new URL(target.url).pathname.slice(1)}" SET client_connection_check_interval = '200ms'`);
  await source.exec('CREATE TABLE t (id int4 PRIMARY KEY, note text, n int4)');
  await source.exec('CREATE TABLE w (id int4 PRIMARY KEY, x int4)');
  await source.exec('CREATE TABLE r1 (id int4 PRIMARY KEY, v text)');
  await source.exec(`INSERT INTO r1 SELECT g, 'r-' || g FROM generate_series(1, 20) g`);
  await source.exec('CREATE TABLE d (id int4 PRIMARY KEY, y int4)');
  await source.exec(`INSERT INTO d SELECT g, g FROM generate_series(1, 10) g`);
  // No tables list: every table is captured (r2, the rename's new name, does not exist yet).
  // Large enough that the rebuild takes a while (the kill below lands inside it).
  await source.exec(`INSERT INTO t SELECT g, 'note-' || g, g FROM generate_series(1, 25000) g`);
  const config = configFor('pg', `  - { name: clinic, type: postgres, url: "${source.url}", resync: { rowsPerSecond: 200000 }, postgres: { catalogCheckIntervalMs: 200 } }`, '{ public.t: [id, note, n], public.w: [id, x], public.r1: [id, v], public.d: [id, y] }');
  const run = new ChartlogRun(config, join(work, 'pg-run.log'));
  runs.push(run);
  await run.start();
  const replicaArgs = ['--config', config, '--source', 'clinic', '--target', target.url, '--phi', 'open'];
  let replica = new ReplicaProcess(replicaArgs, process.env, join(work, 'pg-replica.log'));
  replicas.push(replica);
  replica.start();
  await replica.waitFor((s) => s.started === 'load', 90_000, 'the initial load');
  const pgTables = (names = ['t', 'w']): [string, () => Promise<Captured>, () => Promise<Captured>][] =>
    names.map((t) => [t, () => capturePg(source.url, t), () => capturePg(target.url, `public.${t}`)] as [string, () => Promise<Captured>, () => Promise<Captured>]);

  await source.exec(`INSERT INTO w VALUES (1, 1)`);
  await source.exec(`UPDATE t SET n = -1 WHERE id = 1`);
  await waitEqual(pgTables(), replica, 'before the ALTER');
  // The gate: the rebuild of t ends by recording its base, and a lock on the bases table held
  // here keeps it there — holding t (its DROP's lock), its rows loaded, not committed — until
  // the kill. (Without it the kill had to land in the rebuild's own time, 25,000 rows, after the
  // test saw it: a window a faster machine can close first.)
  const gate = new pg.Client({ connectionString: target.url });
  gate.on('error', () => undefined);
  await gate.connect();
  await gate.query('BEGIN; LOCK TABLE public.chartlog_replica_bases IN EXCLUSIVE MODE');

  // The rewrite (no row events), then changes under the new type, of t and of another table.
  await source.exec('ALTER TABLE t ALTER COLUMN note TYPE varchar(200) USING upper(note)');
  await source.exec(`UPDATE t SET note = 'after-' || id WHERE id <= 3`);
  await source.exec(`INSERT INTO w VALUES (2, 2)`);
  await source.exec(`DELETE FROM t WHERE id = 4`);

  // kill -9 while the replica's transaction rebuilding t holds t (its DROP's lock) — before it
  // commits: it waits at the gate for its base's row.
  const replicators = (more = '') => target.client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_stat_activity a WHERE a.application_name = 'chartlog-replicate' AND a.datname = current_database() ${more}`,
  ).then(({ rows }) => Number(rows[0]!.n));
  let sawRebuild = false;
  for (const deadline = Date.now() + 90_000; Date.now() < deadline && !sawRebuild; await sleep(100)) {
    sawRebuild = (await replicators(`AND a.wait_event_type = 'Lock' AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted
      AND l.mode = 'AccessExclusiveLock' AND l.locktype = 'relation' AND l.relation = 'public.t'::regclass)`)) > 0;
    assert.equal(replica.exitCode, null, `the replicator stopped: ${replica.output.slice(-1500)}`);
  }
  assert.ok(sawRebuild, 'the replica began rebuilding t, and waits at the gate holding t');
  await replica.kill('SIGKILL');
  // The server rolls the killed transaction back (client_connection_check_interval), then the gate opens.
  for (const deadline = Date.now() + 60_000; (await replicators()) > 0; await sleep(100)) {
    assert.ok(Date.now() < deadline, 'the server ended the killed replicator\'s sessions within 60 s');
  }
  await gate.query('ROLLBACK');
  await gate.end();
  // The killed transaction is rolled back by the server once it sees the connection gone: a
  // reader then finds the old table whole (lowercase notes, 25,000 rows), no base recorded.
  // (This reader waits on the killed transaction's lock until then.)
  const old = (await target.client.query(`SELECT count(*)::text AS rows, count(*) FILTER (WHERE note LIKE 'NOTE-%')::text AS upper FROM public.t`)).rows as Captured;
  assert.deepEqual(old, [{ rows: '25000', upper: '0' }], 'after the kill the replica holds the old t whole');
  const marks = await target.client.query(`SELECT table_name FROM chartlog_replica_bases WHERE table_name = 'public.t'`).then((r) => r.rows.length, () => 0);
  assert.equal(marks, 0, 'the killed rebuild recorded no base');

  // Started again, the replica rebuilds t and follows the changes after the base.
  replica = new ReplicaProcess(replicaArgs, process.env, join(work, 'pg-replica-2.log'));
  replicas.push(replica);
  replica.start();
  await replica.waitFor((s) => s.started === 'resume', 60_000, 'the resume');
  await source.exec(`UPDATE t SET note = 'later' WHERE id = 5`);
  await waitEqual(pgTables(), replica, 'after the rewrite and the kill');
  // The query that found no base after the kill finds the one the completed rebuild recorded.
  const taken = await target.client.query(`SELECT table_name FROM chartlog_replica_bases WHERE table_name = 'public.t'`);
  assert.equal(taken.rows.length, 1, 'the completed rebuild recorded its base');
  const types = await target.client.query<{ t: string }>(`SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'public.t'::regclass AND attname = 'note'`);
  assert.equal(types.rows[0]?.t, 'character varying(200)', 'the rebuilt table has the new type');
  // ALTER TABLE … RENAME TO: r1's history ends (dropped in the replica); r2 is re-read by a resync,
  // and its changes archived before that base meet no row until the base rebuilds it.
  await source.exec('ALTER TABLE r1 RENAME TO r2');
  await source.exec(`UPDATE r2 SET v = 'renamed' WHERE id = 3`);
  await source.exec(`INSERT INTO r2 VALUES (21, 'new')`);
  await source.exec(`INSERT INTO w VALUES (3, 3)`);
  await waitEqual(pgTables(['t', 'w', 'r2']), replica, 'after RENAME TO', 90_000);
  const gone = await target.client.query(`SELECT to_regclass('public.r1')::text AS t`);
  assert.equal(gone.rows[0]?.t, null, 'the renamed table is gone under its old name');

  // The rest of the PostgreSQL DDL matrix at once (new columns and tables are unclassified, so
  // sealed; --phi open opens them): a volatile default (a rewrite: re-read), a
  // constant default on a sealed column (r2's columns are unclassified, so sealed: re-read, as
  // the default's value is withheld from the version), TRUNCATE, DROP TABLE, CREATE TABLE.
  await source.exec('ALTER TABLE w ADD COLUMN g float8 DEFAULT random()');
  await source.exec(`INSERT INTO w (id, x) VALUES (4, 4)`);
  await source.exec(`ALTER TABLE r2 ADD COLUMN s text NOT NULL DEFAULT 'canary-sealed-default'`);
  await source.exec(`UPDATE r2 SET s = 'canary-set' WHERE id = 5`);
  await source.exec('TRUNCATE d');
  await source.exec(`INSERT INTO d VALUES (100, 100)`);
  await source.exec('CREATE TABLE fresh (id int4 PRIMARY KEY, v int8)');
  await source.exec(`INSERT INTO fresh VALUES (1, 9007199254740993), (2, -1)`);
  await waitEqual(pgTables(['t', 'w', 'r2', 'd', 'fresh']), replica, 'after a volatile default, a sealed default, TRUNCATE and CREATE TABLE', 90_000);
  await source.exec('DROP TABLE d');
  await source.exec(`INSERT INTO w (id, x) VALUES (5, 5)`);
  await waitEqual(pgTables(['w']), replica, 'after DROP TABLE');
  for (let i = 0; ; i++) {
    const dropped = await target.client.query(`SELECT to_regclass('public.d')::text AS t`);
    if (dropped.rows[0]?.t === null) break;
    assert.ok(i < 300, 'the dropped table is dropped in the replica');
    await sleep(100);
  }
  // Negative control: the comparison catches one planted difference.
  await target.client.query(`UPDATE public.t SET n = n + 1 WHERE id = 6`);
  assert.notEqual(diffCaptures(await capturePg(target.url, 'public.t'), await capturePg(source.url, 't'), 't'), null);
});

test('MariaDB → PostgreSQL: MODIFY (re-read by an automatic resync) and RENAME TABLE are followed; equal value by value', { timeout: 420_000 }, async () => {
  const source = await createMariadbDatabase('represm');
  created.push(source);
  const target = await createTargetDb();
  targets.push(target);
  await source.exec('CREATE TABLE m (id INT PRIMARY KEY, note VARCHAR(40), n INT)');
  await source.exec('CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))');
  await source.exec('CREATE TABLE w (id INT PRIMARY KEY, x INT)');
  // Notes longer than the MODIFY's 20 characters: it cuts them (the session's sql_mode is ''),
  // without row events — only the rebuild from the resync base brings the cut values.
  for (let i = 1; i <= 50; i++) await source.exec(`INSERT INTO m VALUES (${i}, 'm${i}-${'x'.repeat(30)}', ${i})`);
  for (let i = 1; i <= 20; i++) await source.exec(`INSERT INTO a VALUES (${i}, 'a${i}')`);
  const q = (t: string): string => `${source.name}.${t}`;
  const config = configFor(
    'maria',
    `  - { name: clinic, type: mysql, url: "${source.url}", tables: [${['m', 'a', 'b', 'w'].map(q).join(', ')}], resync: { rowsPerSecond: 200000 }, mysql: { serverId: ${60000 + Math.floor(Math.random() * 10000)} } }`,
    // b does not exist yet: its columns are unclassified (sealed), opened by --phi open.
    `{ ${q('m')}: [id, note, n], ${q('a')}: [id, v], ${q('w')}: [id, x] }`,
  );
  const run = new ChartlogRun(config, join(work, 'maria-run.log'));
  runs.push(run);
  await run.start();
  const replica = new ReplicaProcess(['--config', config, '--source', 'clinic', '--target', target.url, '--phi', 'open'], process.env, join(work, 'maria-replica.log'));
  replicas.push(replica);
  replica.start();
  await replica.waitFor((s) => s.started === 'load', 90_000, 'the initial load');
  // MariaDB's text output against PostgreSQL's, column by column (ints and strings here).
  // The MariaDB capture gives each value's text as hex (restore-engines.ts); PostgreSQL's text
  // output is put in the same form. Rows sorted as text: a multiset compare.
  const sorted = (rows: Captured): Captured => rows.sort((x, y) => (JSON.stringify(x) < JSON.stringify(y) ? -1 : JSON.stringify(x) > JSON.stringify(y) ? 1 : 0));
  const hex = (rows: Captured): Captured => rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === null ? null : Buffer.from(String(v)).toString('hex')])));
  const tables = (names: string[]): [string, () => Promise<Captured>, () => Promise<Captured>][] =>
    names.map((t) => [t, async () => sorted(await source.capture(t)), async () => sorted(hex(await capturePg(target.url, `"${source.name}".${t}`)))]);

  // MODIFY may change stored values without row events: the run re-reads m (a window, then a base).
  await source.exec(`ALTER TABLE m MODIFY note VARCHAR(20)`);
  await source.exec(`UPDATE m SET note = 'after' WHERE id = 2`);
  await source.exec(`INSERT INTO w VALUES (1, 1)`);
  // RENAME TABLE: a's history ends (the replica drops it), b is re-read under its new name.
  await source.exec('RENAME TABLE a TO b');
  await source.exec(`UPDATE b SET v = 'renamed' WHERE id = 3`);
  await source.exec(`INSERT INTO b VALUES (21, 'new')`);
  await waitEqual(tables(['m', 'b', 'w']), replica, 'after MODIFY and RENAME TABLE', 90_000);
  const gone = await target.client.query(`SELECT to_regclass('"${source.name}".a')::text AS t`);
  assert.equal(gone.rows[0]?.t, null, 'the renamed table is gone under its old name');
  await target.client.query(`UPDATE "${source.name}".b SET v = 'planted' WHERE id = 4`);
  assert.notEqual(diffCaptures(sorted(hex(await capturePg(target.url, `"${source.name}".b`))), sorted(await source.capture('b')), 'b'), null);
});
