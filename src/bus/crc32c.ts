/**
 * CRC-32C (Castagnoli), the checksum of a Kafka record batch, eight bytes a step ("slicing by
 * 8": eight 256-entry tables, one lookup per byte but no dependency from byte to byte). kafkajs
 * 2.2.4 computes it a byte a step over every record batch it produces; on the bus's 512 KiB
 * batches that was the largest single cost of producing (≈ 18 % of the producer's CPU,
 * benchmarks/kafka-path.bench.ts with --cpu-prof). Node 20 has no CRC-32C of its own.
 */
const POLY = 0x82f63b78; // reflected Castagnoli polynomial

const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let k = 1; k < 8; k++) {
    const prev = T[(k - 1) * 256 + n]!;
    T[k * 256 + n] = (prev >>> 8) ^ T[prev & 0xff]!;
  }
}

/** The CRC-32C of `buf`, as an unsigned 32-bit number (crc32c("123456789") = 0xe3069283). */
export function crc32c(buf: Uint8Array): number {
  let crc = -1;
  let i = 0;
  const n = buf.length;
  for (const end = n - (n & 7); i < end; i += 8) {
    const a = (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24)) ^ crc;
    const b = buf[i + 4]! | (buf[i + 5]! << 8) | (buf[i + 6]! << 16) | (buf[i + 7]! << 24);
    crc =
      T[1792 + (a & 0xff)]! ^
      T[1536 + ((a >>> 8) & 0xff)]! ^
      T[1280 + ((a >>> 16) & 0xff)]! ^
      T[1024 + (a >>> 24)]! ^
      T[768 + (b & 0xff)]! ^
      T[512 + ((b >>> 8) & 0xff)]! ^
      T[256 + ((b >>> 16) & 0xff)]! ^
      T[b >>> 24]!;
  }
  for (; i < n; i++) crc = T[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}
