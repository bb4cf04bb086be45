/**
 * Avro's binary encoding of the primitives the codec's schemas use, written to and read from one
 * buffer directly: the codec's hot path. Byte for byte what avsc writes for the same values
 * (test/unit/codec/direct-avro.test.ts re-encodes every message with avsc and compares), without
 * avsc's wrapper object per union value, buffer pool copies and 8-byte buffer per long.
 *
 *   long, int      zigzag varint (ints are longs on the wire)
 *   boolean        one byte, 0 or 1
 *   double         8 bytes little-endian
 *   string, bytes  long length, then UTF-8 / the bytes
 *   union          long branch index, then the branch
 *   enum           int symbol index
 *   array          blocks of (long count, items), ended by a 0 count; one block when written
 */

/** A value this writer cannot write exactly as avsc would; the caller takes avsc's path instead. */
export class NotDirect extends Error {}

const TWO_POW_51 = 2n ** 51n;
const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;

export class AvroWriter {
  buf: Buffer;
  pos = 0;

  constructor(size = 8192) {
    this.buf = Buffer.alloc(size);
  }

  reset(): void {
    this.pos = 0;
  }

  /** Room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(2 * this.buf.length, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A safe integer as a zigzag varint (union indexes, lengths, ints, longs from numbers). */
  long(n: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    if ((n | 0) === n && n >= -1073741824 && n < 1073741824) {
      let m = n >= 0 ? n << 1 : (~n << 1) | 1;
      while (m > 0x7f) {
        buf[pos++] = (m & 0x7f) | 0x80;
        m >>>= 7;
      }
      buf[pos++] = m;
    } else {
      if (!Number.isSafeInteger(n) || n >= 2 ** 52 || n < -(2 ** 52)) throw new NotDirect('long out of the exact range');
      // Exact in floating point below 2^53; dividing by 128 only moves the exponent.
      let f = n >= 0 ? n * 2 : -n * 2 - 1;
      while (f >= 128) {
        buf[pos++] = (f & 0x7f) | 0x80;
        f = Math.floor(f / 128);
      }
      buf[pos++] = f;
    }
    this.pos = pos;
  }

  /** A signed 64-bit bigint as a zigzag varint. */
  bigLong(n: bigint): void {
    if (typeof n !== 'bigint') throw new NotDirect('not a bigint');
    if (n >= -TWO_POW_51 && n < TWO_POW_51) {
      this.long(Number(n));
      return;
    }
    if (n < MIN_INT64 || n > MAX_INT64) throw new NotDirect('long out of 64-bit range');
    this.ensure(10);
    let z = n >= 0n ? n << 1n : ((-n) << 1n) - 1n;
    while (z > 0x7fn) {
      this.buf[this.pos++] = Number(z & 0x7fn) | 0x80;
      z >>= 7n;
    }
    this.buf[this.pos++] = Number(z);
  }

  boolean(b: boolean): void {
    if (typeof b !== 'boolean') throw new NotDirect('not a boolean');
    this.ensure(1);
    this.buf[this.pos++] = b ? 1 : 0;
  }

  double(d: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(d, this.pos);
    this.pos += 8;
  }

  /** A well-formed string (avsc writes lone surrogates differently by length: left to it). */
  string(s: string): void {
    if (typeof s !== 'string') throw new NotDirect('not a well-formed string');
    // Up to 3 UTF-8 bytes per UTF-16 unit: below 22 units the length takes one byte.
    if (s.length < 22) {
      this.ensure(1 + 3 * s.length);
      // ASCII (always well-formed) byte for byte: for short strings, Buffer.write's argument
      // handling and native call cost more than the copy.
      const buf = this.buf;
      const at = this.pos + 1;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + i] = c;
      }
      if (i === s.length) {
        buf[this.pos] = i << 1;
        this.pos = at + i;
        return;
      }
    }
    if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) throw new NotDirect('not a well-formed string');
    if (s.length < 22) {
      const n = this.buf.write(s, this.pos + 1, 'utf8');
      this.buf[this.pos] = n << 1;
      this.pos += 1 + n;
      return;
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.long(n);
    this.ensure(n);
    this.buf.write(s, this.pos, n, 'utf8');
    this.pos += n;
  }

  bytes(b: Uint8Array): void {
    this.long(b.length);
    this.raw(b);
  }

  /** Bytes as they are, no length. */
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A copy of what was written. */
  result(): Uint8Array {
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    return out;
  }
}

/** Bytes that are not a valid encoding (truncated, overlong varint, bad index): a damaged message. */
export class AvroDecodeError extends Error {}

/**
 * Buffer's own UTF-8 decoder (what `toString('utf8', start, end)` ends in, with the same U+FFFD
 * replacement), called directly: toString's argument handling cost as much as the decoding of
 * the short strings of a message (every envelope has nine). Not in @types/node, hence the cast.
 */
const bufferUtf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string }).utf8Slice;
/** Undocumented, so a Node without it falls back to the documented (slower) path. */
const utf8Slice: (this: Buffer, start: number, end: number) => string =
  typeof bufferUtf8Slice === 'function' ? bufferUtf8Slice : function (this: Buffer, start: number, end: number) { return this.toString('utf8', start, end); };

export class AvroReader {
  /** A private copy of the input, made at the first `bytes()`: every bytes value is a view of it. */
  private owned: ArrayBuffer | undefined;

  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number = buf.length,
  ) {}

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw new AvroDecodeError('truncated');
  }

  /** A zigzag varint as a safe integer. */
  long(): number {
    const buf = this.buf;
    let pos = this.pos;
    let b: number;
    let n = 0;
    let shift = 0;
    // Up to 28 bits in integer arithmetic.
    do {
      if (pos >= this.end) throw new AvroDecodeError('truncated');
      b = buf[pos++]!;
      n |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80 && shift < 28);
    if (!(b & 0x80)) {
      this.pos = pos;
      return (n >>> 1) ^ -(n & 1);
    }
    let f = n >>> 0;
    let scale = 2 ** 28;
    do {
      if (pos >= this.end || scale > 2 ** 63) throw new AvroDecodeError('overlong varint');
      b = buf[pos++]!;
      f += (b & 0x7f) * scale;
      scale *= 128;
    } while (b & 0x80);
    if (f > Number.MAX_SAFE_INTEGER) throw new AvroDecodeError('long beyond 2^53 where a number is expected');
    this.pos = pos;
    return f % 2 ? -(f + 1) / 2 : f / 2;
  }

  /** A zigzag varint as a signed 64-bit bigint. */
  bigLong(): bigint {
    const start = this.pos;
    const buf = this.buf;
    let pos = start;
    let f = 0;
    let scale = 1;
    let b: number;
    do {
      if (pos >= this.end || pos - start >= 10) throw new AvroDecodeError('truncated or overlong varint');
      b = buf[pos++]!;
      f += (b & 0x7f) * scale;
      scale *= 128;
    } while (b & 0x80);
    this.pos = pos;
    // Every partial sum is below the total, so a total within 2^53 is exact.
    if (f <= Number.MAX_SAFE_INTEGER) return BigInt(f % 2 ? -(f + 1) / 2 : f / 2);
    let z = 0n;
    for (let i = pos - 1; i >= start; i--) z = (z << 7n) | BigInt(buf[i]! & 0x7f);
    if (z >= 1n << 64n) throw new AvroDecodeError('long beyond 64 bits');
    return z & 1n ? -((z + 1n) >> 1n) : z >> 1n;
  }

  boolean(): boolean {
    this.need(1);
    return this.buf[this.pos++] !== 0;
  }

  double(): number {
    this.need(8);
    const d = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return d;
  }

  /** UTF-8 decoded as avsc does (invalid sequences become U+FFFD). */
  string(): string {
    const n = this.long();
    this.need(n);
    const s = utf8Slice.call(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  /**
   * Bytes as a plain Uint8Array (the value model's bytes) that does not share memory with the
   * input: a view of one private copy of the input, so a message's bytes values cost one
   * allocation together rather than one each.
   */
  bytes(): Uint8Array {
    const n = this.long();
    this.need(n);
    if (!this.owned) {
      this.owned = new ArrayBuffer(this.buf.length);
      new Uint8Array(this.owned).set(this.buf);
    }
    const out = new Uint8Array(this.owned, this.pos, n);
    this.pos += n;
    return out;
  }

  /**
   * Bytes as a view into the message, for values used at once and dropped. A plain Uint8Array:
   * Buffer's subarray costs a JS wrapper and a FastBuffer per value (every sealed value read for
   * opening is one).
   */
  bytesView(): Uint8Array {
    const n = this.long();
    this.need(n);
    const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.pos, n);
    this.pos += n;
    return view;
  }

  /** Passes over a string or bytes value without reading it. */
  skipBytes(): void {
    const n = this.long();
    this.need(n);
    this.pos += n;
  }

  /** Passes over a varint of up to 64 bits without making a number of it. */
  skipLong(): void {
    const start = this.pos;
    let pos = start;
    do {
      if (pos >= this.end || pos - start >= 10) throw new AvroDecodeError('truncated or overlong varint');
    } while (this.buf[pos++]! & 0x80);
    this.pos = pos;
  }

  /** The count of the next array block (avsc's negative counts carry a byte size, skipped). */
  blockCount(): number {
    const n = this.long();
    if (n >= 0) return n;
    this.long();
    return -n;
  }
}
