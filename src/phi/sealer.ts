import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import type { CellValue } from '../core/table-schema.js';
import { additionalData, type SealContext } from './aad.js';
import { deserializeCell, serializeCell, serializeCellTransient } from './cell-serialization.js';

/**
 * Field-level sealing of PHI values (docs/architecture.md §3): AES-256-GCM under a data key (DEK).
 *
 * Sealed value bytes: version (1) | key id (16) | nonce (12, random) | ciphertext | tag (16).
 *
 * The additional authenticated data binds a value to where it belongs — source, schema.table,
 * column and the row's primary key — so a sealed value copied to another row or column, or
 * opened under another key, fails with ChartlogError('integrity') instead of yielding plaintext
 * (the AAD is built in aad.ts).
 */

export const SEALED_FORMAT_VERSION = 1;
export const KEY_ID_BYTES = 16;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES;

/** An unwrapped data key. Never log it: only `idHex` may appear in messages. */
export interface DataKey {
  readonly id: Uint8Array;
  readonly idHex: string;
  readonly key: Uint8Array;
}

/**
 * Random nonces drawn from a pool refilled by the CSPRNG: one randomFillSync per 4096 nonces
 * instead of one randomBytes call each. Every nonce is 12 fresh random bytes, handed out once
 * (copied out of the pool before it is refilled).
 */
const NONCE_POOL = Buffer.alloc(NONCE_BYTES * 4096);
let nonceOffset = NONCE_POOL.length;

/**
 * IV and tag buffers reused by every call: createCipheriv, createDecipheriv and setAuthTag copy
 * them into the cipher context, so no view or allocation per value is needed.
 */
const IV = Buffer.alloc(NONCE_BYTES);
const TAG = Buffer.alloc(TAG_BYTES);

/** Takes the next random nonce into IV and copies it to `out` at `at`. */
function writeNonce(out: Uint8Array, at: number): Buffer {
  if (nonceOffset === NONCE_POOL.length) {
    randomFillSync(NONCE_POOL);
    nonceOffset = 0;
  }
  for (let i = 0; i < NONCE_BYTES; i++) out[at + i] = IV[i] = NONCE_POOL[nonceOffset + i]!;
  nonceOffset += NONCE_BYTES;
  return IV;
}

const EMPTY = new Uint8Array(0);

/** The hex key id a sealed value names, or null when the bytes are not a sealed value. */
export function sealedKeyId(sealed: Uint8Array): string | null {
  if (sealed.length < HEADER_BYTES + TAG_BYTES || sealed[0] !== SEALED_FORMAT_VERSION) return null;
  return Buffer.from(sealed.buffer, sealed.byteOffset + 1, KEY_ID_BYTES).toString('hex');
}

/** True when `sealed` is a sealed value that names the data key `id` (no hex conversion). */
export function isSealedUnder(sealed: Uint8Array, id: Uint8Array): boolean {
  if (sealed.length < HEADER_BYTES + TAG_BYTES || sealed[0] !== SEALED_FORMAT_VERSION) return false;
  for (let i = 0; i < KEY_ID_BYTES; i++) if (sealed[1 + i] !== id[i]) return false;
  return true;
}

/** Bytes of the sealed form of `plaintextLength` bytes (GCM ciphertext is as long as its plaintext). */
export function sealedLength(plaintextLength: number): number {
  return HEADER_BYTES + plaintextLength + TAG_BYTES;
}

/**
 * Seals `plaintext` into `out` at `at` (`sealedLength(plaintext.length)` bytes) and returns the
 * end offset. The AAD comes in two halves that GCM authenticates one after the other, which is
 * exactly the same as their concatenation (`additionalData`): no AAD buffer per value.
 */
export function sealInto(dek: DataKey, plaintext: Uint8Array, place: Uint8Array, key: Uint8Array, out: Uint8Array, at: number): number {
  const nonceAt = at + 1 + KEY_ID_BYTES;
  out[at] = SEALED_FORMAT_VERSION;
  out.set(dek.id, at + 1);
  const cipher = createCipheriv('aes-256-gcm', dek.key, writeNonce(out, nonceAt), { authTagLength: TAG_BYTES });
  if (place.length > 0) cipher.setAAD(place);
  if (key.length > 0) cipher.setAAD(key);
  let pos = at + HEADER_BYTES;
  const body = cipher.update(plaintext);
  out.set(body, pos);
  pos += body.length;
  const final = cipher.final();
  if (final.length > 0) {
    out.set(final, pos);
    pos += final.length;
  }
  if (pos !== at + HEADER_BYTES + plaintext.length) throw new ChartlogError('internal', 'AES-256-GCM returned a ciphertext of unexpected length');
  out.set(cipher.getAuthTag(), pos);
  return pos + TAG_BYTES;
}

/** Seals already-serialised plaintext. */
export function sealBytes(dek: DataKey, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const out = new Uint8Array(sealedLength(plaintext.length));
  sealInto(dek, plaintext, aad, EMPTY, out, 0);
  return out;
}

/** Opens sealed bytes; any mismatch of key, place or content is an 'integrity' error. */
export function openBytes(dek: DataKey, sealed: Uint8Array, aad: Uint8Array, where: string): Uint8Array {
  return openParts(dek, sealed, aad, EMPTY, where);
}

/** `openBytes` with the AAD in its two halves (see `sealInto`). */
export function openParts(dek: DataKey, sealed: Uint8Array, place: Uint8Array, key: Uint8Array, where: string): Uint8Array {
  if (!isSealedUnder(sealed, dek.id)) {
    const keyId = sealedKeyId(sealed);
    if (keyId === null) {
      throw new ChartlogError('integrity', `${where}: not a sealed value of format ${SEALED_FORMAT_VERSION}`, {
        hint: 'the archive is damaged or was written by an incompatible chartlog version; run `chartlog verify`',
      });
    }
    throw new ChartlogError('integrity', `${where}: sealed under data key ${keyId}, not ${dek.idHex}`, {
      hint: 'open it with the data key it names',
    });
  }
  for (let i = 0; i < NONCE_BYTES; i++) IV[i] = sealed[1 + KEY_ID_BYTES + i]!;
  const decipher = createDecipheriv('aes-256-gcm', dek.key, IV, { authTagLength: TAG_BYTES });
  if (place.length > 0) decipher.setAAD(place);
  if (key.length > 0) decipher.setAAD(key);
  const tagAt = sealed.length - TAG_BYTES;
  for (let i = 0; i < TAG_BYTES; i++) TAG[i] = sealed[tagAt + i]!;
  decipher.setAuthTag(TAG);
  try {
    const body = decipher.update(sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES));
    const final = decipher.final();
    return final.length === 0 ? body : Buffer.concat([body, final]);
  } catch {
    throw new ChartlogError('integrity', `${where}: sealed value failed authentication (altered, moved to another row or column, or the wrong key)`, {
      hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
    });
  }
}

/** Seals one cell value. */
export function sealValue(dek: DataKey, value: CellValue, ctx: SealContext): Uint8Array {
  return sealBytes(dek, serializeCell(value), additionalData(ctx));
}

/** Opens one cell value sealed by `sealValue` with the same context. */
export function openValue(dek: DataKey, sealed: Uint8Array, ctx: SealContext): CellValue {
  const where = `${ctx.source} ${ctx.schema}.${ctx.table}.${ctx.column}`;
  return deserializeCell(openBytes(dek, sealed, additionalData(ctx), where));
}

/** `sealValue` with the AAD already built (aad.ts: `placeAad` + `keyAad`). */
export function sealValueWithAad(dek: DataKey, value: CellValue, place: Uint8Array, key: Uint8Array): Uint8Array {
  const plaintext = serializeCellTransient(value);
  const out = new Uint8Array(sealedLength(plaintext.length));
  sealInto(dek, plaintext, place, key, out, 0);
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

  seal(dek: DataKey, value: CellValue, place: Uint8Array, key: Uint8Array): Buffer {
    const plaintext = serializeCellTransient(value);
    const n = sealedLength(plaintext.length);
    if (this.pos + n > this.buf.length) {
      // Views already handed out keep the old buffer alive until they are dropped.
      this.buf = Buffer.alloc(Math.max(this.buf.length, 2 * n));
      this.pos = 0;
    }
    const at = this.pos;
    this.pos = sealInto(dek, plaintext, place, key, this.buf, at);
    return this.buf.subarray(at, this.pos);
  }
}

/** `openValue` with the AAD already built; `where` names the column for messages. */
export function openValueWithAad(dek: DataKey, sealed: Uint8Array, place: Uint8Array, key: Uint8Array, where: string): CellValue {
  return deserializeCell(openParts(dek, sealed, place, key, where));
}
