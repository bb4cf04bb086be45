import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import type { CellValue } from '../core/table-schema.js';
import { deserializeCell, serializeCell } from './cell-serialization.js';

/**
 * Field-level sealing of PHI values (DESIGN.md §3): AES-256-GCM under a data key (DEK).
 *
 * Sealed value bytes: version (1) | key id (16) | nonce (12, random) | ciphertext | tag (16).
 *
 * The additional authenticated data binds a value to where it belongs — source, schema.table,
 * column and the row's primary key — so a sealed value copied to another row or column, or
 * opened under another key, fails with ChartlogError('integrity') instead of yielding plaintext.
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

/** Where a sealed value belongs. */
export interface SealContext {
  readonly source: string;
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /**
   * The row's primary key, in key order: each part the plaintext value or, for a primary-key
   * column that is itself sealed, its sealed bytes (`{ sealed }`). The context of a sealed key
   * column holds only the plain key columns (sealed key bytes are made from it). `undefined`
   * marks a key column missing from the row image. A table without a primary key binds no row.
   */
  readonly key: readonly KeyPart[];
}

export type KeyPart = { readonly value: CellValue } | { readonly sealed: Uint8Array } | undefined;

const AAD_LABEL = new TextEncoder().encode('chartlog-phi-v1');

function lengthPrefixed(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let pos = 0;
  for (const p of parts) {
    view.setUint32(pos, p.length, true);
    out.set(p, pos + 4);
    pos += 4 + p.length;
  }
  return out;
}

/**
 * The AAD's first half: length-prefixed label, source, schema, table and column. It is the same
 * for every row of a column, so the codec computes it once per table version.
 */
export function placeAad(source: string, schema: string, table: string, column: string): Uint8Array {
  const enc = new TextEncoder();
  return lengthPrefixed([AAD_LABEL, enc.encode(source), enc.encode(schema), enc.encode(table), enc.encode(column)]);
}

/** The AAD's second half: the primary-key parts, each length-prefixed and tagged. */
export function keyAad(key: readonly KeyPart[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const part of key) {
    if (part === undefined) parts.push(Uint8Array.of(0));
    else if ('sealed' in part) parts.push(lengthPrefixed([Uint8Array.of(2), part.sealed]));
    else parts.push(lengthPrefixed([Uint8Array.of(1), serializeCell(part.value)]));
  }
  return lengthPrefixed(parts);
}

/** The canonical AAD bytes of a context: every part length-prefixed, so no two contexts collide. */
export function additionalData(ctx: SealContext): Uint8Array {
  return Buffer.concat([placeAad(ctx.source, ctx.schema, ctx.table, ctx.column), keyAad(ctx.key)]);
}

/** Random nonces drawn from a pooled buffer: one syscall per 4096 nonces instead of one each. */
const NONCE_POOL = 4096;
let noncePool = new Uint8Array(0);
let nonceOffset = 0;
function nextNonce(): Uint8Array {
  if (nonceOffset + NONCE_BYTES > noncePool.length) {
    noncePool = new Uint8Array(randomBytes(NONCE_BYTES * NONCE_POOL));
    nonceOffset = 0;
  }
  const nonce = noncePool.subarray(nonceOffset, nonceOffset + NONCE_BYTES);
  nonceOffset += NONCE_BYTES;
  return nonce;
}

/** The hex key id a sealed value names, or null when the bytes are not a sealed value. */
export function sealedKeyId(sealed: Uint8Array): string | null {
  if (sealed.length < HEADER_BYTES + TAG_BYTES || sealed[0] !== SEALED_FORMAT_VERSION) return null;
  return Buffer.from(sealed.buffer, sealed.byteOffset + 1, KEY_ID_BYTES).toString('hex');
}

/** Seals already-serialised plaintext. */
export function sealBytes(dek: DataKey, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = nextNonce();
  const cipher = createCipheriv('aes-256-gcm', dek.key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  const final = cipher.final();
  const tag = cipher.getAuthTag();
  const out = new Uint8Array(HEADER_BYTES + body.length + final.length + TAG_BYTES);
  out[0] = SEALED_FORMAT_VERSION;
  out.set(dek.id, 1);
  out.set(nonce, 1 + KEY_ID_BYTES);
  out.set(body, HEADER_BYTES);
  out.set(final, HEADER_BYTES + body.length);
  out.set(tag, out.length - TAG_BYTES);
  return out;
}

/** Opens sealed bytes; any mismatch of key, place or content is an 'integrity' error. */
export function openBytes(dek: DataKey, sealed: Uint8Array, aad: Uint8Array, where: string): Uint8Array {
  const keyId = sealedKeyId(sealed);
  if (keyId === null) {
    throw new ChartlogError('integrity', `${where}: not a sealed value of format ${SEALED_FORMAT_VERSION}`, {
      hint: 'the archive is damaged or was written by an incompatible chartlog version; run `chartlog verify`',
    });
  }
  if (keyId !== dek.idHex) {
    throw new ChartlogError('integrity', `${where}: sealed under data key ${keyId}, not ${dek.idHex}`, {
      hint: 'open it with the data key it names',
    });
  }
  const decipher = createDecipheriv('aes-256-gcm', dek.key, sealed.subarray(1 + KEY_ID_BYTES, HEADER_BYTES), {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    const body = decipher.update(sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES));
    const final = decipher.final();
    return final.length === 0 ? new Uint8Array(body) : new Uint8Array(Buffer.concat([body, final]));
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

/** `sealValue` with the AAD already built (`placeAad` + `keyAad`), for the codec's hot path. */
export function sealValueWithAad(dek: DataKey, value: CellValue, place: Uint8Array, key: Uint8Array): Uint8Array {
  return sealBytes(dek, serializeCell(value), Buffer.concat([place, key]));
}

/** `openValue` with the AAD already built; `where` names the column for messages. */
export function openValueWithAad(dek: DataKey, sealed: Uint8Array, place: Uint8Array, key: Uint8Array, where: string): CellValue {
  return deserializeCell(openBytes(dek, sealed, Buffer.concat([place, key]), where));
}
