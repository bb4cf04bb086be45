import { createRequire, Module } from 'node:module';
import type * as KafkaJS from 'kafkajs';
import { crc32c } from './crc32c.js';

/**
 * kafkajs 2.2.4 (pinned, no release since 2023), loaded with two of its internals replaced where
 * its producer spends CPU without need. chartlog takes kafkajs's values from here, never from
 * 'kafkajs' itself (types may come from there), so the replacements are in place before any
 * kafkajs module is loaded. Both leave every byte kafkajs sends as it was:
 *
 * - The record batch CRC-32C: kafkajs's is a byte-a-step loop, ours eight bytes a step
 *   (crc32c.ts), ≈ 3.5× faster. Its module is put in Node's CommonJS cache under its own file
 *   name before kafkajs loads and requires it. Where kafkajs was loaded before this module (a
 *   test that imports 'kafkajs' first), kafkajs keeps its own: slower, the same result.
 * - The encoder's buffer growth: kafkajs zero-fills every buffer it grows into (`Buffer.alloc`),
 *   and one produce request grows through several encoders (record, record batch, request,
 *   size prefix) to twice its size each. Its encoder only ever writes at its offset and hands
 *   out `buf.slice(0, offset)`, so the bytes past the offset are never read or sent: the new
 *   buffer need not be zeroed (`Buffer.allocUnsafe`).
 */
const require = createRequire(import.meta.url);

const crcModule = require.resolve('kafkajs/src/protocol/recordBatch/crc32C/index.js');
if (require.cache[crcModule] === undefined) {
  const m = new Module(crcModule);
  m.filename = crcModule;
  m.loaded = true;
  m.exports = crc32c;
  require.cache[crcModule] = m;
}

interface KafkaEncoder {
  buf: Buffer;
  offset: number;
}
const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: { ensureAvailable(length: number): void }; nextPowerOfTwo(n: number): number };
Encoder.prototype.ensureAvailable = function ensureAvailable(this: KafkaEncoder, length: number): void {
  if (this.offset + length > this.buf.length) {
    const grown = Buffer.allocUnsafe(Encoder.nextPowerOfTwo(this.offset + length));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
  }
};

/** Whether kafkajs's record batches use crc32c.ts (false: kafkajs was loaded before this module). */
export const fastCrc = (require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as unknown) === crc32c;

const kafkajs = require('kafkajs') as typeof KafkaJS;
export default kafkajs;
export const { CompressionCodecs, ConfigResourceTypes, Partitioners } = kafkajs;
// Values and types of one name, as 'kafkajs' exports them.
export const Kafka = kafkajs.Kafka;
export type Kafka = KafkaJS.Kafka;
export const CompressionTypes = kafkajs.CompressionTypes;
export type CompressionTypes = KafkaJS.CompressionTypes;
export const logLevel = kafkajs.logLevel;
export type logLevel = KafkaJS.logLevel;
