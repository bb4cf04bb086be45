import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { deflateRaw, inflateRaw, inflateRawSync } from 'node:zlib';
import { ChartlogError } from '../core/errors.js';

/**
 * Avro object container files (the Avro spec's "Object Container Files"), written from record
 * bodies that are already Avro-encoded — the body of a single-object message is exactly a
 * record's binary encoding — so the compactor never decodes and re-encodes to write a part.
 * Any Avro reader (avsc, Java, Python, avro-tools) reads the result.
 *
 * Layout: 'Obj' 0x01, metadata map<bytes> (avro.schema, avro.codec, chartlog.*), 16-byte sync
 * marker, then blocks: record count (long), byte size (long), data, sync marker.
 */

// zlib's asynchronous deflate runs on libuv's thread pool: compression (≈ 12 µs a row at level 6,
// as much as encoding and sealing together) moves off the event loop onto the other cores.
const deflateRawAsync = promisify(deflateRaw);
const inflateRawAsync = promisify(inflateRaw);

const MAGIC = Buffer.from([0x4f, 0x62, 0x6a, 0x01]);

/**
 * The most one block may inflate to. chartlog writes blocks of at most BLOCK_RECORDS records (a
 * few MiB); a block past this bound is a crafted or damaged object — a decompression bomb that
 * would take every byte of memory — and is refused before it is inflated further.
 */
export const MAX_INFLATED_BLOCK_BYTES = 256 * 1024 * 1024;

/** Records per block chartlog writes (parts, segments, snapshots): keeps a reader's memory small. */
export const BLOCK_RECORDS = 4096;
const SYNC_SIZE = 16;

export type ContainerCodec = 'null' | 'deflate';

export interface ContainerHeader {
  schema: string;
  codec: ContainerCodec;
  /** Other metadata entries (chartlog.* keys), as UTF-8 text. */
  metadata: Record<string, string>;
  sync: Buffer;
}

export interface ContainerBlock {
  count: number;
  /** Decompressed concatenation of `count` record bodies. */
  data: Buffer;
}

/** Writes one container file in memory: header, then one block per `addBlock`. */
export class AvroContainerWriter {
  private readonly chunks: Buffer[] = [];
  private readonly sync: Buffer;
  private readonly codec: ContainerCodec;
  private readonly level: number | undefined;
  private records = 0;

  /** `level`: deflate level 1–9 (zlib's default 6 when absent). */
  constructor(schema: string, options: { codec?: ContainerCodec; level?: number; metadata?: Record<string, string>; sync?: Buffer } = {}) {
    this.codec = options.codec ?? 'deflate';
    this.level = options.level;
    this.sync = options.sync ? Buffer.from(options.sync) : randomBytes(SYNC_SIZE);
    // The sync marker is its own chunk, shared by every block: `resync` can still change it.
    this.chunks.push(containerHeader(schema, { codec: this.codec, ...(options.metadata ? { metadata: options.metadata } : {}) }), this.sync);
  }

  /**
   * Replaces the sync marker in the header and every block written so far (a writer that names
   * the file after its last record learns the name, and so the marker, only at the end).
   */
  resync(sync: Buffer): void {
    if (sync.length !== SYNC_SIZE) throw new ChartlogError('internal', `a sync marker has ${SYNC_SIZE} bytes, not ${sync.length}`);
    sync.copy(this.sync);
  }

  /**
   * Appends a block holding these record bodies, in order. Empty lists write nothing. Await
   * each call before the next: blocks are appended in call order.
   */
  async addBlock(bodies: readonly Uint8Array[]): Promise<void> {
    if (bodies.length === 0) return;
    const raw = Buffer.concat(bodies.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
    // One output chunk the size of the input: zlib's default 16 KiB chunks called back onto this
    // thread once per 16 KiB of output (≈ 3% of the pipeline's main-thread time); same bytes.
    const chunkSize = Math.max(64 * 1024, raw.length);
    const payload = this.codec === 'deflate' ? await deflateRawAsync(raw, this.level === undefined ? { chunkSize } : { level: this.level, chunkSize }) : raw;
    this.chunks.push(encodeLong(bodies.length), encodeLong(payload.length), payload, this.sync);
    this.records += bodies.length;
  }

  get recordCount(): number {
    return this.records;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /**
   * The file as the pieces written so far, uncopied (their concatenation is `toBuffer()`), for
   * a writer that places the file inside a larger one and copies every byte only once there.
   * The pieces belong to this writer: no `addBlock` or `resync` after.
   */
  toChunks(): { readonly chunks: readonly Buffer[]; readonly length: number } {
    let length = 0;
    for (const c of this.chunks) length += c.length;
    return { chunks: this.chunks, length };
  }
}

/**
 * A container file's header up to its sync marker: what AvroContainerWriter writes first. With
 * `containerBlock`, for writers that keep the blocks elsewhere (on disk) until the marker is known:
 * the file is the header, the marker, then each block followed by the marker.
 */
export function containerHeader(schema: string, options: { codec?: ContainerCodec; metadata?: Record<string, string> } = {}): Buffer {
  const entries: [string, Buffer][] = [
    ['avro.schema', Buffer.from(schema, 'utf8')],
    ['avro.codec', Buffer.from(options.codec ?? 'deflate', 'utf8')],
    ...Object.entries(options.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'utf8')] as [string, Buffer]),
  ];
  const parts: Buffer[] = [MAGIC, encodeLong(entries.length)];
  for (const [k, v] of entries) parts.push(encodeBytes(Buffer.from(k, 'utf8')), encodeBytes(v));
  parts.push(encodeLong(0));
  return Buffer.concat(parts);
}

/** One block as AvroContainerWriter.addBlock writes it, without the sync marker after it: count, byte size, data. */
export async function containerBlock(bodies: readonly Uint8Array[], options: { codec?: ContainerCodec; level?: number } = {}): Promise<Buffer> {
  const raw = Buffer.concat(bodies.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
  const payload = (options.codec ?? 'deflate') === 'deflate' ? await deflateRawAsync(raw, options.level === undefined ? {} : { level: options.level }) : raw;
  return Buffer.concat([encodeLong(bodies.length), encodeLong(payload.length), payload]);
}

/** Bytes of a sync marker. */
export const SYNC_BYTES = SYNC_SIZE;

/** Reads a container file's header and blocks. Throws ChartlogError('integrity') on damage. */
export function readAvroContainer(file: Uint8Array, name = 'container', options: { maxBlockBytes?: number } = {}): { header: ContainerHeader; blocks: ContainerBlock[] } {
  const { header, blocks } = openAvroContainer(file, name, options);
  return { header, blocks: [...blocks] };
}

/**
 * `readAvroContainer` with its blocks inflated one at a time, as they are iterated: a reader
 * that streams (restore) holds one inflated block of a large snapshot part, not all of them.
 * `blocksAhead` gives the same blocks, inflated off the event loop (libuv's thread pool) one block
 * ahead of the reader, so inflating overlaps using the block before: restore's base snapshot read
 * (inflating was 7 % of the main thread's time while it streamed rows into COPY). Read one of the
 * two, once.
 */
export function openAvroContainer(
  file: Uint8Array,
  name = 'container',
  options: { maxBlockBytes?: number } = {},
): { header: ContainerHeader; blocks: Iterable<ContainerBlock>; blocksAhead: () => AsyncIterable<ContainerBlock> } {
  const maxBlockBytes = options.maxBlockBytes ?? MAX_INFLATED_BLOCK_BYTES;
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const r = new Reader(buf, name);
  if (buf.length < MAGIC.length + SYNC_SIZE || !buf.subarray(0, 4).equals(MAGIC)) {
    throw new ChartlogError('integrity', `${name} is not an Avro container file (bad magic)`);
  }
  r.pos = 4;
  const meta: Record<string, Buffer> = {};
  for (let n = r.long(); n !== 0; n = r.long()) {
    if (n < 0) {
      n = -n;
      r.long(); // block byte size, unused
    }
    for (let i = 0; i < n; i++) meta[r.bytes().toString('utf8')] = r.bytes();
  }
  const sync = Buffer.from(r.take(SYNC_SIZE));
  const schema = meta['avro.schema']?.toString('utf8');
  const codec = (meta['avro.codec']?.toString('utf8') ?? 'null') as ContainerCodec;
  if (!schema) throw new ChartlogError('integrity', `${name} has no avro.schema`);
  if (codec !== 'null' && codec !== 'deflate') throw new ChartlogError('integrity', `${name} uses unsupported codec ${String(codec)}`);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (!k.startsWith('avro.')) metadata[k] = v.toString('utf8');

  function* stored(): Generator<StoredBlock> {
    while (r.pos < buf.length) {
      const count = r.long();
      const size = r.long();
      if (count < 0 || size < 0) throw new ChartlogError('integrity', `${name}: negative block count or size at byte ${r.pos}`);
      const payload = r.take(size);
      if (!r.take(SYNC_SIZE).equals(sync)) throw new ChartlogError('integrity', `${name}: sync marker mismatch at byte ${r.pos - SYNC_SIZE}`);
      yield { count, payload };
    }
  }
  function* blocks(): Generator<ContainerBlock> {
    for (const b of stored()) {
      let data: Buffer;
      try {
        // zlib stops at the bound instead of growing its output without end.
        data = codec === 'deflate' ? inflateRawSync(b.payload, { maxOutputLength: maxBlockBytes }) : Buffer.from(b.payload);
      } catch (err) {
        throw inflateRefused(err, name, b.payload.length, maxBlockBytes);
      }
      yield { count: b.count, data };
    }
  }
  /** The same blocks, each inflated on libuv's thread pool while the block before it is used. */
  async function* ahead(): AsyncGenerator<ContainerBlock> {
    const inflate = async (b: StoredBlock): Promise<ContainerBlock> => {
      if (codec !== 'deflate') return { count: b.count, data: Buffer.from(b.payload) };
      try {
        // One output chunk for a whole block (zlib's default 16 KiB chunks each come back to this thread).
        const chunkSize = Math.min(maxBlockBytes, Math.max(64 * 1024, b.payload.length * INFLATE_CHUNK_RATIO));
        return { count: b.count, data: await inflateRawAsync(b.payload, { maxOutputLength: maxBlockBytes, chunkSize }) };
      } catch (err) {
        throw inflateRefused(err, name, b.payload.length, maxBlockBytes);
      }
    };
    let next: Promise<ContainerBlock> | null = null;
    for (const b of stored()) {
      const started = inflate(b);
      started.catch(() => undefined); // awaited after the block before it: not an unhandled rejection meanwhile
      if (next) yield await next;
      next = started;
    }
    if (next) yield await next;
  }
  return { header: { schema, codec, metadata, sync }, blocks: blocks(), blocksAhead: ahead };
}

/** A block as stored: its record count and its (deflated) bytes, a view of the file. */
interface StoredBlock {
  count: number;
  payload: Buffer;
}

/**
 * The output chunk of an asynchronous inflate, as a multiple of the deflated block: a base
 * snapshot's blocks inflate about 2× (their sealed PHI does not compress; 1M-row benchmark table),
 * so one chunk holds a block; one that inflates further takes more chunks, joined once.
 */
const INFLATE_CHUNK_RATIO = 3;

/** A block that would not inflate, or inflates past the bound: 'integrity', naming the object. */
function inflateRefused(err: unknown, name: string, size: number, maxBlockBytes: number): ChartlogError {
  if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
    return new ChartlogError('integrity', `${name}: a block of ${size} bytes inflates past ${maxBlockBytes} bytes, the bound per block; refusing it (a crafted or damaged object, not one chartlog wrote)`, {
      cause: err,
      hint: 'run `chartlog verify` to list damaged objects, and restore them from a copy of the archive',
    });
  }
  return new ChartlogError('integrity', `${name}: a block does not decompress`, { cause: err });
}

class Reader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly name: string,
  ) {}

  long(): number {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new ChartlogError('integrity', `${this.name} is truncated`);
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7n;
      if (shift > 63n) throw new ChartlogError('integrity', `${this.name}: malformed varint`);
    }
    const n = (result >> 1n) ^ -(result & 1n);
    if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new ChartlogError('integrity', `${this.name}: length out of range`);
    }
    return Number(n);
  }

  bytes(): Buffer {
    const len = this.long();
    if (len < 0) throw new ChartlogError('integrity', `${this.name}: negative length`);
    return this.take(len);
  }

  take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new ChartlogError('integrity', `${this.name} is truncated`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

/** Avro long: zig-zag, then base-128 varint. */
export function encodeLong(n: number): Buffer {
  let z = (BigInt(n) << 1n) ^ (BigInt(n) >> 63n);
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return Buffer.from(out);
}

function encodeBytes(b: Buffer): Buffer {
  return Buffer.concat([encodeLong(b.length), b]);
}
