import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { FsObjectStore } from '../../../src/storage/fs-object-store.js';
import { openObjectStore, parseS3Url } from '../../../src/storage/open-object-store.js';
import { S3ObjectStore } from '../../../src/storage/s3-object-store.js';

const isConfigError = (pattern: RegExp) => (err: unknown) => err instanceof ChartlogError && err.code === 'config' && pattern.test(err.message + (err.hint ?? ''));

describe('openObjectStore', () => {
  it('opens file:// URLs as FsObjectStore, decoding the path', async () => {
    const store = openObjectStore({ url: 'file:///var/lib/chartlog%20backups/' });
    assert.ok(store instanceof FsObjectStore);
    assert.equal(store.description, 'file:///var/lib/chartlog%20backups');
    await store.close();
  });

  it('opens s3:// URLs as S3ObjectStore with the prefix as a folder', async () => {
    const store = openObjectStore({
      url: 's3://backups/hospital-a/',
      s3: { endpoint: 'http://127.0.0.1:7480', region: 'us-east-1', forcePathStyle: true, accessKeyId: 'AKID', secretAccessKey: 'very-secret' },
    });
    assert.ok(store instanceof S3ObjectStore);
    assert.equal(store.description, 's3://backups/hospital-a');
    assert.doesNotMatch(store.description, /secret|AKID/);
    await store.close();
    const bare = openObjectStore({ url: 's3://backups' });
    assert.equal(bare.description, 's3://backups');
    await bare.close();
  });

  it('parses bucket and prefix', () => {
    assert.deepEqual(parseS3Url('s3://b-1.x/a/b/'), { bucket: 'b-1.x', prefix: 'a/b' });
    assert.deepEqual(parseS3Url('s3://bucket'), { bucket: 'bucket', prefix: '' });
    assert.deepEqual(parseS3Url('s3://bucket/'), { bucket: 'bucket', prefix: '' });
    assert.throws(() => parseS3Url('s3://UPPER/x'), isConfigError(/bucket/));
    assert.throws(() => parseS3Url('s3://ab'), isConfigError(/bucket/));
  });

  it('refuses bad storage settings with config errors that say the fix', () => {
    assert.throws(() => openObjectStore({ url: 'http://example.com/x' }), isConfigError(/file:\/\/\/absolute\/path or s3:\/\/bucket/));
    assert.throws(() => openObjectStore({ url: 's3://bucket/a/../b' }), isConfigError(/prefix/));
    assert.throws(
      () => openObjectStore({ url: 's3://bucket/p', s3: { region: 'us-east-1', forcePathStyle: true, accessKeyId: 'only-the-id' } }),
      isConfigError(/CHARTLOG_S3_ACCESS_KEY_ID and CHARTLOG_S3_SECRET_ACCESS_KEY/),
    );
    assert.throws(
      () => openObjectStore({ url: 's3://bucket/p', s3: { region: 'us-east-1', forcePathStyle: true, ca: '/nonexistent/ca.pem' } }),
      isConfigError(/storage\.s3\.ca .*ENOENT/),
    );
  });
});
