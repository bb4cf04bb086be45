import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NoSuchBucket, NoSuchKey, S3ServiceException } from '@aws-sdk/client-s3';
import { ChartlogError } from '../../../src/core/errors.js';
import { mapFsError } from '../../../src/storage/fs-object-store.js';
import { mapS3Error, S3_AUTH_HINT } from '../../../src/storage/s3-object-store.js';

/** An error shaped as the SDK throws it after its retries, from the service's error code and status. */
function serviceError(name: string, status: number, fault: 'client' | 'server' = status >= 500 ? 'server' : 'client'): S3ServiceException {
  return new S3ServiceException({ name, $fault: fault, message: `${name} from the service`, $metadata: { httpStatusCode: status } });
}

/** A Node network error (no HTTP response at all). */
function networkError(code: string, message = `connect ${code} 127.0.0.1:7480`): Error {
  return Object.assign(new Error(message), { code, $metadata: {} });
}

const target = 's3://bucket/prefix/clinic/x.avro';

describe('mapS3Error', () => {
  const cases: { err: unknown; code: string; retriable: boolean; hint?: RegExp }[] = [
    { err: new NoSuchKey({ message: 'The specified key does not exist.', $metadata: { httpStatusCode: 404 } }), code: 'not_found', retriable: false },
    { err: serviceError('NotFound', 404), code: 'not_found', retriable: false },
    { err: serviceError('Unknown', 404), code: 'not_found', retriable: false },
    { err: new NoSuchBucket({ message: 'The specified bucket does not exist', $metadata: { httpStatusCode: 404 } }), code: 'config', retriable: false, hint: /create the bucket/ },
    { err: serviceError('InvalidAccessKeyId', 403), code: 'auth', retriable: false, hint: /CHARTLOG_S3_ACCESS_KEY_ID/ },
    { err: serviceError('SignatureDoesNotMatch', 403), code: 'auth', retriable: false, hint: /CHARTLOG_S3_SECRET_ACCESS_KEY/ },
    { err: serviceError('AccessDenied', 403), code: 'auth', retriable: false },
    { err: serviceError('Forbidden', 403), code: 'auth', retriable: false },
    { err: serviceError('ExpiredToken', 400), code: 'auth', retriable: false },
    { err: Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), code: 'auth', retriable: false },
    { err: serviceError('InternalError', 500), code: 'storage', retriable: true },
    { err: serviceError('ServiceUnavailable', 503), code: 'storage', retriable: true },
    { err: serviceError('SlowDown', 503), code: 'storage', retriable: true, hint: /throttling/ },
    { err: serviceError('TooManyRequests', 429), code: 'storage', retriable: true },
    { err: serviceError('RequestTimeout', 400), code: 'timeout', retriable: true },
    { err: Object.assign(new Error('Connection timed out after 10000 ms'), { name: 'TimeoutError' }), code: 'timeout', retriable: true },
    { err: networkError('ETIMEDOUT'), code: 'timeout', retriable: true },
    { err: networkError('ECONNREFUSED'), code: 'connection', retriable: true, hint: /endpoint is reachable/ },
    { err: networkError('ECONNRESET', 'socket hang up'), code: 'connection', retriable: true },
    { err: networkError('ENOTFOUND', 'getaddrinfo ENOTFOUND s3.example'), code: 'connection', retriable: true },
    { err: networkError('EPIPE'), code: 'connection', retriable: true },
    { err: networkError('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain'), code: 'connection', retriable: false, hint: /storage\.s3\.ca/ },
    { err: networkError('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), code: 'connection', retriable: false, hint: /storage\.s3\.ca/ },
    { err: serviceError('PreconditionFailed', 412), code: 'already_exists', retriable: false },
    { err: serviceError('InvalidArgument', 400), code: 'storage', retriable: false },
    { err: serviceError('EntityTooSmall', 400), code: 'storage', retriable: false },
    { err: new Error('something unheard of'), code: 'storage', retriable: false },
  ];

  for (const c of cases) {
    const label = `${(c.err as { name?: string; code?: string }).code ?? (c.err as Error).name}${(c.err as S3ServiceException).$metadata?.httpStatusCode ? ` ${(c.err as S3ServiceException).$metadata.httpStatusCode}` : ''}`;
    it(`maps ${label} to ${c.code}${c.retriable ? ' (retriable)' : ' (fatal)'}`, () => {
      const mapped = mapS3Error(c.err, 'get', target);
      assert.ok(mapped instanceof ChartlogError);
      assert.equal(mapped.code, c.code);
      assert.equal(mapped.retriable, c.retriable);
      assert.equal(mapped.cause, c.err, 'keeps the SDK error as the cause');
      assert.ok(mapped.message.startsWith(`S3 get ${target} failed`), mapped.message);
      if (c.hint) assert.match(mapped.hint ?? '', c.hint);
    });
  }

  it('gives every auth error the same hint that names the credential variables', () => {
    assert.equal(mapS3Error(serviceError('InvalidAccessKeyId', 403), 'put', target).hint, S3_AUTH_HINT);
    assert.match(S3_AUTH_HINT, /CHARTLOG_S3_ACCESS_KEY_ID and CHARTLOG_S3_SECRET_ACCESS_KEY/);
  });

  it('names the error code and HTTP status in the message', () => {
    const m = mapS3Error(serviceError('SlowDown', 503), 'put', target).message;
    assert.match(m, /SlowDown, HTTP 503/);
  });

  it('passes ChartlogErrors through unchanged', () => {
    const original = new ChartlogError('not_found', 'already mapped');
    assert.equal(mapS3Error(original, 'get', target), original);
  });
});

describe('mapFsError', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: something, open '/backups/x'`), { code });
  const cases: [string, string, boolean, RegExp?][] = [
    ['EACCES', 'auth', false, /read and write access/],
    ['EPERM', 'auth', false],
    ['ENOSPC', 'storage', true, /free space/],
    ['EDQUOT', 'storage', true],
    ['EMFILE', 'storage', true],
    ['EBUSY', 'storage', true],
    ['EROFS', 'storage', false, /read-only/],
    ['EIO', 'storage', false],
  ];
  for (const [code, want, retriable, hint] of cases) {
    it(`maps ${code} to ${want}${retriable ? ' (retriable)' : ' (fatal)'}`, () => {
      const mapped = mapFsError(errno(code), 'write', 'clinic/x.avro');
      assert.equal(mapped.code, want);
      assert.equal(mapped.retriable, retriable);
      assert.equal(mapped.message, `cannot write object clinic/x.avro: ${code}`);
      if (hint) assert.match(mapped.hint ?? '', hint);
    });
  }
});
