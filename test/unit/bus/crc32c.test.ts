import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { crc32c } from '../../../src/bus/crc32c.js';

const require = createRequire(import.meta.url);
/** kafkajs's own byte-a-step CRC-32C (the inner module, which src/bus/kafkajs.ts does not replace). */
const kafkajsCrc = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;

test('crc32c gives the published CRC-32C check values (RFC 3720 B.4 and the "123456789" check)', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
  assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  assert.equal(crc32c(Buffer.alloc(0)), 0);
});

test('crc32c equals kafkajs’s CRC-32C on every length 0..300 (each tail of the 8-byte steps), offsets into a larger buffer, and 512 KiB', () => {
  const big = randomBytes(4096);
  for (let n = 0; n <= 300; n++) {
    const b = big.subarray(n % 7, (n % 7) + n);
    assert.equal(crc32c(b), kafkajsCrc(b), `length ${n}`);
  }
  const batch = randomBytes(512 * 1024);
  assert.equal(crc32c(batch), kafkajsCrc(batch));
  // A changed byte changes the checksum (the comparison above can fail).
  const before = crc32c(batch);
  batch[300_001] = batch[300_001]! ^ 1;
  assert.notEqual(crc32c(batch), before);
});
