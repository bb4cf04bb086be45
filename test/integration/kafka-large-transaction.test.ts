import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { COMMIT_SEQ } from '../../src/core/position.js';
import { runChartlog } from '../support/chartlog-process.js';
import { appendKafkaBus } from '../support/kafka-fixture.js';
import { createPgDatabase, diffCaptures, type Captured } from '../support/restore-engines.js';
import { createClinicTables, postgresEngine, prng, RunHarness, Workload } from '../support/run-harness.js';

/**
 * A PostgreSQL transaction larger than the connector's split threshold (2,500 events) on the
 * Kafka bus (the real 3-node cluster of scripts/services.sh): it reaches Kafka as pieces, each
 * with its own END record, and the compactor must settle them piece by piece. Before the fix
 * the first piece never completed, the checkpoint stayed at the snapshot for good, and
 * `restore --to latest` had none of the rows. Here `chartlog run` (a real process) archives one
 * 15,000-row INSERT … SELECT generate_series followed by small transactions, and
 * `chartlog restore --to latest` into a fresh database equals the source value by value.
 */

const ROWS = 15_000;
const PG_SESSION = '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1';
const RAW = { getTypeParser: (() => (v: string) => v) as unknown as pg.CustomTypesConfig['getTypeParser'] };

/** Every value as the server's own text output. */
async function capture(url: string, table: string): Promise<Captured> {
  const c = new pg.Client({ connectionString: url, options: PG_SESSION, types: RAW });
  await c.connect();
  try {
    return (await c.query(`SELECT * FROM ${table} ORDER BY id`)).rows as Captured;
  } finally {
    await c.end();
  }
}

test(`a ${ROWS}-row transaction and small ones after it, on the Kafka bus: restore --to latest equals the source`, { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  // patients gets a wide PHI column, chart: sealed values do not compress.
  const h = new RunHarness(engine, 'file', {
    flushIntervalMs: 200,
    phi: (patients) => [`columns: { ${patients}: [full_name, ssn, chart] }`, `strict: [${patients}]`, `publicColumns: { ${patients}: [id, note, visits_count] }`],
  });
  appendKafkaBus(h.configFile, 'large');
  const target = await createPgDatabase('rlarge');
  try {
    await createClinicTables(engine);
    await engine.exec('ALTER TABLE patients ADD COLUMN chart TEXT');
    await h.start();
    // One transaction of 15,000 rows (ids above the workload's): two pieces of 10,000 and 5,000
    // events. PHI columns carry canaries. Each row has 256 characters of sealed PHI: a piece is
    // ~6 MiB of messages that do not compress, more than a broker takes in one record batch per
    // partition (message.max.bytes, 1 MiB).
    await engine.exec(
      `INSERT INTO patients (id, full_name, ssn, note, visits_count, chart) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'bulk ' || g, g % 7, repeat(md5(g::text), 8) FROM generate_series(1000001, ${1_000_000 + ROWS}) g`,
    );
    const workload = new Workload(engine, prng(23));
    for (let i = 0; i < 30; i++) await workload.transaction();

    assert.equal(await h.converge(180_000), '', 'the archive converges to the source');
    assert.match(h.logText(), /"bus":"kafka"/, 'it ran on the Kafka bus');
    assert.match(h.logText(), /"events":15000,.*"msg":"large transaction delivered in partial batches"/, 'the transaction went in pieces');
    assert.equal(await h.kill('SIGTERM'), 0, 'a clean stop exits 0');
    const cp = await readCheckpoint(h.store, 'clinic');
    assert.equal(cp?.position.seq, COMMIT_SEQ, 'the checkpoint names a whole transaction at the end');

    const r = await runChartlog(['restore', '--config', h.configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url], h.env);
    assert.equal(r.code, 0, `restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    for (const table of ['patients', 'visits']) {
      const expected = await capture(engine.url, `public.${table}`);
      if (table === 'patients') assert.ok(expected.length > ROWS, `the source has the ${ROWS} rows (${expected.length})`);
      const diff = diffCaptures(await capture(target.url, `public.${table}`), expected, `restore --to latest ${table}`);
      assert.equal(diff, null, diff ?? '');
    }
  } finally {
    await target.drop();
    await h.close();
    await engine.close();
  }
});

/** The rows of a table as one digest of their text forms, in id order: equal digests, equal values. */
async function digest(url: string, table: string): Promise<{ rows: string; md5: string }> {
  const c = new pg.Client({ connectionString: url, options: PG_SESSION, types: RAW });
  await c.connect();
  try {
    const { rows } = await c.query(`SELECT count(*)::text AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY id), '')) AS md5 FROM ${table} t`);
    return rows[0] as { rows: string; md5: string };
  } finally {
    await c.end();
  }
}

const MILLION = 1_000_000;

test(`a ${MILLION.toLocaleString('en-US')}-row transaction on the Kafka bus: restore --to latest equals the source`, { timeout: 900_000 }, async () => {
  const engine = await postgresEngine();
  const h = new RunHarness(engine, 'file', { flushIntervalMs: 1000 });
  appendKafkaBus(h.configFile, 'million');
  const target = await createPgDatabase('rmillion');
  try {
    await createClinicTables(engine);
    await h.start();
    const started = Date.now();
    await engine.exec(
      `INSERT INTO patients (id, full_name, ssn, note, visits_count) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'bulk ' || g, g % 7 FROM generate_series(1000001, ${1_000_000 + MILLION}) g`,
    );
    const workload = new Workload(engine, prng(29));
    for (let i = 0; i < 10; i++) await workload.transaction();
    // A last transaction after everything: once the checkpoint passes the WAL position before
    // it, every transaction is settled in the store.
    const [{ lsn }] = (await engine.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    const [hi, lo] = lsn.split('/').map((x) => BigInt(`0x${x}`)) as [bigint, bigint];
    const before = (hi << 32n) | lo;
    await engine.exec(`INSERT INTO visits (id, patient_id, reason) VALUES (999999, 1, 'last')`);
    for (;;) {
      const cp = await readCheckpoint(h.store, 'clinic');
      if (cp && BigInt(`0x${cp.position.commit}`) > before) break;
      assert.ok(Date.now() - started < 780_000, `the checkpoint did not pass ${lsn}: ${cp ? cp.position.commit : 'none'}`);
      await sleep(1000);
    }
    const seconds = (Date.now() - started) / 1000;
    console.log(`${MILLION} rows settled through Kafka in ${seconds.toFixed(1)} s (${Math.round(MILLION / seconds)} rows/s, commit to checkpoint)`);
    assert.match(h.logText(), /"events":1000000,.*"msg":"large transaction delivered in partial batches"/, 'the transaction went in pieces');
    assert.equal(await h.kill('SIGTERM'), 0, 'a clean stop exits 0');

    const r = await runChartlog(['restore', '--config', h.configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url], h.env);
    assert.equal(r.code, 0, `restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    for (const table of ['patients', 'visits']) {
      const expected = await digest(engine.url, `public.${table}`);
      if (table === 'patients') assert.ok(Number(expected.rows) > MILLION, `the source has the rows (${expected.rows})`);
      assert.deepEqual(await digest(target.url, `public.${table}`), expected, `restore --to latest ${table}: same rows, same values`);
    }
  } finally {
    await target.drop();
    await h.close();
    await engine.close();
  }
});
