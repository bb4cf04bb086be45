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

/**
 * `parseScaledDecimal` for the common short value, without the strings and BigInt it makes on
 * the way (a large part of the codec's garbage per row): the unscaled value as a number when
 * `text` is in canonical form with at most 15 digits and at most `precision` (exact in a
 * double); undefined when `parseScaledDecimal` must decide (it then gives null or the value).
 */
export function smallScaledDecimal(text: string, scale: number, precision: number): number | undefined {
  const n = text.length;
  const negative = text.charCodeAt(0) === 0x2d; // '-'
  const intStart = negative ? 1 : 0;
  let i = intStart;
  let v = 0;
  for (; i < n; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
  }
  const intDigits = i - intStart;
  // A leading zero is canonical only as the whole integer part ("0.50", never "00.50").
  if (intDigits === 0 || (intDigits > 1 && text.charCodeAt(intStart) === 0x30)) return undefined;
  if (scale > 0) {
    if (text.charCodeAt(i) !== 0x2e || n - i - 1 !== scale) return undefined; // '.', then exactly `scale` digits
    for (i++; i < n; i++) {
      const d = text.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) return undefined;
      v = v * 10 + d;
    }
  } else if (i !== n) return undefined;
  if (intDigits + scale > 15 || intDigits + scale > precision) return undefined;
  if (negative && v === 0) return undefined; // '-0.00' is not what a decoder writes back
  return negative ? -v : v;
}

export function formatScaledDecimal(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
  return negative ? `-${text}` : text;
}

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;

/** Minimal big-endian two's-complement bytes, as Avro's decimal and Java's BigInteger use. */
export function bigintToTwosComplement(n: bigint): Uint8Array {
  if (n >= INT32_MIN && n <= INT32_MAX) {
    // Most unscaled decimals: 32-bit integer arithmetic (>> keeps the sign).
    let v = Number(n);
    const length = v >= -0x80 && v < 0x80 ? 1 : v >= -0x8000 && v < 0x8000 ? 2 : v >= -0x800000 && v < 0x800000 ? 3 : 4;
    const out = new Uint8Array(length);
    for (let i = length - 1; i >= 0; i--) {
      out[i] = v & 0xff;
      v >>= 8;
    }
    return out;
  }
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
  if (bytes.length <= 6) {
    // Below 2^48: exact in a plain number.
    let u = 0;
    for (let i = 0; i < bytes.length; i++) u = u * 256 + bytes[i]!;
    return BigInt(bytes[0]! & 0x80 ? u - 2 ** (8 * bytes.length) : u);
  }
  let u = 0n;
  for (const b of bytes) u = (u << 8n) | BigInt(b);
  return bytes[0]! & 0x80 ? u - (1n << BigInt(8 * bytes.length)) : u;
}
