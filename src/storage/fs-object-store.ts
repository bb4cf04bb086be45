import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { ChartlogError, nullIfNotFound, type ErrorCode } from '../core/errors.js';
import { compareKeys, decodeCursor, encodeCursor, keyProblem, TEMP_MARKER, validateKey, validatePrefix, validateRange } from './object-key.js';
import { asyncFsCalls, syncFsCalls, type FsCalls, type FsHandle } from './fs-calls.js';
import { listEveryPage, type ListOptions, type ListPage, type ObjectInfo, type LeaseLane, type ObjectStore, type PutOptions, type VersionedObject } from './object-store.js';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const MAX_PAGE = 1000;
/** A delete that prunes an emptied folder can race a put into it; the put then starts over. */
const WRITE_ATTEMPTS = 5;
/**
 * A compare-and-swap lock file older than this is stale: its holder crashed or hangs (the
 * critical section is one read and one fsynced write of a small object).
 */
const LOCK_STALE_MS = 10_000;
/** How long `putIfVersion` waits for a live lock holder before giving up (retriable). */
const LOCK_WAIT_MS = 30_000;

/**
 * The `file://` backend: one file per object under `root`, the key's '/' segments as folders.
 *
 * A write goes to a temporary file (TEMP_MARKER + random, in the object's own folder, never
 * listed), is fsynced, and then becomes the object in one atomic step, after which the folder
 * is fsynced so the name survives a crash:
 * - `put` renames the temporary file over the object (readers see the old or the new object);
 * - `putIfAbsent` hard-links it to the object's name. link(2) fails with EEXIST when the name
 *   exists, so of N racing creators exactly one wins, and the winner's object is complete
 *   before its name appears (O_EXCL on the final name would expose a half-written file).
 *
 * - `putIfVersion` (compare-and-swap; the version is the content's sha256) holds an exclusive
 *   lock file beside the object (TEMP_MARKER + 'lock-' + name, created with O_EXCL, never
 *   listed) around read, compare and rename, so of N racing replacers exactly one wins. A lock
 *   left by a crashed holder is broken: at once when it names a dead process on this host,
 *   otherwise once it is LOCK_STALE_MS old. Breaking renames the stale file away and checks it
 *   was the one judged stale (else puts it back), so two breakers cannot both hold the lock.
 *
 * Unlike S3, a file system cannot hold an object 'a' and an object 'a/b' at once; such a write
 * fails with a 'storage' error that says so. Files and folders are created owner-only.
 */
export class FsObjectStore implements ObjectStore {
  readonly description: string;
  private readonly root: string;

  /** `fs`: how it calls the file system (tests and `leaseLane` pass another). */
  constructor(
    root: string,
    private readonly fs: FsCalls = asyncFsCalls,
  ) {
    if (!root.startsWith('/')) {
      throw new ChartlogError('config', `file object store root must be an absolute path, got ${JSON.stringify(root)}`, {
        hint: 'set storage.url to file:///absolute/path',
      });
    }
    this.root = resolve(root);
    this.description = pathToFileURL(this.root).href;
  }

  async put(key: string, body: Uint8Array | Readable, _options?: PutOptions): Promise<void> {
    validateKey(key);
    await this.write(key, body, 'replace');
  }

  async putIfAbsent(key: string, body: Uint8Array | Readable, _options?: PutOptions): Promise<boolean> {
    validateKey(key);
    return this.write(key, body, 'create');
  }

  async get(key: string): Promise<Uint8Array> {
    const fh = await this.openObject(key);
    try {
      const data = await fh.readFile();
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } catch (err) {
      throw mapFsError(err, 'read', key);
    } finally {
      await fh.close();
    }
  }

  async getVersioned(key: string): Promise<VersionedObject | null> {
    validateKey(key);
    const bytes = await nullIfNotFound(this.get(key));
    if (!bytes) return null;
    return { bytes, version: contentVersion(bytes) };
  }

  async putIfVersion(key: string, body: Uint8Array, version: string): Promise<string | null> {
    validateKey(key);
    const path = this.pathOf(key);
    const lock = join(dirname(path), `${TEMP_MARKER}lock-${basename(path)}`);
    let locked: boolean;
    try {
      locked = await takeLock(this.fs, lock);
    } catch (err) {
      throw mapFsError(err, 'lock', key);
    }
    if (!locked) return null; // no folder: the object does not exist
    try {
      let current: Buffer;
      try {
        current = await this.fs.readFile(path);
      } catch (err) {
        if (isMissing(err) || errnoCode(err) === 'EISDIR') return null;
        throw mapFsError(err, 'read', key);
      }
      if (contentVersion(current) !== version) return null;
      await this.write(key, body, 'replace');
      return contentVersion(body);
    } finally {
      await this.fs.unlink(lock).catch(() => undefined);
    }
  }

  async getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    validateRange(start, end);
    const fh = await this.openObject(key);
    try {
      const size = (await fh.stat()).size;
      const to = Math.min(end, size);
      if (start >= to) return new Uint8Array(0);
      const out = Buffer.alloc(to - start);
      let filled = 0;
      while (filled < out.length) {
        const { bytesRead } = await fh.read(out, filled, out.length - filled, start + filled);
        if (bytesRead === 0) break; // Cannot shrink under us (objects are replaced, not truncated); defensive.
        filled += bytesRead;
      }
      return new Uint8Array(out.buffer, out.byteOffset, filled);
    } catch (err) {
      throw mapFsError(err, 'read', key);
    } finally {
      await fh.close();
    }
  }

  async getStream(key: string): Promise<Readable> {
    const fh = await this.openObject(key);
    // The stream owns the handle from here and closes it at end, error or destroy.
    return fh.createReadStream();
  }

  async head(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    try {
      const st = await this.fs.stat(this.pathOf(key));
      return st.isFile() ? { key, size: st.size, lastModified: st.mtime } : null;
    } catch (err) {
      if (isMissing(err)) return null;
      throw mapFsError(err, 'stat', key);
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    validatePrefix(prefix);
    const limit = pageLimit(options.limit);
    const after = options.cursor === undefined ? undefined : decodeCursor(options.cursor);
    const objects: ObjectInfo[] = [];
    // One more than the page, to know whether another page follows.
    for await (const info of this.walk('', prefix, after)) {
      if (objects.length === limit) return { objects, cursor: encodeCursor(objects[objects.length - 1]!.key) };
      objects.push(info);
    }
    return { objects };
  }

  listAll(prefix: string): AsyncIterable<ObjectInfo> {
    return listEveryPage(this, prefix);
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    const path = this.pathOf(key);
    try {
      await this.fs.unlink(path);
    } catch (err) {
      // EISDIR/EPERM: the name is a folder of other objects, so there is no object to delete.
      const code = errnoCode(err);
      if (isMissing(err) || code === 'EISDIR' || code === 'EPERM') return;
      throw mapFsError(err, 'delete', key);
    }
    await fsyncDir(this.fs, dirname(path)).catch(() => undefined);
    await this.pruneEmptyFolders(dirname(path));
  }

  async close(): Promise<void> {}

  /** The same folder through synchronous calls: never queued in libuv's thread pool behind part writes. */
  leaseLane(): LeaseLane {
    return new FsObjectStore(this.root, syncFsCalls);
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  /** Opens an object for reading; folders and missing names are 'not_found'. */
  private async openObject(key: string): Promise<FsHandle> {
    validateKey(key);
    let fh: FsHandle;
    try {
      fh = await this.fs.open(this.pathOf(key), 'r');
    } catch (err) {
      if (isMissing(err)) throw notFound(this.description, key);
      throw mapFsError(err, 'open', key);
    }
    try {
      if (!(await fh.stat()).isFile()) throw notFound(this.description, key);
      return fh;
    } catch (err) {
      await fh.close();
      throw err instanceof ChartlogError ? err : mapFsError(err, 'stat', key);
    }
  }

  private async write(key: string, body: Uint8Array | Readable, mode: 'replace' | 'create'): Promise<boolean> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    const tmp = join(dir, TEMP_MARKER + randomBytes(12).toString('hex'));
    let fh: FsHandle | undefined;
    try {
      for (let attempt = 1; fh === undefined; attempt++) {
        try {
          await this.makeFolders(dir, key);
          fh = await this.fs.open(tmp, 'wx', FILE_MODE);
        } catch (err) {
          // A concurrent delete pruned the emptied folder between mkdir and open: start over.
          // Nothing of the body has been read yet, so a stream is still whole.
          if (errnoCode(err) !== 'ENOENT' || attempt >= WRITE_ATTEMPTS) throw err;
        }
      }
      // From here the temporary file keeps the folder from being pruned.
      try {
        await fill(fh, body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      const created = await publish(this.fs, tmp, path, mode);
      // ENOENT: a concurrent delete removed the new object and pruned its folder; the write
      // happened, and the delete after it.
      await fsyncDir(this.fs, dir).catch((err: unknown) => {
        if (errnoCode(err) !== 'ENOENT') throw err;
      });
      return created;
    } catch (err) {
      await this.fs.unlink(tmp).catch(() => undefined);
      if (err instanceof ChartlogError) throw err;
      throw mapFsError(err, 'write', key);
    }
  }

  /** mkdir -p, fsyncing the parent of each folder it created so the new names are durable. */
  private async makeFolders(dir: string, key: string): Promise<void> {
    let first: string | undefined;
    try {
      first = await this.fs.mkdir(dir, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOTDIR' || code === 'EEXIST') {
        throw new ChartlogError('storage', `cannot write ${this.description}/${key}: a parent of it is an object, not a folder`, {
          hint: "the file backend cannot hold an object 'a' and an object 'a/b' at once; choose keys that do not nest under other keys",
          cause: err,
        });
      }
      throw err;
    }
    if (first === undefined) return;
    for (let d = dir; ; d = dirname(d)) {
      await fsyncDir(this.fs, dirname(d));
      if (d === first || d === this.root || dirname(d) === d) break;
    }
  }

  private async pruneEmptyFolders(dir: string): Promise<void> {
    for (let d = dir; d !== this.root && d.startsWith(this.root + sep); d = dirname(d)) {
      try {
        await this.fs.rmdir(d);
      } catch {
        return; // Not empty (or already gone): stop climbing.
      }
    }
  }

  /**
   * Objects under folder `dirKey` ('' or 'a/b/') in UTF-8 byte order of their keys, limited to
   * `prefix` and to keys after `after`. A folder sorts as its name plus '/', which makes a
   * depth-first walk yield keys in exactly the order S3 lists them ('a-c' before 'a/b').
   */
  private async *walk(dirKey: string, prefix: string, after: string | undefined): AsyncGenerator<ObjectInfo> {
    let entries;
    try {
      entries = await this.fs.readdir(join(this.root, ...dirKey.split('/').filter(Boolean)), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return; // No root yet, or the folder was pruned while we walked.
      throw mapFsError(err, 'list', dirKey === '' ? prefix : dirKey);
    }
    const items: { key: string; folder: boolean }[] = [];
    for (const e of entries) {
      if (e.name.startsWith(TEMP_MARKER)) continue;
      if (e.isDirectory()) items.push({ key: `${dirKey}${e.name}/`, folder: true });
      else if (e.isFile()) items.push({ key: `${dirKey}${e.name}`, folder: false });
    }
    items.sort((a, b) => compareKeys(a.key, b.key));
    for (const item of items) {
      if (item.folder) {
        if (!item.key.startsWith(prefix) && !prefix.startsWith(item.key)) continue;
        // Every key in the folder starts with item.key; all of them are at or before the cursor
        // when the cursor sorts after item.key without starting with it.
        if (after !== undefined && !after.startsWith(item.key) && compareKeys(after, item.key) > 0) continue;
        yield* this.walk(item.key, prefix, after);
      } else {
        if (!item.key.startsWith(prefix)) continue;
        if (after !== undefined && compareKeys(item.key, after) <= 0) continue;
        if (keyProblem(item.key) !== undefined) continue; // A stray file chartlog could not have written.
        try {
          const st = await this.fs.lstat(join(this.root, ...item.key.split('/')));
          if (st.isFile()) yield { key: item.key, size: st.size, lastModified: st.mtime };
        } catch (err) {
          if (!isMissing(err)) throw mapFsError(err, 'list', item.key);
        }
      }
    }
  }
}

async function fill(fh: FsHandle, body: Uint8Array | Readable): Promise<void> {
  if (isBuffer(body)) return writeAll(fh, body);
  for await (const chunk of body as AsyncIterable<unknown>) {
    if (typeof chunk === 'string') await writeAll(fh, Buffer.from(chunk, 'utf8'));
    else if (chunk instanceof Uint8Array) await writeAll(fh, chunk);
    else throw new ChartlogError('usage', 'object body stream yielded something other than bytes or strings');
  }
}

/** Makes the fsynced temporary file the object; returns false when 'create' found it present. */
async function publish(fs: FsCalls, tmp: string, path: string, mode: 'replace' | 'create'): Promise<boolean> {
  if (mode === 'replace') {
    await fs.rename(tmp, path);
    return true;
  }
  try {
    await fs.link(tmp, path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw err;
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
  }
}

/** The version `getVersioned` reports: the content's sha256 (hex). */
function contentVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Creates the lock file `lock` exclusively, waiting for a live holder and breaking a stale one.
 * False when its folder does not exist (so neither does the object).
 */
async function takeLock(fs: FsCalls, lock: string): Promise<boolean> {
  const me = `${JSON.stringify({ host: hostname(), pid: process.pid, token: randomBytes(8).toString('hex') })}\n`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await fs.open(lock, 'wx', FILE_MODE);
      try {
        await fh.writeFile(me);
      } finally {
        await fh.close();
      }
      return true;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return false;
      if (code !== 'EEXIST') throw err;
    }
    await breakIfStale(fs, lock);
    if (Date.now() > deadline) {
      throw new ChartlogError('storage', `lock file ${lock} has been held for ${LOCK_WAIT_MS / 1000} s`, {
        retriable: true,
        hint: 'another chartlog process is replacing the object; if none runs, remove the lock file',
      });
    }
    await new Promise((r) => setTimeout(r, 2 + Math.random() * 8));
  }
}

/** Removes `lock` when its holder is a dead process on this host or it is LOCK_STALE_MS old. */
async function breakIfStale(fs: FsCalls, lock: string): Promise<void> {
  let seen;
  let holder: { host?: unknown; pid?: unknown } = {};
  try {
    seen = await fs.stat(lock);
    holder = JSON.parse((await fs.readFile(lock)).toString('utf8')) as typeof holder;
  } catch {
    // Gone (take it next time), or still being written by its creator (young: not stale).
    if (!seen || Date.now() - seen.mtimeMs < LOCK_STALE_MS) return;
  }
  const deadHolder = holder.host === hostname() && typeof holder.pid === 'number' && !processAlive(holder.pid);
  if (!deadHolder && Date.now() - seen.mtimeMs < LOCK_STALE_MS) return;
  const aside = `${lock}-stale-${randomBytes(6).toString('hex')}`;
  try {
    await fs.rename(lock, aside);
  } catch {
    return; // someone else broke it first
  }
  const moved = await fs.stat(aside).catch(() => null);
  if (moved && moved.ino !== seen.ino) {
    // Another breaker replaced the stale lock and took a fresh one, which we moved: put it back.
    await fs.link(aside, lock).catch(() => undefined);
  }
  await fs.unlink(aside).catch(() => undefined);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

async function writeAll(fh: FsHandle, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.byteLength) {
    const { bytesWritten } = await fh.write(data, offset, data.byteLength - offset);
    offset += bytesWritten;
  }
}

async function fsyncDir(fs: FsCalls, dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function isBuffer(body: Uint8Array | Readable): body is Uint8Array {
  return body instanceof Uint8Array;
}

function pageLimit(limit: number | undefined): number {
  if (limit === undefined) return MAX_PAGE;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new ChartlogError('usage', `invalid listing limit ${limit}: expected a positive integer`);
  }
  return Math.min(limit, MAX_PAGE);
}

function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isMissing(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function notFound(where: string, key: string): ChartlogError {
  return new ChartlogError('not_found', `object ${key} does not exist in ${where}`);
}

/** File-system errors by whether waiting or the operator can fix them. */
export function mapFsError(err: unknown, op: string, key: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const code = errnoCode(err);
  // errno messages repeat the path; the code says it all. Anything else (a failing body
  // stream) keeps its own message.
  const message = `cannot ${op} object ${key}: ${code ?? (err instanceof Error ? err.message : String(err))}`;
  const make = (c: ErrorCode, retriable: boolean, hint?: string) => new ChartlogError(c, message, { retriable, hint, cause: err });
  switch (code ?? '') {
    case 'EACCES':
    case 'EPERM':
      return make('auth', false, 'give the chartlog user read and write access to the storage.url folder');
    case 'ENOSPC':
    case 'EDQUOT':
      return make('storage', true, 'free space on the backup volume or raise its quota');
    case 'EMFILE':
    case 'ENFILE':
    case 'EAGAIN':
    case 'EBUSY':
    case 'EINTR':
      return make('storage', true);
    case 'EROFS':
      return make('storage', false, 'the backup volume is mounted read-only; remount it read-write');
    default:
      return make('storage', false);
  }
}
