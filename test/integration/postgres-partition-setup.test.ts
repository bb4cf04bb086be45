import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { runChartlog } from '../support/chartlog-process.js';
import { createPgDatabase } from '../support/restore-engines.js';

/**
 * Partitioned tables are captured as their root (publish_via_partition_root): where the setup
 * would make a partition's changes arrive under a name no history reads, `chartlog snapshot --from-source`
 * refuses, naming the table and the fix, and creates nothing; the fixed setup is accepted
 * (positive controls). ATTACH / DETACH while streaming: ddl-matrix-postgres.test.ts.
 */

test('PostgreSQL partitions: a publication without publish_via_partition_root, and a partition configured beside its root, are refused naming the table', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'chartlog-pgpart-'));
  const db = await createPgDatabase('pgpart');
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const rows = async (sql: string): Promise<unknown[]> => (await client.query(sql)).rows;
  try {
    await db.exec('CREATE TABLE part (id int, k int, note text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)');
    await db.exec('CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100)');
    await db.exec(`INSERT INTO part VALUES (1, 5, 'a')`);
    const keyring = join(work, 'keys', 'keyring.json');
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    const snapshot = async (name: string, tables: string[] | null) => {
      const file = join(work, `${name}.yaml`);
      writeFileSync(file, [
        'sources:',
        `  - { name: ${name}, type: postgres, url: "${db.url}"${tables ? `, tables: [${tables.join(', ')}]` : ''} }`,
        `storage: { url: "file://${work}/backup" }`,
        'phi:',
        `  keyring: "file://${keyring}"`,
        `  publicColumns: { ${(tables ?? ['public.part']).map((t) => `${t}: [id, k, note]`).join(', ')} }`,
      ].join('\n'));
      return runChartlog(['snapshot', '--config', file, '--from-source']);
    };

    // A partition configured beside its partitioned table: exit 2, nothing created.
    const nested = await snapshot('clinic', ['public.part', 'public.part_1']);
    assert.equal(nested.code, 2, nested.stderr);
    assert.match(nested.stderr, /table public\.part_1 is a partition of public\.part, which is captured too/);
    assert.match(nested.stderr, /remove public\.part_1 from the source's tables/);
    assert.deepEqual(await rows(`SELECT pubname FROM pg_publication`), []);

    // An existing publication that sends partitions under their own names: refused, naming them.
    await db.exec('CREATE PUBLICATION chartlog_clinic FOR TABLE part');
    const leaves = await snapshot('clinic', ['public.part']);
    assert.notEqual(leaves.code, 0, leaves.stderr);
    assert.match(leaves.stderr, /publication chartlog_clinic sends partitions \(public\.part_1\) under their own names/);
    assert.match(leaves.stderr, /ALTER PUBLICATION "chartlog_clinic" SET \(publish_via_partition_root = true\)/);
    assert.deepEqual(await rows(`SELECT slot_name FROM pg_replication_slots WHERE database = current_database()`), []);
    // Positive control for both: the root alone, through a publication via the root, is accepted.
    await db.exec('ALTER PUBLICATION chartlog_clinic SET (publish_via_partition_root = true)');
    const viaRoot = await snapshot('clinic', ['public.part']);
    assert.equal(viaRoot.code, 0, viaRoot.stderr);
  } finally {
    await rows(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`).catch(() => undefined);
    await client.end().catch(() => undefined);
    await db.drop();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  }
});
