import {
  closeSync,
  createReadStream,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
  type Dirent,
  type Stats,
} from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';

/** The calls on an open file that FsObjectStore makes (a slice of fs/promises' FileHandle). */
export interface FsHandle {
  stat(): Promise<Stats>;
  readFile(): Promise<Buffer>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(data: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
  writeFile(data: string): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
  createReadStream(): Readable;
}

/** The file-system calls FsObjectStore makes (a slice of fs/promises). */
export interface FsCalls {
  open(path: string, flags: string, mode?: number): Promise<FsHandle>;
  link(existing: string, path: string): Promise<void>;
  lstat(path: string): Promise<Stats>;
  mkdir(path: string, options: { recursive: true; mode: number }): Promise<string | undefined>;
  readdir(path: string, options: { withFileTypes: true }): Promise<Dirent[]>;
  readFile(path: string): Promise<Buffer>;
  rename(from: string, to: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  stat(path: string): Promise<Stats>;
  unlink(path: string): Promise<void>;
}

/** fs/promises: every call a job on libuv's thread pool, its answer a turn of the event loop. */
export const asyncFsCalls: FsCalls = {
  open: (path, flags, mode) => fsp.open(path, flags, mode),
  link: fsp.link,
  lstat: (path) => fsp.lstat(path),
  mkdir: fsp.mkdir,
  readdir: fsp.readdir,
  readFile: (path) => fsp.readFile(path),
  rename: fsp.rename,
  rmdir: (path) => fsp.rmdir(path),
  stat: (path) => fsp.stat(path),
  unlink: fsp.unlink,
};

/** The result of `f` now, as a settled promise: awaiting it costs a microtask, not an event-loop turn. */
function now<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (err) {
    return Promise.reject(err);
  }
}

class SyncHandle implements FsHandle {
  constructor(private readonly fd: number) {}
  stat = () => now(() => fstatSync(this.fd));
  readFile = () => now(() => readFileSync(this.fd));
  read = (buffer: Buffer, offset: number, length: number, position: number) => now(() => ({ bytesRead: readSync(this.fd, buffer, offset, length, position) }));
  write = (data: Uint8Array, offset: number, length: number) => now(() => ({ bytesWritten: writeSync(this.fd, data, offset, length) }));
  writeFile = (data: string) =>
    now(() => {
      const bytes = Buffer.from(data, 'utf8');
      for (let off = 0; off < bytes.length; ) off += writeSync(this.fd, bytes, off, bytes.length - off);
    });
  sync = () => now(() => fsyncSync(this.fd));
  close = () => now(() => closeSync(this.fd));
  createReadStream = () => createReadStream('', { fd: this.fd });
}

/**
 * The same calls done synchronously on the calling thread (docs/architecture.md, "The writer
 * lease's own lane"): they never wait in libuv's thread pool behind other jobs (part writes,
 * fsyncs, deflate, digests), and a whole object operation runs in one turn of the event loop
 * instead of one turn per call — the loop is blocked meanwhile, so only for a few small objects
 * now and then (the writer lease: three small files written every third of its TTL). Never
 * for a loop of calls that waits on something else in the process: its awaits are microtasks, so
 * timers, streams and other I/O do not run until it ends (the object-store conformance suite's
 * concurrent reader loops hang on it).
 */
export const syncFsCalls: FsCalls = {
  open: (path, flags, mode) => now(() => new SyncHandle(openSync(path, flags, mode))),
  link: (existing, path) => now(() => linkSync(existing, path)),
  lstat: (path) => now(() => lstatSync(path)),
  mkdir: (path, options) => now(() => mkdirSync(path, options)),
  readdir: (path, options) => now(() => readdirSync(path, options)),
  readFile: (path) => now(() => readFileSync(path)),
  rename: (from, to) => now(() => renameSync(from, to)),
  rmdir: (path) => now(() => rmdirSync(path)),
  stat: (path) => now(() => statSync(path)),
  unlink: (path) => now(() => unlinkSync(path)),
};
