import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { PassThrough, type Readable } from 'node:stream';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';
import { ChartlogError, type ErrorCode } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Backoff, sleep } from '../core/retry.js';
import { keyProblem, validateKey, validatePrefix, validateRange } from './object-key.js';
import { listEveryPage, type ListOptions, type ListPage, type LeaseLane, type ObjectInfo, type ObjectStore, type PutOptions, type VersionedObject } from './object-store.js';

/**
 * The AWS SDK, loaded when the first S3 store is made: it is the largest module tree chartlog has
 * (≈ 0.15 s of CPU to load), and a restore or replica from a file:// archive never needs it.
 */
let sdkModule: typeof S3Sdk | undefined;
function s3Sdk(): typeof S3Sdk {
  return (sdkModule ??= createRequire(import.meta.url)('@aws-sdk/client-s3') as typeof S3Sdk);
}

const MIB = 1024 * 1024;
/** S3's smallest allowed part (except the last) is 5 MiB; 8 MiB keeps 50 MiB at 7 parts. */
export const DEFAULT_PART_SIZE = 8 * MIB;
const MAX_PARTS = 10_000;
const MAX_PAGE = 1000;
/** A conditional write meeting another one to the same key (409): 8 attempts, 0.1 s doubling to 2 s apart. */
const CONFLICT_BACKOFF = { initialDelayMs: 100, maxDelayMs: 2000, maxAttempts: 8 } as const;

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Key prefix inside the bucket: '' or ending in '/'. */
  prefix?: string;
  /** S3-compatible endpoint (radosgw, MinIO); AWS when absent. */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Both or neither; neither means the SDK's default chain (AWS env vars, instance role…). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path of a PEM CA bundle trusted for TLS to a private endpoint. */
  ca?: string;
  /** Bodies larger than this go up in parts of this size. Default 8 MiB; at least 5 MiB. */
  partSize?: number;
  /** Parts in flight at once per upload. Default 4. */
  partConcurrency?: number;
  /**
   * `putIfAbsent` bodies up to this size go up as one conditional PutObject, which is exact on
   * every store (a stream is held in memory up to this size). Larger ones use a multipart
   * upload, whose creation is not exact on radosgw. Default 64 MiB.
   */
  exactCreateMax?: number;
  /** Attempts per request, counting the first (the SDK's standard retry strategy). Default 5. */
  maxAttempts?: number;
  /** A connection silent this long is dropped and the request retried. Default 120 s. */
  socketTimeoutMs?: number;
  /**
   * Object Lock retention for puts with `retain: true` (storage.objectLock): each such object
   * version is written with this mode and a retain-until date `retainDays` days ahead, plus the
   * Content-MD5 header S3 requires on object-lock puts. Absent: no retention.
   */
  objectLock?: { mode: 'governance' | 'compliance'; retainDays: number };
}

/**
 * The `s3://bucket/prefix` backend, on @aws-sdk/client-s3.
 *
 * - Bodies up to `partSize` go up in one PutObject; larger ones (and streams that turn out
 *   larger) as a multipart upload of `partSize` parts, `partConcurrency` at a time, aborted on
 *   any failure so no orphaned parts are billed. A streamed body is read once, a part at a
 *   time, so memory stays at about partSize × (partConcurrency + 1). Every request body is a
 *   buffer, so the SDK can resend it on retry.
 * - `putIfAbsent` sends `If-None-Match: *` (412 → false) on PutObject and on
 *   CompleteMultipartUpload. Ceph radosgw 16.2 (Pacific, Debian 12) honours it on PutObject but
 *   silently ignores it on CompleteMultipartUpload and on CopyObject (probed: both replaced an
 *   existing object, so "upload elsewhere, then copy conditionally" is no way out). So creates
 *   of up to `exactCreateMax` (64 MiB) go up as one conditional PutObject, exact everywhere;
 *   larger ones are multipart with a HEAD before starting and before completing, and on such a
 *   server two creators of the same large key racing within one upload's duration can both get
 *   true (the last to complete wins). Deterministically named chartlog objects carry the same
 *   content from every writer, so that costs a redundant write, not data. On AWS S3
 *   (conditional completion supported) it is exact at any size.
 *   409 ConditionalRequestConflict (a concurrent conditional write in progress) is retried
 *   until the other write settles and the answer is exact.
 * - `putIfVersion` is one PutObject with `If-Match: <ETag>` (412 or 404 → null). The ETag is
 *   sent without its quotes: radosgw 16.2 compares the header with its stored, unquoted ETag,
 *   so the quoted form RFC 7232 prescribes always fails there (measured: 412 for the correct
 *   ETag quoted, success unquoted; DigitalOcean Spaces behaves the same), while AWS S3 and
 *   MinIO accept either. Measured on radosgw 16.2.15 with 8 racing replacers of one ETag,
 *   8 rounds: exactly one won each round; the losers got 412, or 500 (the RADOS compare
 *   failing under the race) — sometimes still 500 after the SDK's retries. After a 500 the
 *   ETag is read: changed means null (not replaced by this call, or replaced and the answer
 *   lost, which the caller tells by reading the object), unchanged means the write goes again.
 * - Retries: the SDK's standard strategy (exponential backoff with jitter; 5xx, throttling,
 *   timeouts, connection resets), then errors are mapped by mapS3Error to retriable or fatal
 *   ChartlogErrors. When a response is lost and the SDK resends a conditional write, the
 *   resend sees our own object and answers false: "false" means "the object exists".
 * - Object Lock (`objectLock`, storage.objectLock): puts with `retain: true` carry the mode, a
 *   retain-until date and Content-MD5 (AWS requires it on object-lock puts; radosgw 16.2 does
 *   not). radosgw 16.2 drops the lock headers on CreateMultipartUpload (probed: no retention, the
 *   version deletable), so a multipart upload gets PutObjectRetention after it completes.
 *   `checkWritable` refuses a bucket without Object Lock before anything is written.
 * - Checksums: request/response checksums only WHEN_REQUIRED; the SDK's default (CRC32 on
 *   every upload with aws-chunked framing) is refused by radosgw and stored inside the data by
 *   other S3 look-alikes (FIELD-NOTES).
 */
export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  private readonly sdk: typeof S3Sdk;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly base: string;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly exactCreateMax: number;
  private readonly agents: { http: HttpAgent; https: HttpsAgent };
  private readonly objectLock: { mode: 'governance' | 'compliance'; retainDays: number } | undefined;

  constructor(private readonly options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.objectLock = options.objectLock;
    this.base = normalizePrefix(options.prefix ?? '');
    this.description = `s3://${this.bucket}/${this.base}`.replace(/\/$/, '');
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isSafeInteger(this.partSize) || this.partSize < 5 * MIB) {
      throw new ChartlogError('config', `S3 part size ${this.partSize} is below the 5 MiB minimum of S3`);
    }
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 4);
    this.exactCreateMax = options.exactCreateMax ?? 64 * MIB;
    if ((options.accessKeyId === undefined) !== (options.secretAccessKey === undefined)) {
      throw new ChartlogError('config', 'storage.s3 has only one of accessKeyId and secretAccessKey', {
        hint: 'set both CHARTLOG_S3_ACCESS_KEY_ID and CHARTLOG_S3_SECRET_ACCESS_KEY, or neither to use the AWS default credential chain',
      });
    }
    let ca: Buffer | undefined;
    if (options.ca !== undefined) {
      try {
        ca = readFileSync(options.ca);
      } catch (err) {
        throw new ChartlogError('config', `cannot read storage.s3.ca ${options.ca}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
          hint: 'point storage.s3.ca at a readable PEM file holding the CA certificate(s) of the S3 endpoint',
          cause: err,
        });
      }
    }
    // Enough sockets for several concurrent multipart uploads; keep-alive saves a TLS handshake per part.
    this.agents = {
      http: new HttpAgent({ keepAlive: true, maxSockets: 64 }),
      https: new HttpsAgent({ keepAlive: true, maxSockets: 64, ...(ca ? { ca } : {}) }),
    };
    this.sdk = s3Sdk();
    this.client = new this.sdk.S3Client({
      region: options.region ?? 'us-east-1',
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? false,
      ...(options.accessKeyId !== undefined && options.secretAccessKey !== undefined
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
        : {}),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: options.maxAttempts ?? 5,
      retryMode: 'standard',
      requestHandler: {
        connectionTimeout: 10_000,
        // A socket silent this long is dead; an 8 MiB part on a slow link still makes progress.
        socketTimeout: options.socketTimeoutMs ?? 120_000,
        httpAgent: this.agents.http,
        httpsAgent: this.agents.https,
      },
    });
  }

  /**
   * With `objectLock` configured: the bucket must have Object Lock enabled, or every retained
   * put would fail (or, on stores that ignore the headers, silently not be retained).
   */
  async checkWritable(): Promise<void> {
    if (!this.objectLock) return;
    const hint =
      `point storage.url at a bucket created with Object Lock enabled (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket; ` +
      `on radosgw and most S3 stores it cannot be turned on for an existing bucket), or remove storage.objectLock`;
    let enabled: string | undefined;
    try {
      const out = await this.client.send(new this.sdk.GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      enabled = out.ObjectLockConfiguration?.ObjectLockEnabled;
    } catch (err) {
      // No lock configuration: AWS says ObjectLockConfigurationNotFoundError, radosgw 16.2 the same (404).
      if (!/ObjectLockConfigurationNotFound/.test(errorName(err))) throw mapS3Error(err, 'get', this.description);
    }
    if (enabled !== 'Enabled') {
      throw new ChartlogError('config', `storage.objectLock is set but bucket ${this.bucket} does not have Object Lock enabled`, { hint });
    }
  }

  /** Object Lock headers for a retained put, or none. */
  private lockFields(options: PutOptions): { ObjectLockMode?: 'GOVERNANCE' | 'COMPLIANCE'; ObjectLockRetainUntilDate?: Date } {
    if (!options.retain || !this.objectLock) return {};
    return {
      ObjectLockMode: this.objectLock.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE',
      ObjectLockRetainUntilDate: new Date(Date.now() + this.objectLock.retainDays * 86_400_000),
    };
  }

  /**
   * Sets retention on a completed multipart upload. radosgw 16.2 accepts the Object Lock
   * headers on CreateMultipartUpload and silently drops them (probed: the completed object had
   * no retention and its version could be deleted), so the retention is set explicitly; on
   * stores that did honour the headers this extends it by the upload's duration, which every
   * mode allows.
   */
  private async retainVersion(fullKey: string, versionId: string | undefined, options: PutOptions): Promise<void> {
    const lock = this.lockFields(options);
    if (!lock.ObjectLockMode || !lock.ObjectLockRetainUntilDate) return;
    await this.client.send(
      new this.sdk.PutObjectRetentionCommand({
        Bucket: this.bucket,
        Key: fullKey,
        ...(versionId ? { VersionId: versionId } : {}),
        Retention: { Mode: lock.ObjectLockMode, RetainUntilDate: lock.ObjectLockRetainUntilDate },
      }),
    );
  }

  private contentMd5(options: PutOptions, data: Uint8Array): { ContentMD5?: string } {
    return options.retain && this.objectLock ? { ContentMD5: createHash('md5').update(data).digest('base64') } : {};
  }

  async put(key: string, body: Uint8Array | Readable, options: PutOptions = {}): Promise<void> {
    validateKey(key);
    await this.upload(key, body, options, false);
  }

  async putIfAbsent(key: string, body: Uint8Array | Readable, options: PutOptions = {}): Promise<boolean> {
    validateKey(key);
    return this.upload(key, body, options, true);
  }

  async get(key: string): Promise<Uint8Array> {
    validateKey(key);
    return this.call('get', key, async () => {
      const out = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
    });
  }

  async getVersioned(key: string): Promise<VersionedObject | null> {
    validateKey(key);
    return this.call('get', key, async () => {
      try {
        const out = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
        const bytes = out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
        if (!out.ETag) throw new ChartlogError('storage', `S3 returned no ETag for ${this.description}/${key}`);
        return { bytes, version: unquote(out.ETag) };
      } catch (err) {
        if (isNotFound(err) && errorName(err) !== 'NoSuchBucket') return null;
        throw err;
      }
    });
  }

  async putIfVersion(key: string, body: Uint8Array, version: string): Promise<string | null> {
    validateKey(key);
    if (body.byteLength > this.partSize) {
      throw new ChartlogError('usage', `putIfVersion ${key}: a body of ${body.byteLength} bytes is above one request (${this.partSize})`);
    }
    return this.call('put', key, async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.putIfMatch(key, body, version);
        } catch (err) {
          // radosgw answers some losers of a race with 500 (the RADOS compare failed), even on
          // the SDK's retries. The ETag now says what happened: changed, so not (or no longer)
          // ours to replace; unchanged, so nothing was written and the write may go again.
          const status = httpStatus(err);
          if (status === undefined || status < 500 || attempt >= 5) throw err;
          const now = await this.headETag(key);
          if (now === null || now !== unquote(version)) return null;
          await sleep(50 * attempt);
        }
      }
    });
  }

  private async headETag(key: string): Promise<string | null> {
    try {
      const out = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
      return out.ETag ? unquote(out.ETag) : null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  private async putIfMatch(key: string, body: Uint8Array, version: string): Promise<string | null> {
    let etag: string | undefined;
    const replaced = await this.conditional(true, async () => {
      try {
        const out = await this.client.send(
          new this.sdk.PutObjectCommand({ Bucket: this.bucket, Key: this.base + key, Body: body, ContentLength: body.byteLength, IfMatch: unquote(version) }),
        );
        etag = out.ETag;
      } catch (err) {
        // If-Match on a missing object: 404 on AWS, 412 on radosgw. Either way: not replaced.
        if (isNotFound(err) && errorName(err) !== 'NoSuchBucket') throw Object.assign(new Error('precondition failed'), { name: 'PreconditionFailed' });
        throw err;
      }
    });
    if (!replaced) return null;
    if (!etag) throw new ChartlogError('storage', `S3 returned no ETag for ${this.description}/${key}`, { retriable: true });
    return unquote(etag);
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    validateKey(key);
    validateRange(start, end);
    if (start === end) {
      // HTTP has no empty range; still say not_found for a missing object.
      if ((await this.head(key)) === null) throw this.notFound(key);
      return new Uint8Array(0);
    }
    return this.call('get', key, async () => {
      try {
        const out = await this.client.send(
          new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.base + key, Range: `bytes=${start}-${end - 1}` }),
        );
        return out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
      } catch (err) {
        // 416: the range starts at or past the end; the contract clamps that to nothing.
        if (httpStatus(err) === 416 || errorName(err) === 'InvalidRange') return new Uint8Array(0);
        throw err;
      }
    });
  }

  async getStream(key: string): Promise<Readable> {
    validateKey(key);
    const body = await this.call('get', key, async () => {
      const out = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
      return out.Body as Readable | undefined;
    });
    const stream = new PassThrough();
    if (!body) {
      stream.end();
      return stream;
    }
    // A connection lost mid-body surfaces as a ChartlogError too.
    body.on('error', (err) => stream.destroy(mapS3Error(err, 'get', `${this.description}/${key}`)));
    stream.on('close', () => {
      if (!body.readableEnded) body.destroy();
    });
    body.pipe(stream);
    return stream;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    return this.call('head', key, async () => {
      try {
        const out = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
        return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    validatePrefix(prefix);
    const limit = options.limit ?? MAX_PAGE;
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new ChartlogError('usage', `invalid listing limit ${limit}: expected a positive integer`);
    }
    return this.call('list', prefix, async () => {
      const out = await this.client.send(
        new this.sdk.ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.base + prefix,
          MaxKeys: Math.min(limit, MAX_PAGE),
          ...(options.cursor !== undefined ? { ContinuationToken: options.cursor } : {}),
        }),
      );
      const objects: ObjectInfo[] = (out.Contents ?? []).map((o) => ({
        key: (o.Key ?? '').slice(this.base.length),
        size: o.Size ?? 0,
        lastModified: o.LastModified ?? new Date(0),
      }));
      return out.IsTruncated && out.NextContinuationToken ? { objects, cursor: out.NextContinuationToken } : { objects };
    });
  }

  listAll(prefix: string): AsyncIterable<ObjectInfo> {
    return listEveryPage(this, prefix);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    await this.call('delete', key, async () => {
      try {
        await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.base + key }));
      } catch (err) {
        if (!isNotFound(err) || errorName(err) === 'NoSuchBucket') throw err;
      }
    });
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /**
   * Another client on the same bucket with its own sockets: a lease renewal never waits for a
   * socket, or behind a multipart upload's requests, of this store.
   */
  leaseLane(): LeaseLane {
    return new S3ObjectStore(this.options);
  }

  /** Runs one S3 operation, mapping whatever it throws to a ChartlogError. */
  private async call<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapS3Error(err, op, `${this.description}/${key}`);
    }
  }

  private notFound(key: string): ChartlogError {
    return new ChartlogError('not_found', `object ${key} does not exist in ${this.description}`);
  }

  private async upload(key: string, body: Uint8Array | Readable, options: PutOptions, ifAbsent: boolean): Promise<boolean> {
    // A conditional single PutObject is exact on every store; multipart creation is not on
    // radosgw (see the class comment), so creates stay single-request up to exactCreateMax.
    const singleMax = ifAbsent ? Math.max(this.partSize, this.exactCreateMax) : this.partSize;
    if (body instanceof Uint8Array && body.byteLength <= singleMax) {
      return this.call('put', key, () => this.putSingle(key, body, options, ifAbsent));
    }
    const parts = body instanceof Uint8Array ? bufferParts(body, this.partSize) : streamParts(body, this.partSize);
    try {
      // Read ahead until the body is known to exceed one request's worth, or ends.
      const head: Uint8Array[] = [];
      let headBytes = 0;
      for (;;) {
        const next = await parts.next();
        if (next.done) {
          const data = head.length === 1 ? head[0]! : Buffer.concat(head, headBytes);
          return await this.call('put', key, () => this.putSingle(key, data, options, ifAbsent));
        }
        head.push(next.value);
        headBytes += next.value.byteLength;
        if (headBytes > singleMax) break;
      }
      return await this.call('put', key, () => this.putMultipart(key, head, parts, options, ifAbsent));
    } finally {
      // Stops reading (and destroys) a stream body when the upload ended early.
      await parts.return(undefined);
    }
  }

  private async putSingle(key: string, data: Uint8Array, options: PutOptions, ifAbsent: boolean): Promise<boolean> {
    return this.conditional(ifAbsent, async () => {
      await this.client.send(
        new this.sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.base + key,
          Body: data,
          ContentLength: data.byteLength,
          ...(options.contentType ? { ContentType: options.contentType } : {}),
          ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
          ...this.lockFields(options),
          ...this.contentMd5(options, data),
        }),
      );
    });
  }

  private async putMultipart(
    key: string,
    head: Uint8Array[],
    rest: AsyncGenerator<Uint8Array>,
    options: PutOptions,
    ifAbsent: boolean,
  ): Promise<boolean> {
    const fullKey = this.base + key;
    // Servers that ignore If-None-Match on CompleteMultipartUpload (radosgw < Squid) still
    // answer false for an object that existed before we started.
    if (ifAbsent && (await this.head(key)) !== null) return false;
    const created = await this.client.send(
      new this.sdk.CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: fullKey,
        ...(options.contentType ? { ContentType: options.contentType } : {}),
        ...this.lockFields(options),
      }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new ChartlogError('storage', `S3 gave no UploadId for ${this.description}/${key}`, { retriable: true });
    try {
      const completed = await this.uploadParts(fullKey, uploadId, head, rest, Boolean(options.retain && this.objectLock));
      if (ifAbsent && (await this.head(key)) !== null) {
        await this.abort(fullKey, uploadId);
        return false;
      }
      let versionId: string | undefined;
      const done = await this.conditional(ifAbsent, async () => {
        const out = await this.client.send(
          new this.sdk.CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: fullKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: completed },
            ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
          }),
        );
        versionId = out.VersionId;
      });
      if (!done) await this.abort(fullKey, uploadId);
      else await this.retainVersion(fullKey, versionId, options);
      return done;
    } catch (err) {
      await this.abort(fullKey, uploadId);
      throw err;
    }
  }

  private async uploadParts(fullKey: string, uploadId: string, head: Uint8Array[], rest: AsyncGenerator<Uint8Array>, md5 = false): Promise<CompletedPart[]> {
    const done: CompletedPart[] = [];
    const running = new Set<Promise<void>>();
    let failure: { err: unknown } | undefined;
    let partNumber = 0;
    const launch = (data: Uint8Array): void => {
      const n = ++partNumber;
      if (n > MAX_PARTS) throw new ChartlogError('storage', `object ${fullKey} needs more than ${MAX_PARTS} parts; raise the part size`);
      const p: Promise<void> = this.client
        .send(new this.sdk.UploadPartCommand({ Bucket: this.bucket, Key: fullKey, UploadId: uploadId, PartNumber: n, Body: data, ContentLength: data.byteLength, ...(md5 ? { ContentMD5: createHash('md5').update(data).digest('base64') } : {}) }))
        .then(
          (out) => {
            done.push({ PartNumber: n, ETag: out.ETag });
          },
          (err: unknown) => {
            failure ??= { err };
          },
        )
        .finally(() => running.delete(p));
      running.add(p);
    };
    const sources: AsyncIterable<Uint8Array>[] = [toAsync(head), { [Symbol.asyncIterator]: () => rest }];
    try {
      outer: for (const source of sources) {
        for await (const data of source) {
          launch(data);
          while (running.size >= this.partConcurrency) await Promise.race(running);
          if (failure) break outer;
        }
      }
    } finally {
      // Even when the body fails, let parts in flight settle so the abort that follows is final.
      await Promise.all(running);
    }
    if (failure) throw failure.err;
    return done.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
  }

  private async abort(fullKey: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new this.sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: fullKey, UploadId: uploadId }));
    } catch (err) {
      // The bucket's lifecycle rule for incomplete uploads is the backstop.
      logger().warn({ err, store: this.description, object: fullKey }, 'could not abort a failed multipart upload');
    }
  }

  /**
   * Runs a write; for a conditional one, 412 means the condition failed (false) and 409
   * ConditionalRequestConflict means another conditional write to the key is in flight, so it
   * is tried again until that one settles.
   */
  private async conditional(isConditional: boolean, write: () => Promise<void>): Promise<boolean> {
    const backoff = new Backoff(CONFLICT_BACKOFF);
    for (;;) {
      try {
        await write();
        return true;
      } catch (err) {
        if (!isConditional) throw err;
        const status = httpStatus(err);
        if (status === 412 || errorName(err) === 'PreconditionFailed') return false;
        if (status !== 409 && errorName(err) !== 'ConditionalRequestConflict') throw err;
        const delay = backoff.next();
        if (delay === null) throw err;
        await sleep(delay);
      }
    }
  }
}

/** An ETag without its quotes (and weak marker): the form radosgw compares If-Match with. */
function unquote(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** '' or 'a/b/' from 'a/b', '/a/b/', 'a/b/'. */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  const problem = keyProblem(trimmed);
  if (problem !== undefined) {
    throw new ChartlogError('config', `storage.url: invalid S3 prefix ${JSON.stringify(trimmed)}: ${problem}`, {
      hint: "use s3://bucket/some/prefix without '..', '.', empty segments or control characters",
    });
  }
  return `${trimmed}/`;
}

async function* bufferParts(body: Uint8Array, partSize: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < body.byteLength; offset += partSize) {
    yield body.subarray(offset, Math.min(offset + partSize, body.byteLength));
  }
}

/** A stream re-cut into parts of exactly `partSize` bytes (the last may be shorter). */
async function* streamParts(body: Readable, partSize: number): AsyncGenerator<Uint8Array> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of body as AsyncIterable<unknown>) {
    let buf: Buffer;
    if (typeof chunk === 'string') buf = Buffer.from(chunk, 'utf8');
    else if (chunk instanceof Uint8Array) buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    else throw new ChartlogError('usage', 'object body stream yielded something other than bytes or strings');
    while (buf.length > 0) {
      const take = Math.min(buf.length, partSize - pendingBytes);
      pending.push(buf.subarray(0, take));
      pendingBytes += take;
      buf = buf.subarray(take);
      if (pendingBytes === partSize) {
        yield Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

interface SdkErrorShape {
  name?: unknown;
  Code?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

function httpStatus(err: unknown): number | undefined {
  const s = (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

function errorName(err: unknown): string {
  const e = err as SdkErrorShape | undefined;
  const name = typeof e?.Code === 'string' ? e.Code : e?.name;
  return typeof name === 'string' ? name : '';
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return httpStatus(err) === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

const AUTH_NAMES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'AuthorizationHeaderMalformed',
  'InvalidSecurity',
]);
const THROTTLE_NAMES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequests', 'TooManyRequestsException', 'RequestLimitExceeded']);
const TIMEOUT_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EPROTO', 'ERR_STREAM_PREMATURE_CLOSE',
]);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);
const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED',
]);

export const S3_AUTH_HINT =
  'check CHARTLOG_S3_ACCESS_KEY_ID and CHARTLOG_S3_SECRET_ACCESS_KEY (or storage.s3.accessKeyId/secretAccessKey), and that this key may read and write the bucket';

/**
 * Maps what the SDK throws (after its own retries) to a ChartlogError: missing → not_found;
 * refused credentials → auth (fatal); throttling, 5xx, timeouts and lost connections →
 * retriable; TLS trust failures and other 4xx → fatal with a hint. `target` names the object
 * (keys are positions and table names, never row values).
 */
export function mapS3Error(err: unknown, op: string, target: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const name = errorName(err);
  const status = httpStatus(err);
  const rawCode = (err as SdkErrorShape | undefined)?.code;
  const code = typeof rawCode === 'string' ? rawCode : '';
  const what = [name || code || 'error', status !== undefined ? `HTTP ${status}` : ''].filter(Boolean).join(', ');
  const detail = typeof (err as SdkErrorShape | undefined)?.message === 'string' ? (err as { message: string }).message : '';
  const message = `S3 ${op} ${target} failed (${what})${detail && detail !== name ? `: ${detail}` : ''}`;
  const make = (c: ErrorCode, retriable: boolean, hint?: string) => new ChartlogError(c, message, { retriable, hint, cause: err });

  if (name === 'NoSuchBucket') {
    return make('config', false, 'create the bucket named in storage.url, or correct the bucket name');
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return make('not_found', false);
  if (AUTH_NAMES.has(name) || status === 403 || status === 401) return make('auth', false, S3_AUTH_HINT);
  if (TLS_CODES.has(code)) {
    return make('connection', false, 'the S3 endpoint\'s certificate is not trusted; set storage.s3.ca to the PEM file of its CA');
  }
  if (THROTTLE_NAMES.has(name) || status === 429 || status === 503) return make('storage', true, 'the store is throttling requests; chartlog retries with backoff');
  if (TIMEOUT_NAMES.has(name) || TIMEOUT_CODES.has(code) || status === 408) return make('timeout', true);
  if (status !== undefined && status >= 500) return make('storage', true);
  if (NETWORK_CODES.has(code) || /socket hang up|ECONNRESET|ECONNREFUSED/i.test(detail)) {
    return make('connection', true, 'check that storage.s3.endpoint is reachable from this host');
  }
  if (status === 412) return make('already_exists', false);
  return make('storage', false);
}
