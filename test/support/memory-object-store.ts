import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ChartlogError } from '../../src/core/errors.js';
import { compareKeys, validateKey, validatePrefix } from '../../src/storage/object-key.js';
import { listEveryPage, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore, type PutOptions, type VersionedObject } from '../../src/storage/object-store.js';

/**
 * An in-memory ObjectStore for unit tests of pure logic only (integration tests use the real
 * backends). Keys follow the real backends' rules and list in the same (UTF-8 byte) order. `failNext(n)` makes the next n writes fail with a retriable error, to exercise
 * retry paths; `writes` counts successful writes.
 */
export class MemoryObjectStore implements ObjectStore {
  readonly description = 'memory://';
  readonly objects = new Map<string, { body: Buffer; lastModified: Date }>();
  writes = 0;
  private failures = 0;

  failNext(n: number): void {
    this.failures = n;
  }

  private async bodyOf(body: Uint8Array | Readable): Promise<Buffer> {
    if (body instanceof Uint8Array) return Buffer.from(body);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
    return Buffer.concat(chunks);
  }

  private maybeFail(key: string): void {
    if (this.failures > 0) {
      this.failures--;
      throw new ChartlogError('storage', `injected write failure for ${key}`, { retriable: true });
    }
  }

  async put(key: string, body: Uint8Array | Readable, _options?: PutOptions): Promise<void> {
    validateKey(key);
    const buf = await this.bodyOf(body);
    this.maybeFail(key);
    this.objects.set(key, { body: buf, lastModified: new Date() });
    this.writes++;
  }

  async putIfAbsent(key: string, body: Uint8Array | Readable, _options?: PutOptions): Promise<boolean> {
    validateKey(key);
    const buf = await this.bodyOf(body);
    this.maybeFail(key);
    if (this.objects.has(key)) return false;
    this.objects.set(key, { body: buf, lastModified: new Date() });
    this.writes++;
    return true;
  }

  async get(key: string): Promise<Uint8Array> {
    const o = this.objects.get(key);
    if (!o) throw new ChartlogError('not_found', `no object ${key}`);
    return Buffer.from(o.body);
  }

  async getVersioned(key: string): Promise<VersionedObject | null> {
    const o = this.objects.get(key);
    return o ? { bytes: Buffer.from(o.body), version: versionOf(o.body) } : null;
  }

  async putIfVersion(key: string, body: Uint8Array, version: string): Promise<string | null> {
    validateKey(key);
    this.maybeFail(key);
    const o = this.objects.get(key);
    if (!o || versionOf(o.body) !== version) return null;
    const buf = Buffer.from(body);
    this.objects.set(key, { body: buf, lastModified: new Date() });
    this.writes++;
    return versionOf(buf);
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    return (await this.get(key)).subarray(start, end);
  }

  async getStream(key: string): Promise<Readable> {
    return Readable.from([await this.get(key)]);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const o = this.objects.get(key);
    return o ? { key, size: o.body.length, lastModified: o.lastModified } : null;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    validatePrefix(prefix);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && (!options.cursor || compareKeys(k, options.cursor) > 0)).sort(compareKeys);
    const page = keys.slice(0, options.limit ?? 1000);
    const objects = page.map((key) => ({ key, size: this.objects.get(key)!.body.length, lastModified: this.objects.get(key)!.lastModified }));
    return page.length < keys.length ? { objects, cursor: page[page.length - 1] } : { objects };
  }

  listAll(prefix: string): AsyncIterable<ObjectInfo> {
    return listEveryPage(this, prefix);
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async close(): Promise<void> {}
}

function versionOf(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('hex');
}
