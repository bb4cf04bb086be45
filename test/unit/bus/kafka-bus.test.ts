import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Kafka, ProducerBatch } from 'kafkajs';
import { CompressionTypes, Partitioners } from 'kafkajs';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { KafkaBus } from '../../../src/bus/kafka-bus.js';
import { decodeTransactionMessage, schemasTopic, tableTopic, transactionsTopic, type KafkaSettings } from '../../../src/bus/kafka-topics.js';
import { decodeTableRecord } from '../../../src/bus/table-record.js';
import { batch, envelopes, T0 } from '../../support/fake-envelopes.js';

type Sent = { headers?: unknown; key?: unknown; value: unknown };
/** The events of a table record as sent. */
const eventsOf = (m: Sent) => decodeTableRecord({ headers: m.headers as never, key: (m.key ?? null) as Buffer | null, value: m.value as Buffer }, 'sent').events;
/** The positions of the events a table record carries, formatted. */
const positionsOf = (m: Sent): string[] => eventsOf(m).map((e) => Position.format(e.position));

// The request shaping, ordering and failure handling of the producer, against a recording fake
// of the slice of kafkajs it uses. The real protocol is in test/integration/kafka-bus.test.ts.

const settings: KafkaSettings = { brokers: ['127.0.0.1:1'], topicPrefix: 'cl', clientId: 'c', groupId: 'g', sessionTimeoutMs: 30000, scaleOut: false, maxInFlightRequests: 3, compression: 'gzip', tls: { mode: 'disable' }, topics: { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false } };

class FakeKafka {
  requests: ProducerBatch[] = [];
  createCalls = 0;
  failSends = 0;
  gate: Promise<void> | null = null;
  /** When set, each request is acknowledged a macrotask after it was sent (so several can be under way). */
  slow = false;
  /** Per request (index in `requests`): acknowledged yet; and how many were acknowledged when it was sent. */
  acked: boolean[] = [];
  ackedWhenSent: number[] = [];
  underWay = 0;
  mostUnderWay = 0;
  producer() {
    return {
      connect: async () => {},
      disconnect: async () => {},
      sendBatch: async (b: ProducerBatch) => {
        if (this.gate) await this.gate;
        if (this.failSends > 0) {
          this.failSends--;
          throw Object.assign(new Error('Connection error: broker gone'), { name: 'KafkaJSConnectionError', retriable: true });
        }
        const i = this.requests.push(b) - 1;
        this.ackedWhenSent[i] = this.acked.filter(Boolean).length;
        this.acked[i] = false;
        this.mostUnderWay = Math.max(this.mostUnderWay, ++this.underWay);
        if (this.slow) await new Promise((r) => setTimeout(r, 1));
        this.underWay--;
        this.acked[i] = true;
        return [];
      },
    };
  }
  /** When set, CreateTopics succeeds and every topic has this many partitions (with RF 3, min ISR 2). */
  partitions = 0;
  admin() {
    return {
      connect: async () => {},
      disconnect: async () => {},
      createTopics: async () => {
        this.createCalls++;
        if (this.partitions > 0) return true;
        throw Object.assign(new Error('Cluster authorization failed'), { type: 'CLUSTER_AUTHORIZATION_FAILED' });
      },
      fetchTopicMetadata: async ({ topics }: { topics: string[] }) => ({
        topics: topics.map((name) => ({ name, partitions: Array.from({ length: this.partitions }, (_, partitionId) => ({ partitionId, replicas: [1, 2, 3] })) })),
      }),
      describeConfigs: async ({ resources }: { resources: { name: string }[] }) => ({
        resources: resources.map((r) => ({ resourceName: r.name, configEntries: [{ configName: 'min.insync.replicas', configValue: '2' }] })),
      }),
    };
  }
  asKafka(): Kafka {
    return this as unknown as Kafka;
  }
}

function workload(n: number): ReturnType<typeof batch>[] {
  const out: ReturnType<typeof batch>[] = [];
  let prev: Position | null = null;
  for (let i = 1; i <= n; i++) {
    const b = batch(i, T0 + BigInt(i), [['public.patients', '00000000000000a1'], ['public.patients', '00000000000000a1'], ['public.encounters', '00000000000000a2']], prev);
    out.push(b);
    prev = b.position;
  }
  return out;
}

for (const inFlight of [1, 3]) test(`whole transactions are grouped into requests, acks=all, gzip, BEGIN and END around them in partition 0 (${inFlight} in flight)`, async () => {
  const fake = new FakeKafka();
  fake.slow = true;
  const durable: Position[] = [];
  const sentEnds = () => fake.requests.flatMap((r) => r.topicMessages!.filter((t) => t.topic === transactionsTopic('cl', 'clinic')).flatMap((t) => t.messages.map((m) => decodeTransactionMessage(m.value as Buffer, 't')))).filter((m) => m.status === 'END');
  const onDurable = (p: Position) => {
    // Reported only once the request holding its END record was acknowledged.
    assert.ok(sentEnds().some((e) => e.record.pos === Position.format(p)));
    durable.push(p);
  };
  const bus = new KafkaBus({ settings: { ...settings, maxInFlightRequests: inFlight }, source: 'clinic', kafka: fake.asKafka(), schemas: envelopes, maxMessagesPerSend: 7, onDurable });
  await bus.connect();
  const batches = workload(10);
  for (const b of batches) await bus.publish(b);
  await bus.close();

  const txTopic = transactionsTopic('cl', 'clinic');
  const main = fake.requests.filter((r) => r.topicMessages!.some((t) => t.topic === txTopic));
  const beganIn = new Map<string, number>();
  const endedIn = new Map<string, number>();
  main.forEach((r, i) => {
    assert.equal(r.acks, -1);
    assert.equal(r.compression, CompressionTypes.GZIP);
    const tables = r.topicMessages!.filter((t) => t.topic !== txTopic);
    assert.ok(tables.reduce((n, t) => n + t.messages.reduce((k, m) => k + eventsOf(m).length, 0), 0) <= 7, 'at most maxMessagesPerSend events');
    for (const t of tables) assert.ok([tableTopic('cl', 'clinic', 'public.patients'), tableTopic('cl', 'clinic', 'public.encounters')].includes(t.topic));
    const tx = r.topicMessages!.find((t) => t.topic === txTopic)!;
    let sawBegin = false;
    for (const m of tx.messages) {
      assert.equal(m.partition, 0);
      const { status, record } = decodeTransactionMessage(m.value as Buffer, 'test');
      if (status === 'BEGIN') {
        sawBegin = true;
        assert.ok(!beganIn.has(record.pos));
        beganIn.set(record.pos, i);
      } else {
        assert.ok(!sawBegin, 'in a request, the ENDs of the previous group come before the BEGINs of this one');
        assert.ok(!endedIn.has(record.pos));
        endedIn.set(record.pos, i);
        assert.deepEqual(record.tables, { 'public.patients': 2, 'public.encounters': 1 });
      }
    }
    // This request's table messages are those of the transactions it begins.
    const positions = new Set(tables.flatMap((t) => t.messages.flatMap((m) => positionsOf(m).map((p) => p.split('.')[0]))));
    const begun = new Set([...beganIn].filter(([, at]) => at === i).map(([pos]) => pos.split('.')[0]));
    assert.deepEqual(positions, begun);
  });
  assert.equal(beganIn.size, 10, 'every transaction begun once');
  assert.equal(endedIn.size, 10, 'every transaction ended once');
  for (const [pos, at] of beganIn) {
    const endAt = fake.requests.indexOf(main[endedIn.get(pos)!]!);
    // Every request up to the one that began it was acknowledged before the END was sent (acks settle in order).
    assert.ok(fake.ackedWhenSent[endAt]! > fake.requests.indexOf(main[at]!), 'END goes in a request sent after its messages were acknowledged');
    if (inFlight === 1) assert.equal(endedIn.get(pos), at + 1, 'one in flight: END goes in the next request');
  }
  assert.deepEqual(durable.at(-1), batches.at(-1)!.position);
  assert.deepEqual(durable, [...durable].sort(Position.compare), 'reported in position order');
  const withEnds = main.filter((r) => r.topicMessages!.some((t) => t.topic === txTopic && t.messages.some((m) => decodeTransactionMessage(m.value as Buffer, 't').status === 'END')));
  assert.equal(durable.length, withEnds.length, 'one acknowledgement per request carrying ENDs, once it is acknowledged');
  assert.equal(fake.mostUnderWay, inFlight, `at most ${inFlight} requests under way, and that many at busy times`);
  // Schemas went first, once per fingerprint.
  const schemaReqs = fake.requests.filter((r) => r.topicMessages!.some((t) => t.topic === schemasTopic('cl', 'clinic')));
  assert.deepEqual(schemaReqs.flatMap((r) => r.topicMessages!.flatMap((t) => t.messages.map((m) => m.key))).sort(), ['00000000000000a1', '00000000000000a2']);
  assert.ok(fake.requests.indexOf(schemaReqs[0]!) < fake.requests.indexOf(main[0]!));
  // The broker refused CreateTopics once; the bus stopped asking.
  assert.equal(fake.createCalls, 1);
});

test('after a failed send nothing more is published until reset, and the durable position says where to restart', async () => {
  const fake = new FakeKafka();
  const bus = new KafkaBus({ settings: { ...settings, compression: 'none' }, source: 'clinic', kafka: fake.asKafka() });
  await bus.connect();
  const batches = workload(3);
  await bus.publish(batches[0]!);
  await bus.flush();
  assert.deepEqual(bus.durablePosition, batches[0]!.position);
  fake.failSends = 1;
  await bus.publish(batches[1]!);
  await assert.rejects(bus.flush(), (e: unknown) => e instanceof ChartlogError && e.retriable && e.code === 'connection');
  await assert.rejects(bus.publish(batches[2]!), ChartlogError);
  assert.deepEqual(bus.durablePosition, batches[0]!.position, 'the failed transaction is not durable');
  bus.reset();
  await bus.publish(batches[1]!);
  await bus.publish(batches[2]!);
  await bus.close();
  assert.deepEqual(bus.durablePosition, batches[2]!.position);
  assert.equal(fake.requests.at(-1)!.compression, CompressionTypes.None);
});

test('publish waits while the queue is full (backpressure to the connector)', async () => {
  const fake = new FakeKafka();
  let release!: () => void;
  fake.gate = new Promise((r) => (release = r));
  const bus = new KafkaBus({ settings, source: 'clinic', kafka: fake.asKafka(), maxQueuedBatches: 2, maxMessagesPerSend: 3 });
  await bus.connect();
  const batches = workload(7);
  // Three taken by the sender, one request each, stuck at the gate (three in flight); two queued.
  for (const b of batches.slice(0, 5)) await bus.publish(b);
  let sixth = false;
  const p = bus.publish(batches[5]!).then(() => (sixth = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(sixth, false, 'the sixth publish waits for room');
  assert.equal(bus.queued, 2);
  fake.gate = null;
  release();
  await p;
  await bus.publish(batches[6]!);
  await bus.close();
  assert.deepEqual(bus.durablePosition, batches[6]!.position);
});

test('a batch of another source is refused', async () => {
  const bus = new KafkaBus({ settings, source: 'other', kafka: new FakeKafka().asKafka() });
  await assert.rejects(bus.publish(workload(1)[0]!), ChartlogError);
});

test('a transaction larger than one request allows goes in several, in order, and its END only after all of them', async () => {
  const fake = new FakeKafka();
  const durable: Position[] = [];
  const bus = new KafkaBus({ settings, source: 'clinic', kafka: fake.asKafka(), schemas: envelopes, maxBytesPerSend: 4096, onDurable: (p) => void durable.push(p) });
  await bus.connect();
  // One transaction of 40 table messages of ~1 KiB each (a piece of a large transaction, say), then a small one.
  const wide = batch(1, T0, Array.from({ length: 40 }, () => ['public.patients', '00000000000000a1'] as [string, string]), null);
  const big = { ...wide, messages: wide.messages.map((m) => ({ ...m, value: Buffer.concat([Buffer.from(m.value), Buffer.alloc(1000, 7)]) })) };
  const small = batch(2, T0 + 1n, [['public.patients', '00000000000000a1']], big.position);
  await bus.publish(big);
  await bus.publish(small);
  await bus.close();

  const patients = tableTopic('cl', 'clinic', 'public.patients');
  const tx = transactionsTopic('cl', 'clinic');
  const sizes = fake.requests.map((r) => r.topicMessages!.reduce((n, t) => n + t.messages.reduce((k, m) => k + (m.value as Buffer).byteLength, 0), 0));
  assert.ok(fake.requests.length >= 10, `${fake.requests.length} requests`);
  for (const [i, n] of sizes.entries()) assert.ok(n <= 4096 || fake.requests[i]!.topicMessages!.reduce((k, t) => k + t.messages.length, 0) === 1, `request ${i}: ${n} bytes`);
  // Every table message once, in position order across the requests.
  const sent = fake.requests.flatMap((r) => r.topicMessages!.filter((t) => t.topic === patients).flatMap((t) => t.messages));
  assert.equal(sent.length, 41);
  const positions = sent.flatMap((m) => positionsOf(m));
  assert.deepEqual(positions, [...big.messages, ...small.messages].map((m) => Position.format(m.position)));
  // The big transaction's END is in a request after the last of its messages.
  const requestOf = (pred: (topic: string, m: { value: unknown; headers?: unknown }) => boolean) => fake.requests.findIndex((r) => r.topicMessages!.some((t) => t.messages.some((m) => pred(t.topic, m))));
  const endOfBig = requestOf((t, m) => t === tx && decodeTransactionMessage(m.value as Buffer, 't').status === 'END' && decodeTransactionMessage(m.value as Buffer, 't').record.pos === Position.format(big.position));
  const lastOfBig = fake.requests.findLastIndex((r) => r.topicMessages!.some((t) => t.topic === patients && t.messages.some((m) => positionsOf(m)[0]!.startsWith(big.position.commit))));
  assert.ok(endOfBig > lastOfBig, `END in request ${endOfBig}, last message in ${lastOfBig}`);
  assert.deepEqual(durable, [big.position, small.position]);
});

test('publish waits while the queued batches hold maxQueuedBytes, and goes on once they are sent', async () => {
  const fake = new FakeKafka();
  let open!: () => void;
  fake.gate = new Promise<void>((resolve) => (open = resolve));
  const bus = new KafkaBus({ settings, source: 'clinic', kafka: fake.asKafka(), schemas: envelopes, maxQueuedBytes: 2500 });
  await bus.connect();
  let prev: Position | null = null;
  const wide = Array.from({ length: 5 }, (_, i) => {
    const b = batch(i + 1, T0 + BigInt(i), [['public.patients', '00000000000000a1']], prev);
    prev = b.position;
    return { ...b, messages: b.messages.map((m) => ({ ...m, value: Buffer.concat([Buffer.from(m.value), Buffer.alloc(1000, 7)]) })) };
  });
  await bus.publish(wide[0]!); // taken by the sender at once, held at the gate
  await bus.publish(wide[1]!);
  await bus.publish(wide[2]!); // two queued: ~2 KiB
  let fourth = false;
  const publishing = bus.publish(wide[3]!).then(() => (fourth = true));
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(fourth, false, 'a third KiB would pass 2500 bytes: it waits');
  assert.equal(bus.queued, 2);
  open();
  await publishing;
  await bus.publish(wide[4]!);
  await bus.close();
  assert.deepEqual(bus.durablePosition, wide[4]!.position);
});

/** Bytes of each (topic, partition) in each request above `bound` (a lone message excepted): what the broker would refuse as one record batch. */
function oversizedBatches(requests: ProducerBatch[], bound: number): string[] {
  const out: string[] = [];
  for (const [i, r] of requests.entries()) {
    const parts = new Map<string, { bytes: number; count: number }>();
    for (const t of r.topicMessages!) {
      for (const m of t.messages) {
        const k = `${t.topic}/${m.partition ?? '?'}`;
        const e = parts.get(k) ?? { bytes: 0, count: 0 };
        e.bytes += (m.value as Buffer).byteLength;
        e.count++;
        parts.set(k, e);
      }
    }
    for (const [k, e] of parts) if (e.bytes > bound && e.count > 1) out.push(`request ${i}: ${k} ${e.bytes} bytes`);
  }
  return out;
}

test('with the partition counts known, events go in records of one partition, placed by their keys as kafkajs would, and a request carries up to maxBytesPerSend for each partition, in order', async () => {
  const fake = new FakeKafka();
  fake.partitions = 4;
  const durable: Position[] = [];
  const bound = 8192;
  const bus = new KafkaBus({ settings, source: 'clinic', kafka: fake.asKafka(), schemas: envelopes, maxBytesPerSend: bound, onDurable: (p) => void durable.push(p) });
  await bus.connect();
  // 120 keyed messages of ~1 KiB: 120 KiB, about 30 KiB a partition.
  const base = batch(1, T0, Array.from({ length: 120 }, () => ['public.patients', '00000000000000a1'] as [string, string]), null);
  const big = { ...base, messages: base.messages.map((m, i) => ({ ...m, key: Buffer.from(`patient-${i}`), value: Buffer.concat([Buffer.from(m.value), Buffer.alloc(1000, 7)]) })) };
  await bus.publish(big);
  await bus.close();

  const patients = tableTopic('cl', 'clinic', 'public.patients');
  const sent = fake.requests.flatMap((r) => r.topicMessages!.filter((t) => t.topic === patients).flatMap((t) => t.messages));
  const events = sent.flatMap((m) => eventsOf(m).map((e) => ({ ...e, partition: m.partition })));
  assert.equal(events.length, 120);
  assert.ok(sent.length <= 60, `${sent.length} records: several events each`);
  // Each event in a record on the partition kafkajs's default partitioner gives its key among 4.
  const place = Partitioners.DefaultPartitioner();
  const metadata = Array.from({ length: 4 }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 0, replicas: [], isr: [], offlineReplicas: [] }));
  for (const e of events) assert.equal(e.partition, place({ topic: patients, partitionMetadata: metadata, message: { key: e.key, value: null } }), String(e.key));
  assert.ok(new Set(sent.map((m) => m.partition)).size > 1, 'the keys spread over several partitions');
  // Each record within half the per-partition bound (its framing, 20 bytes an event, included).
  for (const m of sent) assert.ok((m.value as Buffer).byteLength <= bound / 2, `a record of ${(m.value as Buffer).byteLength} bytes`);
  // No partition's part of a request passes the bound, yet a request holds more than the bound in all.
  assert.deepEqual(oversizedBatches(fake.requests, bound), []);
  const requestBytes = fake.requests.map((r) => r.topicMessages!.filter((t) => t.topic === patients).reduce((n, t) => n + t.messages.reduce((k, m) => k + (m.value as Buffer).byteLength, 0), 0));
  assert.ok(Math.max(...requestBytes) > 2 * bound, `largest request ${Math.max(...requestBytes)} bytes`);
  // Fewer requests than a bound on the whole request needed (120 KiB / 8 KiB = 15 at least).
  const withTables = fake.requests.filter((r) => r.topicMessages!.some((t) => t.topic === patients)).length;
  assert.ok(withTables < 15, `${withTables} requests with table messages`);
  // Every event once; in position order within each partition.
  assert.deepEqual(events.map((e) => Position.format(e.position)).sort(), big.messages.map((m) => Position.format(m.position)).sort());
  for (let p = 0; p < 4; p++) {
    const seqs = events.filter((e) => e.partition === p).map((e) => e.position.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `partition ${p} in order`);
  }
  assert.deepEqual(durable, [big.position]);
  // Negative control: the checker sees an oversized batch when one is planted.
  const planted = [{ topicMessages: [{ topic: patients, messages: [{ partition: 1, value: Buffer.alloc(bound) }, { partition: 1, value: Buffer.alloc(10) }] }] }] as ProducerBatch[];
  assert.equal(oversizedBatches(planted, bound).length, 1);
});
