import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EachBatchPayload, Kafka, KafkaMessage, Message, TopicMessages } from 'kafkajs';
import { parseConfig } from '../../../src/config/load.js';
import { runKafkaSourcePipeline } from '../../../src/pipeline/kafka-pipeline.js';
import { Position } from '../../../src/core/position.js';
import { HEADER, tableTopic, transactionsTopic } from '../../../src/bus/kafka-topics.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { schemaKey } from '../../../src/archive/layout.js';
import { storedSections } from '../../support/stored-sections.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { envelopes } from '../../support/fake-envelopes.js';
import { commitOf, ScriptedConnector, scriptedEncoder, scriptedTxn as txn } from '../../support/scripted-source.js';

// A clean stop of the pipeline on the Kafka bus while the compactor's transactions partition
// lags behind its table partitions (seen in run-crash: the single transactions partition, two
// records per transaction, was consumed seconds after the table topics). The table events were
// stored, their END records were still only in Kafka, and the compactor left at SIGTERM: the
// store held thousands of events "belonging to no logged transaction" for `chartlog verify`.
// Kafka here is an in-memory fake of the slice of kafkajs the bus and the compactor use, where
// the test decides when the transactions partition is delivered.

const PREFIX = 'cl';
const TX = transactionsTopic(PREFIX, 'clinic');
const PATIENTS = tableTopic(PREFIX, 'clinic', 'public.patients');
const config = parseConfig(
  [
    'sources: [{ name: clinic, type: postgres, url: "postgres://x@127.0.0.1:1/db" }]',
    `bus: { type: kafka, kafka: { brokers: ["127.0.0.1:1"], topicPrefix: ${PREFIX}, groupId: g } }`,
    'storage: { url: "file:///nowhere" }',
    'phi: { keyring: "file:///k.json" }',
    'segments: { flushIntervalMs: 50 }',
  ].join('\n'),
  'test.yaml',
  {},
);
const encoder = scriptedEncoder(Buffer.from('k'));

/**
 * One partition per topic, kept in memory. The consumer group has one member, which gets
 * every partition and is fed by a loop; a partition in `held` is not fed until released.
 */
class FakeKafka {
  /** The table topic exists from an earlier run, so the compactor subscribes to it at start. */
  readonly log = new Map<string, KafkaMessage[]>([[PATIENTS, []]]);
  readonly held = new Set<string>();

  private append(topic: string, messages: Message[]): void {
    let list = this.log.get(topic);
    if (!list) this.log.set(topic, (list = []));
    for (const m of messages) {
      const headers = Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(String(v))]));
      const value = m.value === null || m.value === undefined ? null : Buffer.from(m.value);
      const key = m.key === null || m.key === undefined ? null : Buffer.from(m.key);
      list.push({ offset: String(list.length), key, value, headers, timestamp: '0', attributes: 0 } as unknown as KafkaMessage);
    }
  }

  producer() {
    return {
      connect: async () => {},
      disconnect: async () => {},
      sendBatch: async ({ topicMessages }: { topicMessages: TopicMessages[] }) => {
        for (const t of topicMessages) this.append(t.topic, t.messages);
        return [];
      },
    };
  }

  admin() {
    return {
      connect: async () => {},
      disconnect: async () => {},
      createTopics: async ({ topics }: { topics: { topic: string }[] }) => {
        for (const { topic } of topics) if (!this.log.has(topic)) this.log.set(topic, []);
        return true;
      },
      listTopics: async () => [...this.log.keys()],
      fetchTopicOffsets: async (topic: string) => [{ partition: 0, offset: String(this.log.get(topic)?.length ?? 0), low: '0', high: String(this.log.get(topic)?.length ?? 0) }],
      // Topics created or found are checked for durability (kafka-durability.ts): safe ones here.
      fetchTopicMetadata: async ({ topics }: { topics: string[] }) => ({ topics: topics.map((name) => ({ name, partitions: [{ partitionId: 0, replicas: [1, 2, 3] }] })) }),
      describeConfigs: async ({ resources }: { resources: { name: string }[] }) => ({
        resources: resources.map((r) => ({ resourceName: r.name, configEntries: [{ configName: 'min.insync.replicas', configValue: '2' }] })),
      }),
    };
  }

  consumer() {
    let topics: string[] = [];
    let joined: ((e: { payload: { memberAssignment: Record<string, number[]> } }) => void) | null = null;
    let running = false;
    const positions = new Map<string, number>();
    const feed = async (eachBatch: (p: EachBatchPayload) => Promise<void>) => {
      while (running) {
        for (const topic of topics) {
          const list = this.log.get(topic) ?? [];
          const from = positions.get(topic) ?? 0;
          if (this.held.has(topic) || from >= list.length) continue;
          positions.set(topic, list.length);
          await eachBatch({ batch: { topic, partition: 0, messages: list.slice(from) }, isRunning: () => running, isStale: () => false } as unknown as EachBatchPayload);
        }
        await sleep(2);
      }
    };
    return {
      events: { GROUP_JOIN: 'consumer.group_join', CRASH: 'consumer.crash' },
      on: (event: string, listener: typeof joined) => {
        if (event === 'consumer.group_join') joined = listener;
      },
      connect: async () => {},
      subscribe: async (o: { topics: string[] }) => void (topics = o.topics),
      run: async ({ eachBatch }: { eachBatch: (p: EachBatchPayload) => Promise<void> }) => {
        joined?.({ payload: { memberAssignment: Object.fromEntries(topics.map((t) => [t, [0]])) } });
        running = true;
        void feed(eachBatch);
      },
      commitOffsets: async () => {},
      disconnect: async () => void (running = false),
    };
  }

  asKafka(): Kafka {
    return this as unknown as Kafka;
  }
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (const end = Date.now() + 10_000; !cond(); await sleep(5)) if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
}

/** The highest event position in a stored section of public.patients. */
const storedEventsUpTo = (store: MemoryObjectStore) =>
  Math.max(0, ...storedSections(store).filter((p) => p.table === 'public.patients').map((p) => Number.parseInt(p.last.commit, 16)));

test('a clean stop while the transactions partition lags stores every END Kafka holds before the compactor leaves', async () => {
  const store = new MemoryObjectStore();
  // The codec stores each writer schema before publishing; verify looks for it.
  await store.put(schemaKey('clinic', '00000000000000a1'), Buffer.from(await envelopes.schemaJson('clinic', '00000000000000a1')));
  const kafka = new FakeKafka();
  kafka.held.add(TX);
  const connector = new ScriptedConnector(30);
  const stop = new AbortController();
  const running = runKafkaSourcePipeline({ config, source: config.sources[0]!, connector, encoder, envelopes, store }, stop.signal, { kafka: kafka.asKafka() });

  // Every table event is stored; the END records are in Kafka, not yet delivered to the compactor.
  await until('the table events are stored', () => storedEventsUpTo(store) === 30);
  const lastEnd = Position.format(txn(30).position);
  await until('Kafka acknowledged every transaction', () =>
    (kafka.log.get(TX) ?? []).some((m) => m.headers?.[HEADER.status]?.toString() === 'END' && m.headers[HEADER.position]?.toString() === lastEnd),
  );
  assert.equal((await readCheckpoint(store, 'clinic'))?.position.commit, commitOf(0), 'nothing settled: no END delivered yet');
  // The source is acknowledged by what the compactor stored, not by Kafka's word (kafka-pipeline.ts).
  assert.ok(connector.acked.every((p) => p.commit === commitOf(0)), 'the source is not acknowledged past the checkpoint while nothing settled');

  // SIGTERM; the lagging partition catches up a moment later.
  stop.abort();
  await sleep(60);
  kafka.held.delete(TX);
  await running;

  const report = await verifyArchive(store, await readArchiveIndex(store, 'clinic'), envelopes);
  assert.deepEqual(report.problems, [], 'no event of an unlogged transaction');
  assert.equal(report.checked.transactions, 30);
  assert.deepEqual((await readCheckpoint(store, 'clinic'))?.position, txn(30).position, 'the stop waited for every transaction Kafka holds');
});

test('the wait at a clean stop is bounded: a partition that never comes does not hold the stop', async () => {
  const store = new MemoryObjectStore();
  const kafka = new FakeKafka();
  kafka.held.add(TX);
  const connector = new ScriptedConnector(5);
  const stop = new AbortController();
  const running = runKafkaSourcePipeline({ config, source: config.sources[0]!, connector, encoder, envelopes, store }, stop.signal, { kafka: kafka.asKafka(), drainTimeoutMs: 300 });
  await until('the table events are stored', () => storedEventsUpTo(store) === 5);
  const stoppedAt = Date.now();
  stop.abort();
  await running;
  const took = Date.now() - stoppedAt;
  assert.ok(took >= 250 && took < 5_000, `stopped after ${took} ms`);
  assert.equal((await readCheckpoint(store, 'clinic'))?.position.commit, commitOf(0), 'what never arrived is not claimed');
});
