import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createClinicTables, postgresEngine, prng, RunHarness, Workload } from '../support/run-harness.js';
import { capturePg, createPgDatabase, diffCaptures, type TestDatabase } from '../support/restore-engines.js';

/**
 * Replica identities on real PostgreSQL, end to end (`chartlog run` as a process, then
 * `chartlog restore --to latest` into a fresh database): DEFAULT, USING INDEX and FULL on keyed
 * and key-less tables restore exactly, value by value, while another connection writes the
 * clinic tables concurrently. NOTHING (and DEFAULT without a primary key) is refused at start
 * with the statement that fixes it, exit 2, unless the table is configured insert-only.
 */

interface IdentityTable {
  name: string;
  ddl: string[];
  /** ORDER BY for comparing: a unique order, or every column for key-less tables. */
  order: string;
  /** The column updates change now and then (the key, or the index's key). */
  keyColumn: 'id' | 'code';
}

const TABLES: IdentityTable[] = [
  { name: 'keyed_default', ddl: ['CREATE TABLE keyed_default (id BIGINT PRIMARY KEY, code TEXT NOT NULL, note TEXT, ward TEXT)'], order: 'id', keyColumn: 'id' },
  {
    name: 'keyed_full',
    ddl: ['CREATE TABLE keyed_full (id BIGINT PRIMARY KEY, code TEXT NOT NULL, note TEXT, ward TEXT)', 'ALTER TABLE keyed_full REPLICA IDENTITY FULL'],
    order: 'id',
    keyColumn: 'id',
  },
  {
    name: 'keyless_full',
    ddl: ['CREATE TABLE keyless_full (id BIGINT, code TEXT NOT NULL, note TEXT, ward TEXT)', 'ALTER TABLE keyless_full REPLICA IDENTITY FULL'],
    order: 'id, code, note, ward',
    keyColumn: 'code',
  },
  {
    name: 'keyless_index',
    ddl: [
      'CREATE TABLE keyless_index (id BIGINT, code TEXT NOT NULL, note TEXT, ward TEXT)',
      'CREATE UNIQUE INDEX keyless_index_code ON keyless_index (code)',
      'ALTER TABLE keyless_index REPLICA IDENTITY USING INDEX keyless_index_code',
    ],
    order: 'code',
    keyColumn: 'code',
  },
  {
    name: 'keyed_index',
    ddl: [
      'CREATE TABLE keyed_index (id BIGINT PRIMARY KEY, code TEXT NOT NULL, note TEXT, ward TEXT)',
      'CREATE UNIQUE INDEX keyed_index_code ON keyed_index (code)',
      'ALTER TABLE keyed_index REPLICA IDENTITY USING INDEX keyed_index_code',
    ],
    order: 'id',
    keyColumn: 'code',
  },
];

const PUBLIC = (t: IdentityTable): string => `public.${t.name}: [id, code, note, ward]`;

/** The workload on one table: 100 inserts, 50 updates (every 5th changes the key), 20 deletes. */
async function identityWorkload(c: pg.Client, t: IdentityTable): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await c.query(`INSERT INTO ${t.name} (id, code, note, ward) VALUES ($1, $2, $3, $4)`, [i, `c${i}`, `n${i}`, i % 3 === 0 ? null : `w${i % 5}`]);
  }
  for (let i = 0; i < 50; i++) {
    const key = i % 5 === 0 ? (t.keyColumn === 'id' ? `, id = ${1000 + i}` : `, code = 'k${i}'`) : '';
    await c.query(`UPDATE ${t.name} SET note = 'u${i}'${key} WHERE code = $1`, [`c${i}`]);
  }
  for (let i = 50; i < 70; i++) await c.query(`DELETE FROM ${t.name} WHERE code = $1`, [`c${i}`]);
  if (t.name === 'keyless_full') {
    // Two identical rows; deleting one of them (by ctid) leaves one.
    for (let k = 0; k < 2; k++) await c.query(`INSERT INTO keyless_full (id, code, note, ward) VALUES (7, 'dup', 'same', NULL)`);
    await c.query(`DELETE FROM keyless_full WHERE ctid = (SELECT ctid FROM keyless_full WHERE code = 'dup' LIMIT 1)`);
    const { rows } = await c.query(`SELECT count(*)::int AS n FROM keyless_full WHERE code = 'dup'`);
    assert.equal(rows[0].n, 1);
  }
}

test('replica identity DEFAULT / USING INDEX / FULL on keyed and key-less tables: restore --to latest equals the source value by value, under a concurrent writer', { timeout: 240_000 }, async () => {
  const engine = await postgresEngine();
  const h = new RunHarness(engine, 'file', {
    extraTables: TABLES.map((t) => `public.${t.name}`),
    phi: (patients) => [`columns: { ${patients}: [full_name, ssn] }`, `strict: [${patients}]`, `publicColumns: { ${patients}: [id, note, visits_count, flag], ${TABLES.map(PUBLIC).join(', ')} }`],
  });
  const writer = new pg.Client({ connectionString: engine.url });
  const targets: TestDatabase[] = [];
  try {
    await createClinicTables(engine);
    for (const t of TABLES) for (const sql of t.ddl) await engine.exec(sql);
    await h.start();
    await writer.connect();
    // The clinic workload runs on its own connection while the identity tables are written.
    const workload = new Workload(engine, prng(31));
    let writing = true;
    const concurrent = (async () => {
      let n = 0;
      while (writing) {
        await workload.transaction();
        n++;
      }
      return n;
    })();
    for (const t of TABLES) await identityWorkload(writer, t);
    writing = false;
    const clinicTransactions = await concurrent;
    assert.ok(clinicTransactions > 10, `the concurrent writer ran (${clinicTransactions} transactions)`);

    const expected = new Map<string, Awaited<ReturnType<typeof capturePg>>>();
    for (const t of TABLES) expected.set(t.name, await capturePg(engine.url, t.name, t.order));
    for (const name of ['patients', 'visits']) expected.set(name, await capturePg(engine.url, name, 'id'));
    assert.equal(expected.get('keyless_index')!.length, 80, 'the source has 80 rows after 100 inserts and 20 deletes');

    // latest is the checkpoint: retried until it has caught up with the writers.
    let diff: string | null = 'not restored yet';
    for (const deadline = Date.now() + 45_000; diff !== null && Date.now() < deadline; ) {
      const target = await createPgDatabase('ri');
      targets.push(target);
      const r = await h.runToEnd(['restore', '--source', 'clinic', '--to', 'latest', '--target', target.url, '--json']);
      assert.equal(r.code, 0, r.output);
      diff = null;
      for (const [name, rows] of expected) {
        const order = TABLES.find((t) => t.name === name)?.order ?? 'id';
        diff = diffCaptures(await target.capture(name, order), rows, name);
        if (diff) break;
      }
      if (diff) await sleep(1000);
    }
    assert.equal(diff, null, diff ?? '');
  } finally {
    await writer.end().catch(() => undefined);
    for (const t of targets) await t.drop();
    await h.close();
    await engine.close();
  }
});

test('REPLICA IDENTITY NOTHING and key-less DEFAULT are refused at start (exit 2) with the statement that fixes them; insert-only tables start', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  const extra = ['public.no_identity', 'public.keyless_default'];
  const phi = (patients: string): string[] => [
    `columns: { ${patients}: [full_name, ssn] }`,
    `strict: [${patients}]`,
    `publicColumns: { ${patients}: [id, note, visits_count, flag], public.no_identity: [id, note], public.keyless_default: [id, note] }`,
  ];
  const refused = new RunHarness(engine, 'file', { extraTables: extra, phi });
  const allowed = new RunHarness(engine, 'file', { extraTables: extra, phi, postgresExtra: 'insertOnlyTables: [public.no_identity, public.keyless_default]' });
  try {
    await createClinicTables(engine);
    await engine.exec('CREATE TABLE no_identity (id BIGINT PRIMARY KEY, note TEXT)');
    await engine.exec('ALTER TABLE no_identity REPLICA IDENTITY NOTHING');
    await engine.exec('CREATE TABLE keyless_default (id BIGINT, note TEXT)');
    const r = await refused.runToEnd(['run']);
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /no_identity has replica identity NOTHING/);
    assert.match(r.output, /ALTER TABLE \\?"public\\?"\.\\?"no_identity\\?" REPLICA IDENTITY DEFAULT;/);
    assert.match(r.output, /keyless_default has no primary key and replica identity DEFAULT/);
    assert.match(r.output, /ALTER TABLE \\?"public\\?"\.\\?"keyless_default\\?" REPLICA IDENTITY FULL;/);
    // Nothing was created on the source: no slot, no publication.
    assert.deepEqual(await engine.query(`SELECT slot_name FROM pg_replication_slots WHERE database = current_database()`), []);
    assert.deepEqual(await engine.query(`SELECT pubname FROM pg_publication`), []);
    // Positive control: configured insert-only, the same tables start and stream.
    await allowed.start();
    await engine.exec(`INSERT INTO no_identity VALUES (1, 'a')`);
    await engine.exec(`INSERT INTO keyless_default VALUES (1, 'a')`);
  } finally {
    await refused.close();
    await allowed.close();
    await engine.close();
  }
});
