import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.js';
import { ChartlogError } from '../core/errors.js';
import { FsObjectStore } from './fs-object-store.js';
import type { ObjectStore } from './object-store.js';
import { S3ObjectStore } from './s3-object-store.js';

/** What opening the store needs (the lease TTL is not about the backend). */
export type StorageConfig = Pick<Config['storage'], 'url' | 's3'> & Partial<Pick<Config['storage'], 'objectLock'>>;

/**
 * The backend the `storage` section names: `file:///abs/path` → FsObjectStore,
 * `s3://bucket[/prefix]` → S3ObjectStore with the `storage.s3` settings (credentials from the
 * environment were merged in by loadConfig).
 */
export function openObjectStore(storage: StorageConfig): ObjectStore {
  const url = storage.url;
  if (url.startsWith('file://')) {
    let root: string;
    try {
      root = fileURLToPath(url);
    } catch (err) {
      throw new ChartlogError('config', `storage.url: not a usable file URL, got ${JSON.stringify(url)}`, {
        hint: 'use file:///absolute/path (three slashes, percent-encode spaces as %20)',
        cause: err,
      });
    }
    return new FsObjectStore(root);
  }
  if (url.startsWith('s3://')) {
    const { bucket, prefix } = parseS3Url(url);
    const s3 = storage.s3;
    return new S3ObjectStore({
      bucket,
      prefix,
      ...(s3?.endpoint !== undefined ? { endpoint: s3.endpoint } : {}),
      region: s3?.region ?? 'us-east-1',
      forcePathStyle: s3?.forcePathStyle ?? false,
      ...(s3?.accessKeyId !== undefined ? { accessKeyId: s3.accessKeyId } : {}),
      ...(s3?.secretAccessKey !== undefined ? { secretAccessKey: s3.secretAccessKey } : {}),
      ...(s3?.ca !== undefined ? { ca: s3.ca } : {}),
      ...(storage.objectLock !== undefined ? { objectLock: storage.objectLock } : {}),
    });
  }
  throw new ChartlogError('config', `storage.url: expected file:///absolute/path or s3://bucket[/prefix], got ${JSON.stringify(url)}`, {
    hint: 'set storage.url to a file:// or s3:// URL',
  });
}

/** 's3://bucket/a/b/' → { bucket: 'bucket', prefix: 'a/b' }; the prefix is kept verbatim (no %-decoding). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/\s]+)(?:\/(.*))?$/.exec(url);
  const bucket = m?.[1];
  if (!m || !bucket || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ChartlogError('config', `storage.url: expected s3://bucket[/prefix] with a valid bucket name, got ${JSON.stringify(url)}`, {
      hint: 'bucket names are 3-63 lower-case letters, digits, dots and hyphens',
    });
  }
  return { bucket, prefix: (m[2] ?? '').replace(/\/+$/, '') };
}
