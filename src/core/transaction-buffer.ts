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
/** Bytes enciphered and written at a time (writeFrame). */
const SLICE_BYTES = 64 * 1024;

export class TransactionBuffer {
  private chunks: Buffer[] = [];
  private memoryBytes = 0;
  private current: Buffer | null = null;
  /** A written chunk's buffer, for the next chunk (spilled only). */
  private spare: Buffer | null = null;
  /** Where the next frame starts in the spill file. */
  private fileBytes = 0;
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
    const need = 4 + message.length;
    if (!this.current || this.used + need > this.current.length) {
      await this.seal();
      // Once spilled, a chunk is dead as soon as it is written: the next one reuses it rather
      // than leaving a megabyte of garbage per chunk for a full collection to find.
      const spare = this.spare;
      this.spare = null;
      this.current = spare && spare.length >= need ? spare : Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, need));
      this.used = 0;
    }
    this.current.writeUInt32BE(message.length, this.used);
    this.current.set(message, this.used + 4);
    this.used += need;
    this.count++;
    this.total += message.length;
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
    this.spare = null;
    this.fileBytes = 0;
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
    const whole = this.current;
    const chunk = whole.subarray(0, this.used);
    this.current = null;
    this.used = 0;
    if (this.file) {
      await this.writeFrame(chunk);
      this.spare = whole;
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

  /**
   * One encrypted frame: [u32 length][16-byte tag][ciphertext], nonce = frame number. GCM is a
   * stream mode, so the chunk is enciphered and written a slice at a time: each slice's
   * ciphertext is garbage the next scavenge takes, where a whole chunk's lived long enough to be
   * promoted and wait for a full collection. The head, which needs the tag, goes in last.
   */
  private async writeFrame(plain: Buffer): Promise<void> {
    const cipher = createCipheriv('aes-256-gcm', this.key!, nonce(this.frames++));
    const file = this.file!;
    const at = this.fileBytes;
    let end = at + 20;
    for (let i = 0; i < plain.length; i += SLICE_BYTES) {
      const body = cipher.update(plain.subarray(i, Math.min(plain.length, i + SLICE_BYTES)));
      await writeAllAt(file, body, end);
      end += body.length;
    }
    const rest = cipher.final();
    if (rest.length > 0) await writeAllAt(file, rest, end);
    end += rest.length;
    const head = Buffer.allocUnsafe(20);
    head.writeUInt32BE(end - at - 20, 0);
    cipher.getAuthTag().copy(head, 4);
    await writeAllAt(file, head, at);
    this.fileBytes = end;
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

async function writeAllAt(file: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done, position + done);
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
