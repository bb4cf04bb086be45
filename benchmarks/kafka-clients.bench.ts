/**
 * Kafka client comparison (issue 16, item 6): kafkajs (the bus's client today) against
 * @confluentinc/kafka-javascript (librdkafka, its KafkaJS-compatible API) and @platformatic/kafka
 * (pure JS), on the real 3-node Apache Kafka cluster of scripts/services.sh, with the Kafka bus's
 * own batch shapes. Benchmark only: none of these clients is switched in src/ by it.
 *
 *   node --import tsx benchmarks/kafka-clients.bench.ts [--messages 200000] [--tx-rows 500]
 *        [--value-bytes 545] [--reps 3] [--kill-seconds 20] [--clients kafkajs,confluent,platformatic]
 *
 * The shape is KafkaBus.sendGroup's (src/bus/kafka-bus.ts): transactions of --tx-rows table
 * messages over 4 table topics (4 partitions each, RF 3, min.insync.replicas 2), a BEGIN before
 * and an END after each transaction in partition 0 of the transactions topic; every table
 * message has the encoded primary key as key (murmur2-partitioned by each client's default
 * partitioner), a --value-bytes value (545 B: a sealed 12-column patient row, AES-GCM, see
 * results/codec.json; the first 300 bytes random like sealed PHI, the rest text like the public
 * columns) and the bus's header (encodeHeaders). Requests of at most 2000 messages and
 * 512 KiB (the bus's defaults), one at a time (the bus keeps one request in flight: order),
 * acks = all, gzip (bus.kafka.compression's default), not idempotent (as the bus).
 *
 * Per client and repetition:
 *   1. producer: the whole set, timed from the first request to the last acknowledgement;
 *   2. consumer: the same topics read back by a fresh consumer group from the earliest offset,
 *      timed from subscribe to the last message (group join included; the count must match);
 *   3. reconnect (once per client, after the repetitions): requests sent back to back for
 *      --kill-seconds; after a third of it the leader of the transactions partition is killed
 *      with SIGKILL (scripts/kafka-cluster.sh kill-node). A failed request is counted and sent
 *      again on the same client (never a new one): "recovered by itself" means later requests
 *      succeed. Reported: errors, the longest gap between two acknowledgements, and — read back
 *      by kafkajs after the node is back — acknowledged messages missing (lost) and copies.
 *
 * Writes benchmarks/results/kafka-clients.json (lib/bench-report.ts format, load average inside).
 * @platformatic/kafka is a devDependency; @confluentinc/kafka-javascript is installed by hand
 * (see confluentClient); a client that is not installed is skipped with a note.
 * Needs the services: export the CHARTLOG_SERVICES_* variables of your private ports first.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CompressionTypes, Kafka, logLevel, Partitioners } from 'kafkajs';
import type { TransactionRecord } from '../src/archive/transaction-log.js';
import { COMMIT_SEQ, Position } from '../src/core/position.js';
import { decodeHeaders, encodeHeaders, encodeTransactionMessage, HEADER } from '../src/bus/kafka-topics.js';
import { BenchRun, measurement, ratio } from './lib/bench-report.js';
import { benchServices, stopBenchServices } from './lib/bench-services.js';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    'tx-rows': { type: 'string', default: '500' },
    'value-bytes': { type: 'string', default: '545' },
    reps: { type: 'string', default: '3' },
    'kill-seconds': { type: 'string', default: '20' },
    clients: { type: 'string', default: 'kafkajs,confluent,platformatic' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  console.log(text.slice(text.indexOf('/**') + 3, text.indexOf('*/')).replace(/^ \* ?/gm, '').trim());
  process.exit(0);
}
const MESSAGES = Number(args.messages);
const TX_ROWS = Number(args['tx-rows']);
const VALUE_BYTES = Number(args['value-bytes']);
/** 0: only the reconnect measurement (then written as results/kafka-clients-reconnect.json). */
const REPS = Math.max(0, Number(args.reps));
const KILL_SECONDS = Number(args['kill-seconds']);
let CLIENTS = args.clients.split(',') as ClientName[];
const MAX_PER_REQUEST = 2000;
const MAX_BYTES_PER_REQUEST = 512 * 1024;
const TABLES = ['public.patients', 'public.encounters', 'public.orders', 'public.notes'];
const SOURCE = 'bench';
const TX_PARTITION = 0;

type ClientName = 'kafkajs' | 'confluent' | 'platformatic';
interface Msg {
  key: Buffer | null;
  value: Buffer;
  partition?: number;
  headers: Record<string, string | Buffer>;
}
type Request = { topic: string; messages: Msg[] }[];

/** What the benchmark needs of a client: the bus's calls, nothing more. */
interface ClientUnderTest {
  connect(): Promise<void>;
  /** One request, acks = all; resolves when every message is acknowledged. */
  send(request: Request): Promise<void>;
  close(): Promise<void>;
  /** Reads `topics` from the earliest offset in a fresh group until `expect` messages came. */
  consume(topics: string[], expect: number, groupId: string): Promise<number>;
}

/** A package's version from its package.json (found beside node_modules: some packages do not export it). */
const versionOf = (pkg: string): string => (JSON.parse(readFileSync(fileURLToPath(new URL(`../node_modules/${pkg}/package.json`, import.meta.url)), 'utf8')) as { version: string }).version;

// ---------------------------------------------------------------------------------------------
// The three clients

function kafkajsClient(brokers: string[]): ClientUnderTest {
  const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers, logLevel: logLevel.NOTHING });
  // The bus's producer settings (src/bus/kafka-bus.ts).
  const producer = kafka.producer({ idempotent: false, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  return {
    connect: () => producer.connect(),
    send: async (request) => {
      await producer.sendBatch({ topicMessages: request, acks: -1, compression: CompressionTypes.GZIP });
    },
    close: () => producer.disconnect(),
    consume: async (topics, expect, groupId) => {
      const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200 });
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: true });
      let n = 0;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      // eachBatch, like the compactor (src/compactor/kafka-compactor.ts).
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          n += batch.messages.length;
          if (n >= expect) done();
        },
      });
      await finished;
      await consumer.disconnect();
      return n;
    },
  };
}

/**
 * The slice of @confluentinc/kafka-javascript's KafkaJS-compatible API used here. The package is
 * not a dependency of the project (its install downloads a prebuilt binary from GitHub, or builds
 * librdkafka for ~10 min, which `npm ci` on a fresh machine must not do): install it for this
 * benchmark with `CKJS_LINKING=dynamic npm install --no-save @confluentinc/kafka-javascript@1.10.1`.
 */
interface ConfluentKafkaJS {
  KafkaJS: {
    Kafka: new (config: object) => {
      producer(config: object): { connect(): Promise<void>; disconnect(): Promise<void>; sendBatch(batch: { topicMessages: Request }): Promise<unknown> };
      consumer(config: object): {
        connect(): Promise<void>;
        disconnect(): Promise<void>;
        subscribe(s: { topics: string[] }): Promise<void>;
        run(r: { eachBatch: (p: { batch: { messages: unknown[] } }) => Promise<void> }): Promise<void>;
      };
    };
    logLevel: { NOTHING: number };
    CompressionTypes: { GZIP: string };
  };
}
const CONFLUENT = '@confluentinc/kafka-javascript';

async function confluentClient(brokers: string[]): Promise<ClientUnderTest> {
  const { KafkaJS } = (await import(CONFLUENT)) as ConfluentKafkaJS;
  const kafka = new KafkaJS.Kafka({ kafkaJS: { clientId: 'bench-confluent', brokers, logLevel: KafkaJS.logLevel.NOTHING } });
  const producer = kafka.producer({ kafkaJS: { idempotent: false, maxInFlightRequests: 1, acks: -1, compression: KafkaJS.CompressionTypes.GZIP, allowAutoTopicCreation: false } });
  return {
    connect: () => producer.connect(),
    send: async (request) => {
      await producer.sendBatch({ topicMessages: request });
    },
    close: () => producer.disconnect(),
    consume: async (topics, expect, groupId) => {
      const consumer = kafka.consumer({ kafkaJS: { groupId, fromBeginning: true, autoCommit: false, maxWaitTimeInMs: 200 } });
      await consumer.connect();
      await consumer.subscribe({ topics });
      let n = 0;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      await consumer.run({
        eachBatch: async ({ batch }) => {
          n += batch.messages.length;
          if (n >= expect) done();
        },
      });
      await finished;
      await consumer.disconnect();
      return n;
    },
  };
}

async function platformaticClient(brokers: string[]): Promise<ClientUnderTest> {
  // @platformatic/kafka 2.12 declares Node >= 22.22 and calls Promise.withResolvers (Node 22):
  // on chartlog's Node 20 it needs this polyfill to run at all (see the note in the results).
  const P = Promise as unknown as { withResolvers?: () => unknown };
  P.withResolvers ??= () => {
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  };
  const { Producer, Consumer } = await import('@platformatic/kafka');
  const producer = new Producer({ clientId: 'bench-platformatic', bootstrapBrokers: brokers, acks: -1, compression: 'gzip', idempotent: false, autocreateTopics: false });
  const open: { close(force?: boolean): Promise<void> }[] = [];
  return {
    connect: async () => {
      await producer.metadata({ topics: [] });
    },
    send: async (request) => {
      const messages = request.flatMap(({ topic, messages }) =>
        messages.map((m) => ({
          topic,
          ...(m.key ? { key: m.key } : {}),
          value: m.value,
          ...(m.partition !== undefined ? { partition: m.partition } : {}),
          headers: new Map(Object.entries(m.headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
        })),
      );
      await producer.send({ messages });
    },
    close: async () => {
      for (const c of open) await c.close(true).catch(() => undefined);
      await producer.close();
    },
    consume: async (topics, expect, groupId) => {
      const consumer = new Consumer({ clientId: 'bench-platformatic-consumer', groupId, bootstrapBrokers: brokers, maxWaitTime: 200 });
      open.push(consumer);
      const stream = await consumer.consume({ topics, mode: 'earliest', autocommit: false });
      let n = 0;
      for await (const _ of stream) {
        if (++n >= expect) break;
      }
      await stream.close();
      await consumer.close(true);
      return n;
    },
  };
}

async function makeClient(name: ClientName, brokers: string[]): Promise<ClientUnderTest> {
  if (name === 'kafkajs') return kafkajsClient(brokers);
  if (name === 'confluent') return confluentClient(brokers);
  return platformaticClient(brokers);
}

// ---------------------------------------------------------------------------------------------
// The bus's batch shapes

const TEXT = Buffer.from('ward 7|2026-12-03 10:15:00.123456+00|12345.67|t|12|6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0|MRN000123|'.repeat(8));

function value(): Buffer {
  const v = Buffer.allocUnsafe(VALUE_BYTES);
  const random = Math.min(300, VALUE_BYTES);
  randomBytes(random).copy(v, 0);
  TEXT.copy(v, random, 0, VALUE_BYTES - random);
  return v;
}

interface Transaction {
  position: Position;
  begin: Msg;
  end: Msg;
  rows: { topic: string; msg: Msg }[];
}

function transactions(prefix: string, count: number, firstTx: number): Transaction[] {
  const out: Transaction[] = [];
  let previous: string | null = null;
  const nowUs = BigInt(Date.now()) * 1000n;
  for (let t = 0; t * TX_ROWS < count; t++) {
    const n = firstTx + t;
    const commit = n.toString(16).padStart(16, '0');
    const position = Position.of(commit, COMMIT_SEQ);
    const tables: Record<string, number> = {};
    const rows: Transaction['rows'] = [];
    for (let seq = 0; seq < Math.min(TX_ROWS, count - t * TX_ROWS); seq++) {
      const table = TABLES[seq % TABLES.length]!;
      tables[table] = (tables[table] ?? 0) + 1;
      const key = Buffer.alloc(9);
      key[0] = 0x02;
      key.writeBigUInt64BE(BigInt(n * TX_ROWS + seq), 1);
      rows.push({
        topic: `${prefix}.${SOURCE}.public.${table.slice(7)}`,
        msg: { key, value: value(), headers: encodeHeaders({ table, fingerprint: '00000000000000a1', position: Position.of(commit, seq), txId: String(n), commitTsUs: nowUs }) },
      });
    }
    const record: TransactionRecord = { pos: Position.format(position), previous, txId: String(n), commitTsUs: Number(nowUs / 1000n), tables };
    const txHeaders = { [HEADER.position]: record.pos, [HEADER.commitTsUs]: nowUs.toString(), [HEADER.txId]: String(n) };
    out.push({
      position,
      rows,
      begin: { key: null, partition: TX_PARTITION, value: encodeTransactionMessage('BEGIN', record), headers: { ...txHeaders, [HEADER.status]: 'BEGIN' } },
      end: { key: null, partition: TX_PARTITION, value: encodeTransactionMessage('END', record), headers: { ...txHeaders, [HEADER.status]: 'END' } },
    });
    previous = record.pos;
  }
  return out;
}

/** A message's position, to tell copies apart: a table message's from its binary header, a BEGIN/END's from its text header. */
function idPosition(headers: Record<string, string | Buffer | (string | Buffer)[] | undefined> | undefined): string {
  if (headers?.[HEADER.meta] !== undefined) return Position.format(decodeHeaders(headers, 'readback').position);
  return String(headers?.[HEADER.position]);
}

const msgBytes = (m: Msg): number => 64 + (m.key?.length ?? 0) + m.value.length + Object.entries(m.headers).reduce((n, [k, v]) => n + k.length + v.length + 8, 0);

/**
 * Requests as KafkaBus builds them: groups of whole transactions up to 2000 messages, each
 * group's BEGINs and rows (with the previous group's ENDs first) cut into requests of 512 KiB.
 */
function requests(prefix: string, txs: Transaction[]): { requests: Request[]; messages: number; bytes: number } {
  const txTopic = `${prefix}.${SOURCE}.__transactions`;
  const out: Request[] = [];
  let carried: Msg[] = [];
  let messages = 0;
  let bytes = 0;
  const cut = (byTopic: Map<string, Msg[]>) => {
    let current = new Map<string, Msg[]>();
    let size = 0;
    let count = 0;
    const close = () => {
      if (count > 0) out.push([...current].map(([topic, ms]) => ({ topic, messages: ms })));
      current = new Map();
      size = 0;
      count = 0;
    };
    for (const [topic, ms] of byTopic) {
      for (const m of ms) {
        const s = msgBytes(m);
        if (count > 0 && size + s > MAX_BYTES_PER_REQUEST) close();
        let list = current.get(topic);
        if (!list) current.set(topic, (list = []));
        list.push(m);
        size += s;
        count++;
        messages++;
        bytes += s;
      }
    }
    close();
  };
  for (let i = 0; i < txs.length; ) {
    const group: Transaction[] = [];
    let n = 0;
    while (i < txs.length && (group.length === 0 || n + txs[i]!.rows.length <= MAX_PER_REQUEST)) {
      n += txs[i]!.rows.length;
      group.push(txs[i++]!);
    }
    const byTopic = new Map<string, Msg[]>([[txTopic, [...carried]]]);
    for (const tx of group) {
      byTopic.get(txTopic)!.push(tx.begin);
      for (const r of tx.rows) {
        let list = byTopic.get(r.topic);
        if (!list) byTopic.set(r.topic, (list = []));
        list.push(r.msg);
      }
    }
    cut(byTopic);
    carried = group.map((tx) => tx.end);
  }
  if (carried.length > 0) cut(new Map([[txTopic, carried]]));
  return { requests: out, messages, bytes };
}

// ---------------------------------------------------------------------------------------------
// Cluster helpers (kafkajs admin: the same for every client)

const scripts = fileURLToPath(new URL('../scripts/', import.meta.url));

function topicsOf(prefix: string): string[] {
  return [`${prefix}.${SOURCE}.__transactions`, ...TABLES.map((t) => `${prefix}.${SOURCE}.public.${t.slice(7)}`)];
}

/** An admin call retried for up to 60 s: on a loaded machine the brokers' metadata lags behind. */
async function retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > until) throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      await sleep(500);
    }
  }
}

async function createTopics(admin: ReturnType<Kafka['admin']>, prefix: string): Promise<void> {
  const topics = topicsOf(prefix);
  await retrying('create topics', () => admin.createTopics({
    waitForLeaders: false,
    topics: topics.map((topic) => ({ topic, numPartitions: 4, replicationFactor: 3, configEntries: [{ name: 'min.insync.replicas', value: '2' }] })),
  }));
  // On a loaded machine the new partitions' leaders take longer than kafkajs's own wait allows.
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      const md = await admin.fetchTopicMetadata({ topics });
      if (md.topics.every((t) => t.partitions.length === 4 && t.partitions.every((p) => p.leader >= 0 && p.isr.length === 3))) return;
    } catch {
      // UNKNOWN_TOPIC_OR_PARTITION until every broker has the new topics: ask again
    }
    if (Date.now() > until) throw new Error(`topics ${prefix}.* got no leaders within 60 s`);
    await sleep(250);
  }
}

async function waitFullIsr(admin: ReturnType<Kafka['admin']>, topics: string[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const md = await admin.fetchTopicMetadata({ topics });
      if (md.topics.every((t) => t.partitions.every((p) => p.isr.length === 3))) return;
    } catch {
      // a broker coming back: ask again
    }
    if (Date.now() > until) throw new Error(`the cluster did not get back to 3 in-sync replicas within ${timeoutMs} ms`);
    await sleep(500);
  }
}

/** Every message of `topics` read with kafkajs; per position header, how many copies. */
async function readBack(kafka: Kafka, topics: string[], expectAtLeast: number): Promise<Map<string, number>> {
  const copies = new Map<string, number>();
  const admin = kafka.admin();
  await admin.connect();
  let high = 0;
  for (const t of topics) for (const p of await retrying('topic offsets', () => admin.fetchTopicOffsets(t))) high += Number(p.high) - Number(p.low);
  await admin.disconnect();
  const consumer = kafka.consumer({ groupId: `bench-readback-${Date.now().toString(36)}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  let n = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const h = idPosition(m.headers);
        const status = m.headers?.[HEADER.status];
        const id = `${batch.topic}|${String(h)}|${status ? String(status) : ''}`;
        copies.set(id, (copies.get(id) ?? 0) + 1);
      }
      n += batch.messages.length;
      if (n >= high) done();
    },
  });
  await finished;
  await consumer.disconnect();
  if (n < expectAtLeast) console.log(`  read back ${n} messages, fewer than the ${expectAtLeast} acknowledged`);
  return copies;
}

// ---------------------------------------------------------------------------------------------

interface Throughput {
  produceSeconds: number;
  consumeSeconds: number;
  messages: number;
  bytes: number;
}

async function throughput(name: ClientName, brokers: string[], admin: ReturnType<Kafka['admin']>, rep: number): Promise<Throughput> {
  const prefix = `bench-clients-${name}-${rep}-${Date.now().toString(36)}`;
  await createTopics(admin, prefix);
  const client = await makeClient(name, brokers);
  await client.connect();
  // Warm-up on the same topics (connections, metadata): not measured, but read back below.
  const warm = requests(prefix, transactions(prefix, 2 * TX_ROWS, 1));
  for (const r of warm.requests) await client.send(r);
  const set = requests(prefix, transactions(prefix, MESSAGES, 1000));
  const t0 = performance.now();
  for (const r of set.requests) await client.send(r);
  const produceSeconds = (performance.now() - t0) / 1000;
  const expect = warm.messages + set.messages;
  const t1 = performance.now();
  const got = await client.consume(topicsOf(prefix), expect, `${prefix}-g`);
  const consumeSeconds = (performance.now() - t1) / 1000;
  await client.close();
  // More than produced: the last batch ran past the count, or a rebalance delivered some again.
  if (got < expect) throw new Error(`${name}: consumed ${got} messages, produced ${expect}`);
  await admin.deleteTopics({ topics: topicsOf(prefix) }).catch(() => undefined);
  return { produceSeconds, consumeSeconds, messages: expect, bytes: set.bytes * (expect / set.messages) };
}

interface Reconnect {
  killedNode: number;
  errors: number;
  firstError: string | null;
  recovered: boolean;
  longestGapMs: number;
  acknowledgedMessages: number;
  lostMessages: number;
  duplicateMessages: number;
}

async function reconnect(name: ClientName, brokers: string[], kafka: Kafka, admin: ReturnType<Kafka['admin']>, kafkaDir: string): Promise<Reconnect> {
  const prefix = `bench-clients-kill-${name}-${Date.now().toString(36)}`;
  await createTopics(admin, prefix);
  const topics = topicsOf(prefix);
  const md = await retrying('transactions partition leader', () => admin.fetchTopicMetadata({ topics: [topics[0]!] }));
  const leader = md.topics[0]!.partitions.find((p) => p.partitionId === TX_PARTITION)!.leader;
  const node = leader - 1; // node.id = index + 1 (scripts/kafka-cluster.sh)
  const client = await makeClient(name, brokers);
  await client.connect();
  const acked = new Map<string, number>();
  let errors = 0;
  let firstError: string | null = null;
  let lastAck = performance.now();
  let longestGapMs = 0;
  let killed = false;
  let afterKillAcks = 0;
  const t0 = performance.now();
  let tx = 1;
  while (performance.now() - t0 < KILL_SECONDS * 1000 || (killed && afterKillAcks === 0 && performance.now() - t0 < KILL_SECONDS * 3000)) {
    if (!killed && performance.now() - t0 > (KILL_SECONDS * 1000) / 3) {
      execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'kill-node', kafkaDir, String(node)], { stdio: 'ignore' });
      killed = true;
    }
    const txs = transactions(prefix, 2 * TX_ROWS, tx);
    tx += txs.length;
    for (const r of requests(prefix, txs).requests) {
      // Named before sending: a client may rewrite the messages it is given (confluent's headers).
      const sentIds = r.flatMap(({ topic, messages }) => messages.map((m) => `${topic}|${idPosition(m.headers)}|${m.headers[HEADER.status] ?? ''}`));
      // A failed request is sent again on the same client, as the bus's restarted stream would.
      for (;;) {
        try {
          await client.send(r);
          break;
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message.slice(0, 200);
          if (performance.now() - t0 > KILL_SECONDS * 4000) throw new Error(`${name}: still failing ${KILL_SECONDS * 4} s after the kill: ${(err as Error).message}`, { cause: err });
          await sleep(100);
        }
      }
      const now = performance.now();
      longestGapMs = Math.max(longestGapMs, now - lastAck);
      lastAck = now;
      if (killed) afterKillAcks++;
      for (const id of sentIds) acked.set(id, 1);
    }
  }
  await client.close().catch(() => undefined);
  execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'start-node', kafkaDir, String(node)], { stdio: 'ignore' });
  await waitFullIsr(admin, topics, 120_000);
  const copies = await readBack(kafka, topics, acked.size);
  let lost = 0;
  let dups = 0;
  const lostSample: string[] = [];
  for (const id of acked.keys()) {
    if (copies.has(id)) continue;
    lost++;
    if (lostSample.length < 5) lostSample.push(id);
  }
  if (lost > 0) console.log(`  ${name}: acknowledged but not read back, e.g. ${lostSample.join(', ')}`);
  for (const c of copies.values()) dups += c - 1;
  await admin.deleteTopics({ topics }).catch(() => undefined);
  return { killedNode: node, errors, firstError, recovered: afterKillAcks > 0, longestGapMs: Math.round(longestGapMs), acknowledgedMessages: acked.size, lostMessages: lost, duplicateMessages: dups };
}

// ---------------------------------------------------------------------------------------------

const services = benchServices();
const brokers = services.kafkaBrokers as string[];
const kafkaDir = process.env.CHARTLOG_TEST_KAFKA_DIR;
if (!kafkaDir) throw new Error('CHARTLOG_TEST_KAFKA_DIR is not set (scripts/services.sh env)');
const refKafka = new Kafka({ clientId: 'bench-admin', brokers, logLevel: logLevel.NOTHING });
const admin = refKafka.admin();
await admin.connect();

const packages: Record<ClientName, string> = { kafkajs: 'kafkajs', confluent: '@confluentinc/kafka-javascript', platformatic: '@platformatic/kafka' };
const parameters: Record<string, unknown> = {
  messages: MESSAGES,
  rowsPerTransaction: TX_ROWS,
  valueBytes: VALUE_BYTES,
  reps: REPS,
  killSeconds: KILL_SECONDS,
  request: `KafkaBus shape: ≤ ${MAX_PER_REQUEST} messages and ≤ ${MAX_BYTES_PER_REQUEST / 1024} KiB per request, one in flight, BEGIN/END in the transactions topic's partition 0, one binary header per table message, 4 table topics × 4 partitions`,
  producer: 'acks = all (-1), gzip, not idempotent, max one request in flight',
  broker: 'Apache Kafka 4.1.1, 3 KRaft nodes (controller + broker), RF 3, min.insync.replicas 2 (scripts/services.sh)',
};
const run = new BenchRun(REPS === 0 ? 'kafka-clients-reconnect' : 'kafka-clients', `Kafka clients on the bus's batch shapes (${MESSAGES.toLocaleString('en-US')} messages of ${VALUE_BYTES} B, acks = all, gzip)`, `node --import tsx benchmarks/kafka-clients.bench.ts --messages ${MESSAGES} --tx-rows ${TX_ROWS} --value-bytes ${VALUE_BYTES} --reps ${REPS} --kill-seconds ${KILL_SECONDS} --clients ${CLIENTS.join(',')}`, parameters);
const installed = (c: ClientName): boolean => existsSync(fileURLToPath(new URL(`../node_modules/${packages[c]}/package.json`, import.meta.url)));
for (const c of CLIENTS.filter((x) => !installed(x))) {
  console.log(`${packages[c]} is not installed: not measured (see the header comment)`);
  run.note(`${packages[c]} not measured: not installed`);
}
CLIENTS = CLIENTS.filter(installed);
for (const c of CLIENTS) run.version(packages[c], versionOf(packages[c]));

const results: Record<string, { throughput: Throughput[]; reconnect: Reconnect | null }> = {};
try {
  for (const c of CLIENTS) results[c] = { throughput: [], reconnect: null };
  for (let rep = 0; rep < REPS; rep++) {
    // The order rotates per repetition, so no client always runs on a warmer (or busier) cluster.
    for (let i = 0; i < CLIENTS.length; i++) {
      const c = CLIENTS[(i + rep) % CLIENTS.length]!;
      const t = await throughput(c, brokers, admin, rep);
      results[c]!.throughput.push(t);
      console.log(`rep ${rep + 1} ${c.padEnd(12)} produce ${Math.round(t.messages / t.produceSeconds)} msg/s (${(t.bytes / 2 ** 20 / t.produceSeconds).toFixed(1)} MiB/s); consume ${Math.round(t.messages / t.consumeSeconds)} msg/s`);
    }
  }
  if (KILL_SECONDS > 0) {
    for (const c of CLIENTS) {
      let r: Reconnect;
      try {
        r = await reconnect(c, brokers, refKafka, admin, kafkaDir);
      } catch (err) {
        console.log(`reconnect ${c}: the measurement itself failed: ${(err as Error).message}`);
        run.note(`${c}: the reconnect measurement failed (${(err as Error).message.slice(0, 200)})`);
        continue;
      }
      results[c]!.reconnect = r;
      console.log(`reconnect ${c.padEnd(12)} node ${r.killedNode} killed: ${r.errors} failed requests (${r.firstError ?? 'none'}), recovered by itself: ${r.recovered}, longest gap ${r.longestGapMs} ms, ${r.acknowledgedMessages} acknowledged, ${r.lostMessages} lost, ${r.duplicateMessages} duplicates`);
    }
  }
} finally {
  await admin.disconnect().catch(() => undefined);
  stopBenchServices();
}

const byClient = new Map<ClientName, { producer: ReturnType<typeof measurement>; consumer: ReturnType<typeof measurement> }>();
for (const c of CLIENTS) {
  const ts = results[c]!.throughput;
  const label = `${packages[c]} ${versionOf(packages[c])}`;
  if (ts.length > 0) {
    const producer = run.add(measurement(`producer: ${label}`, 'messages/s', 'higher', c === 'kafkajs' ? 'baseline' : 'chartlog', ts.map((t) => t.messages / t.produceSeconds)));
    run.add(measurement(`producer MiB/s: ${label}`, 'MiB/s', 'higher', 'detail', ts.map((t) => t.bytes / 2 ** 20 / t.produceSeconds)));
    const consumer = run.add(measurement(`consumer: ${label}`, 'messages/s', 'higher', c === 'kafkajs' ? 'baseline' : 'chartlog', ts.map((t) => t.messages / t.consumeSeconds)));
    byClient.set(c, { producer, consumer });
  }
  const r = results[c]!.reconnect;
  if (r) {
    run.add(measurement(`longest gap between acks, leader killed: ${label}`, 'ms', 'lower', 'detail', [r.longestGapMs]));
    run.note(`${label}, SIGKILL of node ${r.killedNode} (leader of the transactions partition) mid-produce: ${r.errors} failed request(s)${r.firstError ? ` (first: "${r.firstError}")` : ''}; recovered by itself (same client): ${r.recovered}; longest gap between acknowledgements ${r.longestGapMs} ms; ${r.acknowledgedMessages} messages acknowledged, ${r.lostMessages} of them missing when read back, ${r.duplicateMessages} duplicate copies`);
  }
}
const base = byClient.get('kafkajs');
if (base) {
  for (const [c, m] of byClient) {
    if (c === 'kafkajs') continue;
    run.addRatio(ratio(m.producer, base.producer, undefined, `producer ${packages[c]} / kafkajs`));
    run.addRatio(ratio(m.consumer, base.consumer, undefined, `consumer ${packages[c]} / kafkajs`));
  }
}
run.note('roles in the chart: kafkajs (the bus\'s client today) is drawn as the baseline, the two candidates in chartlog\'s colour');
run.note('consumer time includes joining a fresh consumer group; each client reads with its own consumer (kafkajs and confluent: eachBatch; platformatic: its message stream)');
parameters.reconnect = Object.fromEntries(CLIENTS.map((c) => [c, results[c]!.reconnect]));
run.write();
