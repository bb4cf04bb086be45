import { UNCHANGED, type CellValue, type Row } from '../core/table-schema.js';
import { serializeCell, serializeCellTransient } from './cell-serialization.js';

/**
 * The additional authenticated data of a sealed PHI value (docs/architecture.md §3): it binds a
 * value to where it belongs — source, schema.table, column and the row's primary key — so a
 * sealed value copied to another row or column fails to open instead of yielding plaintext.
 * Every AAD chartlog seals or opens with is built here.
 */

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

/** A primary-key column of a table version, in key order, and whether it is sealed. */
export interface KeyColumn {
  readonly name: string;
  readonly sealed: boolean;
}

const AAD_LABEL = new TextEncoder().encode('chartlog-phi-v1');

/** Little-endian uint32, written bytewise: a DataView on `out.buffer` would move a small array off the heap. */
function putUint32LE(out: Uint8Array, at: number, n: number): void {
  out[at] = n & 0xff;
  out[at + 1] = (n >>> 8) & 0xff;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = n >>> 24;
}

function lengthPrefixed(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += 4 + p.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    putUint32LE(out, pos, p.length);
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

/**
 * The AAD's second half: the primary-key parts, each length-prefixed and tagged:
 * lengthPrefixed(part…) where a part is [0] (missing), lengthPrefixed([2], sealed bytes) or
 * lengthPrefixed([1], serializeCell(value)). Written in one pass; the common one-part key
 * without an allocation but the result.
 */
export function keyAad(key: readonly KeyPart[]): Uint8Array {
  if (key.length === 1) {
    const part = key[0];
    if (part !== undefined && !('sealed' in part)) return singleValueKeyAad(part.value);
  }
  const parts: Uint8Array[] = [];
  for (const part of key) {
    if (part === undefined) parts.push(Uint8Array.of(0));
    else if ('sealed' in part) parts.push(lengthPrefixed([Uint8Array.of(2), part.sealed]));
    else parts.push(lengthPrefixed([Uint8Array.of(1), serializeCell(part.value)]));
  }
  return lengthPrefixed(parts);
}

/** `keyAad([{ value: v }])`: one part, a plain value. */
function singleValueKeyAad(v: CellValue): Uint8Array {
  const cell = serializeCellTransient(v);
  const out = new Uint8Array(4 + 4 + 1 + 4 + cell.length);
  putUint32LE(out, 0, 4 + 1 + 4 + cell.length);
  putUint32LE(out, 4, 1);
  out[8] = 1;
  putUint32LE(out, 9, cell.length);
  out.set(cell, 13);
  return out;
}

/** The canonical AAD bytes of a context: every part length-prefixed, so no two contexts collide. */
export function additionalData(ctx: SealContext): Uint8Array {
  return Buffer.concat([placeAad(ctx.source, ctx.schema, ctx.table, ctx.column), keyAad(ctx.key)]);
}

/**
 * The key half of the AAD for sealing a plaintext row's values: a sealed key column binds the
 * plain key columns only (`plainOnly`; its own sealed bytes are made from them); every other
 * sealed column binds the whole key, sealed key columns as their sealed bytes (`sealedKeys`).
 */
export function sealingKeyAad(key: readonly KeyColumn[], row: Row, sealedKeys: ReadonlyMap<string, Uint8Array> | null, plainOnly: boolean): Uint8Array {
  // The common key, one plain column with a value: keyAad's single-value bytes without the
  // array and part object per row (the same bytes).
  if (key.length === 1 && !key[0]!.sealed && sealedKeys === null) {
    const v = row[key[0]!.name];
    if (v !== undefined && v !== UNCHANGED && Object.hasOwn(row, key[0]!.name)) return singleValueKeyAad(v);
  }
  const parts: KeyPart[] = [];
  for (const k of key) {
    if (plainOnly && k.sealed) continue;
    if (!Object.hasOwn(row, k.name)) {
      parts.push(undefined);
      continue;
    }
    const sealed = sealedKeys?.get(k.name);
    if (sealed) {
      parts.push({ sealed });
      continue;
    }
    const v = row[k.name]!;
    parts.push(v === UNCHANGED ? undefined : { value: v });
  }
  return keyAad(parts);
}

/**
 * The key half of the AAD for opening a row as it was sealed: a sealed key column binds the
 * plain key columns only (`plainOnly`); every other sealed column the whole key, sealed key
 * columns as their sealed bytes.
 */
export function openingKeyAad(key: readonly KeyColumn[], row: Row, plainOnly: boolean): Uint8Array {
  const parts: KeyPart[] = [];
  for (const k of key) {
    if (plainOnly && k.sealed) continue;
    if (!Object.hasOwn(row, k.name)) {
      parts.push(undefined);
      continue;
    }
    const kv = row[k.name]!;
    if (kv === UNCHANGED) parts.push(undefined);
    else parts.push(k.sealed && kv instanceof Uint8Array ? { sealed: kv } : { value: kv });
  }
  return keyAad(parts);
}
