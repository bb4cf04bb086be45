/**
 * CRC-64-AVRO, the 64-bit Rabin fingerprint the Avro specification defines for schema
 * fingerprints (and that single-object encoding puts after `C3 01`). avsc's own
 * `Type#fingerprint` hashes avsc's export with MD5/SHA, not this, so it is computed here.
 */

const EMPTY = 0xc15d213aa4d7a795n;
const MASK = 0xffffffffffffffffn;

const TABLE: readonly bigint[] = (() => {
  const table: bigint[] = [];
  for (let i = 0n; i < 256n; i++) {
    let fp = i;
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & (-(fp & 1n) & MASK));
    table.push(fp);
  }
  return table;
})();

/** The fingerprint as an unsigned 64-bit value. */
export function rabinFingerprint64(data: Uint8Array | string): bigint {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  let fp = EMPTY;
  for (const b of bytes) fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(b)) & 0xffn)]!;
  return fp;
}

/** 16 lowercase hex digits, most significant first: the form used in object names. */
export function fingerprintHex(fp: bigint): string {
  return fp.toString(16).padStart(16, '0');
}

/** The 8 bytes single-object encoding carries: little-endian. */
export function fingerprintBytesLE(fp: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, fp, true);
  return out;
}
