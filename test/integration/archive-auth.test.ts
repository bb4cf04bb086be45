import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { archiveSigner } from '../../src/archive/archive-auth.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { CodecEnvelopeReader } from '../../src/archive/codec-envelope-reader.js';
import { formatUs } from '../../src/archive/layout.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import { Compactor } from '../../src/compactor/compactor.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { parseConfig } from '../../src/config/load.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { waitUntilDurable } from '../support/caught-up.js';
import { testServices } from '../support/env.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { createPgDatabase, type TestDatabase } from '../support/restore-engines.js';

/**
 * Archive MACs end to end (issue 13 item 7): `chartlog run` writes a real archive of a real
 * PostgreSQL source on a file:// store (two closed hours, a snapshot, schemas, the checkpoint);
 * then each tampering someone with write access to the store could do — delete the newest
 * hour, rewrite a segment and re-hash every later manifest, plant a snapshot manifest, edit a
 * schema's type length (also to an injection string) — is done to a copy, and `chartlog verify`
 * must report it and `chartlog restore` refuse it (exit 1, naming the object), while the
 * untouched copy verifies and restores.
 *
 * Hours close by the wall clock, an hour after they start; the test cannot wait for that, so
 * after each run it closes the open hours with the compactor's own code (`closeFinishedHours`
 * with force: what a `chartlog run` an hour later does, checkpoint anchor included). The
 * second run then files its transactions into the next hour, as a run does after a closed hour.
 */

const CANARY = 'CANARY-SSN-';

for (const kind of ['file', 's3'] as const) describe(`archive MACs (${kind}://): tampering is found by verify and refused by restore`, () => {
  const work = mkdtempSync(join(tmpdir(), 'chartlog-auth-'));
  // An archive root: a folder (file://) or a prefix of the test bucket (s3://).
  const s3 = kind === 's3' ? testServices().s3 : null;
  const rootOf = (name: string) => (s3 ? `auth-${runId}-${name}` : join(work, name));
  const runId = randomBytes(4).toString('hex');
  const backup = rootOf('backup');
  const env: NodeJS.ProcessEnv = s3 ? { ...process.env, CHARTLOG_S3_ACCESS_KEY_ID: s3.accessKeyId, CHARTLOG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey } : process.env;
  const stores: ObjectStore[] = [];
  const roots: string[] = [];
  const keyring = join(work, 'keys', 'keyring.json');
  const dbs: TestDatabase[] = [];
  let source: TestDatabase;
  let hours: string[] = [];
  let secondHourTime = '';

  const configText = (root: string) =>
    [
      'sources:',
      `  - { name: clinic, type: postgres, url: "${source.url}", tables: [public.patients, public.visits] }`,
      s3 ? `storage: { url: "s3://${s3.bucket}/${root}", s3: { endpoint: "${s3.endpoint}", region: ${s3.region}, forcePathStyle: true } }` : `storage: { url: "file://${root}" }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${keyring}"`,
      '  columns: { public.patients: [full_name, ssn] }',
      'log: { level: info, format: json }',
    ].join('\n');
  const config = (root: string) => {
    const file = join(work, `${root.split('/').pop()}.yaml`);
    writeFileSync(file, configText(root));
    return file;
  };
  const storeAt = (root: string): ObjectStore => {
    const store = openObjectStore(parseConfig(configText(root), 'test', env).storage);
    stores.push(store);
    roots.push(root);
    return store;
  };

  /** A copy of the archive to tamper with (object by object, through the store), and its configuration. */
  const copy = async (name: string) => {
    const root = rootOf(name);
    const from = storeAt(backup);
    const store = storeAt(root);
    for await (const o of from.listAll('clinic/')) {
      if (!o.key.endsWith('/lease.json')) await store.put(o.key, await from.get(o.key));
    }
    return { store, cfg: config(root) };
  };
  const verify = (cfg: string) => runChartlog(['verify', '--config', cfg], env);
  const restore = (cfg: string, to: string, out: string) => runChartlog(['restore', '--config', cfg, '--source', 'clinic', '--to', to, '--out', out, '--format', 'jsonl'], env);
  const readJson = async (store: ObjectStore, key: string) => JSON.parse(Buffer.from(await store.get(key)).toString('utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const writeJson = (store: ObjectStore, key: string, o: unknown) => store.put(key, Buffer.from(`${JSON.stringify(o, null, 2)}\n`));
  const sha = async (store: ObjectStore, key: string) => createHash('sha256').update(await store.get(key)).digest('hex');
  const keysUnder = async (store: ObjectStore, prefix: string) => {
    const out: string[] = [];
    for await (const o of store.listAll(prefix)) out.push(o.key);
    return out.sort();
  };

  /** verify exits 1 naming `object` with `kind`; restore exits 1 naming it and writes nothing. */
  const refused = async (cfg: string, object: string, kind: RegExp, tos: string[]) => {
    const v = await verify(cfg);
    assert.equal(v.code, 1, `verify: ${v.stdout}${v.stderr}`);
    const line = v.stdout.split('\n').find((l) => l.includes(object));
    assert.ok(line, `verify names ${object}:\n${v.stdout}`);
    assert.match(line, kind);
    for (const to of tos) {
      const out = join(work, `out-${Math.random().toString(16).slice(2)}`);
      const r = await restore(cfg, to, out);
      assert.equal(r.code, 1, `restore --to ${to}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /fails authentication, refusing to restore|schema object/);
      assert.ok(r.stderr.includes(object), `restore --to ${to} names ${object}:\n${r.stderr}`);
      assert.ok(!existsSync(out) || readdirSync(out).length === 0, 'nothing written');
      assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'no PHI in the output');
    }
    assert.ok(!v.stdout.includes(CANARY) && !v.stderr.includes(CANARY), 'no PHI in the output');
  };

  /** Closes every open hour with the compactor's code, signed with the archive's key. */
  const closeOpenHours = async () => {
    const store = storeAt(backup);
    const signer = archiveSigner(store, FileKeyring.open(keyring), 'clinic');
    const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: 'clinic', store }));
    const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 200, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, signer }, async () => {});
    await c.start();
    await c.closeFinishedHours(true);
  };

  const runSome = async (from: number, to: number) => {
    const run = new ChartlogRun(config(backup), join(work, `run-${from}.log`));
    const store = storeAt(backup);
    try {
      await run.start();
      for (let i = from; i <= to; i++) {
        await source.exec(`INSERT INTO patients VALUES (${i}, 'CANARY-NAME-${i}', '${CANARY}${i}', 'n${i}')`);
        if (i < to) await source.exec(`INSERT INTO visits VALUES (${i}, ${i}, 'reason ${i}')`);
      }
      await waitUntilDurable(store, 'clinic', source, () => source.exec(`INSERT INTO visits VALUES (${to}, ${to}, 'reason ${to}')`));
    } finally {
      await run.stop();
      await run.close();
    }
  };

  before(async () => {
    // ChartlogRun spawns with this process's environment.
    if (s3) Object.assign(process.env, { CHARTLOG_S3_ACCESS_KEY_ID: s3.accessKeyId, CHARTLOG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey });
    source = await createPgDatabase('rauth');
    dbs.push(source);
    await source.exec(`CREATE TABLE patients (id INT PRIMARY KEY, full_name TEXT, ssn VARCHAR(40), note TEXT)`);
    await source.exec(`CREATE TABLE visits (id INT PRIMARY KEY, patient_id INT, reason TEXT)`);
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    await runSome(1, 5);
    await closeOpenHours();
    await runSome(6, 10);
    secondHourTime = formatUs((await readCheckpoint(storeAt(backup), 'clinic'))!.commitTsUs);
    await closeOpenHours();
    hours = (await keysUnder(storeAt(backup), 'clinic/manifests/')).map((k) => k.slice('clinic/manifests/'.length));
    assert.equal(hours.length, 2, `two closed hours: ${hours.join(', ')}`);
  });

  after(async () => {
    for (const db of dbs) await db.drop();
    if (s3) for (const [i, st] of stores.entries()) if (roots.indexOf(roots[i]!) === i) for await (const o of st.listAll('clinic/')) await st.delete(o.key);
    for (const st of stores) await st.close();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  });

  it('control: the untouched archive is authenticated, verifies, and restores (into PostgreSQL: DDL with quoted types)', async () => {
    const { cfg, store } = await copy('control');
    const v = await verify(cfg);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /source clinic: OK/);
    assert.doesNotMatch(v.stdout, /not authenticated/);
    // Everything the format authenticates carries a MAC.
    const cp = await readJson(store, 'clinic/state/checkpoint.json');
    assert.equal(cp.mac?.version, 1);
    assert.deepEqual(cp.head, { hour: hours[1]!.slice(0, 13), sha256: await sha(store, `clinic/manifests/${hours[1]}`) });
    for (const h of hours) assert.equal((await readJson(store, `clinic/manifests/${h}`)).mac?.algorithm, 'HMAC-SHA256');
    for (const k of await keysUnder(store, 'clinic/schemas/')) assert.ok((await readJson(store, k)).mac, k);
    const key = await readJson(store, 'clinic/keys/archive-mac.json');
    assert.equal(key.wrapped.provider, 'file');
    for (const to of ['latest', secondHourTime]) {
      const out = join(work, `control-out-${to === 'latest' ? 'latest' : 'time'}`);
      rmSync(out, { recursive: true, force: true });
      const r = await restore(cfg, to, out);
      assert.equal(r.code, 0, r.stderr.slice(0, 2000));
      assert.equal(readFileSync(join(out, 'public.visits.jsonl'), 'utf8').trim().split('\n').length, 10);
    }
    const target = await createPgDatabase('rauth_t');
    dbs.push(target);
    const r = await runChartlog(['restore', '--config', cfg, '--source', 'clinic', '--to', 'latest', '--target', target.url], env);
    assert.equal(r.code, 0, r.stderr.slice(0, 2000));
    assert.equal((await target.capture('public.patients')).length, 10);
  });

  it('deleting the newest hour: verify reports it truncated, restore refuses (latest and a moment inside it)', async () => {
    const { cfg, store } = await copy('truncated');
    await store.delete(`clinic/manifests/${hours[1]}`);
    await refused(cfg, `clinic/manifests/${hours[1]}`, /truncated/, ['latest', secondHourTime]);
  });

  it('rewriting a segment and re-hashing every later manifest (and the anchor): each MAC fails', async () => {
    const { cfg, store } = await copy('rehashed');
    const first = `clinic/manifests/${hours[0]}`;
    const m = await readJson(store, first);
    const seg = m.objects.find((o: { table: string }) => o.table === 'public.visits');
    const bytes = Buffer.from(await store.get(seg.key));
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = bytes[mid]! ^ 0x01;
    await store.put(seg.key, bytes);
    seg.sha256 = await sha(store, seg.key);
    await writeJson(store, first, m); // its MAC kept: the attacker cannot compute one
    const second = `clinic/manifests/${hours[1]}`;
    const m2 = await readJson(store, second);
    m2.previous.sha256 = await sha(store, first);
    await writeJson(store, second, m2);
    const cp = await readJson(store, 'clinic/state/checkpoint.json');
    cp.head.sha256 = await sha(store, second);
    await writeJson(store, 'clinic/state/checkpoint.json', cp);
    await refused(cfg, first, /mac .*MAC does not match/, ['latest']);
    const v = await verify(cfg);
    assert.match(v.stdout, new RegExp(`mac +${second}`));
    assert.match(v.stdout, /mac +clinic\/state\/checkpoint\.json/);
    // The same with the MACs stripped instead of kept: missing where required.
    for (const key of [first, second, 'clinic/state/checkpoint.json']) {
      const o = await readJson(store, key);
      delete o.mac;
      await writeJson(store, key, o);
    }
    await refused(cfg, first, /mac .*no MAC/, ['latest']);
  });

  it('planting a snapshot manifest (a signed one copied to a later id, or an unsigned one): refused by name', async () => {
    const { cfg, store } = await copy('planted');
    const snaps = (await keysUnder(store, 'clinic/snapshots/')).filter((k) => k.endsWith('/manifest.json'));
    assert.equal(snaps.length, 1);
    const real = await readJson(store, snaps[0]!);
    const cp = (await readCheckpoint(store, 'clinic'))!;
    const id = `${cp.position.commit}.ffffffff`;
    const planted = `clinic/snapshots/${id}/manifest.json`;
    await writeJson(store, planted, { ...real, id, position: id, commitTsUs: cp.commitTsUs.toString() });
    await refused(cfg, planted, /mac .*MAC does not match/, ['latest']);
    const { mac: _mac, ...unsigned } = await readJson(store, planted);
    await writeJson(store, planted, unsigned);
    await refused(cfg, planted, /mac .*no MAC/, ['latest']);
  });

  it("editing a schema's type length, also to an injection string: refused by name", async () => {
    for (const [name, edit] of [
      ['length', (c: Record<string, any>) => ((c.type.length = 4000), (c.sourceType = 'character varying(4000)'))], // eslint-disable-line @typescript-eslint/no-explicit-any
      ['injection', (c: Record<string, any>) => ((c.type.length = '40); DROP TABLE public.visits; --'), (c.sourceType = 'character varying(40)); DROP TABLE public.visits; --'))], // eslint-disable-line @typescript-eslint/no-explicit-any
    ] as const) {
      const { cfg, store } = await copy(`schema-${name}`);
      let key = '';
      for (const k of await keysUnder(store, 'clinic/schemas/')) if (Buffer.from(await store.get(k)).toString('utf8').includes('"ssn"')) key = k;
      const s = await readJson(store, key);
      edit(s['chartlog.table'].columns.find((c: { name: string }) => c.name === 'ssn'));
      await store.put(key, Buffer.from(JSON.stringify(s)));
      await refused(cfg, key, /mac .*MAC does not match/, ['latest']);
    }
  });
});
