import { ChartlogError } from '../core/errors.js';
import { fingerprintBytesLE } from './rabin-fingerprint.js';

/**
 * Avro single-object framing, the one definition of it: `C3 01`, the CRC-64-AVRO fingerprint of
 * the writer schema little-endian (8 bytes), then the record body. Bus messages carry it; the
 * archive stores record bodies only and puts the header back when it reads them.
 */

export const SINGLE_OBJECT_MAGIC = Uint8Array.of(0xc3, 0x01);

/** Bytes before the record body in a single-object message. */
export const SINGLE_OBJECT_HEADER_BYTES = SINGLE_OBJECT_MAGIC.length + 8;

/** The header of every message written with the schema `fingerprint`. */
export function singleObjectHeader(fingerprint: bigint): Uint8Array {
  const out = new Uint8Array(SINGLE_OBJECT_HEADER_BYTES);
  out.set(SINGLE_OBJECT_MAGIC, 0);
  out.set(fingerprintBytesLE(fingerprint), SINGLE_OBJECT_MAGIC.length);
  return out;
}

/** A whole message: a header (`singleObjectHeader`) and a record body. */
export function singleObject(header: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}

/** A message's writer-schema fingerprint, without decoding it. */
export function singleObjectFingerprint(message: Uint8Array): bigint {
  if (message.length < SINGLE_OBJECT_HEADER_BYTES || message[0] !== SINGLE_OBJECT_MAGIC[0] || message[1] !== SINGLE_OBJECT_MAGIC[1]) {
    throw new ChartlogError('integrity', 'not an Avro single-object message (no C3 01 marker)', {
      hint: 'the object is damaged or not a chartlog change record',
    });
  }
  return new DataView(message.buffer, message.byteOffset + SINGLE_OBJECT_MAGIC.length, 8).getBigUint64(0, true);
}

/** The Avro record body inside a single-object message. */
export function recordBody(value: Uint8Array): Uint8Array {
  return value.subarray(SINGLE_OBJECT_HEADER_BYTES);
}
