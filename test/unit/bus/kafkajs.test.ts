import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
// First: the replacements are made before anything loads kafkajs (as in chartlog itself).
import kafkajs, { fastCrc } from '../../../src/bus/kafkajs.js';
import { crc32c } from '../../../src/bus/crc32c.js';

const require = createRequire(import.meta.url);
const kafkajsCrc = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
interface Encoder {
  buffer: Buffer;
  writeInt32(v: number): Encoder;
  writeBuffer(b: Buffer): Encoder;
  writeString(s: string): Encoder;
  writeVarIntBytes(b: Buffer): Encoder;
}
const EncoderClass = require('kafkajs/src/protocol/encoder.js') as new (size?: number) => Encoder;
type RecordBatchFn = (o: { records: Encoder[] }) => Promise<Encoder>;
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch: RecordBatchFn };
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: { key: Buffer | null; value: Buffer; headers?: Record<string, Buffer> }) => Encoder;

test('kafkajs record batches are checksummed by crc32c.ts once src/bus/kafkajs.ts loaded kafkajs', () => {
  assert.equal(fastCrc, true);
  assert.equal(require('kafkajs/src/protocol/recordBatch/crc32C/index.js'), crc32c);
  assert.equal(typeof kafkajs.Kafka, 'function');
});

test('a record batch of 600 KiB: its CRC field is the CRC-32C of the rest (checked with kafkajs’s own function), its records whole', async () => {
  const values = Array.from({ length: 10 }, () => randomBytes(60 * 1024));
  const batch = (await RecordBatch({ records: values.map((value, i) => Record({ key: Buffer.from(`k${i}`), value })) })).buffer;
  // firstOffset (8), length (4), partitionLeaderEpoch (4), magic (1), crc (4), then what it covers.
  const crc = batch.readUInt32BE(17);
  assert.equal(crc, kafkajsCrc(batch.subarray(21)));
  assert.equal(batch.readInt32BE(8), batch.length - 12, 'the length field counts every byte after it: nothing past the written end');
  for (const v of values) assert.ok(batch.includes(v), 'each value is in the batch, unchanged');
});

test('an encoder grown without zero-filling hands out exactly the bytes written, through every growth', () => {
  // Dirty memory first: freed buffers full of a marker, which an unzeroed buffer may reuse.
  for (let i = 0; i < 50; i++) Buffer.allocUnsafe(256 * 1024).fill(0xab);
  const parts = [randomBytes(3), randomBytes(700), randomBytes(70_000), randomBytes(1)];
  const e = new EncoderClass();
  const want: Buffer[] = [];
  for (const [i, p] of parts.entries()) {
    e.writeInt32(i).writeBuffer(p).writeString('s');
    const n = Buffer.alloc(4);
    n.writeInt32BE(i);
    want.push(n, p, Buffer.from([0, 1]), Buffer.from('s'));
  }
  assert.deepEqual(e.buffer, Buffer.concat(want));
});
