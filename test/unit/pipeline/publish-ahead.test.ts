import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BusBatch, BusMessage } from '../../../src/codec/bus-message.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { PublishAhead } from '../../../src/pipeline/publish-ahead.js';

const pos = (n: number) => Position.of(n.toString(16).padStart(16, '0'), COMMIT_SEQ);
const batch = (n: number): ChangeBatch => ({ source: 'clinic', txId: String(n), position: pos(n), commitTsUs: BigInt(n), snapshot: false, events: [] });

test('batches are published in the order pushed, each after its predecessor, even when later ones encode faster', async () => {
  const published: BusBatch[] = [];
  let encoding = 0;
  let maxEncoding = 0;
  const ahead = new PublishAhead(null, 'clinic', async (b) => {
    encoding++;
    maxEncoding = Math.max(maxEncoding, encoding);
    await sleep(Number(b.commitTsUs) % 2 === 0 ? 20 : 1);
    encoding--;
    return [] as BusMessage[];
  }, async (b) => {
    await sleep(2);
    published.push(b);
  });
  let previous: Position | null = null;
  for (let n = 1; n <= 8; n++) {
    await ahead.push(batch(n), previous);
    previous = pos(n);
  }
  await ahead.drain();
  assert.deepEqual(published.map((b) => b.txId), ['1', '2', '3', '4', '5', '6', '7', '8']);
  assert.deepEqual(published.map((b) => b.previous && Position.format(b.previous)), [null, ...[1, 2, 3, 4, 5, 6, 7].map((n) => Position.format(pos(n)))]);
  assert.equal(maxEncoding, 2, 'the next batch encodes while one is publishing, never more');
  assert.deepEqual(ahead.published, pos(8));
});

test('a failed encode surfaces at the next push, nothing after it is published, and recover says where to start again', async () => {
  const published: string[] = [];
  let failures = 0;
  const ahead = new PublishAhead(pos(0), 'clinic', async (b) => {
    if (b.txId === '3' && failures++ === 0) throw new ChartlogError('storage', 'encode failed', { retriable: true });
    return [];
  }, async (b) => {
    published.push(b.txId!);
  });
  await ahead.push(batch(1), pos(0));
  await ahead.push(batch(2), pos(1));
  await ahead.push(batch(3), pos(2));
  await assert.rejects(ahead.push(batch(4), pos(3)), /encode failed/);
  await assert.rejects(ahead.drain(), /encode failed/);
  assert.deepEqual(published, ['1', '2']);
  assert.deepEqual(await ahead.recover(), pos(2));
  await ahead.push(batch(3), pos(2));
  await ahead.drain();
  assert.deepEqual(published, ['1', '2', '3']);
});

test('a failed publish is reported by drain, and nothing pushed is reported published before it is', async () => {
  const ahead = new PublishAhead(null, 'clinic', async () => [], async () => {
    throw new ChartlogError('internal', 'publish on a closed bus');
  });
  await ahead.push(batch(1), null);
  await assert.rejects(ahead.drain(), /closed bus/);
  assert.equal(ahead.published, null);
});
