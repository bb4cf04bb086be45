import { ChartlogError } from '../core/errors.js';
import { UNCHANGED, type CellValue } from '../core/table-schema.js';

/**
 * Exact, self-describing bytes for one cell value, sealed as the plaintext of a PHI value and
 * used for primary-key values in the AAD. Every JS form of the value model has its own tag, so
 * a bigint never comes back as a number nor a string as bytes:
 *
 *   0 null | 1 false | 2 true | 3 number (float64 LE, NaN/±Infinity/-0 kept)
 *   4 bigint (decimal text) | 5 string (UTF-8) | 6 bytes | 7 array (count, then elements)
 *   variable parts are prefixed by their length as uint32 LE.
 */

const TAG_NULL = 0;
const TAG_FALSE = 1;
const TAG_TRUE = 2;
const TAG_NUMBER = 3;
const TAG_BIGINT = 4;
const TAG_STRING = 5;
const TAG_BYTES = 6;
const TAG_ARRAY = 7;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keep a leading U+FEFF: it is data

class Writer {
  private buf = new Uint8Array(64);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.length++] = b;
  }

  uint32(n: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, n, true);
    this.length += 4;
  }

  float64(n: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, n, true);
    this.length += 8;
  }

  bytes(b: Uint8Array): void {
    this.uint32(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function write(w: Writer, v: CellValue): void {
  if (v === null) w.byte(TAG_NULL);
  else if (v === true) w.byte(TAG_TRUE);
  else if (v === false) w.byte(TAG_FALSE);
  else if (typeof v === 'number') {
    w.byte(TAG_NUMBER);
    w.float64(v);
  } else if (typeof v === 'bigint') {
    w.byte(TAG_BIGINT);
    w.bytes(encoder.encode(v.toString()));
  } else if (typeof v === 'string') {
    if (!isWellFormed(v)) throw new ChartlogError('internal', 'a string value is not well-formed Unicode (lone surrogate)');
    w.byte(TAG_STRING);
    w.bytes(encoder.encode(v));
  } else if (v instanceof Uint8Array) {
    w.byte(TAG_BYTES);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    w.byte(TAG_ARRAY);
    w.uint32(v.length);
    for (const x of v) write(w, x);
  } else if (v === UNCHANGED) {
    throw new ChartlogError('internal', 'the UNCHANGED marker is not a value and cannot be serialised');
  } else {
    throw new ChartlogError('internal', `cannot serialise a value of JS type ${typeof v}`);
  }
}

function putUint32LE(out: Uint8Array, at: number, n: number): void {
  out[at] = n & 0xff;
  out[at + 1] = (n >>> 8) & 0xff;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = n >>> 24;
}

function isWellFormed(v: string): boolean {
  return (v as unknown as { isWellFormed(): boolean }).isWellFormed();
}

export function serializeCell(v: CellValue): Uint8Array {
  // Fast path for the common top-level forms (one allocation); the Writer handles everything (same bytes).
  if ((typeof v === 'string' && isWellFormed(v)) || typeof v === 'bigint') {
    const t = serializeCellTransient(v);
    const out = new Uint8Array(t.length);
    out.set(t);
    return out;
  }
  const w = new Writer();
  write(w, v);
  return w.result();
}

let scratch = Buffer.alloc(4096);
/** Views of `scratch` by length, each made once: a fresh view per value was garbage on the sealing path. */
let scratchViews: (Uint8Array | undefined)[] = [];

/**
 * `serializeCell` without an allocation for strings and bigints: the bytes are written to a
 * buffer that every call reuses, so the returned view is valid only until the next call. For the
 * sealer, which encrypts it at once.
 */
export function serializeCellTransient(v: CellValue): Uint8Array {
  let text: string;
  let tag: number;
  if (typeof v === 'string' && isWellFormed(v)) {
    text = v;
    tag = TAG_STRING;
  } else if (typeof v === 'bigint') {
    text = v.toString();
    tag = TAG_BIGINT;
  } else if (typeof v === 'number') {
    // An integer key (the common primary key) goes into every AAD a row's PHI is opened with:
    // written here, not through a Writer and a copy per value (the same bytes: tag, float64 LE).
    scratch[0] = TAG_NUMBER;
    scratch.writeDoubleLE(v, 1);
    return (scratchViews[9] ??= new Uint8Array(scratch.buffer, scratch.byteOffset, 9));
  } else {
    return serializeCell(v);
  }
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  if (5 + 3 * text.length > scratch.length) {
    scratch = Buffer.alloc(Math.max(2 * scratch.length, 5 + 3 * text.length));
    scratchViews = [];
  }
  const n = writeUtf8(scratch, text, 5);
  scratch[0] = tag;
  putUint32LE(scratch, 1, n);
  return (scratchViews[5 + n] ??= new Uint8Array(scratch.buffer, scratch.byteOffset, 5 + n));
}

/**
 * `buf.write(text, at, 'utf8')`: ASCII written here byte for byte (short values, the common
 * case, cost less so than through the native call), anything else by Buffer.
 */
function writeUtf8(buf: Buffer, text: string, at: number): number {
  const n = text.length;
  if (n <= 64) {
    let i = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c > 0x7f) break;
      buf[at + i] = c;
    }
    if (i === n) return n;
  }
  return buf.write(text, at, 'utf8');
}

/** Inverse of serializeCell. Throws ChartlogError('integrity') on malformed input. */
export function deserializeCell(bytes: Uint8Array): CellValue {
  // Fast path for a top-level string or bigint filling the whole input (what the general path reads the same way).
  const tag = bytes[0];
  if ((tag === TAG_STRING || tag === TAG_BIGINT) && bytes.length >= 5) {
    const n = (bytes[1]! | (bytes[2]! << 8) | (bytes[3]! << 16)) + bytes[4]! * 0x1000000;
    if (n === bytes.length - 5) {
      const text = decoder.decode(bytes.subarray(5));
      return tag === TAG_STRING ? text : BigInt(text);
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n: number): void => {
    if (pos + n > bytes.length) throw malformed();
  };
  const uint32 = (): number => {
    need(4);
    const n = view.getUint32(pos, true);
    pos += 4;
    return n;
  };
  const chunk = (): Uint8Array => {
    const n = uint32();
    need(n);
    // A plain Uint8Array copy even when `bytes` is a Buffer (whose slice is a view).
    const out = new Uint8Array(n);
    out.set(bytes.subarray(pos, pos + n));
    pos += n;
    return out;
  };
  const read = (depth: number): CellValue => {
    if (depth > 64) throw malformed();
    need(1);
    const tag = bytes[pos++];
    switch (tag) {
      case TAG_NULL:
        return null;
      case TAG_FALSE:
        return false;
      case TAG_TRUE:
        return true;
      case TAG_NUMBER: {
        need(8);
        const n = view.getFloat64(pos, true);
        pos += 8;
        return n;
      }
      case TAG_BIGINT:
        return BigInt(decoder.decode(chunk()));
      case TAG_STRING:
        return decoder.decode(chunk());
      case TAG_BYTES:
        return chunk();
      case TAG_ARRAY: {
        const n = uint32();
        const out: CellValue[] = [];
        for (let i = 0; i < n; i++) out.push(read(depth + 1));
        return out;
      }
      default:
        throw malformed();
    }
  };
  const value = read(0);
  if (pos !== bytes.length) throw malformed();
  return value;
}

function malformed(): ChartlogError {
  return new ChartlogError('integrity', 'an opened PHI value is malformed', {
    hint: 'the archive was written by an incompatible chartlog version or is damaged; run `chartlog verify`',
  });
}

/** Sets an own property even for a column named "__proto__", which plain assignment would not. */
export function setCell(row: Record<string, CellValue>, name: string, value: CellValue): void {
  if (name === '__proto__') Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
  else row[name] = value;
}
