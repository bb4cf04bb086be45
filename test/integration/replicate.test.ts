import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { Position } from '../../src/core/position.js';
import { readAuditLog } from '../../src/phi/audit-log.js';
import { runChartlog } from '../support/chartlog-process.js';
import { describeHits, scanForCanaries, type ScannedObject } from '../support/leak-scan.js';
import { createTargetDb, multisetDiff, ReplicaProcess, rowTexts } from '../support/replica-process.js';
import { openReplicaSealed } from '../support/sealed-replica.js';
import { createClinicTables, mariadbEngine, norm, PHI_CANARIES, postgresEngine, prng, RunHarness, Workload } from '../support/run-harness.js';

/**
 * `chartlog replicate` against real PostgreSQL servers: a source captured by `chartlog run` (a
 * real process, embedded bus, file store) and a replica database on the same server.
 */

const run = promisify(execFile);
const PGBIN = '/usr/lib/postgresql/15/bin';
const PGBENCH_TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'];

/** Waits until every table of the replica equals the source's, value by value; returns the last difference ('' when equal). */
async function converge(source: pg.Client, target: pg.Client, tables: readonly { name: string; sourceColumns?: string[] }[], timeoutMs: number): Promise<string> {
  let diff = 'not compared';
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(500)) {
    diff = '';
    for (const t of tables) {
      const d = multisetDiff(await rowTexts(source, t.name, t.sourceColumns), await rowTexts(target, t.name).catch(() => []));
      if (d) {
        if (process.env.DEBUG_REPLICA) console.log((await rowTexts(source, t.name, t.sourceColumns)).slice(0, 3), (await rowTexts(target, t.name).catch(() => [])).slice(0, 3));
        diff = `${t.name}: ${d}`;
        break;
      }
    }
    if (!diff) return '';
  }
  return diff;
}

test('PG → PG under a pgbench load, replicator killed with SIGKILL twice and restarted: replica equals the source, no transaction applied twice', { timeout: 600_000 }, async () => {
  const engine = await postgresEngine();
  // pgbench's tables; pgbench_history has no key and is only appended to: a transaction applied
  // twice would show as a repeated history row.
  await run(`${PGBIN}/pgbench`, ['-i', '-s', '1', '-q', engine.url]);
  await engine.exec('ALTER TABLE pgbench_history REPLICA IDENTITY FULL');
  const h = new RunHarness(engine, 'file', {
    tables: PGBENCH_TABLES.map((t) => `public.${t}`),
    phi: () => ['columns: { public.pgbench_accounts: [filler] }'],
  });
  const target = await createTargetDb();
  const source = new pg.Client({ connectionString: engine.url, options: '-c TimeZone=UTC' });
  await source.connect();
  const replica = new ReplicaProcess(['--config', h.configFile, '--source', 'clinic', '--target', target.url, '--phi', 'open'], h.env, join(h.work, 'replicate.log'));
  try {
    await h.start([], 120_000); // the initial snapshot holds pgbench's 100 000 accounts
    // Transactions stored before the replica starts are part of its initial load.
    await run(`${PGBIN}/pgbench`, ['-n', '-c', '1', '-t', '100', engine.url]);
    replica.start();
    const loaded = await replica.waitFor((s) => s.started === 'load', 120_000, 'the initial load');
    assert.ok(loaded.loadSeconds !== undefined);
    const load = run(`${PGBIN}/pgbench`, ['-n', '-c', '2', '-j', '1', '-T', '45', engine.url]);
    await replica.waitFor((s) => s.appliedTransactions >= 50, 60_000, 'transactions applied after the load');
    // Two kill -9s while it applies, each followed by a restart that resumes.
    for (let kill = 1; kill <= 2; kill++) {
      assert.equal(await replica.kill('SIGKILL'), null, 'killed by the signal');
      await sleep(1000);
      replica.start();
      const resumed = await replica.waitFor(() => true, 60_000, `restart ${kill}`);
      assert.equal(resumed.started, 'resume', 'the restart resumes the replica from its position, it does not load it again');
      await replica.waitFor((s) => s.appliedTransactions >= 20, 60_000, `transactions applied after restart ${kill}`);
    }
    await load;
    const { rows } = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM pgbench_history');
    assert.ok(rows[0]!.n > 200, `the load ran transactions (${rows[0]!.n})`);
    assert.equal(await converge(source, target.client, PGBENCH_TABLES.map((name) => ({ name })), 90_000), '', 'the replica equals the source value by value');
    const drained = await replica.waitFor((s) => s.lagTransactions === 0, 30_000, 'the lag to drain');
    assert.equal(drained.lagSeconds, 0);

    // The history check can fail: a history row applied twice is found.
    const history = await rowTexts(target.client, 'pgbench_history');
    assert.equal(multisetDiff(await rowTexts(source, 'pgbench_history'), history), '');
    assert.match(multisetDiff(await rowTexts(source, 'pgbench_history'), [...history, history[0]!]), /1 extra/, 'negative control: a repeated transaction is caught');

    // The position row names the last transaction applied; PHI was opened, so the session was audited.
    const pos = await target.client.query<{ state: string; phi: string }>('SELECT state, phi FROM chartlog_replica');
    assert.deepEqual(pos.rows, [{ state: 'following', phi: 'open' }]);
    const audit = (await readAuditLog(h.store, 'clinic')).map((a) => a.record.action);
    assert.ok(audit.includes('replicate'), `a replicate audit record was written (${audit.join(', ')})`);
    assert.ok(audit.filter((a) => a === 'replicate').length <= 3, 'one record per session (three sessions: start, two restarts), never per value or transaction');
  } finally {
    await replica.kill('SIGKILL');
    await source.end();
    await target.drop();
    await h.close();
    await engine.close();
  }
});

test('--phi omit: a decoding scan of the replica finds no canary (and finds a planted one)', { timeout: 180_000 }, async () => {
  const engine = await postgresEngine();
  await createClinicTables(engine);
  // Unclassified columns would be sealed (phi.unclassified: seal), so omitted too: visits is reviewed as public.
  const h = new RunHarness(engine, 'file', {
    phi: (patients, visits) => [`columns: { ${patients}: [full_name, ssn] }`, `strict: [${patients}]`, `publicColumns: { ${patients}: [id, note, visits_count], ${visits}: [id, patient_id, reason] }`],
  });
  const target = await createTargetDb();
  const source = new pg.Client({ connectionString: engine.url });
  await source.connect();
  const replica = new ReplicaProcess(['--config', h.configFile, '--target', target.url, '--phi', 'omit'], h.env, join(h.work, 'replicate.log'));
  try {
    await h.start();
    const workload = new Workload(engine, prng(5));
    for (let i = 0; i < 30; i++) await workload.transaction();
    replica.start();
    await replica.waitFor((s) => s.started === 'load', 60_000, 'the initial load');
    for (let i = 0; i < 60; i++) await workload.transaction();
    // Equal to the source with the PHI columns NULL.
    const tables = [
      { name: 'patients', sourceColumns: ['id', 'NULL::varchar', 'NULL::varchar', 'note', 'visits_count'] },
      { name: 'visits' },
    ];
    assert.equal(await converge(source, target.client, tables, 60_000), '', 'the replica equals the source with PHI left NULL');
    const { rows } = await target.client.query<{ n: number }>('SELECT count(*)::int AS n FROM patients WHERE full_name IS NOT NULL OR ssn IS NOT NULL');
    assert.equal(rows[0]!.n, 0);

    const scan = async (): Promise<ScannedObject[]> => {
      const out: ScannedObject[] = [];
      const { rows: names } = await target.client.query<{ t: string }>(`SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`);
      for (const { t } of names) {
        // Every value as its text form, bytea as its raw bytes: the scanner searches them decoded (utf8, hex, base64, …).
        const { rows: cells } = await target.client.query<{ j: Record<string, unknown> }>(`SELECT to_jsonb(x) AS j FROM ${t} x`);
        const parts: Buffer[] = [];
        for (const c of cells) for (const v of Object.values(c.j)) if (typeof v === 'string') parts.push(v.startsWith('\\x') ? Buffer.from(v.slice(2), 'hex') : Buffer.from(v));
        out.push({ key: t, bytes: Buffer.concat(parts) });
      }
      return out;
    };
    const objects = await scan();
    assert.ok(objects.some((o) => o.key === 'public.patients' && o.bytes.length > 100), 'the scan read the replica');
    const hits = scanForCanaries(objects, PHI_CANARIES);
    assert.deepEqual(hits, [], describeHits(hits));
    // Negative control: a canary planted in the replica (in bytes) is found.
    await target.client.query(`CREATE TABLE planted (b bytea)`);
    await target.client.query(`INSERT INTO planted VALUES (convert_to('x ${PHI_CANARIES[0]}0001 y', 'UTF8'))`);
    assert.ok(scanForCanaries(await scan(), PHI_CANARIES).length > 0, 'the scan finds a planted canary');
  } finally {
    await replica.kill('SIGKILL');
    await source.end();
    await target.drop();
    await h.close();
    await engine.close();
  }
});

test('MariaDB → PostgreSQL, --phi sealed: non-PHI values equal the source, PHI columns hold sealed bytes that open with the keyring to the source values (and a planted stale image is caught)', { timeout: 180_000 }, async () => {
  const engine = await mariadbEngine();
  await createClinicTables(engine);
  const h = new RunHarness(engine, 'file', {
    phi: (patients, visits) => [`columns: { ${patients}: [full_name, ssn] }`, `strict: [${patients}]`, `publicColumns: { ${patients}: [id, note, visits_count], ${visits}: [id, patient_id, reason] }`],
  });
  const target = await createTargetDb();
  const replica = new ReplicaProcess(['--config', h.configFile, '--target', target.url, '--phi', 'sealed'], h.env, join(h.work, 'replicate.log'));
  try {
    await h.start();
    const workload = new Workload(engine, prng(9));
    for (let i = 0; i < 20; i++) await workload.transaction();
    replica.start();
    await replica.waitFor((s) => s.started === 'load', 60_000, 'the initial load');
    for (let i = 0; i < 60; i++) await workload.transaction();
    await engine.exec('TRUNCATE TABLE visits');
    for (let i = 0; i < 20; i++) await workload.transaction();
    // MariaDB tables go into the PostgreSQL schema named after the database, with restore's type mapping.
    const table = (t: string) => `"${engine.db}".${t}`;
    const compare = async (): Promise<string> => {
      for (const [t, cols] of [['patients', ['id', 'note', 'visits_count']], ['visits', ['id', 'patient_id', 'reason']]] as const) {
        const src = (await engine.rows(t)).map((r) => JSON.stringify(cols.map((c) => norm(r[c]))));
        const { rows } = await target.client.query(`SELECT ${cols.join(', ')} FROM ${table(t)} ORDER BY id`).catch(() => ({ rows: [] as Record<string, unknown>[] }));
        const d = multisetDiff(src, rows.map((r: Record<string, unknown>) => JSON.stringify(cols.map((c) => norm(r[c])))));
        if (d) return `${t}: ${d}`;
      }
      return '';
    };
    let diff = 'not compared';
    for (const deadline = Date.now() + 60_000; diff && Date.now() < deadline; await sleep(500)) diff = await compare();
    assert.equal(diff, '', 'the replica equals the source (non-PHI columns), value by value');
    const { rows } = await target.client.query<{ t: string; n: number; sealed: number }>(
      // Format 4 (3 before): one column holds the row seal (0x04, longer than any plaintext), the other a
      // 9-byte reference to it (0x13 and the seal's nonce prefix).
      `SELECT pg_typeof(ssn)::text AS t, count(*)::int AS n, count(*) FILTER (WHERE
         (get_byte(full_name, 0) IN (3, 4) AND length(full_name) > 28 AND length(ssn) = 9 AND get_byte(ssn, 0) = 19)
         OR (get_byte(ssn, 0) IN (3, 4) AND length(ssn) > 28 AND length(full_name) = 9 AND get_byte(full_name, 0) = 19))::int AS sealed
       FROM ${table('patients')} GROUP BY 1`,
    );
    assert.equal(rows[0]!.t, 'bytea');
    assert.equal(rows[0]!.sealed, rows[0]!.n, 'every row holds its PHI as one row seal and a reference to it');
    const { rows: plain } = await target.client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${table('patients')} WHERE position(convert_to('CANARY', 'UTF8') in ssn) > 0 OR position(convert_to('CANARY', 'UTF8') in full_name) > 0`,
    );
    assert.equal(plain[0]!.n, 0, 'no plaintext canary in the sealed column');

    // The sealed bytes open with the keyring to the source's values, value by value.
    const held = async () => (await target.client.query<{ id: string; full_name: Buffer | null; ssn: Buffer | null }>(`SELECT id::text AS id, full_name, ssn FROM ${table('patients')}`)).rows;
    const openedDiff = async (): Promise<string> => {
      const { rows: at } = await target.client.query<{ position: string }>(`SELECT position FROM public.chartlog_replica WHERE source = 'clinic'`);
      const cells = (await held()).map((r) => ({ id: BigInt(r.id), full_name: r.full_name && new Uint8Array(r.full_name), ssn: r.ssn && new Uint8Array(r.ssn) }));
      const opened = await openReplicaSealed(h.config, h.store, { name: 'clinic', type: 'mysql' }, { schema: engine.db, table: 'patients' }, cells, Position.parse(at[0]!.position));
      const text = (r: Record<string, unknown>) => JSON.stringify(['id', 'full_name', 'ssn'].map((c) => norm(r[c])));
      return multisetDiff((await engine.rows('patients')).map(text), opened.map(text));
    };
    assert.equal(await openedDiff(), '', 'the sealed PHI opens to the source values');
    // A planted wrong value: one row's sealed columns put back to what they held before its name
    // changed (a stale image opens cleanly, to the old name), so only the value comparison catches it.
    const victim = (await held()).find((r) => r.full_name !== null)!;
    await engine.exec(`UPDATE patients SET full_name = 'CANARY-NAME-renamed' WHERE id = ${victim.id}`);
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(250)) {
      const now = (await held()).find((r) => r.id === victim.id);
      if (now?.full_name && !now.full_name.equals(victim.full_name!)) break;
    }
    assert.equal(await openedDiff(), '', 'the renamed patient opens to the new name');
    await target.client.query(`UPDATE ${table('patients')} SET full_name = $1, ssn = $2 WHERE id = $3`, [victim.full_name, victim.ssn, victim.id]);
    assert.match(await openedDiff(), /1 missing, 1 extra/, 'the stale sealed image is caught');
  } finally {
    await replica.kill('SIGKILL');
    await target.drop();
    await h.close();
    await engine.close();
  }
});

test('a target with tables but no replica position is refused: exit 2, the fix named, the target untouched', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  await createClinicTables(engine);
  const h = new RunHarness(engine, 'file');
  const target = await createTargetDb();
  try {
    await h.start();
    await target.client.query('CREATE TABLE patients (id bigint PRIMARY KEY, note text)');
    await target.client.query(`INSERT INTO patients VALUES (7, 'kept')`);
    const before = await target.client.query(`SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`);
    const r = await runChartlog(['replicate', '--config', h.configFile, '--target', target.url, '--phi', 'omit'], h.env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /holds tables \(public\.patients\) but no replica position/);
    assert.match(r.stderr, /fix: replicate into an empty database/);
    const after = await target.client.query(`SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`);
    assert.deepEqual(after.rows, before.rows, 'no table created (no chartlog_replica either)');
    assert.deepEqual((await target.client.query('SELECT * FROM patients')).rows, [{ id: '7', note: 'kept' }]);
    // A --phi mode other than the replica's, once it is one, is refused the same way.
    await target.client.query('DROP TABLE patients');
    const first = await runChartlogUntil(['replicate', '--config', h.configFile, '--target', target.url, '--phi', 'omit'], h.env, /replica status/);
    assert.equal(first, 0);
    const mixed = await runChartlog(['replicate', '--config', h.configFile, '--target', target.url, '--phi', 'open'], h.env);
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /was built with --phi omit/);
  } finally {
    await target.drop();
    await h.close();
    await engine.close();
  }
});

/** Runs a command until its output matches `ready`, then SIGTERM: its exit code (a clean stop is 0). */
async function runChartlogUntil(args: readonly string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<number | null> {
  const { spawn } = await import('node:child_process');
  const { chartlogBin } = await import('../support/chartlog-process.js');
  const child = spawn(process.execPath, [chartlogBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 600 && !ready.test(out) && child.exitCode === null; i++) await sleep(100);
  assert.match(out, ready);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  child.kill('SIGTERM');
  return exited;
}
