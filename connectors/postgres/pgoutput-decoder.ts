import { ChartlogError } from '../../src/core/errors.js';
import { UNCHANGED, type Unchanged } from '../../src/core/table-schema.js';
import type { Lsn } from './lsn.js';

/**
 * Decodes pgoutput (protocol version 1) messages from the bytes of one XLogData payload — a
 * pure function of its input. Column values stay as the server's text, untouched: chartlog's
 * own parsers (type-parsers.ts) turn them into values later, never pg's global type parsers,
 * which round numeric arrays to floats, cut microseconds and lose big JSON integers.
 *
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 */

/** One column of a tuple: the server's text, SQL NULL, or an unchanged TOAST value. */
export type RawValue = string | null | Unchanged;
export type RawTuple = readonly RawValue[];

export interface RelationColumn {
  readonly name: string;
  /** Bit 0: the column is part of the replica identity key. */
  readonly flags: number;
  readonly typeOid: number;
  readonly typeMod: number;
}

export type PgMessage =
  | { tag: 'begin'; finalLsn: Lsn; commitTimeUs: bigint; xid: number }
  | { tag: 'commit'; commitLsn: Lsn; endLsn: Lsn; commitTimeUs: bigint }
  | {
      tag: 'relation';
      relationOid: number;
      schema: string;
      table: string;
      replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
      columns: readonly RelationColumn[];
    }
  | { tag: 'type'; typeOid: number; schema: string; name: string }
  | { tag: 'insert'; relationOid: number; newTuple: RawTuple }
  | { tag: 'update'; relationOid: number; key: RawTuple | null; old: RawTuple | null; newTuple: RawTuple }
  | { tag: 'delete'; relationOid: number; key: RawTuple | null; old: RawTuple | null }
  | { tag: 'truncate'; relationOids: readonly number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'message'; transactional: boolean; lsn: Lsn; prefix: string; content: Uint8Array }
  | { tag: 'origin'; originLsn: Lsn; name: string };

/** Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000n;

/**
 * Buffer's UTF-8 decoder without toString's argument and encoding handling (a measurable share
 * of decoding when called per column); toString where a runtime lacks the method.
 */
const nativeUtf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (start: number, end: number) => string }).utf8Slice;
const utf8Slice: (b: Buffer, start: number, end: number) => string = nativeUtf8Slice
  ? (b, start, end) => nativeUtf8Slice.call(b, start, end)
  : (b, start, end) => b.toString('utf8', start, end);

export class Reader {
  p = 0;
  private readonly b: Buffer;
  constructor(bytes: Uint8Array, at = 0) {
    this.p = at;
    // Buffer's own UTF-8 slicing: no view object and no TextDecoder call per column, which
    // were most of the decoding time (7M column values per million 12-column rows).
    this.b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number): void {
    if (this.p + n > this.b.length) throw decodeError('message ends early');
  }
  u8(): number {
    this.need(1);
    return this.b[this.p++]!;
  }
  i16(): number {
    this.need(2);
    const v = (this.b[this.p]! << 8) | this.b[this.p + 1]!;
    this.p += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = (this.b[this.p]! << 24) | (this.b[this.p + 1]! << 16) | (this.b[this.p + 2]! << 8) | this.b[this.p + 3]!;
    this.p += 4;
    return v;
  }
  u32(): number {
    return this.i32() >>> 0;
  }
  u64(): bigint {
    const hi = BigInt(this.u32());
    return (hi << 32n) | BigInt(this.u32());
  }
  i64(): bigint {
    return BigInt.asIntN(64, this.u64());
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const out = new Uint8Array(this.b.subarray(this.p, this.p + n)); // a copy: the input may be reused
    this.p += n;
    return out;
  }
  /** UTF-8 text as the server sent it (invalid sequences become U+FFFD; a leading BOM is kept, it is data). */
  text(n: number): string {
    this.need(n);
    const s = utf8Slice(this.b, this.p, this.p + n);
    this.p += n;
    return s;
  }
  cstring(): string {
    const end = this.b.indexOf(0, this.p);
    if (end < 0) throw decodeError('unterminated string');
    const s = utf8Slice(this.b, this.p, end);
    this.p = end + 1;
    return s;
  }
  timeUs(): bigint {
    return this.i64() + PG_EPOCH_US;
  }
}

function decodeError(what: string): ChartlogError {
  return new ChartlogError('decode', `malformed pgoutput message: ${what}`);
}

function tuple(r: Reader): RawTuple {
  const n = r.i16();
  const out: RawValue[] = new Array<RawValue>(n);
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    switch (kind) {
      case TUPLE_NULL: // n
        out[i] = null;
        break;
      case TUPLE_UNCHANGED: // u: unchanged TOAST value, not sent
        out[i] = UNCHANGED;
        break;
      case TUPLE_TEXT: // t
        out[i] = r.text(r.i32());
        break;
      default:
        // 'b' (binary) only comes when the binary option is requested, which chartlog never does.
        throw unexpectedColumnKind(kind);
    }
  }
  return out;
}

const IDENTITY: Record<number, 'default' | 'nothing' | 'full' | 'index'> = {
  0x64: 'default',
  0x6e: 'nothing',
  0x66: 'full',
  0x69: 'index',
};

/** pgoutput's insert message tag ('I'). */
export const TAG_INSERT = 0x49;

/**
 * The relation OID of an insert message (`buf[0]` is TAG_INSERT), read without decoding it:
 * the connector's fast path for inserts (pgoutput-converter.ts convertInsert) needs it first.
 */
export function insertRelationOid(buf: Uint8Array): number {
  if (buf.length < 6) throw decodeError('message ends early');
  return ((buf[1]! << 24) | (buf[2]! << 16) | (buf[3]! << 8) | buf[4]!) >>> 0;
}

/**
 * The new tuple of an insert message as a reader positioned at its column count, for a caller
 * that turns the columns into a row itself (convertInsert) instead of a RawTuple array first.
 */
export function insertTupleReader(buf: Uint8Array): Reader {
  const r = new Reader(buf, 5);
  if (r.u8() !== 0x4e) throw decodeError('insert without new tuple');
  return r;
}

/** A tuple column's kind byte: NULL, unchanged TOAST value, text. */
export const TUPLE_NULL = 0x6e;
export const TUPLE_UNCHANGED = 0x75;
export const TUPLE_TEXT = 0x74;

/** The error for a tuple column kind chartlog never asks for ('b', binary) or does not know. */
export function unexpectedColumnKind(kind: number): ChartlogError {
  return decodeError(`unexpected tuple column kind 0x${kind.toString(16)}`);
}

export function decodePgoutput(buf: Uint8Array): PgMessage {
  const r = new Reader(buf);
  const tag = r.u8();
  switch (tag) {
    case 0x42: // B
      return { tag: 'begin', finalLsn: r.u64(), commitTimeUs: r.timeUs(), xid: r.u32() };
    case 0x43: {
      // C
      r.u8(); // flags, unused
      return { tag: 'commit', commitLsn: r.u64(), endLsn: r.u64(), commitTimeUs: r.timeUs() };
    }
    case 0x52: {
      // R
      const relationOid = r.u32();
      const schema = r.cstring();
      const table = r.cstring();
      const ident = IDENTITY[r.u8()];
      if (!ident) throw decodeError('unknown replica identity');
      const n = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = r.u8();
        const name = r.cstring();
        columns.push({ flags, name, typeOid: r.u32(), typeMod: r.i32() });
      }
      return { tag: 'relation', relationOid, schema, table, replicaIdentity: ident, columns };
    }
    case 0x59: // Y
      return { tag: 'type', typeOid: r.u32(), schema: r.cstring(), name: r.cstring() };
    case 0x49: {
      // I
      const relationOid = r.u32();
      if (r.u8() !== 0x4e) throw decodeError('insert without new tuple');
      return { tag: 'insert', relationOid, newTuple: tuple(r) };
    }
    case 0x55: {
      // U
      const relationOid = r.u32();
      let key: RawTuple | null = null;
      let old: RawTuple | null = null;
      let sub = r.u8();
      if (sub === 0x4b) key = tuple(r);
      else if (sub === 0x4f) old = tuple(r);
      if (sub !== 0x4e) sub = r.u8();
      if (sub !== 0x4e) throw decodeError('update without new tuple');
      return { tag: 'update', relationOid, key, old, newTuple: tuple(r) };
    }
    case 0x44: {
      // D
      const relationOid = r.u32();
      const sub = r.u8();
      if (sub === 0x4b) return { tag: 'delete', relationOid, key: tuple(r), old: null };
      if (sub === 0x4f) return { tag: 'delete', relationOid, key: null, old: tuple(r) };
      throw decodeError('delete without key or old tuple');
    }
    case 0x54: {
      // T
      const n = r.u32();
      const flags = r.u8();
      const relationOids: number[] = [];
      for (let i = 0; i < n; i++) relationOids.push(r.u32());
      return { tag: 'truncate', relationOids, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
    }
    case 0x4d: {
      // M
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      const content = r.bytes(r.u32());
      return { tag: 'message', transactional: (flags & 1) !== 0, lsn, prefix, content };
    }
    case 0x4f: // O
      return { tag: 'origin', originLsn: r.u64(), name: r.cstring() };
    default:
      throw decodeError(`unknown message tag 0x${tag.toString(16)}`);
  }
}
