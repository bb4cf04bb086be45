/**
 * Exact decimal text ↔ Avro `decimal` (unscaled two's-complement big-endian integer plus the
 * column's scale). Only text in the one form a decoder can reproduce is mapped; anything else
 * (NaN, Infinity, '-0.00', '1e5', a different number of fraction digits) stays text, so no value
 * ever changes on the way through.
 */

const DECIMAL_TEXT = /^-?\d+(?:\.\d+)?$/;

/** The unscaled value of `text` at `scale`, or null when the text is not in canonical form. */
export function parseScaledDecimal(text: string, scale: number, precision: number): bigint | null {
  if (!DECIMAL_TEXT.test(text)) return null;
  const negative = text.startsWith('-');
  const body = negative ? text.slice(1) : text;
  const dot = body.indexOf('.');
  const intPart = dot < 0 ? body : body.slice(0, dot);
  const fraction = dot < 0 ? '' : body.slice(dot + 1);
  if (fraction.length !== scale) return null;
  const digits = (intPart + fraction).replace(/^0+(?=\d)/, '');
  if (digits.length > precision && digits !== '0') return null;
  const unscaled = BigInt(intPart + fraction) * (negative ? -1n : 1n);
  return formatScaledDecimal(unscaled, scale) === text ? unscaled : null;
}

export function formatScaledDecimal(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
  return negative ? `-${text}` : text;
}

/** Minimal big-endian two's-complement bytes, as Avro's decimal and Java's BigInteger use. */
export function bigintToTwosComplement(n: bigint): Uint8Array {
  let length = 1;
  while (n < -(1n << BigInt(8 * length - 1)) || n >= 1n << BigInt(8 * length - 1)) length++;
  let u = n < 0n ? (1n << BigInt(8 * length)) + n : n;
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(u & 0xffn);
    u >>= 8n;
  }
  return out;
}

export function twosComplementToBigint(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return 0n;
  let u = 0n;
  for (const b of bytes) u = (u << 8n) | BigInt(b);
  return bytes[0]! & 0x80 ? u - (1n << BigInt(8 * bytes.length)) : u;
}
