import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { openAvroContainer } from '../../src/archive/avro-container.js';
import { CodecEnvelopeReader } from '../../src/archive/codec-envelope-reader.js';
import { Position } from '../../src/core/position.js';
import type { CellValue } from '../../src/core/table-schema.js';
import { loadConfig } from '../../src/config/load.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import { blockOrdinalOf } from '../../src/phi/block-seal.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { waitUntilDurable } from '../support/caught-up.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { describeHits, scanForCanaries, type ScannedObject } from '../support/leak-scan.js';
import { openReplicaSealed } from '../support/sealed-replica.js';
import { createPgDatabase, type Captured, type TestDatabase } from '../support/restore-engines.js';

/**
 * `chartlog restore --keep-sealed` of an archive whose base snapshot is block-sealed (sealed
 * format 5; 5,000 rows: two blocks, their ordinals checked) and changed after it: every sealed
 * cell of the target opens on its own with the keyring — as docs/formats.md says a kept-sealed
 * row opens: its sealed cells together, bound to source, table and primary key, at or before the
 * restore's position (test/support/sealed-replica.ts) — to the source's value, value by value; and no
 * synthetic canary stands in clear anywhere in the target (bytea cells decoded before the
 * search), which the same scan shows it would find when one is planted.
 */

const TABLE = 'public.patients';
const PHI = ['full_name', 'ssn', 'address'] as const;
const CANARIES = ['CANARY-NAME-', 'CANARY-SSN-', 'CANARY-ADDR-'];
const ROWS = 5000;

describe('restore --keep-sealed of a block-sealed base', () => {
  const work = mkdtempSync(join(tmpdir(), 'chartlog-keepsealed-'));
  const keyring = join(work, 'keys', 'keyring.json');
  const backup = join(work, 'backup');
  const dbs: TestDatabase[] = [];
  let source: TestDatabase;
  let configFile: string;

  before(async () => {
    source = await createPgDatabase('kseal');
    dbs.push(source);
    await source.exec(`CREATE TABLE patients (id BIGINT PRIMARY KEY, full_name TEXT, ssn TEXT, address TEXT, note TEXT)`);
    // Synthetic canary PHI, NULLs in every PHI column now and then, non-ASCII names.
    await source.exec(`INSERT INTO patients SELECT i,
        CASE WHEN i % 13 = 0 THEN NULL WHEN i % 5 = 1 THEN 'CANARY-NAME-Zoë ' || i || ' 患者' ELSE 'CANARY-NAME-' || i END,
        CASE WHEN i % 7 = 0 THEN NULL ELSE 'CANARY-SSN-' || lpad(i::text, 6, '0') END,
        CASE WHEN i % 11 = 0 THEN NULL ELSE 'CANARY-ADDR-' || i || ' Testville Road' END,
        'note ' || i
      FROM generate_series(1, ${ROWS}) i`);
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    configFile = join(work, 'chartlog.yaml');
    writeFileSync(
      configFile,
      [
        'sources:',
        `  - { name: clinic, type: postgres, url: "${source.url}", tables: [${TABLE}] }`,
        `storage: { url: "file://${backup}" }`,
        'segments: { flushIntervalMs: 200 }',
        'phi:',
        `  keyring: "file://${keyring}"`,
        `  columns: { ${TABLE}: [${PHI.join(', ')}] }`,
        `  publicColumns: { ${TABLE}: [id, note] }`,
        'log: { level: info, format: json }',
      ].join('\n'),
    );
    const run = new ChartlogRun(configFile, join(work, 'run.log'));
    try {
      await run.start();
      // Changes after the base: PHI and plain updates, a delete, an insert.
      await source.exec(`UPDATE patients SET ssn = 'CANARY-SSN-u' || id WHERE id IN (2, 4097)`);
      await source.exec(`UPDATE patients SET note = 'changed' WHERE id = 3`);
      await source.exec(`DELETE FROM patients WHERE id = 5`);
      await waitUntilDurable(new FsObjectStore(backup), 'clinic', source, () => source.exec(`INSERT INTO patients VALUES (${ROWS + 1}, 'CANARY-NAME-new', NULL, 'CANARY-ADDR-new', 'new')`));
    } finally {
      await run.stop();
      await run.close();
    }
  });

  after(async () => {
    for (const db of dbs) await db.drop();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  });

  it('the base is block-sealed: two container blocks, each carrying a block seal with its checked ordinal', async () => {
    const store = new FsObjectStore(backup);
    const index = await readArchiveIndex(store, 'clinic');
    const parts = index.snapshots[0]!.tables[TABLE]!.parts;
    const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: 'clinic', store }));
    const seals: (Uint8Array | null)[] = [];
    for (const p of parts) {
      const find = await envelopes.blockSealFinder('clinic', p.fingerprint);
      for (const b of openAvroContainer(await store.get(p.key), p.key).blocks) seals.push(find(b.data));
    }
    assert.deepEqual(
      seals.map((s) => (s ? blockOrdinalOf(s) : null)),
      [0, 1].map((ordinal) => ({ ordinal, checked: true })),
    );
  });

  it('--keep-sealed: every sealed cell opens on its own with the keyring to the source value; no canary in clear in the target', async () => {
    const target = await createPgDatabase('ksealt');
    dbs.push(target);
    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url, '--keep-sealed', '--json']);
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    assert.ok(!r.stdout.includes('CANARY') && !r.stderr.includes('CANARY'), 'no PHI in the output');
    const summary = JSON.parse(r.stdout) as { position: string };

    const restored = await target.capture(TABLE);
    const want = await source.capture('patients');
    assert.equal(restored.length, ROWS);
    assert.deepEqual(
      restored.map((row) => row.id),
      want.map((row) => row.id),
    );
    // Kept sealed: format-4 row seals and 9-byte references, never a block seal or a reference into one.
    const leading = new Set(restored.flatMap((row) => PHI.map((c) => row[c]?.slice(0, 4)).filter((v) => v !== undefined)));
    assert.deepEqual([...leading].sort(), ['\\x04', '\\x13']);

    // Opened the way a kept-sealed row opens (docs/formats.md "Sealed values"): its sealed cells
    // together, with the keyring, as its holder would (test/support/sealed-replica.ts).
    const rows = restored.map((r) => {
      const row: Record<string, CellValue> = { id: BigInt(r.id!), note: r.note! };
      for (const c of PHI) row[c] = bytea(r[c]!);
      return row;
    });
    const store = new FsObjectStore(backup);
    await openReplicaSealed(loadConfig(configFile), store, { name: 'clinic', type: 'postgres' }, { schema: 'public', table: 'patients' }, rows, Position.parse(summary.position));
    let opened = 0;
    rows.forEach((row, i) => {
      for (const c of PHI) {
        assert.equal(row[c], want[i]![c], `row ${want[i]!.id} ${c}`);
        if (row[c] !== null) opened++;
      }
    });
    assert.ok(opened > 0.8 * ROWS * PHI.length, `${opened} values opened`);

    // No canary in clear anywhere in the target: every table, every cell, bytea decoded.
    const scan = async () => scanForCanaries(await cellsOf(target), CANARIES);
    const hits = await scan();
    assert.deepEqual(hits, [], describeHits(hits));
    // The scan finds a plaintext planted in a bytea cell (hex on the wire) and in a text cell.
    await target.exec(`UPDATE patients SET full_name = convert_to('CANARY-NAME-planted', 'UTF8') WHERE id = 1`);
    await target.exec(`UPDATE patients SET note = 'CANARY-ADDR-planted' WHERE id = 2`);
    const planted = await scan();
    assert.deepEqual([...new Set(planted.map((h) => h.object))].sort(), ['public.patients full_name', 'public.patients note']);
  });
});

/** A bytea cell as the server's text output gives it ('\x…'), or null. */
function bytea(text: string | null): Uint8Array | null {
  if (text === null) return null;
  assert.ok(text.startsWith('\\x'), 'a sealed column restores as bytea');
  return Buffer.from(text.slice(2), 'hex');
}

/**
 * Every column of every table of the target as one object to scan: its cells, bytea cells as
 * their bytes, one a line (a canary holds no newline, so none is made of two cells).
 */
async function cellsOf(db: TestDatabase): Promise<ScannedObject[]> {
  const columns = new Map<string, Buffer[]>();
  for (const t of await db.tables()) {
    const rows: Captured = await db.capture(`public.${t}`, '1');
    for (const row of rows) {
      for (const [c, v] of Object.entries(row)) {
        if (v === null) continue;
        const key = `public.${t} ${c}`;
        if (!columns.has(key)) columns.set(key, []);
        columns.get(key)!.push(v.startsWith('\\x') ? Buffer.from(v.slice(2), 'hex') : Buffer.from(v, 'utf8'), NEWLINE);
      }
    }
  }
  return [...columns].map(([key, cells]) => ({ key, bytes: Buffer.concat(cells) }));
}

const NEWLINE = Buffer.from('\n');
