import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ChartlogError } from '../core/errors.js';
import { SYNC_BYTES } from '../archive/avro-container.js';

/**
 * Where the segments of one hour closing are built (hour-closer.ts): a segment's name, and so its
 * container's sync marker, is known only once its last record is, and nothing is written to the
 * store before the table-hour's stream ended well. So the blocks wait here — in memory while all
 * the segments being built fit `budgetBytes` together, past it in files of a private directory
 * (mode 0600, removed by `close`). They hold what the store will hold: records as stored, PHI
 * sealed.
 */
export class SegmentSpools {
  /** Block bytes held in memory by all spools. */
  held = 0;
  /** Spools that went to disk (for tests and the log). */
  spilled = 0;
  private dir: string | null = null;
  private files = 0;

  constructor(
    readonly budgetBytes: number,
    private readonly parentDir?: string,
  ) {}

  /** A spool for one segment, starting with its container header (up to the sync marker). */
  spool(header: Buffer): SegmentSpool {
    return new SegmentSpool(this, header);
  }

  /** A new file in the private directory. */
  async file(): Promise<string> {
    this.dir ??= await mkdtemp(join(this.parentDir ?? tmpdir(), 'chartlog-hour-spill-'));
    return join(this.dir, `${String(this.files++).padStart(6, '0')}.segment`);
  }

  /** The segments built so far were written: their memory no longer counts. */
  released(): void {
    this.held = 0;
  }

  /** Removes every spool file. */
  async close(): Promise<void> {
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}

/** One segment's container: its header and blocks, each block followed by the sync marker once it is known. */
export class SegmentSpool {
  private frames: Buffer[] = [];
  private readonly lengths: number[] = [];
  private file: FileHandle | null = null;
  private path: string | null = null;
  /** Bytes of the container once finished. */
  private size: number;

  constructor(
    private readonly spools: SegmentSpools,
    private readonly header: Buffer,
  ) {
    this.size = header.length + SYNC_BYTES;
  }

  /** Appends a block (count, size, data: `containerBlock`); past the shared budget, to disk. */
  async add(frame: Buffer): Promise<void> {
    this.lengths.push(frame.length);
    this.size += frame.length + SYNC_BYTES;
    if (!this.path && this.spools.held + frame.length > this.spools.budgetBytes) await this.toDisk();
    if (this.file) {
      await this.file.write(frame);
      return;
    }
    this.frames.push(frame);
    this.spools.held += frame.length;
  }

  private async toDisk(): Promise<void> {
    this.path = await this.spools.file();
    this.file = await open(this.path, 'wx', 0o600);
    for (const f of this.frames) await this.file.write(f);
    for (const f of this.frames) this.spools.held -= f.length;
    this.frames = [];
    this.spools.spilled++;
  }

  /** Closes the file (when on disk); the container's bytes and their sha256 with this sync marker. */
  async finish(sync: Buffer): Promise<{ bytes: number; sha256: string; body: () => Uint8Array | Readable }> {
    if (this.file) {
      await this.file.close();
      this.file = null;
    }
    const marker = Buffer.from(sync);
    if (!this.path) {
      const chunks: Buffer[] = [this.header, marker];
      for (const f of this.frames) chunks.push(f, marker);
      const body = Buffer.concat(chunks, this.size);
      this.frames = [];
      return { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), body: () => body };
    }
    const hash = createHash('sha256');
    for await (const chunk of this.chunks(marker)) hash.update(chunk);
    return { bytes: this.size, sha256: hash.digest('hex'), body: () => Readable.from(this.chunks(marker)) };
  }

  /** The container from disk: header, marker, then each block and the marker. */
  private async *chunks(marker: Buffer): AsyncGenerator<Buffer> {
    yield this.header;
    yield marker;
    const f = await open(this.path!, 'r');
    try {
      for (const n of this.lengths) {
        const block = Buffer.allocUnsafe(n);
        const { bytesRead } = await f.read(block, 0, n, null);
        if (bytesRead !== n) throw new ChartlogError('internal', `segment spool ${this.path} was cut while the hour closed`, { hint: 'keep other processes away from the spill directory; the hour is closed again at the next start' });
        yield block;
        yield marker;
      }
    } finally {
      await f.close();
    }
  }
}
