import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import type { AuditRecord } from '../../src/phi/audit-log.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { waitUntilDurable } from '../support/caught-up.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { createPgDatabase, diffCaptures, type TestDatabase } from '../support/restore-engines.js';

/**
 * What `chartlog restore` refuses, and the PHI audit log, on a real archive of a real
 * PostgreSQL source: bad requests exit 2 with the reason and write nothing; a corrupt object
 * is refused by name with the target untouched; every restore that opens PHI leaves exactly
 * one audit record without values, --keep-sealed none.
 */

const CANARY = 'CANARY-SSN-';

describe('chartlog restore: refusals, corrupt objects, audit', () => {
  const work = mkdtempSync(join(tmpdir(), 'chartlog-refuse-'));
  const dbs: TestDatabase[] = [];
  let source: TestDatabase;
  let configFile: string;
  let config: (backup: string, keyring?: string) => string;
  const keyring = join(work, 'keys', 'keyring.json');

  const newDb = async (): Promise<TestDatabase> => {
    const db = await createPgDatabase('rref');
    dbs.push(db);
    return db;
  };
  const auditDir = (backup = join(work, 'backup')) => join(backup, 'clinic', 'audit');
  const auditCount = (backup?: string) => (existsSync(auditDir(backup)) ? readdirSync(auditDir(backup)).length : 0);
  const restore = (args: string[], cfg = configFile) => runChartlog(['restore', '--config', cfg, ...args]);
  const leftovers = (dir: string) => readdirSync(dirname(dir)).filter((n) => n.startsWith('.chartlog-restore-'));

  before(async () => {
    source = await newDb();
    await source.exec(`CREATE TABLE patients (id INT PRIMARY KEY, full_name TEXT, ssn TEXT, note TEXT)`);
    await source.exec(`CREATE TABLE visits (id INT PRIMARY KEY, patient_id INT, reason TEXT)`);
    for (let i = 1; i <= 20; i++) await source.exec(`INSERT INTO patients VALUES (${i}, 'CANARY-NAME-${i}', '${CANARY}${i}', ${i % 3 === 0 ? "''" : i % 3 === 1 ? 'NULL' : `'n${i}'`})`);
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    config = (backup, ring = keyring) => [
      'sources:',
      `  - { name: clinic, type: postgres, url: "${source.url}", tables: [public.patients, public.visits] }`,
      `storage: { url: "file://${backup}" }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${ring}"`,
      '  columns: { public.patients: [full_name, ssn] }',
      // Reviewed as not PHI (unclassified columns would be sealed by default, phi.unclassified).
      '  publicColumns: { public.patients: [id, note], public.visits: [id, patient_id, reason] }',
      'log: { level: info, format: json }',
    ].join('\n');
    configFile = join(work, 'chartlog.yaml');
    writeFileSync(configFile, config(join(work, 'backup')));
    const run = new ChartlogRun(configFile, join(work, 'run.log'));
    try {
      await run.start();
      for (let i = 1; i <= 10; i++) {
        await source.exec(`INSERT INTO visits VALUES (${i}, ${i}, 'reason ${i}')`);
        await source.exec(`UPDATE patients SET note = 'u${i}' WHERE id = ${i}`);
      }
      await waitUntilDurable(new FsObjectStore(join(work, 'backup')), 'clinic', source, () => source.exec('DELETE FROM patients WHERE id = 20'));
    } finally {
      await run.stop();
      await run.close();
    }
  });

  after(async () => {
    for (const db of dbs) await db.drop();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  });

  it('restores latest exactly and prints the exact position and commit time', async () => {
    const target = await newDb();
    const r = await restore(['--source', 'clinic', '--to', 'latest', '--target', target.url, '--json']);
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    const summary = JSON.parse(r.stdout) as { position: string; commitTime: string; rows: number; tables: { table: string; rows: number }[] };
    assert.match(summary.position, /^[0-9a-f]{16}\.ffffffff$/);
    assert.match(summary.commitTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.equal(summary.rows, 29);
    for (const t of ['patients', 'visits']) assert.equal(diffCaptures(await target.capture(`public.${t}`), await source.capture(t), t), null);
    assert.ok(!r.stdout.includes('CANARY') && !r.stderr.includes('CANARY'), 'no PHI in the output');
    // --json: progress as JSON lines on stderr, told apart from the logs by "progress": a line when
    // each table is done, with its final count; names and counts only.
    const progress = r.stderr
      .split('\n')
      .filter((l) => l.includes('"progress":"restore"'))
      .map((l) => JSON.parse(l) as { table: string; state: string; rows: number; bytes: number; rowsPerSecond: number; seconds: number; estimatedRows: number | null });
    for (const t of summary.tables) {
      const done = progress.filter((p) => p.table === t.table && p.state === 'done');
      assert.equal(done.length, 1, `one "done" progress line for ${t.table}`);
      assert.equal(done[0]!.rows, t.rows);
      assert.ok(done[0]!.bytes > 0 && done[0]!.seconds >= 0 && Number.isInteger(done[0]!.rowsPerSecond));
    }
    for (const p of progress) assert.deepEqual(Object.keys(p).sort(), ['bytes', 'estimatedRows', 'progress', 'rows', 'rowsPerSecond', 'seconds', 'secondsLeft', 'state', 'table']);
    // The leak check above finds a value when one is there (negative control): a progress line
    // that carried a row value would fail it.
    const planted = `${JSON.stringify({ progress: 'restore', table: 'public.patients', rows: 1, last: `${CANARY}1` })}\n`;
    assert.ok((r.stderr + planted).includes('CANARY'), 'the leak check catches a planted value');
  });

  it('bad requests exit 2 with the reason and write nothing', async () => {
    const empty = await newDb();
    const notEmpty = await newDb();
    await notEmpty.exec(`CREATE TABLE patients (id INT PRIMARY KEY, mine TEXT)`);
    await notEmpty.exec(`INSERT INTO patients VALUES (1, 'mine')`);
    const fullDir = join(work, 'full');
    mkdirSync(fullDir);
    writeFileSync(join(fullDir, 'keep.txt'), 'keep');
    const outDir = join(work, 'out-refused');
    const badConfig = join(work, 'bad.yaml');
    writeFileSync(badConfig, 'sources: []\n');
    const audits = auditCount();
    const range = /\d{4}-\d\d-\d\dT[\d:.]+Z \(position [0-9a-f]{16}\.[0-9a-f]{8}\) → \d{4}-\d\d-\d\dT[\d:.]+Z \(position [0-9a-f]{16}\.[0-9a-f]{8}\)/;
    const cases: [string, string[], RegExp][] = [
      ['before the earliest moment', ['--source', 'clinic', '--to', '2000-01-01T00:00:00Z', '--target', empty.url], /outside the restorable range of source clinic/],
      ['after the latest moment', ['--source', 'clinic', '--to', '2100-01-01T00:00:00.000001+02:00', '--target', empty.url], /outside the restorable range of source clinic/],
      ['a position outside the range', ['--source', 'clinic', '--to', 'ffffffffffffffff.ffffffff', '--target', empty.url], /outside the restorable range/],
      ['a position of another engine', ['--source', 'clinic', '--to', '00000001.ffffffff', '--target', empty.url], /not a position of source clinic/],
      ['a time without zone', ['--source', 'clinic', '--to', '2026-01-01T00:00:00', '--target', empty.url], /needs its zone/],
      ['not a moment', ['--source', 'clinic', '--to', 'yesterday', '--target', empty.url], /--to "yesterday"/],
      ['no --to', ['--source', 'clinic', '--target', empty.url], /--to/],
      ['unknown source', ['--source', 'nope', '--to', 'latest', '--target', empty.url], /no source named "nope"/],
      ['unknown table', ['--source', 'clinic', '--to', 'latest', '--tables', 'public.visits,public.nope', '--target', empty.url], /has no table public\.nope/],
      ['bad --tables', ['--source', 'clinic', '--to', 'latest', '--tables', 'visits', '--target', empty.url], /--tables "visits"/],
      ['bad --parallel', ['--source', 'clinic', '--to', 'latest', '--parallel', '0', '--target', empty.url], /--parallel 0: expected a whole number from 1 to 64/],
      ['non-empty target', ['--source', 'clinic', '--to', 'latest', '--target', notEmpty.url], /not empty: "public"\."patients" already exists/],
      ['unreachable target', ['--source', 'clinic', '--to', 'latest', '--target', 'postgres://postgres@127.0.0.1:1/nothing'], /cannot connect to the target postgres:\/\/postgres@127\.0\.0\.1:1\/nothing/],
      ['missing target database', ['--source', 'clinic', '--to', 'latest', '--target', `${empty.url}_missing`], /cannot connect to the target/],
      ['unknown target kind', ['--source', 'clinic', '--to', 'latest', '--target', 'redis://127.0.0.1/0'], /expected a postgres:\/\/… or mysql:\/\/… URL/],
      ['both --target and --out', ['--source', 'clinic', '--to', 'latest', '--target', empty.url, '--out', outDir, '--format', 'csv'], /exclude each other/],
      ['neither --target nor --out', ['--source', 'clinic', '--to', 'latest'], /say where to restore/],
      ['--out without --format', ['--source', 'clinic', '--to', 'latest', '--out', outDir], /--format \(missing\)/],
      ['a bad --format', ['--source', 'clinic', '--to', 'latest', '--out', outDir, '--format', 'xml'], /--format xml/],
      ['a non-empty --out', ['--source', 'clinic', '--to', 'latest', '--out', fullDir, '--format', 'csv'], /is not empty/],
    ];
    for (const [what, args, why] of cases) {
      const r = await restore(args);
      assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stderr.slice(0, 1000)}`);
      assert.match(r.stderr, why, what);
      if (what.includes('moment') && what !== 'not a moment') assert.match(r.stderr, range, `${what}: both bounds named`);
    }
    const bad = await restore(['--source', 'clinic', '--to', 'latest', '--target', empty.url], badConfig);
    assert.equal(bad.code, 2, 'a bad configuration');
    assert.deepEqual(await empty.tables(), [], 'nothing was written into the empty target');
    assert.deepEqual(await notEmpty.tables(), ['patients'], 'the non-empty target kept only its own table');
    assert.deepEqual(await notEmpty.capture('patients'), [{ id: '1', mine: 'mine' }], 'and its own row');
    assert.equal(existsSync(outDir), false, 'no output directory');
    assert.deepEqual(readdirSync(fullDir), ['keep.txt']);
    assert.deepEqual(leftovers(outDir), [], 'no temporary directory left');
    assert.equal(auditCount(), audits, 'no audit record for refused requests');
  });

  it('a corrupt object is refused by name and the target stays untouched', async () => {
    const original = join(work, 'backup');
    const snapshotDir = join(original, 'clinic', 'snapshots');
    const [snapshotId] = readdirSync(snapshotDir);
    const objects = ['public.patients', 'public.visits']
      .map((t) => `clinic/snapshots/${snapshotId}/${t}/part-00000.avro`)
      .filter((k) => existsSync(join(original, k)));
    assert.ok(objects.length >= 1, 'the snapshot has parts');
    let flips = 0;
    for (const key of objects) {
      const size = readFileSync(join(original, key)).length;
      for (const offset of [0, Math.floor(size / 2), size - 1]) {
        const copy = mkdtempSync(join(work, 'flip-'));
        cpSync(original, copy, { recursive: true });
        const file = join(copy, key);
        const bytes = readFileSync(file);
        bytes[offset] = bytes[offset]! ^ (1 << (flips % 8));
        writeFileSync(file, bytes);
        const cfg = join(copy, 'chartlog.yaml');
        writeFileSync(cfg, config(join(copy)));
        const target = await newDb();
        const r = await restore(['--source', 'clinic', '--to', 'latest', '--target', target.url], cfg);
        assert.equal(r.code, 1, `flip at ${offset} of ${key}: exit ${r.code}`);
        assert.ok(r.stderr.includes(key), `the error names ${key}: ${r.stderr.slice(0, 500)}`);
        assert.match(r.stderr, /sha256/);
        assert.deepEqual(await target.tables(), [], 'nothing written into the target');
        const out = join(copy, 'out');
        const f = await restore(['--source', 'clinic', '--to', 'latest', '--out', out, '--format', 'jsonl'], cfg);
        assert.equal(f.code, 1);
        assert.equal(existsSync(out), false, 'no output directory');
        assert.deepEqual(leftovers(out).filter((n) => n.includes('out')), [], 'no temporary directory left');
        flips++;
      }
    }
    // An unreadable snapshot manifest hides what it lists: refused by name too.
    const copy = mkdtempSync(join(work, 'flip-'));
    cpSync(original, copy, { recursive: true });
    const manifest = `clinic/snapshots/${snapshotId}/manifest.json`;
    writeFileSync(join(copy, manifest), '{ not json');
    const cfg = join(copy, 'chartlog.yaml');
    writeFileSync(cfg, config(copy));
    const r = await restore(['--source', 'clinic', '--to', 'latest', '--out', join(copy, 'out'), '--format', 'csv'], cfg);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(manifest), r.stderr.slice(0, 500));
  });

  it('one audit record per restore that opens PHI, none with --keep-sealed, never a value', async () => {
    const before = auditCount();
    const target = await newDb();
    const r = await restore(['--source', 'clinic', '--to', 'latest', '--target', target.url, '--json']);
    assert.equal(r.code, 0, r.stderr.slice(0, 1000));
    const summary = JSON.parse(r.stdout) as { audit: string; position: string; commitTime: string };
    assert.equal(auditCount(), before + 1, 'exactly one record');
    const text = readFileSync(join(work, 'backup', summary.audit), 'utf8');
    assert.ok(!text.includes('CANARY'), 'no PHI value in the audit record');
    const record = JSON.parse(text) as AuditRecord;
    assert.equal(record.action, 'restore');
    assert.equal(record.who.user, userInfo().username);
    assert.equal(record.source, 'clinic');
    assert.deepEqual(record.tables, [{ table: 'public.patients', phiColumns: ['full_name', 'ssn'] }]);
    assert.equal(record.requested, 'latest');
    assert.deepEqual(record.restoredTo, { position: summary.position, commitTime: summary.commitTime });
    assert.equal(record.target, target.url);
    assert.ok(Date.now() - Date.parse(record.at) < 120_000);

    // Only tables without PHI: nothing opened, nothing recorded.
    const visitsOnly = await newDb();
    assert.equal((await restore(['--source', 'clinic', '--to', 'latest', '--tables', 'public.visits', '--target', visitsOnly.url])).code, 0);
    assert.equal(auditCount(), before + 1);

    // --keep-sealed without the keyring: the archive cannot be authenticated (its MAC key is
    // wrapped by the keyring), so it is refused before anything is written.
    const noKeys = join(work, 'nokeys.yaml');
    writeFileSync(noKeys, config(join(work, 'backup'), join(work, 'keys', 'absent.json')));
    const refusedDb = await newDb();
    const noKey = await restore(['--source', 'clinic', '--to', 'latest', '--target', refusedDb.url, '--keep-sealed'], noKeys);
    assert.equal(noKey.code, 1, noKey.stderr.slice(0, 1000));
    assert.match(noKey.stderr, /restore needs phi\.keyring also with --keep-sealed/);
    assert.deepEqual(await refusedDb.tables(), [], 'nothing written');
    // --keep-sealed with it: sealed bytes, no record.
    const sealed = await newDb();
    const s = await restore(['--source', 'clinic', '--to', 'latest', '--target', sealed.url, '--keep-sealed']);
    assert.equal(s.code, 0, s.stderr.slice(0, 1000));
    assert.match(s.stdout, /PHI kept sealed: full_name, ssn/);
    assert.equal(auditCount(), before + 1, 'no audit record with --keep-sealed');
    const rows = await sealed.capture('public.patients');
    const plain = await source.capture('patients');
    assert.equal(rows.length, plain.length);
    for (const [i, row] of rows.entries()) {
      assert.equal(row.id, plain[i]!.id);
      assert.equal(row.note, plain[i]!.note, 'columns that are not PHI are restored as they are');
      for (const c of ['full_name', 'ssn']) {
        assert.match(row[c]!, /^\\x[0-9a-f]+$/, `${c} is sealed bytes (bytea)`);
        assert.ok(!Buffer.from(row[c]!.slice(2), 'hex').includes('CANARY'), `${c} holds no plaintext`);
      }
    }
    // Without --keep-sealed, the missing keyring stops the restore before anything is written.
    const refused = await newDb();
    const n = await restore(['--source', 'clinic', '--to', 'latest', '--target', refused.url], noKeys);
    assert.notEqual(n.code, 0);
    assert.deepEqual(await refused.tables(), []);
    assert.equal(auditCount(), before + 1);
  });
});
