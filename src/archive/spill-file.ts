import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { ChartlogError } from '../core/errors.js';

/** Plaintext bytes gathered before a chunk is sealed and written. */
const CHUNK_BYTES = 1024 * 1024;
/** u32 ciphertext length, u32 chunk index, 12-byte nonce, 16-byte tag. */
const HEADER_BYTES = 4 + 4 + 12 + 16;

/**
 * The key that seals one restore's spill files (docs/architecture.md §5): 256 random bits made
 * when the restore starts, held only in this process's memory and never written anywhere, so
 * spilled rows (opened PHI among them) are never on disk in clear and are unreadable once the
 * process ends, even if a crash leaves a file behind.
 */
export class SpillKey {
  readonly key = randomBytes(32);
}

/**
 * Writes length-framed records into a spill file, sealed with AES-256-GCM in chunks of about
 * 1 MiB (each with its own random nonce and its index as additional data, so chunks cannot be
 * reordered or cut unnoticed). Mode 0600.
 */
export class SpillWriter {
  private parts: Buffer[] = [];
  private pending = 0;
  private chunk = 0;
  private file: FileHandle | null = null;
  records = 0;
  bytes = 0;

  constructor(
    readonly path: string,
    private readonly key: SpillKey,
    /**
     * Plaintext bytes per sealed chunk: a reader holds one chunk of each file it reads at once,
     * so files read side by side (a sort's runs, as many as rows ÷ budget) take smaller ones.
     */
    private readonly chunkBytes = CHUNK_BYTES,
  ) {}

  async add(record: Uint8Array): Promise<void> {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(record.byteLength);
    this.parts.push(len, Buffer.from(record.buffer, record.byteOffset, record.byteLength));
    this.pending += 4 + record.byteLength;
    this.records++;
    if (this.pending >= this.chunkBytes) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pending === 0) return;
    this.file ??= await open(this.path, 'wx', 0o600);
    const plain = Buffer.concat(this.parts, this.pending);
    this.parts = [];
    this.pending = 0;
    const nonce = randomBytes(12);
    const index = Buffer.allocUnsafe(4);
    index.writeUInt32LE(this.chunk++);
    const cipher = createCipheriv('aes-256-gcm', this.key.key, nonce);
    cipher.setAAD(index);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    head.writeUInt32LE(body.length, 0);
    index.copy(head, 4);
    nonce.copy(head, 8);
    cipher.getAuthTag().copy(head, 20);
    await this.file.write(head);
    await this.file.write(body);
    this.bytes += HEADER_BYTES + body.length;
  }

  /** Closes the file without writing what is pending (a merge stopped part way; its directory is removed). */
  async abandon(): Promise<void> {
    this.parts = [];
    this.pending = 0;
    await this.file?.close();
    this.file = null;
  }

  /** Writes what is left and closes the file; the file exists afterwards (empty when no record). */
  async close(): Promise<void> {
    await this.flush();
    this.file ??= await open(this.path, 'wx', 0o600);
    await this.file.close();
    this.file = null;
  }
}

/** The records of a spill file, in the order written; refuses a chunk that does not open. */
export async function* readSpill(path: string, key: SpillKey): AsyncGenerator<Buffer[]> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    for (let chunk = 0; ; chunk++) {
      const { bytesRead } = await file.read(head, 0, HEADER_BYTES, null);
      if (bytesRead === 0) return;
      if (bytesRead !== HEADER_BYTES || head.readUInt32LE(4) !== chunk) throw damaged(path);
      const body = Buffer.allocUnsafe(head.readUInt32LE(0));
      const got = await file.read(body, 0, body.length, null);
      if (got.bytesRead !== body.length) throw damaged(path);
      const decipher = createDecipheriv('aes-256-gcm', key.key, head.subarray(8, 20));
      decipher.setAAD(head.subarray(4, 8));
      decipher.setAuthTag(head.subarray(20, 36));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(body), decipher.final()]);
      } catch {
        throw damaged(path);
      }
      const out: Buffer[] = [];
      for (let at = 0; at < plain.length; ) {
        const n = plain.readUInt32LE(at);
        out.push(plain.subarray(at + 4, at + 4 + n));
        at += 4 + n;
      }
      yield out;
    }
  } finally {
    await file.close();
  }
}

function damaged(path: string): ChartlogError {
  return new ChartlogError('internal', `restore spill file ${path} was changed or cut while the restore ran`, {
    hint: 'run the restore again; keep other processes away from its spill directory',
  });
}
