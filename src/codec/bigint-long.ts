import avro from 'avsc';

/**
 * avsc's `long` reads and writes JS numbers and throws beyond 2^53; this one uses bigint for
 * every long, so 64-bit integers and microsecond timestamps never pass through a float.
 * Pass `bigintTypeHook` as `typeHook` to `Type.forSchema`: a `registry` entry would miss longs
 * written as objects (`{"type": "long", "logicalType": …}`), which avsc builds directly.
 */
export const BIGINT_LONG = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => buf.readBigInt64LE(0),
  toBuffer: (n: bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n, 0);
    return buf;
  },
  fromJSON: (v: number | string) => BigInt(v),
  toJSON: (n: bigint) => (n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString()),
  isValid: (n: unknown) => typeof n === 'bigint' && BigInt.asIntN(64, n) === n,
  compare: (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0),
});

export function bigintTypeHook(schema: unknown): avro.Type | undefined {
  if (schema === 'long') return BIGINT_LONG;
  if (schema !== null && typeof schema === 'object' && !Array.isArray(schema) && (schema as { type?: unknown }).type === 'long') {
    return BIGINT_LONG;
  }
  return undefined;
}
