import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Kafka } from 'kafkajs';
import { decodeTableRecord } from '../../src/bus/table-record.js';
import { Position } from '../../src/core/position.js';

/** The position (`Position.format`) of every event of every record in the table topics under `prefix`, read from the start. */
export async function kafkaTablePositions(kafka: Kafka, admin: Admin, prefix: string, timeoutMs = 120_000): Promise<string[]> {
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix) && !t.endsWith('__transactions') && !t.endsWith('__schemas') && !t.endsWith('__progress'));
  const want = new Map<string, bigint>();
  for (const topic of topics) for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > 0n) want.set(`${topic}/${p.partition}`, BigInt(p.high));
  const out: string[] = [];
  const consumer = kafka.consumer({ groupId: `read-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  if (want.size === 0) done();
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      const key = `${topic}/${partition}`;
      const high = want.get(key);
      if (high === undefined || BigInt(message.offset) >= high) return;
      for (const e of decodeTableRecord(message, `${key}@${message.offset}`).events) out.push(Position.format(e.position));
      if (BigInt(message.offset) + 1n >= high) {
        want.delete(key);
        if (want.size === 0) done();
      }
    },
  });
  await Promise.race([finished, sleep(timeoutMs).then(() => assert.fail(`reading the table topics did not finish: ${[...want.keys()].join(', ')}`))]);
  await consumer.disconnect();
  return out;
}

/** Positions one side has and the other lacks (the no-loss/no-extra check). */
export function positionSetDiff(archive: ReadonlySet<string>, kafka: ReadonlySet<string>): { missing: string[]; extra: string[] } {
  return { missing: [...kafka].filter((p) => !archive.has(p)), extra: [...archive].filter((p) => !kafka.has(p)) };
}
