import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EmbeddedBus } from '../../../src/bus/embedded-bus.js';
import type { BusBatch } from '../../../src/codec/bus-message.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';

/** A batch of `messages` messages of `bytes` bytes each. */
function sized(n: number, messages: number, bytes: number): BusBatch {
  const commit = n.toString(16).padStart(16, '0');
  return {
    source: 'clinic',
    position: Position.of(commit, COMMIT_SEQ),
    previous: null,
    txId: null,
    commitTsUs: 0n,
    messages: Array.from({ length: messages }, (_, seq) => ({ table: 'public.t', fingerprint: 'f', key: null, value: new Uint8Array(bytes), position: Position.of(commit, seq) })),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('publish waits while the queued bytes would pass the limit, and goes on once they are taken', async () => {
  const bus = new EmbeddedBus(1024, 10_000);
  await bus.publish(sized(1, 4, 1000)); // 4 000 bytes
  await bus.publish(sized(2, 4, 1000)); // 8 000 bytes
  let third = false;
  const publishing = bus.publish(sized(3, 4, 1000)).then(() => (third = true)); // would make 12 000
  await settle();
  assert.equal(third, false, 'the third batch waits: the queue holds 8 000 of 10 000 bytes');
  assert.equal(bus.bytes, 8000);
  const taken = await bus.take(1, 0);
  assert.equal(taken.batches.length, 1);
  await publishing;
  assert.equal(third, true);
  assert.equal(bus.bytes, 8000);
  assert.equal(bus.size, 2);
});

test('a batch larger than the byte limit still passes when the queue is empty', async () => {
  const bus = new EmbeddedBus(1024, 1000);
  await bus.publish(sized(1, 3, 1000)); // 3 000 bytes alone: must not wait forever
  assert.equal(bus.size, 1);
  let second = false;
  const publishing = bus.publish(sized(2, 1, 10)).then(() => (second = true));
  await settle();
  assert.equal(second, false, 'nothing more fits beside it');
  await bus.take(1024, 0);
  await publishing;
  assert.equal(second, true);
});

test('the batch limit still holds, and take reports when its oldest batch was published', async () => {
  let clock = 1000;
  const bus = new EmbeddedBus(2, Number.POSITIVE_INFINITY, () => clock);
  await bus.publish(sized(1, 1, 1));
  clock = 2000;
  await bus.publish(sized(2, 1, 1));
  let third = false;
  const publishing = bus.publish(sized(3, 1, 1)).then(() => (third = true));
  await settle();
  assert.equal(third, false);
  const taken = await bus.take(1024, 0);
  assert.equal(taken.batches.length, 2);
  assert.equal(taken.oldestPublishedAtMs, 1000);
  await publishing;
  assert.equal((await bus.take(1024, 0)).oldestPublishedAtMs, 2000);
  assert.deepEqual(await bus.take(1024, 0), { batches: [], oldestPublishedAtMs: null });
});
