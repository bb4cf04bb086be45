import type { ColumnSchema, Row } from '../../core/table-schema.js';
import { copyEscape, pgText } from './postgres-text.js';
import type { SourceEngine } from './restore-target.js';

const HEX = Buffer.from('0123456789abcdef', 'latin1');

/**
 * COPY text format written straight into bytes, a chunk at a time. Restore's rows used to be
 * joined into one string per chunk (a rope of every value and tab), escaped with a regular
 * expression per value and encoded again by Buffer.from: each step was garbage per value at
 * millions of rows. Here ASCII text is copied and escaped byte by byte (most values), other
 * text escaped as `copyEscape` does and encoded in place, and bytea's hex form is written from
 * its bytes. The bytes are the same as Buffer.from(the old string) (test/unit/restore/copy-text-buffer.test.ts).
 */
export class CopyTextBuffer {
  private buf: Buffer;
  private pos = 0;

  /** `chunkBytes`: about the size of each chunk taken; room for twice that, so a row never grows the buffer. */
  constructor(private readonly chunkBytes: number) {
    this.buf = Buffer.allocUnsafe(2 * chunkBytes);
  }

  /** Bytes written since the last `take`. */
  get length(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** One byte (a tab between fields, a newline after a row). */
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** SQL NULL: `\N`. */
  nullValue(): void {
    this.ensure(2);
    this.buf[this.pos++] = 0x5c;
    this.buf[this.pos++] = 0x4e;
  }

  /** Any text, escaped for COPY (backslash, newline, carriage return, tab). */
  text(s: string): void {
    const n = s.length;
    this.ensure(2 * n);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.pos = pos;
        this.encoded(copyEscape(s.slice(i)));
        return;
      }
      if (c === 0x5c || c === 0x0a || c === 0x0d || c === 0x09) {
        buf[pos++] = 0x5c;
        buf[pos++] = c === 0x5c ? 0x5c : c === 0x0a ? 0x6e : c === 0x0d ? 0x72 : 0x74;
      } else buf[pos++] = c;
    }
    this.pos = pos;
  }

  /**
   * Bytes `from`..`to` of `src` as `text` would write them when they are ASCII (the UTF-8 of an
   * ASCII string is the string); false, having written nothing, at the first byte that is not.
   */
  ascii(src: Uint8Array, from: number, to: number): boolean {
    this.ensure(2 * (to - from));
    const buf = this.buf;
    let pos = this.pos;
    for (let i = from; i < to; i++) {
      const c = src[i]!;
      if (c >= 0x80) return false;
      if (c === 0x5c || c === 0x0a || c === 0x0d || c === 0x09) {
        buf[pos++] = 0x5c;
        buf[pos++] = c === 0x5c ? 0x5c : c === 0x0a ? 0x6e : c === 0x0d ? 0x72 : 0x74;
      } else buf[pos++] = c;
    }
    this.pos = pos;
    return true;
  }

  /** Drops what was written after `length` was `at` (a row that turned out to be held back). */
  rewind(at: number): void {
    if (at < 0 || at > this.pos) throw new RangeError('rewind past the written bytes');
    this.pos = at;
  }

  /** Escaped text holding other than ASCII, encoded as UTF-8 (lone surrogates as U+FFFD, as Buffer.from does). */
  private encoded(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }

  /** bytea in hex input form, its backslash escaped for COPY: `\\x…`. */
  bytea(v: Uint8Array): void {
    this.ensure(3 + 2 * v.length);
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = 0x5c;
    buf[pos++] = 0x5c;
    buf[pos++] = 0x78;
    for (let i = 0; i < v.length; i++) {
      const b = v[i]!;
      buf[pos++] = HEX[b >> 4]!;
      buf[pos++] = HEX[b & 15]!;
    }
    this.pos = pos;
  }

  /**
   * The bytes written since the last call, copied out to a buffer of their own (the one returned
   * may still be in flight, or be moved to another thread, while this one is written again).
   * Handing out the working buffer itself and making a new one cost twice the bytes in memory
   * outside the heap, at a chunk each time, where the copy costs one memcpy of the chunk.
   */
  take(): Buffer {
    const out = Buffer.allocUnsafeSlow(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    if (this.buf.length > 2 * this.chunkBytes) this.buf = Buffer.allocUnsafe(2 * this.chunkBytes); // grown for a large row
    return out;
  }
}

/**
 * One row as a line of COPY text: its values in `cols` order, tab-separated. Numbers, booleans
 * and bytea hex cannot hold a COPY delimiter; other text is escaped as it is copied. The one
 * form for both the main thread's rows and the COPY threads' blocks (copy-block-worker.ts).
 */
export function writeCopyRow(out: CopyTextBuffer, row: Row, cols: readonly ColumnSchema[], sealed: readonly boolean[], engine: SourceEngine): void {
  for (let i = 0; i < cols.length; i++) {
    const c = cols[i]!;
    if (i > 0) out.byte(0x09);
    const v = row[c.name];
    if (v instanceof Uint8Array) out.bytea(v);
    else {
      const t = pgText(v, c, sealed[i]!, engine);
      if (t === null) out.nullValue();
      else out.text(t);
    }
  }
  out.byte(0x0a);
}
