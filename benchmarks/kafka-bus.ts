/**
 * The Kafka bus against the 3-node Apache Kafka cluster of scripts/services.sh:
 *
 *   eval "$(bash scripts/services.sh env)"
 *   CHARTLOG_LOG_LEVEL=error node --import tsx benchmarks/kafka-bus.ts [messages] [seconds] [perRequest]
 *
 * 1. Producer throughput: `messages` table messages of 1 KiB (default 20000) in transactions of
 *    5, over 4 tables, through KafkaBus (acks = all, `perRequest` messages per request, default
 *    1000), with and without
 *    gzip. The values are random bytes (sealed PHI does not compress) — gzip's worst case.
 * 2. Latency publish → durable in the object store (file://, temp dir), through the
 *    KafkaCompactor with the default flushIntervalMs (1000): transactions of one 1 KiB message at
 *    200/s for `seconds` (default 10); the time from `publish` to the compactor's checkpoint
 *    covering the transaction. p50/p99/max.
 *
 * Keep `messages` modest: the mock keeps only ~5 MiB per partition. Results also go to
 * benchmarks/results/kafka-bus.json (with the load average: the numbers move with it).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { COMMIT_SEQ, Position } from '../src/core/position.js';
import type { BusBatch } from '../src/codec/bus-message.js';
import { singleObjectHeader } from '../src/codec/single-object.js';
import { KafkaBus } from '../src/bus/kafka-bus.js';
import type { KafkaSettings } from '../src/bus/kafka-topics.js';
import { KafkaCompactor } from '../src/compactor/kafka-compactor.js';
import { FsObjectStore } from '../src/storage/fs-object-store.js';
import { envelopes, types } from '../test/support/fake-envelopes.js';

const brokersEnv = process.env.CHARTLOG_TEST_KAFKA_BROKERS;
if (!brokersEnv) throw new Error('CHARTLOG_TEST_KAFKA_BROKERS is not set: eval "$(bash scripts/services.sh env)" first');
const brokers = brokersEnv.split(',');
const total = Number(process.argv[2] ?? 20_000);
const seconds = Number(process.argv[3] ?? 10);
const perRequest = Number(process.argv[4] ?? 1000);
const results: Record<string, unknown> = {};

function settings(name: string, compression: 'gzip' | 'none'): KafkaSettings {
  const unique = `${name}-${Date.now().toString(36)}`;
  return { brokers, topicPrefix: `bench-${unique}`, clientId: 'chartlog-bench', groupId: `bench-${unique}`, sessionTimeoutMs: 6000, scaleOut: false, maxInFlightRequests: 3, compression, tls: { mode: 'disable' }, topics: { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false } };
}

const TABLES = ['public.patients', 'public.encounters', 'public.orders', 'public.notes'];

function randomTransactions(count: number, perTx: number): BusBatch[] {
  const out: BusBatch[] = [];
  let prev: Position | null = null;
  const nowUs = BigInt(Date.now()) * 1000n;
  for (let n = 1; n * perTx <= count; n++) {
    const commit = n.toString(16).padStart(16, '0');
    const messages = Array.from({ length: perTx }, (_, seq) => ({
      table: TABLES[(n + seq) % TABLES.length]!,
      fingerprint: '00000000000000a1',
      key: Buffer.from(`patient-${(n * perTx + seq) % 997}`),
      value: randomBytes(1024),
      position: Position.of(commit, seq),
    }));
    const position = Position.of(commit, COMMIT_SEQ);
    out.push({ source: 'bench', position, previous: prev, txId: String(n), commitTsUs: nowUs, messages });
    prev = position;
  }
  return out;
}

async function producerThroughput(compression: 'gzip' | 'none'): Promise<void> {
  const batches = randomTransactions(total, 5);
  const bus = new KafkaBus({ settings: settings('produce', compression), source: 'bench', maxMessagesPerSend: perRequest });
  await bus.connect();
  // Warm-up: topic auto-creation and metadata are not what is measured.
  for (const b of batches.slice(0, 10)) await bus.publish(b);
  await bus.flush();
  const t0 = performance.now();
  for (const b of batches.slice(10)) await bus.publish(b);
  await bus.flush();
  const ms = performance.now() - t0;
  const messages = batches.slice(10).reduce((n, b) => n + b.messages.length, 0);
  await bus.close();
  results[`producer-${compression}`] = { messages, seconds: +(ms / 1000).toFixed(3), messagesPerSec: Math.round(messages / (ms / 1000)), requests: bus.stats.requests };
  console.log(
    `producer ${compression.padEnd(4)}: ${messages} messages of 1 KiB in ${(ms / 1000).toFixed(2)} s = ${Math.round(messages / (ms / 1000))} msg/s, ${((messages * 1024) / 1048576 / (ms / 1000)).toFixed(1)} MiB/s, ${bus.stats.requests} requests`,
  );
}

async function endToEndLatency(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'chartlog-bench-kafka-'));
  const store = new FsObjectStore(dir);
  const s = settings('latency', 'gzip');
  const stop = new AbortController();
  const compactor = new KafkaCompactor(store, 'clinic', envelopes, { settings: s, flushIntervalMs: 1000, maxPartBytes: 8 << 20, closeGraceMs: 120_000, snapshotId: null });
  await compactor.start();
  const running = compactor.run(stop.signal);
  const bus = new KafkaBus({ settings: s, source: 'clinic', schemas: envelopes });
  await bus.connect();
  const v = 'x'.repeat(1000);
  const publishedAt = new Map<string, number>();
  const latencies: number[] = [];
  let seen = 0;
  let prev: Position | null = null;
  const pending: Position[] = [];
  // Warm-up transaction: the consumer group join (seconds on the mock) is not what is measured.
  const send = async (n: number) => {
    const commit = n.toString(16).padStart(16, '0');
    const tsUs = BigInt(Date.now()) * 1000n;
    const position = Position.of(commit, 0);
    const body = types['00000000000000a1']!.toBuffer({ pos: Position.format(position), ts: Number(tsUs), v });
    const value = Buffer.concat([singleObjectHeader(0n), body]);
    const tx = Position.of(commit, COMMIT_SEQ);
    await bus.publish({ source: 'clinic', position: tx, previous: prev, txId: String(n), commitTsUs: tsUs, messages: [{ table: 'public.patients', fingerprint: '00000000000000a1', key: Buffer.from(`p${n % 97}`), value, position }] });
    prev = tx;
    return tx;
  };
  const first = await send(1);
  while (!compactor.settledPosition || Position.compare(compactor.settledPosition, first) < 0) await sleep(10);

  const watcher = (async () => {
    while (!stop.signal.aborted) {
      const settled = compactor.settledPosition;
      const now = performance.now();
      while (settled && pending.length > 0 && Position.compare(pending[0]!, settled) <= 0) {
        const p = pending.shift()!;
        latencies.push(now - publishedAt.get(Position.format(p))!);
        seen++;
      }
      await sleep(2);
    }
  })();
  const rate = 200;
  const count = rate * seconds;
  const t0 = performance.now();
  for (let n = 2; n < count + 2; n++) {
    const due = t0 + ((n - 2) * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const at = performance.now();
    const tx = await send(n);
    publishedAt.set(Position.format(tx), at);
    pending.push(tx);
  }
  await bus.flush();
  while (seen < count) await sleep(20);
  stop.abort();
  await watcher;
  await running;
  await bus.close();
  await rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  const q = (f: number) => latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))]!.toFixed(0);
  results.publishToDurable = { flushIntervalMs: 1000, txPerSec: rate, transactions: latencies.length, p50Ms: +q(0.5), p99Ms: +q(0.99), maxMs: Math.round(latencies.at(-1)!) };
  console.log(`publish → durable in file:// (flushIntervalMs 1000, ${rate} tx/s for ${seconds} s, ${latencies.length} transactions): p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${latencies.at(-1)!.toFixed(0)} ms`);
}

await producerThroughput('none');
await producerThroughput('gzip');
if (seconds > 0) await endToEndLatency();
const out = {
  benchmark: 'kafka-bus',
  command: `CHARTLOG_LOG_LEVEL=error node --import tsx benchmarks/kafka-bus.ts ${total} ${seconds} ${perRequest}`,
  date: new Date().toISOString(),
  broker: 'Apache Kafka 4.1.1, 3 KRaft nodes (controller+broker), RF 3, min.insync.replicas 2, scripts/services.sh',
  loadAverage1m: +loadavg()[0]!.toFixed(2),
  messageBytes: 1024,
  perRequest,
  results,
};
await mkdir(new URL('./results/', import.meta.url), { recursive: true });
await writeFile(new URL('./results/kafka-bus.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
