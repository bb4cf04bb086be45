import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import sodium from 'sodium-native';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { CellValue } from '../core/table-schema.js';
import { additionalData, type SealContext } from './aad.js';
import { deserializeCell, serializeCell, serializeCellTransient } from './cell-serialization.js';

/**
 * Field-level sealing of PHI values (docs/architecture.md §3, docs/formats.md "Sealed values").
 *
 * Format 2 (written now):
 *   0x02 | key id (16) | position: u8 n, commit (n ASCII bytes), u32le seq | nonce | ciphertext | tag (16)
 * under the AEAD its data key records (`DataKey.algorithm`): XChaCha20-Poly1305 (libsodium,
 * 24-byte nonce) or AES-256-GCM (node:crypto, 12-byte nonce). The AAD is the header (version,
 * key id, position) followed by the place and key halves (aad.ts), so a value is bound to the
 * source position it was sealed at as well as to source, table, column and primary key.
 *
 * Format 1 (archives written before issue 17, read only):
 *   0x01 | key id (16) | nonce (12) | ciphertext | tag (16), AES-256-GCM, AAD = place ‖ key.
 *
 * A sealed value copied to another row, column or position, or opened under another key, fails
 * with ChartlogError('integrity') instead of yielding plaintext. Each value names its own data
 * key, so the key can be chosen per row (per-patient keys) without another format change.
 */

/** Format 2: one sealed value per column (written before format 3; still opened). */
export const SEALED_FORMAT_V2 = 2;
/** Format 3: one row seal per row image over all its sealed columns (row-seal.ts); written before format 4, still opened. */
export const ROW_SEAL_FORMAT_V3 = 3;
/**
 * Format 4: the row seal of format 3 with a compact plaintext (a string, bytes or bigint value
 * without the cell serialization's own u32 length: the LEB128 length before it already gives it);
 * written now. The header is format 3's, so everything but the plaintext layout is shared.
 */
export const ROW_SEAL_FORMAT = 4;
/** True for a row seal's version byte (formats 3 and 4). */
export function isRowSealFormat(b: number | undefined): boolean {
  return b === ROW_SEAL_FORMAT || b === ROW_SEAL_FORMAT_V3;
}
/** Format 5: the block seal of base-snapshot rows (block-seal.ts); its header is format 4's and a u32 block ordinal and u32 row count. */
export const BLOCK_SEAL_FORMAT = 5;
/** The per-value format `sealValue`/`sealInto` write (the codec writes row seals, format 3). */
export const SEALED_FORMAT_VERSION = SEALED_FORMAT_V2;
/** The format archives written before issue 17 hold: still opened, never written. */
export const SEALED_FORMAT_V1 = 1;
export const KEY_ID_BYTES = 16;
export const TAG_BYTES = 16;
/** Nonce bytes of format 1 and of AES-256-GCM in format 2. */
export const NONCE_BYTES = 12;
export const XCHACHA_NONCE_BYTES = 24;
const V1_HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES;

/** The AEADs a data key can be for (recorded in keys/<keyId>.json as `algorithm`). */
export const SEAL_ALGORITHMS = ['XChaCha20-Poly1305', 'AES-256-GCM'] as const;
export type SealAlgorithm = (typeof SEAL_ALGORITHMS)[number];

/** An unwrapped data key. Never log it: only `idHex` may appear in messages. */
export interface DataKey {
  readonly id: Uint8Array;
  readonly idHex: string;
  readonly key: Uint8Array;
  /** The AEAD this key seals with; absent means AES-256-GCM (every key made before issue 17). */
  readonly algorithm?: SealAlgorithm;
}

function nonceBytesOf(dek: { readonly algorithm?: SealAlgorithm }): number {
  return dek.algorithm === 'XChaCha20-Poly1305' ? XCHACHA_NONCE_BYTES : NONCE_BYTES;
}

/**
 * Random nonces drawn from a pool refilled by the CSPRNG: one randomFillSync per 4096 nonces
 * instead of one randomBytes call each. Every nonce is fresh random bytes, handed out once
 * (copied out of the pool before it is refilled).
 */
const NONCE_POOL = Buffer.alloc(XCHACHA_NONCE_BYTES * 4096);
let nonceOffset = NONCE_POOL.length;

/**
 * IV and tag buffers reused by every AES-GCM call: createCipheriv, createDecipheriv and
 * setAuthTag copy them into the cipher context, so no view or allocation per value is needed.
 */
const IV = Buffer.alloc(NONCE_BYTES);
const TAG = Buffer.alloc(TAG_BYTES);
/**
 * A reused buffer handing out views of exact lengths, each view made once per length: libsodium
 * wants exact-length arguments, and a fresh view per value was most of the sealer's garbage.
 * Values beyond `max` bytes get a buffer of their own (a large value should not pin a large
 * scratch buffer for the life of the process).
 */
class Scratch {
  private buf: Uint8Array;
  private views: (Uint8Array | undefined)[] = [];

  constructor(
    size: number,
    private readonly max: number,
  ) {
    this.buf = new Uint8Array(size);
  }

  /** `n` bytes to write into, valid until the next call. */
  view(n: number): Uint8Array {
    if (n > this.max) return new Uint8Array(n);
    if (n > this.buf.length) {
      this.buf = new Uint8Array(Math.max(n, 2 * this.buf.length));
      this.views = [];
    }
    return (this.views[n] ??= this.buf.subarray(0, n));
  }
}

/** The AAD of one XChaCha20-Poly1305 operation, assembled here (libsodium takes it in one piece). */
const AAD_SCRATCH = new Scratch(1024, 64 * 1024);
/** The plaintext of one opened value, deserialised and wiped at once (openValueWithAad). */
const PLAIN_SCRATCH = new Scratch(4096, 64 * 1024);
/** The nonce of one XChaCha20-Poly1305 operation (copied, instead of a view per value). */
const XNONCE = new Uint8Array(XCHACHA_NONCE_BYTES);
/**
 * The ciphertext ‖ tag of one XChaCha20-Poly1305 operation: libsodium writes (sealing) or reads
 * (opening) it here and it is copied to or from the sealed value, instead of a view of the
 * sealed value per operation (a view per value was the largest garbage of sealing and opening).
 */
const CIPHER_SCRATCH = new Scratch(4096, 64 * 1024);

/** Copies `n` fresh random bytes to `out` at `at`. */
function writeNonce(out: Uint8Array, at: number, n: number): void {
  if (nonceOffset + n > NONCE_POOL.length) {
    randomFillSync(NONCE_POOL);
    nonceOffset = 0;
  }
  for (let i = 0; i < n; i++) out[at + i] = NONCE_POOL[nonceOffset + i]!;
  nonceOffset += n;
}

const EMPTY = new Uint8Array(0);

/**
 * The position part of a format-2 header: u8 commit length, the commit's ASCII, u32le seq.
 * The codec computes it once per event.
 */
export function positionBytes(p: Position): Uint8Array {
  const n = p.commit.length;
  if (n > 255) throw new ChartlogError('internal', `commit position of ${n} characters does not fit a sealed value header`);
  const out = new Uint8Array(1 + n + 4);
  out[0] = n;
  for (let i = 0; i < n; i++) out[1 + i] = p.commit.charCodeAt(i);
  out[1 + n] = p.seq & 0xff;
  out[2 + n] = (p.seq >>> 8) & 0xff;
  out[3 + n] = (p.seq >>> 16) & 0xff;
  out[4 + n] = p.seq >>> 24;
  return out;
}

/** Rewrites the seq of position bytes made by `positionBytes` (the same commit, another event). */
export function setPositionSeq(bytes: Uint8Array, seq: number): void {
  const n = bytes.length - 4;
  bytes[n] = seq & 0xff;
  bytes[n + 1] = (seq >>> 8) & 0xff;
  bytes[n + 2] = (seq >>> 16) & 0xff;
  bytes[n + 3] = seq >>> 24;
}

/** Bytes of a format-2 header's position part, or -1 when `sealed` is too short to hold one. */
function positionLength(sealed: Uint8Array): number {
  if (sealed.length < 1 + KEY_ID_BYTES + 1) return -1;
  return 1 + sealed[1 + KEY_ID_BYTES]! + 4;
}

/** True for the formats whose header holds a position after the key id (2 and 3). */
function hasPosition(sealed: Uint8Array): boolean {
  return sealed[0] === SEALED_FORMAT_V2 || isRowSealFormat(sealed[0]) || sealed[0] === BLOCK_SEAL_FORMAT;
}

/**
 * Bytes of a header (everything before the nonce) of format 2 or 3, or -1 when `sealed` is too
 * short to hold one. Format 3 adds the row seal's column set after the position: u8 m, m bytes.
 */
export function headerLength(sealed: Uint8Array): number {
  const p = positionLength(sealed);
  if (p < 0) return -1;
  const end = 1 + KEY_ID_BYTES + p;
  const block = sealed[0] === BLOCK_SEAL_FORMAT;
  if (!isRowSealFormat(sealed[0]) && !block) return end;
  if (sealed.length <= end) return -1;
  return end + 1 + sealed[end]! + (block ? 8 : 0);
}

/** True when the bytes have the shape of a sealed value (or row seal) of a known format (any algorithm). */
function wellFormed(sealed: Uint8Array): boolean {
  if (sealed[0] === SEALED_FORMAT_V1) return sealed.length >= V1_HEADER_BYTES + TAG_BYTES;
  if (!hasPosition(sealed)) return false;
  const h = headerLength(sealed);
  return h > 0 && sealed.length >= h + NONCE_BYTES + TAG_BYTES;
}

/** The hex key id a sealed value names, or null when the bytes are not a sealed value. */
export function sealedKeyId(sealed: Uint8Array): string | null {
  if (!wellFormed(sealed)) return null;
  return Buffer.from(sealed.buffer, sealed.byteOffset + 1, KEY_ID_BYTES).toString('hex');
}

/** True when `sealed` is a sealed value that names the data key `id` (no hex conversion). */
export function isSealedUnder(sealed: Uint8Array, id: Uint8Array): boolean {
  if (!wellFormed(sealed)) return false;
  for (let i = 0; i < KEY_ID_BYTES; i++) if (sealed[1 + i] !== id[i]) return false;
  return true;
}

/** The source position a format-2 value or format-3 row seal was sealed at; null for format 1 (which binds none) or bytes that are no sealed value. */
export function sealedPosition(sealed: Uint8Array): Position | null {
  if (!wellFormed(sealed) || !hasPosition(sealed)) return null;
  const n = sealed[1 + KEY_ID_BYTES]!;
  const at = 2 + KEY_ID_BYTES;
  const commit = Buffer.from(sealed.buffer, sealed.byteOffset + at, n).toString('latin1');
  const seq = (sealed[at + n]! | (sealed[at + n + 1]! << 8) | (sealed[at + n + 2]! << 16)) + sealed[at + n + 3]! * 2 ** 24;
  try {
    return Position.of(commit, seq);
  } catch {
    return null;
  }
}

/** A copy of a format-2 value's position bytes (as `positionBytes` makes them), null when it has none. */
export function sealedPositionBytes(sealed: Uint8Array): Uint8Array | null {
  if (!wellFormed(sealed) || !hasPosition(sealed)) return null;
  return sealed.slice(1 + KEY_ID_BYTES, 1 + KEY_ID_BYTES + positionLength(sealed));
}

/** True when `sealed` is a well-formed format-2 value whose position bytes are `header` (from `sealedPositionBytes`). */
export function sameHeaderPosition(sealed: Uint8Array, header: Uint8Array | null): boolean {
  if (header === null || !wellFormed(sealed) || !hasPosition(sealed) || positionLength(sealed) !== header.length) return false;
  for (let i = 0; i < header.length; i++) if (sealed[1 + KEY_ID_BYTES + i] !== header[i]) return false;
  return true;
}

/**
 * True when a format-2 value names exactly the position `pos` (`positionBytes`), compared byte
 * for byte with no object made: the opening check of every value of a change event.
 */
export function sealedAt(sealed: Uint8Array, pos: Uint8Array): boolean {
  if (!hasPosition(sealed) || sealed.length < 1 + KEY_ID_BYTES + pos.length) return false;
  for (let i = 0; i < pos.length; i++) if (sealed[1 + KEY_ID_BYTES + i] !== pos[i]) return false;
  return true;
}

/** Bytes of the format-2 sealed form of `plaintextLength` bytes under `dek` at the position `pos` (`positionBytes`). */
export function sealedLength(dek: { readonly algorithm?: SealAlgorithm }, pos: Uint8Array, plaintextLength: number): number {
  return 1 + KEY_ID_BYTES + pos.length + nonceBytesOf(dek) + plaintextLength + TAG_BYTES;
}

/** Bytes of plaintext a sealed value holds (either format), given its data key. */
export function openedLength(dek: { readonly algorithm?: SealAlgorithm }, sealed: Uint8Array): number {
  if (sealed[0] === SEALED_FORMAT_V1) return sealed.length - V1_HEADER_BYTES - TAG_BYTES;
  return sealed.length - headerLength(sealed) - nonceBytesOf(dek) - TAG_BYTES;
}

/**
 * Seals `plaintext` into `out` at `at` (`sealedLength(dek, pos, plaintext.length)` bytes) in
 * format 2 and returns the end offset. The AAD is header ‖ place ‖ key; AES-GCM authenticates
 * its parts one after the other, which is exactly their concatenation; libsodium takes it whole.
 */
export function sealInto(dek: DataKey, plaintext: Uint8Array, place: Uint8Array, key: Uint8Array, pos: Uint8Array, out: Uint8Array, at: number): number {
  out[at] = SEALED_FORMAT_V2;
  out.set(dek.id, at + 1);
  out.set(pos, at + 1 + KEY_ID_BYTES);
  const headerEnd = at + 1 + KEY_ID_BYTES + pos.length;
  writeNonce(out, headerEnd, nonceBytesOf(dek));
  return sealAfterHeader(dek, plaintext, place, key, out, at, headerEnd);
}

/**
 * The AEAD of formats 2 and 3: `out[at, headerEnd)` holds the header and the nonce follows it,
 * both written already; encrypts `plaintext` after them with AAD header ‖ place ‖ key and
 * returns the end offset. AES-GCM authenticates the AAD's parts one after the other, which is
 * exactly their concatenation; libsodium takes it whole.
 */
export function sealAfterHeader(dek: DataKey, plaintext: Uint8Array, place: Uint8Array, key: Uint8Array, out: Uint8Array, at: number, headerEnd: number): number {
  const nonceBytes = nonceBytesOf(dek);
  const bodyAt = headerEnd + nonceBytes;
  const end = bodyAt + plaintext.length + TAG_BYTES;
  if (dek.algorithm === 'XChaCha20-Poly1305') {
    for (let i = 0; i < XCHACHA_NONCE_BYTES; i++) XNONCE[i] = out[headerEnd + i]!;
    const aad = joinAad(out, at, headerEnd, place, key);
    const ct = CIPHER_SCRATCH.view(plaintext.length + TAG_BYTES);
    const n = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(ct, plaintext, aad, null, XNONCE, dek.key);
    if (n !== plaintext.length + TAG_BYTES) throw new ChartlogError('internal', 'XChaCha20-Poly1305 returned a ciphertext of unexpected length');
    out.set(ct, bodyAt);
    return end;
  }
  for (let i = 0; i < NONCE_BYTES; i++) IV[i] = out[headerEnd + i]!;
  const cipher = createCipheriv('aes-256-gcm', dek.key, IV, { authTagLength: TAG_BYTES });
  cipher.setAAD(out.subarray(at, headerEnd));
  if (place.length > 0) cipher.setAAD(place);
  if (key.length > 0) cipher.setAAD(key);
  let p = bodyAt;
  const body = cipher.update(plaintext);
  out.set(body, p);
  p += body.length;
  const final = cipher.final();
  if (final.length > 0) {
    out.set(final, p);
    p += final.length;
  }
  if (p !== bodyAt + plaintext.length) throw new ChartlogError('internal', 'AES-256-GCM returned a ciphertext of unexpected length');
  out.set(cipher.getAuthTag(), p);
  return end;
}

/** Writes `n` fresh random nonce bytes at `out[at]` (format 3 writes its header before sealing). */
export function drawNonce(out: Uint8Array, at: number, dek: { readonly algorithm?: SealAlgorithm }): number {
  const n = nonceBytesOf(dek);
  writeNonce(out, at, n);
  return at + n;
}

/** header (`src[from, to)`) ‖ place ‖ key in the shared scratch buffer (valid until the next call). */
function joinAad(src: Uint8Array, from: number, to: number, place: Uint8Array, key: Uint8Array): Uint8Array {
  const h = to - from;
  const aad = AAD_SCRATCH.view(h + place.length + key.length);
  for (let i = 0; i < h; i++) aad[i] = src[from + i]!;
  aad.set(place, h);
  aad.set(key, h + place.length);
  return aad;
}

/** Seals already-serialised plaintext at the source position `position`. */
export function sealBytes(dek: DataKey, plaintext: Uint8Array, aad: Uint8Array, position: Position): Uint8Array {
  const pos = positionBytes(position);
  const out = new Uint8Array(sealedLength(dek, pos, plaintext.length));
  sealInto(dek, plaintext, aad, EMPTY, pos, out, 0);
  return out;
}

/** Opens sealed bytes; any mismatch of key, place or content is an 'integrity' error. */
export function openBytes(dek: DataKey, sealed: Uint8Array, aad: Uint8Array, where: string): Uint8Array {
  return openParts(dek, sealed, aad, EMPTY, where);
}

/** `openBytes` with the AAD in its two halves (see `sealInto`); opens format 1 and format 2. */
export function openParts(dek: DataKey, sealed: Uint8Array, place: Uint8Array, key: Uint8Array, where: string): Uint8Array {
  const plain = openPartsTransient(dek, sealed, place, key, where);
  const out = new Uint8Array(plain.length);
  out.set(plain);
  plain.fill(0);
  return out;
}

/**
 * `openParts` into a reused buffer: the plaintext is valid until the next call, and the caller
 * wipes it (`fill(0)`) once it has read it.
 */
export function openPartsTransient(dek: DataKey, sealed: Uint8Array, place: Uint8Array, key: Uint8Array, where: string): Uint8Array {
  if (!isSealedUnder(sealed, dek.id)) {
    const keyId = sealedKeyId(sealed);
    if (keyId === null) {
      throw new ChartlogError('integrity', `${where}: not a sealed value of format ${SEALED_FORMAT_V1}, ${SEALED_FORMAT_V2}, ${ROW_SEAL_FORMAT_V3} or ${ROW_SEAL_FORMAT}`, {
        hint: 'the archive is damaged or was written by an incompatible chartlog version; run `chartlog verify`',
      });
    }
    throw new ChartlogError('integrity', `${where}: sealed under data key ${keyId}, not ${dek.idHex}`, {
      hint: 'open it with the data key it names',
    });
  }
  const v1 = sealed[0] === SEALED_FORMAT_V1;
  if (v1 && dek.algorithm === 'XChaCha20-Poly1305') throw failed(where);
  return openAfterHeader(dek, sealed, v1 ? 1 + KEY_ID_BYTES : headerLength(sealed), place, key, where);
}

/**
 * The AEAD opening of every format: `sealed[0, headerEnd)` is the header (authenticated, except
 * format 1's), then the nonce, ciphertext and tag; AAD header ‖ place ‖ key. The key id is
 * checked by the caller. Transient plaintext, as `openPartsTransient`'s.
 */
export function openAfterHeader(dek: DataKey, sealed: Uint8Array, headerEnd: number, place: Uint8Array, key: Uint8Array, where: string): Uint8Array {
  const v1 = sealed[0] === SEALED_FORMAT_V1;
  const nonceBytes = v1 ? NONCE_BYTES : nonceBytesOf(dek);
  const bodyAt = headerEnd + nonceBytes;
  const tagAt = sealed.length - TAG_BYTES;
  if (tagAt < bodyAt) throw failed(where);
  if (!v1 && dek.algorithm === 'XChaCha20-Poly1305') {
    const aad = joinAad(sealed, 0, headerEnd, place, key);
    for (let i = 0; i < XCHACHA_NONCE_BYTES; i++) XNONCE[i] = sealed[headerEnd + i]!;
    const out = PLAIN_SCRATCH.view(tagAt - bodyAt);
    const ct = CIPHER_SCRATCH.view(sealed.length - bodyAt);
    for (let i = 0; i < ct.length; i++) ct[i] = sealed[bodyAt + i]!;
    try {
      sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, ct, aad, XNONCE, dek.key);
    } catch {
      throw failed(where);
    }
    return out;
  }
  for (let i = 0; i < NONCE_BYTES; i++) IV[i] = sealed[headerEnd + i]!;
  const decipher = createDecipheriv('aes-256-gcm', dek.key, IV, { authTagLength: TAG_BYTES });
  if (!v1) decipher.setAAD(sealed.subarray(0, headerEnd));
  if (place.length > 0) decipher.setAAD(place);
  if (key.length > 0) decipher.setAAD(key);
  for (let i = 0; i < TAG_BYTES; i++) TAG[i] = sealed[tagAt + i]!;
  decipher.setAuthTag(TAG);
  try {
    const body = decipher.update(sealed.subarray(bodyAt, tagAt));
    const final = decipher.final();
    return final.length === 0 ? body : Buffer.concat([body, final]);
  } catch {
    throw failed(where);
  }
}

function failed(where: string): ChartlogError {
  return new ChartlogError('integrity', `${where}: sealed value failed authentication (altered, moved to another row, column or position, or the wrong key)`, {
    hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
  });
}

/** Seals one cell value at the source position `position` (the event's). */
export function sealValue(dek: DataKey, value: CellValue, ctx: SealContext, position: Position): Uint8Array {
  return sealBytes(dek, serializeCell(value), additionalData(ctx), position);
}

/** Opens one cell value sealed by `sealValue` with the same context (format 1 or 2). */
export function openValue(dek: DataKey, sealed: Uint8Array, ctx: SealContext): CellValue {
  const where = `${ctx.source} ${ctx.schema}.${ctx.table}.${ctx.column}`;
  return deserializeCell(openBytes(dek, sealed, additionalData(ctx), where));
}

/** `sealValue` with the AAD already built (aad.ts: `placeAad` + `keyAad`) and the position as `positionBytes`. */
export function sealValueWithAad(dek: DataKey, value: CellValue, place: Uint8Array, key: Uint8Array, pos: Uint8Array): Uint8Array {
  const plaintext = serializeCellTransient(value);
  const out = new Uint8Array(sealedLength(dek, pos, plaintext.length));
  sealInto(dek, plaintext, place, key, pos, out, 0);
  return out;
}

/**
 * Seals values into one reusable buffer, for the codec's hot path: no allocation per value but
 * the cipher's own. A returned view stays valid until `reset()`; the codec resets before each
 * event, after the previous event's sealed values were copied into its message.
 */
export class SealArena {
  private buf = Buffer.alloc(16_384);
  private pos = 0;

  reset(): void {
    this.pos = 0;
  }

  seal(dek: DataKey, value: CellValue, place: Uint8Array, key: Uint8Array, pos: Uint8Array): Buffer {
    const plaintext = serializeCellTransient(value);
    const n = sealedLength(dek, pos, plaintext.length);
    if (this.pos + n > this.buf.length) {
      // Views already handed out keep the old buffer alive until they are dropped.
      this.buf = Buffer.alloc(Math.max(this.buf.length, 2 * n));
      this.pos = 0;
    }
    const at = this.pos;
    this.pos = sealInto(dek, plaintext, place, key, pos, this.buf, at);
    return this.buf.subarray(at, this.pos);
  }
}

/** `openValue` with the AAD already built; `where` names the column for messages. */
export function openValueWithAad(dek: DataKey, sealed: Uint8Array, place: Uint8Array, key: Uint8Array, where: string): CellValue {
  const plain = openPartsTransient(dek, sealed, place, key, where);
  try {
    return deserializeCell(plain);
  } finally {
    plain.fill(0);
  }
}
