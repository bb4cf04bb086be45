import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import { keyPartition, murmur2 } from '../../../src/bus/key-partition.js';

const metadata = (count: number): PartitionMetadata[] => Array.from({ length: count }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 0, replicas: [], isr: [], offlineReplicas: [] }));

test('murmur2 gives the Java client’s values (org.apache.kafka.common.utils.UtilsTest)', () => {
  const cases: [string | number[], number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    [[0x61, 0x62, 0x63], 479470107],
  ];
  for (const [input, expected] of cases) assert.equal(murmur2(Buffer.from(input as string)), expected, String(input));
});

test('keyPartition places every key where kafkajs’s default partitioner does: all lengths mod 4, high bytes, 1 to 13 partitions', () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  let differ = 0;
  for (let n = 0; n < 3000; n++) {
    const key = n < 256 ? Buffer.from([n, 0xff - n, 0x80 | n].slice(0, n % 4)) : randomBytes(n % 41);
    const partitions = 1 + (n % 13);
    const want = kafkajs({ topic: 't', partitionMetadata: metadata(partitions), message: { key, value: null } });
    if (keyPartition(key, partitions) !== want) differ++;
  }
  assert.equal(differ, 0);
  // A view into a larger buffer hashes its own bytes only.
  const whole = Buffer.from('xxpatient-42yy');
  assert.equal(keyPartition(whole.subarray(2, 12), 7), keyPartition(Buffer.from('patient-42'), 7));
});

test('the comparison can fail: another seed places keys elsewhere', () => {
  const kafkajs = Partitioners.DefaultPartitioner();
  const shifted = (key: Buffer) => ((murmur2(Buffer.concat([Buffer.from([1]), key])) & 0x7fffffff) % 8);
  let differ = 0;
  for (let n = 0; n < 200; n++) {
    const key = Buffer.from(`patient-${n}`);
    if (shifted(key) !== kafkajs({ topic: 't', partitionMetadata: metadata(8), message: { key, value: null } })) differ++;
  }
  assert.ok(differ > 100, `only ${differ} of 200 differ`);
});
