import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CompressionTypes, type Admin, type Kafka, type KafkaMessage } from 'kafkajs';
import { decodeTableRecord } from '../../src/bus/table-record.js';
import { Position } from '../../src/core/position.js';
import type { ScannedObject } from './leak-scan.js';

/**
 * Reads every message of `topics` from the start up to each partition's high watermark as it is
 * now, calling `each` for each, in order within a partition.
 */
export async function readKafkaTopics(kafka: Kafka, admin: Admin, topics: readonly string[], each: (topic: string, partition: number, message: KafkaMessage) => void, timeoutMs = 120_000): Promise<void> {
  const want = new Map<string, bigint>();
  for (const topic of topics) for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > 0n) want.set(`${topic}/${p.partition}`, BigInt(p.high));
  if (want.size === 0) return;
  const consumer = kafka.consumer({ groupId: `read-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        const key = `${topic}/${partition}`;
        const high = want.get(key);
        if (high === undefined || BigInt(message.offset) >= high) return;
        each(topic, partition, message);
        if (BigInt(message.offset) + 1n >= high) {
          want.delete(key);
          if (want.size === 0) done();
        }
      },
    });
    await Promise.race([finished, sleep(timeoutMs).then(() => assert.fail(`reading the topics did not finish: ${[...want.keys()].join(', ')}`))]);
  } finally {
    await consumer.disconnect();
  }
}

/** The position (`Position.format`) of every event of every record in the table topics under `prefix`, read from the start. */
export async function kafkaTablePositions(kafka: Kafka, admin: Admin, prefix: string, timeoutMs = 120_000): Promise<string[]> {
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix) && !t.endsWith('__transactions') && !t.endsWith('__schemas') && !t.endsWith('__progress'));
  const out: string[] = [];
  await readKafkaTopics(kafka, admin, topics, (topic, partition, message) => {
    for (const e of decodeTableRecord(message, `${topic}/${partition}@${message.offset}`).events) out.push(Position.format(e.position));
  }, timeoutMs);
  return out;
}

/**
 * Every message of every topic under `prefix` (table, transactions, schemas and progress topics),
 * each as one object for the leak scan: its key, value and header values as the consumer gets
 * them (batches decompressed), apart from each other by a zero byte.
 */
export async function kafkaTopicObjects(kafka: Kafka, admin: Admin, prefix: string): Promise<ScannedObject[]> {
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
  const out: ScannedObject[] = [];
  await readKafkaTopics(kafka, admin, topics, (topic, partition, m) => {
    const headers = Object.values(m.headers ?? {}).flatMap((h) => (h === undefined ? [] : Array.isArray(h) ? h : [h]));
    const parts = [m.key, m.value, ...headers].flatMap((b) => (b === null || b === undefined ? [] : [Buffer.from(b), Buffer.alloc(1)]));
    out.push({ key: `kafka ${topic}/${partition}@${m.offset}`, bytes: Buffer.concat(parts) });
  });
  return out;
}

/** Positions one side has and the other lacks (the no-loss/no-extra check). */
export function positionSetDiff(archive: ReadonlySet<string>, kafka: ReadonlySet<string>): { missing: string[]; extra: string[] } {
  return { missing: [...kafka].filter((p) => !archive.has(p)), extra: [...archive].filter((p) => !kafka.has(p)) };
}

/**
 * The negative control of a Kafka leak scan: a message whose value holds `canary` among other
 * bytes, sent gzip-compressed to a topic `<prefix>.planted`: the harder case for a scan (chartlog's
 * producer sends uncompressed by default, gzip with `bus.kafka.compression: gzip`).
 */
export async function plantKafkaCanary(kafka: Kafka, admin: Admin, prefix: string, canary: string): Promise<string> {
  const topic = `${prefix}.planted`;
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] });
  const producer = kafka.producer();
  await producer.connect();
  try {
    const value = Buffer.concat([randomBytes(40), Buffer.from(`\u0014${canary}0001`, 'utf8'), randomBytes(40)]);
    await producer.send({ topic, compression: CompressionTypes.GZIP, acks: -1, messages: [{ key: 'k', value }] });
  } finally {
    await producer.disconnect();
  }
  return topic;
}
