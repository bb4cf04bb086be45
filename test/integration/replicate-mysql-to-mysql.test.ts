import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { multisetDiff, ReplicaProcess } from '../support/replica-process.js';
import { createMariadbDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { mariadbEngine, prng, RunHarness } from '../support/run-harness.js';
import { MARIADB_CASES, MARIADB_COLUMNS, MARIADB_SESSION, mariadbMatrixTable } from '../support/type-matrix.js';

/**
 * `chartlog replicate` MariaDB → MariaDB (issue 18): a MariaDB source captured by `chartlog run`
 * (a real process, embedded bus, file store), replicated into a second database on the same
 * server. The table is the MariaDB type matrix of the type tests (test/support/type-matrix.ts:
 * every edge value), changed by random transactions that copy case values between rows; the
 * replicator is killed with SIGKILL mid-stream and restarted. Afterwards both databases hold the
 * same bytes in every column (the server's own text output), and a key-less history table, one
 * row per source transaction, shows that no transaction was applied twice.
 */

/** Every row of a table as the server's text-protocol bytes (hex), in `order`: what the server holds, nothing a driver rounded. */
async function capture(url: string, table: string, order: string): Promise<Captured> {
  const c = await mysql.createConnection({ uri: url, charset: 'utf8mb4', typeCast: (f) => f.buffer()?.toString('hex') ?? null });
  try {
    await c.query(MARIADB_SESSION);
    return (await c.query(`SELECT * FROM ${table} ORDER BY ${order}`))[0] as Captured;
  } finally {
    await c.end();
  }
}

test('MariaDB → MariaDB with the type matrix, replicator killed with SIGKILL mid-stream: equal value by value, no transaction applied twice', { timeout: 180_000 }, async () => {
  const engine = await mariadbEngine();
  await engine.exec(MARIADB_SESSION);
  await engine.exec(mariadbMatrixTable('matrix'));
  await engine.exec(mariadbMatrixTable('cases'));
  await engine.exec('CREATE TABLE hist (tx INT, note VARCHAR(20))'); // no key: a repeated transaction shows as a repeated row
  const cols = MARIADB_COLUMNS.join(', ');
  for (const [i, c] of MARIADB_CASES.entries()) await engine.exec(`INSERT INTO cases (id, ${cols}) VALUES (${i + 1}, ${c.sql.join(', ')})`);
  await engine.exec(`INSERT INTO matrix SELECT * FROM cases`);
  const h = new RunHarness(engine, 'file', {
    tables: [engine.qualified('matrix'), engine.qualified('hist')],
    phi: () => [`publicColumns: { ${engine.qualified('matrix')}: [id, ${cols}], ${engine.qualified('hist')}: [tx, note] }`],
  });
  const target = await createMariadbDatabase('rep');
  const replica = new ReplicaProcess(['--config', h.configFile, '--target', target.url, '--phi', 'omit'], h.env, join(h.work, 'replicate.log'));
  const rand = prng(Number(process.env.SEED ?? 18));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const caseValue = (col: string) => `(SELECT ${col} FROM cases WHERE id = ${1 + Math.floor(rand() * MARIADB_CASES.length)})`;
  const live = new Set(MARIADB_CASES.map((_, i) => i + 1));
  let nextId = 100;
  let tx = 0;
  /** One source transaction of 1 to 4 matrix changes (inserts copying case values, updates, deletes, a key change) and its history row. */
  const transaction = async () => {
    const n = 1 + Math.floor(rand() * 4);
    await engine.exec('BEGIN');
    for (let i = 0; i < n; i++) {
      const r = rand();
      if (r < 0.35 || live.size < 3) {
        const id = nextId++;
        live.add(id);
        await engine.exec(`INSERT INTO matrix (id, ${cols}) SELECT ${id}, ${MARIADB_COLUMNS.map(caseValue).join(', ')}`);
      } else if (r < 0.75) {
        const set = [...new Set([pick(MARIADB_COLUMNS), pick(MARIADB_COLUMNS), pick(MARIADB_COLUMNS)])].map((c) => `${c} = ${caseValue(c)}`);
        await engine.exec(`UPDATE matrix SET ${set.join(', ')} WHERE id = ${pick([...live])}`);
      } else if (r < 0.9) {
        const id = pick([...live]);
        live.delete(id);
        await engine.exec(`DELETE FROM matrix WHERE id = ${id}`);
      } else {
        const from = pick([...live]);
        const to = nextId++;
        live.delete(from);
        live.add(to);
        await engine.exec(`UPDATE matrix SET id = ${to} WHERE id = ${from}`);
      }
    }
    await engine.exec(`INSERT INTO hist VALUES (${++tx}, 'n${n}')`);
    await engine.exec('COMMIT');
  };
  const compare = async (): Promise<string> => {
    const m = diffCaptures(await capture(target.url, 'matrix', 'id').catch(() => []), await capture(engine.url, 'matrix', 'id'), 'matrix');
    if (m) return m;
    const line = (r: Record<string, unknown>) => JSON.stringify(r);
    return multisetDiff((await capture(engine.url, 'hist', 'tx')).map(line), (await capture(target.url, 'hist', 'tx').catch(() => [])).map(line));
  };
  try {
    await h.start();
    for (let i = 0; i < 10; i++) await transaction();
    replica.start();
    await replica.waitFor((s) => s.started === 'load', 60_000, 'the initial load');
    // Load: transactions keep coming while the replicator applies them; SIGKILL mid-stream.
    let stop = false;
    const load = (async () => {
      while (!stop) await transaction();
    })();
    try {
      await replica.waitFor((s) => s.appliedTransactions >= 10, 60_000, 'transactions applied after the load');
      assert.equal(await replica.kill('SIGKILL'), null, 'killed by the signal');
      await sleep(1000);
      replica.start();
      const resumed = await replica.waitFor(() => true, 60_000, 'the restart');
      assert.equal(resumed.started, 'resume', 'the restart resumes from the position row');
      await replica.waitFor((s) => s.appliedTransactions >= 5, 60_000, 'transactions applied after the restart');
    } finally {
      stop = true;
      await load;
    }
    assert.ok(tx > 30, `the workload ran transactions (${tx})`);

    let diff = 'not compared';
    for (const deadline = Date.now() + 60_000; diff && Date.now() < deadline; await sleep(500)) diff = await compare();
    assert.equal(diff, '', 'the replica equals the source value by value, and holds each transaction once');
    const matrix = await capture(engine.url, 'matrix', 'id');
    assert.ok(matrix.length >= 5, `the source holds rows (${matrix.length})`);
    // Negative controls: one changed microsecond is found; a transaction applied twice is found.
    const my = await mysql.createConnection({ uri: target.url });
    try {
      const id = Number(Buffer.from(String(matrix.find((r) => r.dtm !== null)!.id), 'hex').toString());
      // The row may hold an edge value (9999-12-31 23:59:59.999999 overflows by a microsecond
      // up, 1000-01-01 00:00:00 by one down): step away from the end it is near, then back.
      const [near] = (await my.query(`SELECT dtm > '5000-01-01' AS high FROM matrix WHERE id = ${id}`)) as unknown as [{ high: number }[]];
      const [away, back] = near[0]!.high ? ['-', '+'] : ['+', '-'];
      await my.query(`UPDATE matrix SET dtm = dtm ${away} INTERVAL 1 MICROSECOND WHERE id = ${id}`);
      assert.match(await compare(), /column dtm differs/, 'negative control: a changed value is found');
      await my.query(`UPDATE matrix SET dtm = dtm ${back} INTERVAL 1 MICROSECOND WHERE id = ${id}`);
      await my.query(`INSERT INTO hist SELECT * FROM hist WHERE tx = 1`);
      assert.match(await compare(), /1 extra/, 'negative control: a repeated transaction is found');
    } finally {
      await my.end();
    }
  } finally {
    await replica.kill('SIGKILL');
    await target.drop();
    await h.close();
    await engine.close();
  }
});
