import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ChartlogError } from './errors.js';

/**
 * Holds the messages of one source transaction (opaque byte strings: raw pgoutput messages,
 * serialised MySQL row events) until its commit arrives. Both connectors see a transaction whole
 * only at its commit, however large it is; past `spillThresholdBytes` the messages go to a file
 * instead of memory, so a million-row transaction costs disk, not RSS. Shared by the connectors,
 * so it lives in src/core (connectors import only src/core and their own folder).
 *
 * Messages are packed as [u32 length][bytes] records into 1 MiB chunks (one allocation per
 * chunk, not per message: a million small buffers would cost more in object overhead than
 * their bytes). In memory the chunks are kept; once spilled, each chunk is one encrypted frame
 * of the file. The threshold is checked as each chunk closes, so memory may pass it by one chunk.
 *
 * The file holds row data, so it is encrypted with a key that only ever lives in this object's
 * memory (AES-256-GCM per chunk), created 0600 and deleted at commit or discard: a crash leaves
 * only ciphertext nobody can open.
 */
export interface TransactionBufferOptions {
  readonly spillThresholdBytes: number;
  /** Directory for spill files; created when needed. */
  readonly spillDir: string;
}

const CHUNK_BYTES = 1 << 20;

export class TransactionBuffer {
  private chunks: Buffer[] = [];
  private memoryBytes = 0;
  private current: Buffer | null = null;
  private used = 0;
  private file: FileHandle | null = null;
  private path: string | null = null;
  private key: Buffer | null = null;
  private frames = 0;
  private total = 0;
  private count = 0;

  constructor(private readonly options: TransactionBufferOptions) {}

  /** Messages held so far. */
  get size(): number {
    return this.count;
  }
  /** Message bytes held so far (memory and disk). */
  get bytes(): number {
    return this.total;
  }
  get spilled(): boolean {
    return this.file !== null;
  }

  async add(message: Uint8Array): Promise<void> {
    if (this.tryAdd(message)) return;
    await this.seal();
    this.current = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, 4 + message.length));
    this.used = 0;
    this.tryAdd(message);
  }

  /**
   * Adds `message` at once when it fits the open chunk; false when the chunk must be closed
   * first (which may write to the spill file), and then `add` does it. For a caller's
   * per-message path: awaiting `add` for every message cost a promise and a turn of the
   * microtask queue per row, for the one message in thousands that closes a chunk.
   */
  tryAdd(message: Uint8Array): boolean {
    const need = 4 + message.length;
    if (!this.current || this.used + need > this.current.length) return false;
    this.current.writeUInt32BE(message.length, this.used);
    this.current.set(message, this.used + 4);
    this.used += need;
    this.count++;
    this.total += message.length;
    return true;
  }

  /** Every message in arrival order; the buffer is empty afterwards. */
  async *drain(): AsyncGenerator<Uint8Array> {
    for await (const chunk of this.drainChunks()) yield* chunk;
  }

  /**
   * The messages in arrival order, a chunk (up to 1 MiB of them) at a time, each chunk read
   * synchronously: one await per chunk instead of one per message, which a million-row
   * transaction would otherwise pay a million times. A chunk must be consumed before the next
   * one is asked for; the buffer is empty afterwards.
   */
  async *drainChunks(): AsyncGenerator<Iterable<Uint8Array>> {
    try {
      await this.seal();
      if (this.file) {
        yield* this.readBack(this.file);
        return;
      }
      const chunks = this.chunks;
      this.chunks = [];
      this.memoryBytes = 0;
      for (let i = 0; i < chunks.length; i++) {
        yield records(chunks[i]!);
        chunks[i] = EMPTY; // let each chunk go as soon as it is consumed
      }
    } finally {
      await this.discard();
    }
  }

  /** Forgets everything and removes the spill file. */
  async discard(): Promise<void> {
    this.chunks = [];
    this.memoryBytes = 0;
    this.current = null;
    this.used = 0;
    this.total = 0;
    this.count = 0;
    this.key = null;
    this.frames = 0;
    const file = this.file;
    const path = this.path;
    this.file = null;
    this.path = null;
    if (file) await file.close().catch(() => undefined);
    if (path) await rm(path, { force: true });
  }

  /** Closes the current chunk: kept in memory, or written when spilled / over the threshold. */
  private async seal(): Promise<void> {
    if (!this.current || this.used === 0) return;
    const chunk = this.current.subarray(0, this.used);
    this.current = null;
    this.used = 0;
    if (this.file) {
      await this.writeFrame(chunk);
      return;
    }
    this.chunks.push(chunk);
    this.memoryBytes += chunk.length;
    if (this.memoryBytes > this.options.spillThresholdBytes) await this.spill();
  }

  private async spill(): Promise<void> {
    await mkdir(this.options.spillDir, { recursive: true, mode: 0o700 });
    this.path = join(this.options.spillDir, `tx-${randomUUID()}.spill`);
    try {
      this.file = await open(this.path, 'wx+', 0o600);
    } catch (err) {
      throw new ChartlogError('storage', `cannot create a spill file in ${this.options.spillDir}`, {
        cause: err,
        hint: 'give chartlog a writable spill directory with room for the largest transaction',
      });
    }
    this.key = randomBytes(32);
    const held = this.chunks;
    this.chunks = [];
    this.memoryBytes = 0;
    for (const c of held) await this.writeFrame(c);
  }

  /** One encrypted frame: [u32 length][16-byte tag][ciphertext], nonce = frame number. */
  private async writeFrame(plain: Buffer): Promise<void> {
    const cipher = createCipheriv('aes-256-gcm', this.key!, nonce(this.frames++));
    // GCM is a stream mode: update() returns every byte and final() none, so no concatenation
    // (a second copy of each chunk, garbage that V8 lets pile up before it collects).
    const body = cipher.update(plain);
    const rest = cipher.final();
    const head = Buffer.allocUnsafe(20);
    head.writeUInt32BE(body.length + rest.length, 0);
    cipher.getAuthTag().copy(head, 4);
    await writeAll(this.file!, head);
    await writeAll(this.file!, body);
    if (rest.length > 0) await writeAll(this.file!, rest);
  }

  private async *readBack(file: FileHandle): AsyncGenerator<Iterable<Uint8Array>> {
    const key = this.key!;
    let offset = 0;
    // One buffer for every frame's header and ciphertext: the plaintext is a new buffer each
    // time (what the caller's records point into), the ciphertext is dead once deciphered. A
    // million-row transaction is hundreds of 1 MiB frames; fresh buffers for each were garbage
    // V8 let pile up (it collects external memory only every 64 MiB or so).
    const head = Buffer.allocUnsafe(20);
    let body = Buffer.allocUnsafe(CHUNK_BYTES + 64);
    for (let frame = 0; frame < this.frames; frame++) {
      await readExactly(file, offset, head, 20);
      const length = head.readUInt32BE(0);
      if (length > body.length) body = Buffer.allocUnsafe(length);
      await readExactly(file, offset + 20, body, length);
      offset += 20 + length;
      const decipher = createDecipheriv('aes-256-gcm', key, nonce(frame));
      decipher.setAuthTag(head.subarray(4, 20));
      const plain = decipher.update(body.subarray(0, length));
      const rest = decipher.final();
      yield records(rest.length === 0 ? plain : Buffer.concat([plain, rest]));
    }
  }
}

const EMPTY = Buffer.alloc(0);

function* records(chunk: Buffer): Generator<Uint8Array> {
  let p = 0;
  while (p < chunk.length) {
    const n = chunk.readUInt32BE(p);
    yield chunk.subarray(p + 4, p + 4 + n);
    p += 4 + n;
  }
}

function nonce(n: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(n, 8);
  return iv;
}

async function writeAll(file: FileHandle, data: Buffer): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done);
    done += bytesWritten;
  }
}

async function readExactly(file: FileHandle, position: number, out: Buffer, length: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(out, done, length - done, position + done);
    if (bytesRead === 0) throw new ChartlogError('storage', 'spill file ended early');
    done += bytesRead;
  }
}
