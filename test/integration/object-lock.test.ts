import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { archiveSigner } from '../../src/archive/archive-auth.js';
import { CodecEnvelopeReader } from '../../src/archive/codec-envelope-reader.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import { Compactor } from '../../src/compactor/compactor.js';
import { parseConfig } from '../../src/config/load.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { S3ObjectStore } from '../../src/storage/s3-object-store.js';
import { waitUntilDurable } from '../support/caught-up.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { testServices } from '../support/env.js';
import { createPgDatabase, type TestDatabase } from '../support/restore-engines.js';

/**
 * storage.objectLock on radosgw (issue 13 item 7, last clause): `chartlog run` on a bucket
 * created with Object Lock enabled writes the archive's immutable objects (closed-hour
 * manifests and segments, schemas, the MAC key) under GOVERNANCE retention, so that someone
 * with ordinary write access to the bucket can neither delete those versions nor make them
 * unreadable by overwriting; the checkpoint and the lease (replaced by design) stay unlocked,
 * which is also the negative control showing the refused delete is a refusal of the lock and
 * not of the request. A bucket without Object Lock is refused at start (exit 2, nothing written).
 *
 * Hours close by the wall clock; as in archive-auth.test.ts the test closes the open hour with
 * the compactor's own code (closeFinishedHours with force), through a store opened from the same
 * configuration, so the closing writes use the configured retention.
 */
describe('storage.objectLock (s3://, radosgw): immutable archive objects are retained', () => {
  const s3 = testServices().s3;
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const id = randomBytes(4).toString('hex');
  const locked = `chartlog-lock-${id}`;
  const plain = `chartlog-nolock-${id}`;
  const work = mkdtempSync(join(tmpdir(), 'chartlog-lock-'));
  const keyring = join(work, 'keys', 'keyring.json');
  const env: NodeJS.ProcessEnv = { ...process.env, CHARTLOG_S3_ACCESS_KEY_ID: s3.accessKeyId, CHARTLOG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey };
  const stores: ObjectStore[] = [];
  let source: TestDatabase;

  const configText = (url: string) =>
    [
      'sources:',
      `  - { name: clinic, type: postgres, url: "${source.url}", tables: [public.patients] }`,
      url.startsWith('s3://')
        ? `storage: { url: "${url}", s3: { endpoint: "${s3.endpoint}", region: ${s3.region}, forcePathStyle: true }, objectLock: { mode: governance, retainDays: 1 } }`
        : `storage: { url: "${url}", objectLock: { mode: governance, retainDays: 1 } }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${keyring}"`,
      '  columns: { public.patients: [ssn] }',
      'log: { level: info, format: json }',
    ].join('\n');
  const config = (name: string, url: string) => {
    const file = join(work, `${name}.yaml`);
    writeFileSync(file, configText(url));
    return file;
  };
  const storeAt = (url: string): ObjectStore => {
    const store = openObjectStore(parseConfig(configText(url), 'test', env).storage);
    stores.push(store);
    return store;
  };
  const versions = async (bucket: string) => {
    const out: { Key: string; VersionId: string }[] = [];
    let KeyMarker: string | undefined;
    let VersionIdMarker: string | undefined;
    for (;;) {
      const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, KeyMarker, VersionIdMarker }));
      for (const v of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) out.push({ Key: v.Key!, VersionId: v.VersionId! });
      if (!page.IsTruncated) return out;
      KeyMarker = page.NextKeyMarker;
      VersionIdMarker = page.NextVersionIdMarker;
    }
  };
  const retention = async (key: string, versionId?: string) => {
    try {
      const r = await client.send(new GetObjectRetentionCommand({ Bucket: locked, Key: key, VersionId: versionId }));
      return r.Retention ?? null;
    } catch (err) {
      const name = (err as { name?: string }).name ?? '';
      if (/NoSuchObjectLockConfiguration|ObjectLockConfigurationNotFound|InvalidRequest/.test(name) || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
      throw err;
    }
  };
  const deleteVersion = async (key: string, versionId: string): Promise<string> => {
    try {
      await client.send(new DeleteObjectCommand({ Bucket: locked, Key: key, VersionId: versionId }));
      return 'deleted';
    } catch (err) {
      return `${(err as { name?: string }).name} HTTP ${(err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode}`;
    }
  };
  const keys: string[] = [];

  before(async () => {
    source = await createPgDatabase('rlock');
    await source.exec(`CREATE TABLE patients (id INT PRIMARY KEY, ssn VARCHAR(40), note TEXT)`);
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    await client.send(new CreateBucketCommand({ Bucket: locked, ObjectLockEnabledForBucket: true }));
    await client.send(new CreateBucketCommand({ Bucket: plain }));

    const cfg = config('locked', `s3://${locked}/a`);
    const run = new ChartlogRun(cfg, join(work, 'run.log'));
    Object.assign(process.env, { CHARTLOG_S3_ACCESS_KEY_ID: s3.accessKeyId, CHARTLOG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey });
    const store = storeAt(`s3://${locked}/a`);
    // Rows before the first run: its initial snapshot has parts.
    await source.exec(`INSERT INTO patients VALUES (100, 'CANARY-SSN-100', 'before')`);
    try {
      await run.start();
      for (let i = 1; i <= 4; i++) await source.exec(`INSERT INTO patients VALUES (${i}, 'CANARY-SSN-${i}', 'n${i}')`);
      await waitUntilDurable(store, 'clinic', source, () => source.exec(`INSERT INTO patients VALUES (5, 'CANARY-SSN-5', 'n5')`));
    } finally {
      await run.stop();
      await run.close();
    }
    const signer = archiveSigner(store, FileKeyring.open(keyring), 'clinic');
    const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: 'clinic', store }));
    const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 200, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, signer }, async () => {});
    await c.start();
    await c.closeFinishedHours(true);
    for await (const o of store.listAll('clinic/')) keys.push(`a/${o.key}`);
  });

  after(async () => {
    await source?.drop();
    for (const st of stores) await st.close();
    // Governance retention yields to the bypass header (what an administrator does).
    for (const bucket of [locked, plain]) {
      try {
        for (const v of await versions(bucket)) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId, BypassGovernanceRetention: true }));
        await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      } catch (err) {
        console.log(`cleanup of ${bucket}: ${(err as Error).name} ${(err as Error).message}`);
      }
    }
    client.destroy();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  });

  it('`chartlog snapshot` writes the snapshot manifest and parts under retention', async () => {
    const r = await runChartlog(['snapshot', '--config', join(work, 'locked.yaml'), '--json'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const snapshot: string[] = [];
    for (const v of await versions(locked)) if (v.Key.startsWith('a/clinic/snapshots/')) snapshot.push(v.Key);
    assert.ok(snapshot.some((k) => k.endsWith('/manifest.json')), snapshot.join('\n'));
    assert.ok(snapshot.some((k) => k.endsWith('.avro')), `${snapshot.join('\n')}\n${r.stdout}`);
    for (const k of snapshot) assert.equal((await retention(k))?.Mode, 'GOVERNANCE', k);
    console.log(`snapshot objects retained: ${snapshot.length}`);
  });

  it('writes manifests, segments, schemas and the MAC key under GOVERNANCE retention of 1 day; not the checkpoint or lease', async () => {
    const manifests = keys.filter((k) => k.startsWith('a/clinic/manifests/'));
    const segments = keys.filter((k) => k.startsWith('a/clinic/segments/'));
    const schemas = keys.filter((k) => k.startsWith('a/clinic/schemas/'));
    assert.equal(manifests.length, 1, keys.join('\n'));
    assert.ok(segments.length >= 1, keys.join('\n'));
    assert.ok(schemas.length >= 1, keys.join('\n'));
    const now = Date.now();
    for (const k of [...manifests, ...segments, ...schemas, 'a/clinic/keys/archive-mac.json']) {
      const r = await retention(k);
      assert.equal(r?.Mode, 'GOVERNANCE', k);
      const days = (r!.RetainUntilDate!.getTime() - now) / 86_400_000;
      assert.ok(days > 0.9 && days <= 1.01, `${k} retained ${days} days`);
    }
    for (const k of ['a/clinic/state/checkpoint.json']) assert.equal(await retention(k), null, `${k} is replaced by design: no retention`);
    console.log(`retained: ${manifests.length} manifest(s), ${segments.length} segment(s), ${schemas.length} schema(s), the MAC key; ${keys.length} objects in all`);
  });

  it('a locked manifest version cannot be deleted; an unlocked one can (control)', async () => {
    const manifest = keys.find((k) => k.startsWith('a/clinic/manifests/'))!;
    const mv = (await client.send(new HeadObjectCommand({ Bucket: locked, Key: manifest }))).VersionId!;
    const refused = await deleteVersion(manifest, mv);
    assert.match(refused, /AccessDenied|403/, `deleting ${manifest} version ${mv}: ${refused}`);
    assert.ok((await client.send(new HeadObjectCommand({ Bucket: locked, Key: manifest, VersionId: mv }))).ContentLength! > 0, 'still there');
    // Control: the same request on the checkpoint (no retention) succeeds.
    const cp = 'a/clinic/state/checkpoint.json';
    const cv = (await client.send(new HeadObjectCommand({ Bucket: locked, Key: cp }))).VersionId!;
    assert.equal(await deleteVersion(cp, cv), 'deleted');
    console.log(`delete of locked manifest version: ${refused}; of the checkpoint version: deleted`);
  });

  it('overwriting a locked manifest leaves the locked version retrievable', async () => {
    const manifest = keys.find((k) => k.startsWith('a/clinic/manifests/'))!;
    const head = await client.send(new HeadObjectCommand({ Bucket: locked, Key: manifest }));
    const original = await (await client.send(new GetObjectCommand({ Bucket: locked, Key: manifest }))).Body!.transformToByteArray();
    await client.send(new PutObjectCommand({ Bucket: locked, Key: manifest, Body: Buffer.from('{"forged":true}\n') }));
    const current = await (await client.send(new GetObjectCommand({ Bucket: locked, Key: manifest }))).Body!.transformToString();
    assert.equal(current, '{"forged":true}\n', 'the overwrite became the current version');
    const kept = await (await client.send(new GetObjectCommand({ Bucket: locked, Key: manifest, VersionId: head.VersionId! }))).Body!.transformToByteArray();
    assert.deepEqual(Buffer.from(kept), Buffer.from(original), 'the locked version is intact');
    // And it cannot be removed to hide the forgery's predecessor.
    assert.match(await deleteVersion(manifest, head.VersionId!), /AccessDenied|403/);
  });

  it('large objects (multipart: radosgw 16.2 drops the lock headers there) are retained too; unretained puts are not', async () => {
    // exactCreateMax 5 MiB: putIfAbsent of 20 MiB goes multipart, as a large segment would; put of 20 MiB does (snapshot parts).
    const store = new S3ObjectStore({ bucket: locked, prefix: 'big', endpoint: s3.endpoint, forcePathStyle: true, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, objectLock: { mode: 'governance', retainDays: 1 }, exactCreateMax: 5 * 1024 * 1024 });
    stores.push(store);
    const big = randomBytes(20 * 1024 * 1024);
    assert.equal(await store.putIfAbsent('segment.avro', big, { retain: true }), true);
    await store.put('part.avro', Readable.from([big.subarray(0, 10 * 1024 * 1024), big.subarray(10 * 1024 * 1024)]), { retain: true });
    await store.put('scratch.avro', big, {});
    for (const k of ['big/segment.avro', 'big/part.avro']) {
      assert.equal((await retention(k))?.Mode, 'GOVERNANCE', k);
      const v = (await client.send(new HeadObjectCommand({ Bucket: locked, Key: k }))).VersionId!;
      assert.match(await deleteVersion(k, v), /AccessDenied|403/, k);
    }
    assert.equal(await retention('big/scratch.avro'), null, 'not asked to retain: no retention');
  });

  it('control: a bucket without Object Lock is refused at start, exit 2, nothing written', async () => {
    const r = await runChartlog(['run', '--config', config('plain', `s3://${plain}/a`)], env);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`storage.objectLock.*${plain}|${plain}.*Object Lock`));
    assert.match(r.stderr, /created with Object Lock enabled/);
    assert.deepEqual(await versions(plain), [], 'nothing written');
  });

  it('control: storage.objectLock with a file:// store is refused at config load, exit 2', async () => {
    const r = await runChartlog(['run', '--config', config('file', `file://${work}/backup`)], env);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /storage\.objectLock/);
    assert.match(r.stderr, /S3 bucket with Object Lock enabled/);
  });
});
