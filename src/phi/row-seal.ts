import { ChartlogError } from '../core/errors.js';
import type { CellValue, Row } from '../core/table-schema.js';
import { deserializeCell, serializeCellTransient } from './cell-serialization.js';
import { drawNonce, headerLength, isRowSealFormat, KEY_ID_BYTES, openPartsTransient, ROW_SEAL_FORMAT, ROW_SEAL_FORMAT_V3, sealAfterHeader, TAG_BYTES, type DataKey, type SealAlgorithm } from './sealer.js';

/**
 * Formats 3 and 4, the row seal (docs/formats.md "Sealed values"): every sealed column of one
 * row image in ONE AEAD operation, its header (version, key id, position) once per row.
 *
 *   0x04 (0x03) | key id (16) | position: u8 n, commit (n), u32le seq | set: u8 m, m bytes | nonce | ciphertext | tag (16)
 *
 * `set` is a bitmap over the table version's sealed columns in column order (bit i of byte i>>3,
 * i&7): the columns the seal holds, in that order, each as LEB128 length ‖ its cell: format 3 the
 * serializeCell bytes, format 4 the same without the u32 length of a string, bytes or bigint
 * (the LEB128 length gives it: 4 bytes a value less ciphertext, which no compression recovers).
 * The AAD is header ‖ `rowPlace` (label, source, schema, table, the set's column names) ‖ the
 * plain primary-key columns (aad.ts keyAad; sealed key columns are inside the seal).
 *
 * In the Avro record the row seal is carried by the first sealed column of its set; each other
 * column of the set holds a REFERENCE: 0x13 and the first 8 bytes of the seal's nonce. A row
 * merged from several images (a snapshot row whose unchanged column came from an earlier image)
 * holds the earlier image's whole row seal in that column instead (`carryForward`): a row seal
 * in column c stands for c's value in it.
 */

export const ROW_SEAL_REFERENCE = 0x13;
/** Bytes of a reference: its tag byte and the nonce prefix it names. */
export const REFERENCE_BYTES = 9;
const NONCE_PREFIX = REFERENCE_BYTES - 1;

const ROW_LABEL = new TextEncoder().encode('chartlog-phi-row-v3');

/** True when `v` is a format-3 row seal (well formed enough to name a key and a set). */
export function isRowSeal(v: CellValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array && isRowSealFormat(v[0]) && headerLength(v) > 0 && v.length >= headerLength(v) + 12 + TAG_BYTES;
}

/** True when `v` has the shape of a reference to a row seal. */
export function isRowSealReference(v: CellValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array && v.length === REFERENCE_BYTES && v[0] === ROW_SEAL_REFERENCE;
}

/** True when reference `ref` names the row seal `seal` (its nonce prefix). */
export function refersTo(ref: Uint8Array, seal: Uint8Array): boolean {
  const n = headerLength(seal);
  for (let i = 0; i < NONCE_PREFIX; i++) if (ref[1 + i] !== seal[n + i]) return false;
  return true;
}

/** The set bytes of a row seal's header (u8 m, then m bitmap bytes). */
export function rowSealSet(seal: Uint8Array): Uint8Array {
  const end = headerLength(seal);
  const p = 1 + KEY_ID_BYTES + 1 + seal[1 + KEY_ID_BYTES]! + 4;
  return seal.subarray(p, end);
}

/** True when sealed column `i` is a member of `set`. */
export function inSet(set: Uint8Array, i: number): boolean {
  return i >> 3 < set[0]! && ((set[1 + (i >> 3)]! >> (i & 7)) & 1) === 1;
}

/** The number of members of `set`. */
export function setSize(set: Uint8Array): number {
  let n = 0;
  for (let b = 1; b < set.length; b++) for (let x = set[b]!; x !== 0; x &= x - 1) n++;
  return n;
}

/** The first member of `set`, -1 when empty. */
export function firstMember(set: Uint8Array): number {
  for (let b = 1; b < set.length; b++) if (set[b] !== 0) return (b - 1) * 8 + 31 - Math.clz32(set[b]! & -set[b]!);
  return -1;
}

/** The set's member indices (into the table version's sealed columns), ascending. */
export function setMembers(set: Uint8Array): number[] {
  const out: number[] = [];
  const m = set[0]!;
  for (let b = 0; b < m; b++) for (let i = 0; i < 8; i++) if ((set[1 + b]! >> i) & 1) out.push(b * 8 + i);
  return out;
}

function putUint32LE(out: Uint8Array, at: number, n: number): number {
  out[at] = n & 0xff;
  out[at + 1] = (n >>> 8) & 0xff;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = n >>> 24;
  return at + 4;
}

/**
 * The AAD place halves of a table version's row seals, one per column set (a table has one or
 * two in practice), made once: label, source, schema, table and the set's column names, each
 * length-prefixed so no two places collide.
 */
export class RowPlaces {
  private readonly bySet = new Map<string, Uint8Array>();
  /** The last set asked for and its place: consecutive rows nearly always share one. */
  private lastSet: Uint8Array = new Uint8Array(0);
  private lastPlace: Uint8Array = new Uint8Array(0);
  private readonly head: Uint8Array[];
  private readonly names: Uint8Array[];

  /** `label` and `extra` (parts after the table): the block seal's (block-seal.ts) binds its table version too. */
  constructor(source: string, schema: string, table: string, sealedColumns: readonly string[], label: Uint8Array = ROW_LABEL, extra: readonly string[] = []) {
    const enc = new TextEncoder();
    this.head = [label, enc.encode(source), enc.encode(schema), enc.encode(table), ...extra.map((x) => enc.encode(x))];
    this.names = sealedColumns.map((c) => enc.encode(c));
  }

  of(set: Uint8Array): Uint8Array {
    if (sameBytes(set, this.lastSet)) return this.lastPlace;
    const place = this.lookUp(set);
    this.lastSet = set.slice();
    this.lastPlace = place;
    return place;
  }

  private lookUp(set: Uint8Array): Uint8Array {
    const k = String.fromCharCode(...set);
    let place = this.bySet.get(k);
    if (!place) {
      const members = setMembers(set);
      if (members.some((i) => i >= this.names.length)) return new Uint8Array(0); // opens nothing: 'integrity'
      const parts = [...this.head, ...members.map((i) => this.names[i]!)];
      place = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
      let at = 0;
      for (const p of parts) {
        at = putUint32LE(place, at, p.length);
        place.set(p, at);
        at += p.length;
      }
      this.bySet.set(k, place);
    }
    return place;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * One row image's sealed values collected for its row seal, into reused buffers: the set bitmap
 * and the plaintext (each value LEB128 length ‖ serializeCell bytes). `reset` before each image.
 */
export class RowPlaintext {
  private buf = new Uint8Array(1024);
  length = 0;
  private bits = new Uint8Array(8);
  private setLength = 1;
  count = 0;
  /**
   * Views of `buf` and `bits` by length, made once: `plaintext` and `set` are read several
   * times for every row, and a fresh view each time was a large part of the codec's garbage.
   */
  private plainViews: Uint8Array[] = [];
  private setViews: Uint8Array[] = [];

  reset(sealedColumns: number): void {
    this.length = 0;
    this.count = 0;
    const m = (sealedColumns + 7) >> 3;
    if (this.bits.length < 1 + m) {
      this.bits = new Uint8Array(1 + m);
      this.setViews = [];
    }
    this.bits.fill(0, 0, 1 + m);
    this.bits[0] = m;
    this.setLength = 1 + m;
  }

  /** Adds the value of sealed column `index` (in column order, ascending), in format 4's compact form. */
  add(index: number, v: CellValue): void {
    // compactCellOf's bytes, copied from the serialised cell without a view of it per value.
    const cell = serializeCellTransient(v);
    const from = LENGTH_TAGS.includes(cell[0]!) ? 4 : 0;
    const n = cell.length - from;
    this.reserve(5 + n);
    let m = n;
    while (m >= 0x80) {
      this.buf[this.length++] = (m & 0x7f) | 0x80;
      m >>>= 7;
    }
    this.buf[this.length++] = m;
    const buf = this.buf;
    let at = this.length;
    buf[at++] = cell[0]!; // the tag (over the length's last byte, as compactCell writes it)
    for (let i = from + 1; i < cell.length; i++) buf[at++] = cell[i]!;
    this.length = at;
    this.bits[1 + (index >> 3)]! |= 1 << (index & 7);
    this.count++;
  }

  get plaintext(): Uint8Array {
    return (this.plainViews[this.length] ??= this.buf.subarray(0, this.length));
  }

  get set(): Uint8Array {
    return (this.setViews[this.setLength] ??= this.bits.subarray(0, this.setLength));
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(2 * this.buf.length, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.plainViews = [];
  }
}

/** Cell tags whose serialization is tag, u32le(length), body: format 4 drops the length. */
const LENGTH_TAGS = [4, 5, 6]; // bigint, string, bytes (cell-serialization.ts)

/** Format 4's (and 5's) form of a value's cell, in a buffer reused by the next call. */
export function compactCellOf(v: CellValue): Uint8Array {
  return compactCell(serializeCellTransient(v));
}

/** Format 4's form of a cell: tag ‖ body for a length-prefixed cell, else the cell itself. */
function compactCell(cell: Uint8Array): Uint8Array {
  if (!LENGTH_TAGS.includes(cell[0]!)) return cell;
  // serializeCellTransient's buffer is reused: write the tag over the length's last byte.
  cell[4] = cell[0]!;
  return cell.subarray(4);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // as cell-serialization.ts: a leading U+FEFF is data

/** A format-4 cell as the serializeCell bytes deserializeCell reads (a length-prefixed cell regains its length). */
let expanded = new Uint8Array(256);
function standardCell(compact: Uint8Array, version: number): Uint8Array {
  if (version === ROW_SEAL_FORMAT_V3 || compact.length === 0 || !LENGTH_TAGS.includes(compact[0]!)) return compact;
  const n = compact.length - 1;
  if (expanded.length < n + 5) expanded = new Uint8Array(Math.max(2 * expanded.length, n + 5));
  expanded[0] = compact[0]!;
  expanded[1] = n & 0xff;
  expanded[2] = (n >>> 8) & 0xff;
  expanded[3] = (n >>> 16) & 0xff;
  expanded[4] = n >>> 24;
  expanded.set(compact.subarray(1), 5);
  return expanded.subarray(0, n + 5);
}

/** Bytes of a row seal of `plaintextLength` bytes under `dek` at `pos` (`positionBytes`) over `set`. */
export function rowSealLength(dek: { readonly algorithm?: SealAlgorithm }, pos: Uint8Array, set: Uint8Array, plaintextLength: number): number {
  return 1 + KEY_ID_BYTES + pos.length + set.length + (dek.algorithm === 'XChaCha20-Poly1305' ? 24 : 12) + plaintextLength + TAG_BYTES;
}

/**
 * Writes a row seal's header and a fresh nonce at `out[at]`; returns where the body goes. The
 * body is sealed by `sealRowBody` (at once, or on a crypto thread: the nonce is drawn here so
 * the row's references can name it before the body exists).
 */
export function writeRowSealHeader(dek: DataKey, pos: Uint8Array, set: Uint8Array, out: Uint8Array, at: number): number {
  out[at] = ROW_SEAL_FORMAT;
  out.set(dek.id, at + 1);
  out.set(pos, at + 1 + KEY_ID_BYTES);
  out.set(set, at + 1 + KEY_ID_BYTES + pos.length);
  return drawNonce(out, at + rowSealHeaderLength(pos, set), dek);
}

/** Bytes of a row seal's header (everything before its nonce) at `pos` over `set`. */
export function rowSealHeaderLength(pos: Uint8Array, set: Uint8Array): number {
  return 1 + KEY_ID_BYTES + pos.length + set.length;
}

/** Seals `plaintext` after the header and nonce `writeRowSealHeader` wrote at `out[at]`; returns the end. */
export function sealRowBody(dek: DataKey, plaintext: Uint8Array, place: Uint8Array, key: Uint8Array, out: Uint8Array, at: number): number {
  return sealAfterHeader(dek, plaintext, place, key, out, at, at + headerLength(out.subarray(at)));
}

/**
 * Writes a reference to the row seal at `out[sealAt]` (header and nonce written) at `out[at]`;
 * returns the end. `nonceAt`: where its nonce starts, when the caller knows (no view to find it).
 */
export function writeReference(out: Uint8Array, at: number, sealAt: number, nonceAt = sealAt + headerLength(out.subarray(sealAt))): number {
  out[at] = ROW_SEAL_REFERENCE;
  for (let i = 0; i < NONCE_PREFIX; i++) out[at + 1 + i] = out[nonceAt + i]!;
  return at + REFERENCE_BYTES;
}

/** A reference to the row seal `seal`. */
export function referenceTo(seal: Uint8Array): Uint8Array {
  const out = new Uint8Array(REFERENCE_BYTES);
  const n = headerLength(seal);
  out[0] = ROW_SEAL_REFERENCE;
  for (let i = 0; i < NONCE_PREFIX; i++) out[1 + i] = seal[n + i]!;
  return out;
}

function malformed(where: string): ChartlogError {
  return new ChartlogError('integrity', `${where}: a row seal's content does not match its column set`, {
    hint: 'the archive object is damaged; run `chartlog verify` and restore from an intact copy',
  });
}

/**
 * Opens a row seal and returns its values by member index (into the table version's sealed
 * columns). The plaintext is wiped once read; a failed authentication is 'integrity' naming `where`.
 */
export function openRowSeal(dek: DataKey, seal: Uint8Array, places: RowPlaces, key: Uint8Array, where: string): Map<number, CellValue> {
  const out = new Map<number, CellValue>();
  openRowSealEach(dek, seal, places, key, where, (i, v) => out.set(i, v));
  return out;
}

/** `openRowSeal` calling `fn(member index, value)` for each value instead of making a map. */
export function openRowSealEach(dek: DataKey, seal: Uint8Array, places: RowPlaces, key: Uint8Array, where: string, fn: (i: number, v: CellValue) => void): void {
  const set = rowSealSet(seal);
  const plain = openPartsTransient(dek, seal, places.of(set), key, where);
  try {
    eachRowCell(plain, set, where, fn, seal[0]!);
  } finally {
    plain.fill(0);
  }
}

/** Calls `fn(member index, value)` for each value of an opened row seal's plaintext (`version`: the seal's format, 3 or 4). */
export function eachRowCell(plain: Uint8Array, set: Uint8Array, where: string, fn: (i: number, v: CellValue) => void, version: number = ROW_SEAL_FORMAT): void {
  const c = new RowCursor();
  c.start(plain, set, where, version);
  while (c.next()) fn(c.member, c.cell());
  c.end();
}

/** A value from its cell as a seal of `version` holds it (format 3: serializeCell bytes; 4 and later: compact). */
export function cellOf(raw: Uint8Array, version: number): CellValue {
  // A compact string (nearly every PHI value) is decoded in place, as deserializeCell's own fast path does.
  if (version !== ROW_SEAL_FORMAT_V3 && raw[0] === 5) return utf8.decode(raw.subarray(1));
  const v = standardCell(raw, version);
  try {
    return deserializeCell(v);
  } finally {
    if (v.buffer === expanded.buffer) v.fill(0);
  }
}

/**
 * Walks an opened row seal's plaintext value by value with no callback or object per value (the
 * opener's hot path): `start`, then `next()` while true (`member`, `value()`), then `end()`,
 * which refuses trailing bytes or missing values with 'integrity'.
 */
export class RowCursor {
  private plain: Uint8Array = new Uint8Array(0);
  private set: Uint8Array = new Uint8Array(0);
  private where = '';
  private at = 0;
  private from = 0;
  private to = 0;
  private left = 0;
  private version: number = ROW_SEAL_FORMAT;
  member = -1;

  /** `version`: the seal's format (3 or 4), which says how a value's cell is laid out. */
  start(plain: Uint8Array, set: Uint8Array, where: string, version: number = ROW_SEAL_FORMAT): void {
    this.version = version;
    this.plain = plain;
    this.set = set;
    this.where = where;
    this.at = 0;
    this.left = setSize(set);
    this.member = -1;
  }

  next(): boolean {
    if (this.left === 0) return false;
    const plain = this.plain;
    let n = 0;
    let shift = 0;
    for (;;) {
      if (this.at >= plain.length || shift > 28) throw malformed(this.where);
      const b = plain[this.at++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    if (this.at + n > plain.length) throw malformed(this.where);
    this.from = this.at;
    this.to = this.at += n;
    do this.member++;
    while (!inSet(this.set, this.member));
    this.left--;
    return true;
  }

  /** The current value's bytes as stored (format 4: compact). */
  value(): Uint8Array {
    return this.plain.subarray(this.from, this.to);
  }

  /** The current value, deserialized (either format). */
  cell(): CellValue {
    return cellOf(this.value(), this.version);
  }

  end(): void {
    if (this.left !== 0 || this.at !== this.plain.length) throw malformed(this.where);
  }
}

/**
 * The value an unchanged cell takes from the row's earlier image `previous` (archive merges):
 * a reference there would lose its row seal, so it becomes that seal itself (a row seal in a
 * column stands for that column's value in it). Anything else is taken as it is.
 */
export function carryForward(previous: Row, column: string): CellValue | undefined {
  const v = previous[column];
  if (!isRowSealReference(v)) return v;
  for (const k in previous) {
    const s = previous[k];
    if (isRowSeal(s) && refersTo(v, s)) return s;
  }
  return v; // no seal to carry: opening it later fails closed ('integrity')
}
