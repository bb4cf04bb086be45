import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { singleObjectHeader } from '../../../src/codec/single-object.js';
import { encodeHeaders, encodeTransactionMessage, tableTopic, transactionsTopic, type KafkaSettings } from '../../../src/bus/kafka-topics.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { KafkaCompactor } from '../../../src/compactor/kafka-compactor.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { envelopes, T0, types } from '../../support/fake-envelopes.js';

// The commit rule of the Kafka compactor, driven message by message through a fake of the slice
// of kafkajs it uses. The real protocol is in test/integration/kafka-bus.test.ts.

const settings: KafkaSettings = { brokers: ['127.0.0.1:1'], topicPrefix: 'cl', clientId: 'c', groupId: 'g', sessionTimeoutMs: 30_000, compression: 'gzip', tls: { mode: 'disable' } };
const PATIENTS = tableTopic('cl', 'clinic', 'public.patients');
const TX = transactionsTopic('cl', 'clinic');

type Commit = { topic: string; partition: number; offset: string };

class FakeGroupKafka {
  commits: Commit[][] = [];
  eachBatch: ((p: EachBatchPayload) => Promise<void>) | null = null;
  admin() {
    return { connect: async () => {}, disconnect: async () => {}, listTopics: async () => [PATIENTS, TX, 'cl.clinic.__schemas', 'cl.other.public.x'] };
  }
  consumer() {
    return {
      events: { GROUP_JOIN: 'consumer.group_join', CRASH: 'consumer.crash' },
      on: () => undefined,
      connect: async () => {},
      subscribe: async ({ topics }: { topics: string[] }) => assert.deepEqual(topics.sort(), [PATIENTS, TX].sort(), 'only this source, no schema topic'),
      run: async ({ eachBatch }: { eachBatch: (p: EachBatchPayload) => Promise<void> }) => void (this.eachBatch = eachBatch),
      commitOffsets: async (o: Commit[]) => void this.commits.push(o),
      disconnect: async () => {},
    };
  }
  asKafka(): Kafka {
    return this as unknown as Kafka;
  }
  /** The newest committed offset per topic/partition. */
  committed(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const c of this.commits) for (const o of c) out[`${o.topic === TX ? 'tx' : 'patients'}/${o.partition}`] = o.offset;
    return out;
  }
  async deliver(topic: string, partition: number, messages: KafkaMessage[]): Promise<void> {
    await this.eachBatch!({ batch: { topic, partition, messages }, isRunning: () => true, isStale: () => false } as unknown as EachBatchPayload);
  }
}

const commitOf = (n: number) => n.toString(16).padStart(16, '0');
const txPos = (n: number) => Position.of(commitOf(n), COMMIT_SEQ);

function event(n: number, offset: number): KafkaMessage {
  const position = Position.of(commitOf(n), 0);
  const ts = T0 + BigInt(n);
  const body = types['00000000000000a1']!.toBuffer({ pos: Position.format(position), ts: Number(ts), v: `row ${n}` });
  return {
    offset: String(offset),
    key: Buffer.from('k'),
    value: Buffer.concat([singleObjectHeader(0xa1n), body]),
    headers: encodeHeaders({ table: 'public.patients', fingerprint: '00000000000000a1', position, txId: String(n), commitTsUs: ts }),
    timestamp: '0',
    attributes: 0,
  } as unknown as KafkaMessage;
}

function txRecord(status: 'BEGIN' | 'END', n: number, offset: number, previous: number | null = n - 1 > 0 ? n - 1 : null): KafkaMessage {
  const record = { pos: Position.format(txPos(n)), previous: previous === null ? null : Position.format(txPos(previous)), txId: String(n), commitTsUs: Number(T0 + BigInt(n)), tables: { 'public.patients': 1 } };
  return { offset: String(offset), key: null, value: encodeTransactionMessage(status, record), headers: {}, timestamp: '0', attributes: 0 } as unknown as KafkaMessage;
}

async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 10_000; !(await cond()); await sleep(5)) if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
}

/** Runs `body` with a started compactor, and stops it whatever happens (a failed assertion included). */
async function withCompactor(store: MemoryObjectStore, body: (s: Awaited<ReturnType<typeof started>>) => Promise<void>): Promise<void> {
  const s = await started(store);
  try {
    await body(s);
  } finally {
    await s.c.abandon();
    s.stop.abort();
    await s.running.catch(() => undefined);
  }
}

async function started(store: MemoryObjectStore) {
  const fake = new FakeGroupKafka();
  const stop = new AbortController();
  const c = new KafkaCompactor(store, 'clinic', envelopes, { settings, kafka: fake.asKafka(), flushIntervalMs: 10, maxPartBytes: 1 << 20, closeGraceMs: 30 * 24 * 3_600_000, snapshotId: null }, stop.signal);
  await c.start();
  const running = c.run(stop.signal);
  await until('the consumer runs', () => fake.eachBatch !== null);
  return { fake, c, stop, running };
}

const checkpointOf = async (store: MemoryObjectStore) => (await readCheckpoint(store, 'clinic'))?.position ?? null;

test('offsets are committed up to the first message of a transaction that is not complete and durable', async () => {
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    await fake.deliver(PATIENTS, 0, [event(1, 0), event(2, 1), event(3, 2)]);
    await fake.deliver(TX, 0, [txRecord('BEGIN', 1, 0), txRecord('END', 1, 1), txRecord('BEGIN', 2, 2)]);
    await until('T1 settles', async () => Position.equals((await checkpointOf(store)) ?? txPos(0), txPos(1)));
    await until('a commit', () => fake.committed()['tx/0'] === '2');
    assert.deepEqual(fake.committed(), { 'patients/0': '1', 'tx/0': '2' }, 'T2 and T3 have no END yet: their messages stay uncommitted');
    assert.ok([...store.objects.keys()].some((k) => k.includes('/parts/') && k.includes('public.patients/0000000000000001')), 'the parts came first');

    await fake.deliver(TX, 0, [txRecord('END', 2, 3), txRecord('BEGIN', 3, 4), txRecord('END', 3, 5)]);
    await until('T3 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(3)));
    await until('everything committed', () => fake.committed()['tx/0'] === '6');
    assert.deepEqual(fake.committed(), { 'patients/0': '3', 'tx/0': '6' });
    assert.deepEqual(await checkpointOf(store), txPos(3));

    // Redelivered (after a rebalance): at or below the settled position, skipped, not stored again.
    const writes = store.writes;
    await fake.deliver(PATIENTS, 0, [event(2, 1), event(3, 2)]);
    await sleep(50);
    assert.equal(c.stats.skipped, 2);
    assert.equal(store.writes, writes, 'nothing new written');
  });
});

test('a transaction whose predecessor has not arrived waits for it, even when complete', async () => {
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    await fake.deliver(PATIENTS, 0, [event(1, 0), event(2, 1), event(3, 2)]);
    // T3's END overtook T2's (a retried request): T3 is complete, but T2 is not there yet.
    await fake.deliver(TX, 0, [txRecord('END', 1, 0), txRecord('END', 3, 1)]);
    await until('T1 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(1)));
    await sleep(60);
    assert.deepEqual(c.settledPosition, txPos(1), 'T3 does not settle before T2');
    assert.equal(fake.committed()['tx/0'], '1');
    await fake.deliver(TX, 0, [txRecord('END', 2, 2)]);
    await until('T3 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(3)));
  });
});

test('while the store refuses writes nothing is committed and no checkpoint is written', async () => {
  const store = new MemoryObjectStore();
  store.failNext(1_000_000);
  await withCompactor(store, async ({ fake, c }) => {
    await fake.deliver(PATIENTS, 0, [event(1, 0)]);
    await fake.deliver(TX, 0, [txRecord('BEGIN', 1, 0), txRecord('END', 1, 1)]);
    await sleep(400);
    assert.deepEqual(fake.commits, []);
    assert.equal(c.settledPosition, null);
    assert.equal(store.objects.size, 0);
  });
});
