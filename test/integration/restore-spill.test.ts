import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serialize } from 'node:v8';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { prepareStreamingReplay } from '../../src/archive/streaming-replay.js';
import { loadConfig } from '../../src/config/load.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { waitUntilDurable } from '../support/caught-up.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { describeHits, scanForCanaries, type ScannedObject } from '../support/leak-scan.js';
import { createPgDatabase, diffCaptures, type TestDatabase } from '../support/restore-engines.js';

/**
 * Streaming restore past its memory budget (issue 15): `chartlog run` archives a PostgreSQL
 * source, then a stream of changes larger than a forced-small `restore.memoryBudgetMiB` —
 * inserts with TOASTed text, PHI updates that leave the TOASTed column unchanged, key changes,
 * deletes, and a key-less table with duplicate rows. `chartlog restore` must spill and still give
 * back the source value by value. The spill files must never hold opened PHI in clear: they are
 * scanned while they exist (decoded views included), with a planted plain spill as the negative
 * control.
 */

const CANARY = 'CANARY-SSN-';

describe('chartlog restore: changes past the memory budget spill and restore exactly', () => {
  const work = mkdtempSync(join(tmpdir(), 'chartlog-spill-'));
  const dbs: TestDatabase[] = [];
  let source: TestDatabase;
  let configFile: string;
  const spillDir = join(work, 'spill');
  const keyring = join(work, 'keys', 'keyring.json');

  const newDb = async (): Promise<TestDatabase> => {
    const db = await createPgDatabase('rspill');
    dbs.push(db);
    return db;
  };

  before(async () => {
    source = await newDb();
    await source.exec(`CREATE TABLE patients (id INT PRIMARY KEY, full_name TEXT, ssn TEXT, note TEXT, chart TEXT)`);
    await source.exec(`CREATE TABLE log (patient INT, event TEXT)`);
    await source.exec(`ALTER TABLE log REPLICA IDENTITY FULL`);
    // chart: ~6 KB of hex, beyond TOAST's threshold even compressed.
    const chart = (i: number) => `(SELECT string_agg(md5('${i}-' || g), '') FROM generate_series(1, 200) g)`;
    for (let i = 1; i <= 200; i++) await source.exec(`INSERT INTO patients VALUES (${i}, 'CANARY-NAME-${i}', '${CANARY}${i}', 'n${i}', ${chart(i)})`);
    for (let i = 1; i <= 30; i++) await source.exec(`INSERT INTO log VALUES (${i % 7}, 'seen')`);
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    mkdirSync(spillDir);
    FileKeyring.create(keyring);
    configFile = join(work, 'chartlog.yaml');
    writeFileSync(
      configFile,
      [
        'sources:',
        `  - { name: clinic, type: postgres, url: "${source.url}", tables: [public.patients, public.log] }`,
        `storage: { url: "file://${join(work, 'backup')}" }`,
        'segments: { flushIntervalMs: 200 }',
        'phi:',
        `  keyring: "file://${keyring}"`,
        '  columns: { public.patients: [full_name, ssn] }',
        `restore: { memoryBudgetMiB: 1, spillDir: "${spillDir}" }`,
        'log: { level: info, format: json }',
      ].join('\n'),
    );
    const run = new ChartlogRun(configFile, join(work, 'run.log'));
    try {
      await run.start();
      // Past the base snapshot: ~2.5 MiB of collapsed changes against a 1 MiB budget.
      for (let i = 201; i <= 500; i++) await source.exec(`INSERT INTO patients VALUES (${i}, 'CANARY-NAME-${i}', '${CANARY}${i}', NULL, ${chart(i)})`);
      await source.exec(`UPDATE patients SET ssn = '${CANARY}u' || id, note = 'updated' WHERE id % 2 = 0`); // chart unchanged (TOAST)
      await source.exec(`UPDATE patients SET id = id + 10000, full_name = 'CANARY-NAME-moved' WHERE id % 10 = 3`); // key changes, chart unchanged
      await source.exec(`UPDATE patients SET note = 'again' WHERE id % 10 = 3 OR id % 4 = 0`);
      await source.exec(`DELETE FROM patients WHERE id % 9 = 0`);
      await source.exec(`INSERT INTO log SELECT patient, event FROM log WHERE patient < 3`);
      await source.exec(`DELETE FROM log WHERE patient = 4`);
      // (A commit time within a second of now, what this waited for before, let the restores below
      // run before the DELETE was durable on a loaded CI machine: 500 rows, 445 wanted.)
      await waitUntilDurable(new FsObjectStore(join(work, 'backup')), 'clinic', source, () => source.exec(`UPDATE log SET event = 'moved' WHERE patient = 5`));
    } finally {
      await run.stop();
      await run.close();
    }
  });

  after(async () => {
    for (const db of dbs) await db.drop();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  });

  it('spills (the summary says so) and equals the source value by value, into PostgreSQL (base blocks as COPY text, on the main thread and on COPY threads) and as csv', async () => {
    const threaded = join(work, 'threaded.yaml');
    writeFileSync(threaded, readFileSync(configFile, 'utf8').replace('memoryBudgetMiB: 1,', 'memoryBudgetMiB: 1, copyThreads: 2, copyThreadsFromRows: 0,'));
    for (const [config, base] of [
      [configFile, 'blocks on the main thread'],
      [threaded, 'blocks on COPY threads'],
    ] as const) {
      const target = await newDb();
      const r = await runChartlog(['restore', '--config', config, '--source', 'clinic', '--to', 'latest', '--target', target.url, '--json']);
      assert.equal(r.code, 0, r.stderr.slice(0, 2000));
      const summary = JSON.parse(r.stdout) as { spilled: string[]; rows: number };
      assert.deepEqual(summary.spilled, ['public.patients'], 'the patients changes outgrew the 1 MiB budget');
      // The spilled table's base rows a change may touch were held back into the merge's spill
      // partitions; the others went from their blocks straight into COPY.
      const restored = r.stderr
        .split('\n')
        .filter((l) => l.includes('"table restored"'))
        .map((l) => JSON.parse(l) as { table: string; base: string });
      assert.deepEqual(restored.find((l) => l.table === 'public.patients')?.base, base);
      for (const [table, order] of [['patients', 'id'], ['log', 'patient, event']] as const) {
        const diff = diffCaptures(await target.capture(table, order), await source.capture(table, order), table);
        assert.equal(diff, null, `${base}: ${diff ?? ''}`);
      }
    }
    assert.ok((await source.capture('patients')).some((row) => Number(row.id) > 10000), 'key changes are in the test');
    assert.deepEqual(readdirSync(spillDir), [], 'the spill directory is removed');

    const out = join(work, 'csv');
    const f = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', 'latest', '--out', out, '--format', 'csv', '--json']);
    assert.equal(f.code, 0, f.stderr.slice(0, 2000));
    const lines = readFileSync(join(out, 'public.patients.csv'), 'utf8').trim().split('\n').slice(1);
    assert.equal(lines.length, (await source.capture('patients')).length);
    // Key order as TableState gives it (type-tagged key text), however the rows spilled.
    const ids = lines.map((l) => l.split(',')[0]!);
    assert.deepEqual(ids, [...ids].sort((a, b) => (`i${a}` < `i${b}` ? -1 : 1)).map(String));
    assert.deepEqual(readdirSync(spillDir), []);
  });

  it('within the budget, base blocks go through the COPY threads (held rows merged: unchanged TOAST, key changes, key-less copies) and equal the source; no PHI in the log', async () => {
    const roomy = join(work, 'roomy.yaml');
    writeFileSync(roomy, readFileSync(configFile, 'utf8').replace('memoryBudgetMiB: 1,', 'memoryBudgetMiB: 256, copyThreads: 2, copyThreadsFromRows: 0,'));
    const target = await newDb();
    const r = await runChartlog(['restore', '--config', roomy, '--source', 'clinic', '--to', 'latest', '--target', target.url, '--json']);
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    assert.deepEqual((JSON.parse(r.stdout) as { spilled: string[] }).spilled, [], 'nothing spilled');
    const restored = r.stderr
      .split('\n')
      .filter((l) => l.includes('"table restored"'))
      .map((l) => JSON.parse(l) as { table: string; base: string });
    assert.deepEqual(restored.map((l) => [l.table, l.base]).sort(), [
      ['public.log', 'blocks on COPY threads'],
      ['public.patients', 'blocks on COPY threads'],
    ]);
    for (const [table, order] of [['patients', 'id'], ['log', 'patient, event']] as const) {
      const diff = diffCaptures(await target.capture(table, order), await source.capture(table, order), table);
      assert.equal(diff, null, diff ?? '');
    }
    // PHI was opened on the threads (the canary is in the target) and none of it is in the log;
    // the same search finds a planted line.
    assert.ok((await target.capture('patients')).some((row) => String(row.ssn).startsWith(CANARY)));
    const leaks = (log: string) => log.split('\n').filter((l) => l.includes(CANARY) || l.includes('CANARY-NAME-'));
    assert.equal(leaks(`${r.stderr}\n{"msg":"planted ${CANARY}1"}`).length, 1, 'the log search finds a planted canary');
    assert.deepEqual(leaks(r.stderr), []);
  });

  it('spill files hold no PHI in clear (a planted plain spill is found)', async () => {
    const config = loadConfig(configFile);
    const store = new FsObjectStore(join(work, 'backup'));
    const archive = openArchiveCodec(config, config.sources[0]!, store, true);
    const index = await readArchiveIndex(store, 'clinic');
    const replay = await prepareStreamingReplay({
      store,
      source: 'clinic',
      codec: archive.codec,
      schemas: archive.schemas,
      envelopes: archive.envelopes,
      to: { kind: 'position', position: index.checkpoint!.position },
      open: true,
      index,
      memoryBudgetBytes: 256 * 1024,
      spillDir,
    });
    const files = (): ScannedObject[] =>
      readdirSync(spillDir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => ({ key: join(e.parentPath, e.name), bytes: readFileSync(join(e.parentPath, e.name)) }));
    try {
      const patients = replay.tables.get('public.patients')!;
      assert.ok(patients.spilled(), 'the changes spilled');
      const changeSpill = files();
      // Hash partitions of a few rows each (one TOASTed chart is ~6.5 KB): the sum is what shows the changes left memory.
      const spilledBytes = changeSpill.reduce((n, f) => n + f.bytes.length, 0);
      assert.ok(spilledBytes > 100_000, `spilled changes are on disk (${changeSpill.length} files, ${spilledBytes} bytes)`);
      // Stream the merge part way: base rows a spilled change names are partitioned onto disk
      // as the base streams (the others go out at once), until the partitions are merged.
      const rows = patients.rows('any')[Symbol.asyncIterator]();
      const first = await rows.next();
      assert.ok(!first.done && first.value.some((row) => String(row.ssn).startsWith(CANARY)), 'PHI was opened (the canary is in the rows)');
      const changeFiles = new Set(changeSpill.map((f) => f.key));
      const hasBaseFiles = (fs: ScannedObject[]): boolean => fs.some((f) => !changeFiles.has(f.key));
      let baseSpill = files();
      let done = false; // the first batch came (asserted above)
      while (!done && !hasBaseFiles(baseSpill)) {
        done = (await rows.next()).done === true;
        baseSpill = files();
      }
      assert.ok(hasBaseFiles(baseSpill), 'base partitions are on disk too');

      // Negative control: the same rows spilled without the seal are found.
      const planted = join(spillDir, 'planted-plain.spill');
      writeFileSync(planted, serialize(first.value));
      const withPlant = files();
      const caught = scanForCanaries(withPlant, [CANARY, 'CANARY-NAME-']);
      assert.ok(caught.some((h) => h.object === planted), 'the scan finds a plain spill');
      rmSync(planted);

      const hits = scanForCanaries([...changeSpill, ...baseSpill], [CANARY, 'CANARY-NAME-']);
      assert.deepEqual(hits, [], describeHits(hits));
      await rows.return?.(undefined);
    } finally {
      await replay.close();
    }
    assert.equal(existsSync(spillDir) && readdirSync(spillDir).length, 0, 'close removes the spill directory');
  });
});
