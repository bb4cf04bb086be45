import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { ChartlogError } from '../core/errors.js';
import type { CellValue } from '../core/table-schema.js';
import { cellOf, compactCellOf, firstMember, RowPlaces, setMembers } from './row-seal.js';
import { BLOCK_SEAL_FORMAT, drawNonce, headerLength, KEY_ID_BYTES, openAfterHeader, sealAfterHeader, TAG_BYTES, type DataKey, type SealAlgorithm } from './sealer.js';

/**
 * Format 5, the block seal (docs/formats.md "Sealed values"): the PHI of a block of base-snapshot
 * rows — laid out column by column, deflated — in ONE AEAD operation, so that what compresses in
 * a column (names, streets, dates) is compressed before it is encrypted. Each row keeps a short
 * reference into the block; the block's first row carries the seal itself.
 *
 *   0x05 | key id (16) | position | set | u32le block ordinal | u32le rows | nonce | ciphertext | tag (16)
 *   plaintext = deflateRaw(body)
 *   body      = for each row: LEB128(len) ‖ its plain-key AAD bytes (aad.ts openingKeyAad, plain key columns)
 *               then for each column of the set, in order, for each row:
 *                 0x00 (the cell is not in the block: the record holds it in clear, NULL)
 *               | LEB128(len + 1) ‖ the value in format 4's compact cell form
 *   reference = 0x15 | the first 8 bytes of the block seal's nonce | LEB128(row index)
 *
 * position and set are the row seal's (formats 3 and 4). The ordinal, bit 31 set, is how many
 * block seals of its table come before it in its base snapshot (every part of the table, in
 * order): the readers of a base snapshot check it (BlockOrder), so a block reordered, repeated or
 * dropped is refused. Bit 31 clear: written before that check (an encoder's counter), not checked.
 * AAD = header ‖ LP("chartlog-phi-block-v5", source, schema, table, table version, the set's
 * column names…): the seal binds source, table, table version and column set, its position, its
 * block ordinal and its row count, and inside it every row's primary key, so a row reference
 * moved to another row (or block, table, column) opens nothing: 'integrity', naming the column.
 */

export { BLOCK_SEAL_FORMAT };
export const BLOCK_REFERENCE = 0x15;
const NONCE_PREFIX = 8;
/** Rows a block seal holds at most: a base snapshot's container block (avro-container.ts BLOCK_RECORDS), which the parts writer keeps each block seal's rows in. */
export const BLOCK_SEAL_ROWS = 4096;
/** The most bytes a block's body may hold once inflated (sealing and opening refuse more: a crafted block cannot inflate without bound). */
export const MAX_BLOCK_BODY_BYTES = 64 * 1024 * 1024;
const BLOCK_LABEL = new TextEncoder().encode('chartlog-phi-block-v5');
/** Bit 31 of the header's ordinal: set, the rest is the block's checked ordinal (BlockOrder); clear, an unchecked counter. */
const ORDINAL_CHECKED = 0x80000000;

/** The AAD places of a table version's block seals (one per column set). */
export class BlockPlaces extends RowPlaces {
  /** `version`: the table version's fingerprint (hex), bound by every block seal of it. */
  constructor(source: string, schema: string, table: string, version: string, sealedColumns: readonly string[]) {
    super(source, schema, table, sealedColumns, BLOCK_LABEL, [version]);
  }
}

/** One row of a block as the writer hands it: its plain-key AAD bytes and its sealed columns' values (null: in clear). */
export interface BlockRow {
  readonly key: Uint8Array;
  /** By sealed column index (the table version's sealed columns in column order). */
  readonly cells: readonly CellValue[];
}

/** A sealed block: what each row's sealed cells hold in the record (the seal, a reference, or null in clear). */
export interface SealedBlock {
  readonly seal: Uint8Array;
  /** `cells[r][c]`: row r's sealed column c as written in the record. */
  readonly cells: CellValue[][];
}

function nonceBytes(dek: { readonly algorithm?: SealAlgorithm }): number {
  return dek.algorithm === 'XChaCha20-Poly1305' ? 24 : 12;
}

class Bytes {
  buf = new Uint8Array(64 * 1024);
  length = 0;

  leb(n: number): void {
    this.reserve(5);
    while (n >= 0x80) {
      this.buf[this.length++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.length++] = n;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(2 * this.buf.length, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf.fill(0);
    this.buf = next;
  }
}

function putU32(out: Uint8Array, at: number, n: number): void {
  out[at] = n & 0xff;
  out[at + 1] = (n >>> 8) & 0xff;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = n >>> 24;
}

function getU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 2 ** 24;
}

/**
 * Seals `rows` (at least one) as the block seal with ordinal `ordinal` (BlockOrdinals), at the snapshot's position `pos`
 * (sealer.ts positionBytes), over `sealedColumns` sealed columns. The set is every column some
 * row holds a value of, and always the first row's first such column, which carries the seal (a
 * NULL there is sealed in the block). A block whose rows hold no sealed value has no seal: null.
 */
export function sealBlock(dek: DataKey, pos: Uint8Array, ordinal: number, places: BlockPlaces, rows: readonly BlockRow[], sealedColumns: number): SealedBlock | null {
  const m = (sealedColumns + 7) >> 3;
  const set = new Uint8Array(1 + m);
  set[0] = m;
  for (const r of rows) for (let c = 0; c < sealedColumns; c++) if (r.cells[c] !== null) set[1 + (c >> 3)]! |= 1 << (c & 7);
  const carrier = firstMember(set);
  if (carrier < 0 || rows.length === 0) return null;
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= ORDINAL_CHECKED) throw new ChartlogError('internal', `block seal ordinal ${ordinal} out of range`);
  const body = new Bytes();
  try {
    for (const r of rows) {
      body.leb(r.key.length);
      body.bytes(r.key);
    }
    for (const c of setMembers(set)) {
      for (let i = 0; i < rows.length; i++) {
        const v = rows[i]!.cells[c]!;
        if (v === null && !(i === 0 && c === carrier)) {
          body.leb(0);
          continue;
        }
        const cell = compactCellOf(v);
        body.leb(cell.length + 1);
        body.bytes(cell);
      }
      if (body.length > MAX_BLOCK_BODY_BYTES) throw tooLarge();
    }
    const plain = deflateRawSync(body.buf.subarray(0, body.length));
    const headerEnd = 1 + KEY_ID_BYTES + pos.length + set.length + 8;
    const seal = new Uint8Array(headerEnd + nonceBytes(dek) + plain.length + TAG_BYTES);
    seal[0] = BLOCK_SEAL_FORMAT;
    seal.set(dek.id, 1);
    seal.set(pos, 1 + KEY_ID_BYTES);
    seal.set(set, 1 + KEY_ID_BYTES + pos.length);
    putU32(seal, headerEnd - 8, ORDINAL_CHECKED + ordinal);
    putU32(seal, headerEnd - 4, rows.length);
    drawNonce(seal, headerEnd, dek);
    const end = sealAfterHeader(dek, plain, places.of(set), EMPTY, seal, 0, headerEnd);
    plain.fill(0);
    if (end !== seal.length) throw new ChartlogError('internal', 'a block seal came out of unexpected length');
    const cells: CellValue[][] = rows.map((r, i) => {
      const ref = referenceOf(seal, headerEnd, i);
      return Array.from({ length: sealedColumns }, (_x, c) => (r.cells[c] === null ? null : ref));
    });
    cells[0]![carrier] = seal;
    return { seal, cells };
  } finally {
    body.buf.fill(0);
  }
}

function tooLarge(): ChartlogError {
  return new ChartlogError('internal', `a block of PHI over ${MAX_BLOCK_BODY_BYTES} bytes`, { hint: 'seal fewer rows per block' });
}

function referenceOf(seal: Uint8Array, headerEnd: number, row: number): Uint8Array {
  let n = 1;
  for (let x = row; x >= 0x80; x >>>= 7) n++;
  const ref = new Uint8Array(1 + NONCE_PREFIX + n);
  ref[0] = BLOCK_REFERENCE;
  ref.set(seal.subarray(headerEnd, headerEnd + NONCE_PREFIX), 1);
  let at = 1 + NONCE_PREFIX;
  let x = row;
  while (x >= 0x80) {
    ref[at++] = (x & 0x7f) | 0x80;
    x >>>= 7;
  }
  ref[at] = x;
  return ref;
}

/** Bytes of a block seal's header (everything before the nonce), or -1 when `v` is not one. */
export function blockHeaderLength(v: Uint8Array): number {
  if (v[0] !== BLOCK_SEAL_FORMAT) return -1;
  const end = headerLength(v);
  return end > 0 && v.length >= end + 12 + TAG_BYTES ? end : -1;
}

/** True when `v` has the shape of a block seal. */
export function isBlockSeal(v: CellValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array && blockHeaderLength(v) > 0;
}

/** True when `v` has the shape of a reference into a block seal. */
export function isBlockReference(v: CellValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array && v[0] === BLOCK_REFERENCE && v.length > 1 + NONCE_PREFIX && v.length <= 1 + NONCE_PREFIX + 5;
}

/** The row index a reference names, or -1 when it is malformed. */
export function referencedRow(ref: Uint8Array): number {
  // A block's rows fit in two bytes: read those with integer shifts (this runs for every sealed
  // cell of every base row a restore writes), the rare longer forms as before.
  const at = 1 + NONCE_PREFIX;
  const end = ref.length;
  if (end === at + 1) return ref[at]! < 0x80 ? ref[at]! : -1;
  if (end === at + 2) {
    const b0 = ref[at]!;
    const b1 = ref[at + 1]!;
    return b0 >= 0x80 && b1 < 0x80 ? (b0 & 0x7f) | (b1 << 7) : -1;
  }
  let n = 0;
  let shift = 0;
  for (let i = at; i < end; i++) {
    const b = ref[i]!;
    n += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return i === end - 1 ? n : -1;
    shift += 7;
  }
  return -1;
}

/**
 * The ordinal a block seal's header names (read, not authenticated: opening the seal does that)
 * and whether it is checked (bit 31, see the module comment).
 */
export function blockOrdinalOf(seal: Uint8Array): { ordinal: number; checked: boolean } {
  const n = getU32(seal, blockHeaderLength(seal) - 8);
  return n >= ORDINAL_CHECKED ? { ordinal: n - ORDINAL_CHECKED, checked: true } : { ordinal: n, checked: false };
}

/**
 * The next ordinal of each table's block seals in ONE base snapshot (its writer holds one): how
 * many that table's base has sealed so far, in the order its rows go into its parts.
 */
export class BlockOrdinals {
  private readonly sealed = new Map<string, number>();

  /** The ordinal the table's next block seal takes. */
  next(table: string): number {
    return this.sealed.get(table) ?? 0;
  }

  /** The table's next block seal was made (with the ordinal `next` gave). */
  advance(table: string): void {
    this.sealed.set(table, this.next(table) + 1);
  }
}

/**
 * The order check of one table's base snapshot, fed the block seal of each container block's
 * first record (where the parts writer puts every block seal) as a reader meets them: every part
 * of the table in the manifest's order, each part's container blocks in order. Block seals with
 * a checked ordinal must come 0, 1, 2, …: a block moved within or between parts, repeated or
 * dropped (but the last) is refused, naming the object. A base holds checked seals or unchecked
 * ones (written before the check), never both: bit 31 is authenticated (the header is AAD), so an
 * unchecked seal cannot be spliced into a checked base, nor a checked one relabelled. Row counts
 * (the manifest) cover a dropped last block.
 */
export class BlockOrder {
  private next = 0;
  private checked: boolean | null = null;

  /** `table`: "source schema.table", for messages. */
  constructor(private readonly table: string) {}

  /** `seal`: the block seal in the first record of container block `block` of `object` (null: none). */
  meet(seal: Uint8Array | null, object: string, block: number): void {
    if (!seal) return;
    const o = blockOrdinalOf(seal);
    this.checked ??= o.checked;
    if (o.checked !== this.checked) throw outOfOrder(object, block, `${this.table}: its base snapshot holds block seals written with and without a checked ordinal`);
    if (!o.checked) return;
    if (o.ordinal !== this.next) throw outOfOrder(object, block, `${this.table}: block seal ${o.ordinal} of the base snapshot where block seal ${this.next} comes next (a block reordered, repeated or dropped)`);
    this.next++;
  }
}

function outOfOrder(object: string, block: number, what: string): ChartlogError {
  return new ChartlogError('integrity', `${object}, container block ${block}: ${what}`, {
    hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
  });
}

/** The block a reference or a seal names: its nonce prefix, as a map key. */
export function blockIdOf(v: Uint8Array): string {
  const at = v[0] === BLOCK_REFERENCE ? 1 : blockHeaderLength(v);
  return Buffer.from(v.buffer, v.byteOffset + at, NONCE_PREFIX).toString('hex');
}

/**
 * An opened block: its rows' keys and values, held until `wipe`. `value(c, r)` is the value of
 * sealed column c in row r, or undefined when the block does not hold it (in clear in the record).
 */
export class OpenedBlock {
  private readonly keys: [number, number][] = [];
  /** Per sealed column (by index; undefined: not in the block's set), each row's [start, end) in `body`, start -1 when absent. */
  private readonly cells: (Int32Array | undefined)[] = [];
  /** `id` as bytes, made at the first `isNamedBy`. */
  private prefix: Uint8Array | undefined;

  private constructor(
    readonly id: string,
    readonly ordinal: number,
    readonly rows: number,
    readonly set: Uint8Array,
    private readonly body: Uint8Array,
    where: string,
  ) {
    let at = 0;
    const leb = (): number => {
      let n = 0;
      let shift = 0;
      for (;;) {
        if (at >= body.length || shift > 28) throw malformed(where);
        const b = body[at++]!;
        n += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) return n;
        shift += 7;
      }
    };
    for (let r = 0; r < rows; r++) {
      const n = leb();
      if (at + n > body.length) throw malformed(where);
      this.keys.push([at, at + n]);
      at += n;
    }
    for (const c of setMembers(set)) {
      const ends = new Int32Array(2 * rows);
      for (let r = 0; r < rows; r++) {
        const n = leb();
        if (n === 0) {
          ends[2 * r] = -1;
          continue;
        }
        if (at + n - 1 > body.length) throw malformed(where);
        ends[2 * r] = at;
        ends[2 * r + 1] = at += n - 1;
      }
      this.cells[c] = ends;
    }
    if (at !== body.length) throw malformed(where);
  }

  /**
   * Opens block seal `seal` (its key checked by the caller: `dek` is the one it names) with the
   * places of its table version; 'integrity' naming `where` when it fails authentication, is
   * malformed, or inflates past MAX_BLOCK_BODY_BYTES.
   */
  static open(dek: DataKey, seal: Uint8Array, places: BlockPlaces, where: string): OpenedBlock {
    const headerEnd = blockHeaderLength(seal);
    if (headerEnd < 0) throw malformed(where);
    for (let i = 0; i < KEY_ID_BYTES; i++) {
      if (seal[1 + i] !== dek.id[i]) throw new ChartlogError('integrity', `${where}: a block seal under another data key than ${dek.idHex}`, { hint: 'open it with the data key it names' });
    }
    const set = seal.slice(1 + KEY_ID_BYTES + 1 + seal[1 + KEY_ID_BYTES]! + 4, headerEnd - 8);
    const plain = openAfterHeader(dek, seal, headerEnd, places.of(set), EMPTY, where);
    let body: Buffer;
    try {
      body = inflateRawSync(plain, { maxOutputLength: MAX_BLOCK_BODY_BYTES });
    } catch {
      throw malformed(where);
    } finally {
      plain.fill(0);
    }
    try {
      return new OpenedBlock(blockIdOf(seal), blockOrdinalOf(seal).ordinal, getU32(seal, headerEnd - 4), set, body, where);
    } catch (e) {
      body.fill(0);
      throw e;
    }
  }

  /** Row r's plain-key AAD bytes as sealed. */
  key(r: number): Uint8Array {
    const [from, to] = this.keys[r]!;
    return this.body.subarray(from, to);
  }

  /** True when the block holds a value of sealed column c in row r. */
  holds(c: number, r: number): boolean {
    const ends = this.cells[c];
    return ends !== undefined && ends[2 * r]! >= 0;
  }

  /** The value of sealed column c in row r (which `holds`). */
  value(c: number, r: number): CellValue {
    return cellOf(this.cellBytes(c, r), BLOCK_SEAL_FORMAT);
  }

  /** The compact cell (format 4's form, row-seal.ts) of sealed column c in row r (which `holds`): a view of the plaintext, valid until `wipe`. */
  cellBytes(c: number, r: number): Uint8Array {
    const ends = this.cells[c]!;
    return this.body.subarray(ends[2 * r]!, ends[2 * r + 1]!);
  }

  /** True when a reference or a seal names this block (`blockIdOf(v) === id`, compared byte for byte). */
  isNamedBy(v: Uint8Array): boolean {
    const at = v[0] === BLOCK_REFERENCE ? 1 : blockHeaderLength(v);
    if (at < 0 || v.length < at + NONCE_PREFIX) return false;
    const prefix = (this.prefix ??= Buffer.from(this.id, 'hex'));
    for (let i = 0; i < NONCE_PREFIX; i++) if (v[at + i] !== prefix[i]) return false;
    return true;
  }

  /** Zeroes the plaintext (an evicted or finished block). */
  wipe(): void {
    this.body.fill(0);
  }
}

function malformed(where: string): ChartlogError {
  return new ChartlogError('integrity', `${where}: a block seal is malformed or does not match its rows`, {
    hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
  });
}

function refused(where: string, what: string): ChartlogError {
  return new ChartlogError('integrity', `${where}: ${what} (altered, moved, truncated or removed)`, {
    hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
  });
}

/**
 * The values of one block-sealed row: `cells` are its sealed columns as the record holds them
 * (by sealed column index), `key` its plain-key AAD bytes, `where[c]` each column's name for
 * messages. Every sealed column must hold a reference to `block` naming the same row (or, row 0's
 * first member, the seal itself) exactly when the block holds a value of it there, and the row's
 * key must be the one sealed at that row. Checked before `fn(c, value)` is called for any column.
 */
export function openBlockRow(block: OpenedBlock, cells: readonly CellValue[], key: Uint8Array, where: readonly string[], fn: (c: number, v: CellValue) => void): void {
  const r = blockRowOf(block, cells, key, where);
  if (r < 0) return;
  for (let c = 0; c < cells.length; c++) if (block.holds(c, r)) fn(c, block.value(c, r));
}

/**
 * The row of `block` a block-sealed row's `cells` name, after every check `openBlockRow` makes
 * (-1: no cell names one); 'integrity' naming the column otherwise. For readers that take the
 * values themselves (`OpenedBlock.cellBytes`; restore writes them straight into COPY text).
 */
export function blockRowOf(block: OpenedBlock, cells: readonly CellValue[], key: Uint8Array, where: readonly string[]): number {
  let r = -1;
  for (let c = 0; c < cells.length; c++) {
    const v = cells[c];
    if (isBlockReference(v)) {
      const i = referencedRow(v);
      if (!block.isNamedBy(v) || i < 0 || i >= block.rows) throw refused(where[c]!, 'a reference names another block or no row of it');
      if (r >= 0 && i !== r) throw refused(where[c]!, 'a reference names another row of its block');
      r = i;
    } else if (isBlockSeal(v)) {
      if (!block.isNamedBy(v) || c !== firstMember(block.set)) throw refused(where[c]!, 'a block seal is in a column or row that does not carry it');
      if (r > 0) throw refused(where[c]!, 'a reference names another row of its block');
      r = 0;
    }
  }
  if (r < 0) return -1;
  const k = block.key(r);
  if (k.length !== key.length) throw refused(where[firstHeld(cells)]!, "a reference names another row's values");
  for (let i = 0; i < k.length; i++) if (k[i] !== key[i]) throw refused(where[firstHeld(cells)]!, "a reference names another row's values");
  for (let c = 0; c < cells.length; c++) {
    const v = cells[c];
    const holds = isBlockReference(v) || isBlockSeal(v);
    if (holds !== block.holds(c, r)) throw refused(where[c]!, holds ? 'a reference is in a column its block does not hold' : "a column's reference is missing");
    if (holds && r !== 0 && isBlockSeal(v)) throw refused(where[c]!, 'a block seal is in a row that does not carry it');
  }
  return r;
}

function firstHeld(cells: readonly CellValue[]): number {
  const i = cells.findIndex((v) => isBlockReference(v) || isBlockSeal(v));
  return i < 0 ? 0 : i;
}

/**
 * The blocks a reader has opened, by id, so a block's rows after its first open from it: a
 * reader meets a part's rows in order, the seal (in the block's first row) before its
 * references. At most `max` blocks are held (the oldest wiped first).
 */
export class OpenedBlocks {
  private readonly byId = new Map<string, OpenedBlock>();

  constructor(private readonly max = 4) {}

  add(block: OpenedBlock): void {
    this.byId.get(block.id)?.wipe();
    this.byId.delete(block.id);
    this.byId.set(block.id, block);
    if (this.byId.size > this.max) {
      const [oldest] = this.byId.keys();
      this.byId.get(oldest!)!.wipe();
      this.byId.delete(oldest!);
    }
  }

  /** The opened block a reference names; 'integrity' naming `where` when none is held (its seal was not met first). */
  of(ref: Uint8Array, where: string): OpenedBlock {
    const b = this.byId.get(blockIdOf(ref));
    if (!b) throw refused(where, 'a reference names a block seal not met before it');
    return b;
  }

  clear(): void {
    for (const b of this.byId.values()) b.wipe();
    this.byId.clear();
  }
}

const EMPTY = new Uint8Array(0);
