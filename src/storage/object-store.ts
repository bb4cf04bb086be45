import type { Readable } from 'node:stream';

/**
 * Where backups live: `file://` (fs-object-store.ts) or `s3://` (s3-object-store.ts). Keys are
 * '/'-separated relative paths without a leading slash, e.g.
 * 'clinic/segments/public.patients/2026-11-24/05/<first>-<last>.avro'.
 *
 * Key rules (object-key.ts), the same on every backend: at most 1024 UTF-8 bytes, segments of
 * at most 255 bytes, no '.', '..' or empty segments, no control characters or lone surrogates,
 * no segment starting with '.chartlog-tmp-'. A key that breaks them is refused with
 * ChartlogError('usage') before any I/O.
 *
 * Every backend passes the one conformance suite (test/integration/object-store.test.ts).
 * Contract:
 * - Writes are atomic: a reader sees the whole object or none of it, never a torn one.
 * - `put` overwrites; `putIfAbsent` creates only when absent and is exact under concurrency
 *   (of N racing writers exactly one gets `true`), which makes retried writes of
 *   deterministically named objects idempotent. (One documented gap: on S3 stores that
 *   ignore If-None-Match on CompleteMultipartUpload, such as radosgw before Squid, creates
 *   above 64 MiB are checked, not exact; see s3-object-store.ts.)
 * - `putIfVersion` replaces only the version `getVersioned` returned and is exact under
 *   concurrency too (of N racing replacers of one version exactly one gets a new version). A
 *   version is derived from the content (S3: the ETag, a content hash; file: the sha256), so
 *   writers that compare-and-swap an object must make every body they write unique (the writer
 *   lease carries an owner id and a renewal time), or an old version could match again.
 * - Listing is in ascending UTF-8 byte order of keys (S3's order), on every backend.
 * - Errors are ChartlogErrors: 'not_found' for a missing key, 'auth' (fatal) for refused
 *   credentials, 'storage'/'connection'/'timeout' (retriable) for transient failures,
 *   'usage' for an invalid key, prefix, range or cursor.
 */
export interface ObjectStore {
  /** A human-readable location for messages, with no secrets (e.g. 's3://bucket/prefix'). */
  readonly description: string;

  /** Writes (or replaces) `key` with a buffered body or a stream. */
  put(key: string, body: Uint8Array | Readable, options?: PutOptions): Promise<void>;

  /**
   * Writes `key` only if no object has that key. Returns true when this call created it,
   * false when it already existed (the existing object is untouched).
   */
  putIfAbsent(key: string, body: Uint8Array | Readable, options?: PutOptions): Promise<boolean>;

  /** The whole object. Throws ChartlogError('not_found') when absent. */
  get(key: string): Promise<Uint8Array>;

  /** The whole object and its current version (for `putIfVersion`), or null when absent. */
  getVersioned(key: string): Promise<VersionedObject | null>;

  /**
   * Replaces `key` only if its current version is `version` (compare-and-swap; for small
   * objects: the body goes up in one request). Returns the new version when this call replaced
   * it, null when the object changed since or is gone (the object is then untouched).
   * After a lost response a retried request may answer null for a write that did happen: a
   * caller that must know reads the object again and compares it with what it wrote.
   */
  putIfVersion(key: string, body: Uint8Array, version: string): Promise<string | null>;

  /** Bytes [start, end) of the object (end exclusive, clamped to the size). */
  getRange(key: string, start: number, end: number): Promise<Uint8Array>;

  /** The object as a stream, for large objects. */
  getStream(key: string): Promise<Readable>;

  /** Size and modification time, or null when absent. */
  head(key: string): Promise<ObjectInfo | null>;

  /**
   * Keys under `prefix`, in ascending byte order, one page at a time. Pass the returned
   * `cursor` to get the next page; it is undefined on the last page. Cursors are opaque and
   * belong to the backend that returned them.
   */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  /** Every key under `prefix`, across pages. */
  listAll(prefix: string): AsyncIterable<ObjectInfo>;

  /** Removes `key`; no error when it is absent. */
  delete(key: string): Promise<void>;

  close(): Promise<void>;

  /**
   * A second handle on the same store for the writer lease (src/archive/lease.ts) whose requests
   * never wait behind this handle's other requests — part and segment writes, fsyncs, uploads —
   * so a renewal is not late because a flush is slow (docs/architecture.md, "The writer lease's
   * own lane"). file:// makes its calls synchronously; S3 uses a connection pool of its own.
   * Absent: the lease uses the store itself. The caller closes it.
   */
  leaseLane?(): LeaseLane;

  /**
   * Checks, before a command writes, that the store can do what the configuration asks of it
   * (S3 with `storage.objectLock`: the bucket has Object Lock enabled). Fatal 'config' error
   * when not. Absent on backends with nothing to check.
   */
  checkWritable?(): Promise<void>;
}

/** The calls the writer lease makes, on a lane of their own (`ObjectStore.leaseLane`). */
export type LeaseLane = Pick<ObjectStore, 'description' | 'getVersioned' | 'putIfAbsent' | 'putIfVersion' | 'close'>;

export interface PutOptions {
  contentType?: string;
  /** Size of a streamed body when known; lets backends choose single-part uploads. */
  contentLength?: number;
  /**
   * An immutable archive object (closed-hour manifest or segment, snapshot manifest or part,
   * schema, MAC key): an S3 store configured with `storage.objectLock` writes it under Object
   * Lock retention; other stores ignore it. Never set on objects replaced or deleted by design.
   */
  retain?: boolean;
}

export interface VersionedObject {
  bytes: Uint8Array;
  /** Opaque; changes whenever the content changes. */
  version: string;
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

export interface ListOptions {
  cursor?: string;
  /** At most this many keys in the page (backends may return fewer). Default 1000. */
  limit?: number;
}

export interface ListPage {
  objects: ObjectInfo[];
  cursor?: string;
}

/** Every key under `prefix`, following `list`'s cursors: the one `listAll` of every backend. */
export async function* listEveryPage(store: Pick<ObjectStore, 'list'>, prefix: string): AsyncIterable<ObjectInfo> {
  let cursor: string | undefined;
  do {
    const page = await store.list(prefix, cursor === undefined ? {} : { cursor });
    yield* page.objects;
    cursor = page.cursor;
  } while (cursor !== undefined);
}
