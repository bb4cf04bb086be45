import { randomUUID } from 'node:crypto';
import type { Kafka, Message, PartitionMetadata, Producer, TopicMessages } from 'kafkajs';
import { CompressionTypes, Partitioners } from './kafkajs.js';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import type { SchemaSource } from '../archive/envelope-reader.js';
import { transactionRecordOf } from '../archive/transaction-log.js';
import type { BusBatch, BusMessage } from '../codec/bus-message.js';
import {
  createKafka,
  decodeTransactionMessage,
  encodeTransactionMessage,
  HEADER,
  schemasTopic,
  tableTopic,
  transactionsTopic,
  TRANSACTIONS_PARTITION,
  type KafkaSettings,
} from './kafka-topics.js';
import { keyPartition } from './key-partition.js';
import { encodeTableRecord, eventBytes } from './table-record.js';
import { TopicCreator } from './topic-creator.js';

export interface KafkaBusOptions {
  settings: KafkaSettings;
  source: string;
  /** Where the schema JSON of a fingerprint is found, to publish it on first sight. */
  schemas?: SchemaSource;
  /** Batches queued before `publish` waits (backpressure to the connector). Default 4096. */
  maxQueuedBatches?: number;
  /**
   * Encoded bytes queued before `publish` waits (a batch larger than this is still taken when
   * the queue is empty). Default unbounded. The pieces of a large transaction are 10,000
   * messages each: counted in batches alone, a 1M-row transaction filled a gigabyte.
   */
  maxQueuedBytes?: number;
  /** Change events per `sendBatch` request, at most (whole transactions). Default 2000. */
  maxMessagesPerSend?: number;
  /**
   * Bytes of events (keys, values, 20 bytes of framing each) in one table record, at most, when
   * it holds several (table-record.ts). Default 64 KiB: a few hundred rows per record, so
   * kafkajs's cost per record is spread thin, well under the per-partition bound of a request.
   */
  maxBytesPerRecord?: number;
  /**
   * Bytes (keys, values, headers, before compression) of one partition in one `sendBatch`
   * request, at most, when it holds several messages there. Default 512 KiB: a partition's part
   * of a request is one record batch, which the broker refuses above `message.max.bytes` (1 MiB
   * by default) — a 10,000-row piece of a large transaction with wide rows would otherwise
   * never be accepted. Where a topic's partition count is not known (CreateTopics refused), the
   * bound holds for the whole topic's part of the request.
   */
  maxBytesPerSend?: number;
  /**
   * Bytes per `sendBatch` request, all partitions together, at most (when it holds several
   * messages). Default 8 MiB. Each request waits for acks = all (up to
   * `settings.maxInFlightRequests` at once): the more a request carries, the fewer of those
   * waits (the broker's own limit, `socket.request.max.bytes`, is 100 MiB by default).
   */
  maxBytesPerRequest?: number;
  /**
   * Called in position order after the broker acknowledged (acks = all) every message up to and
   * including `position`: the connector may acknowledge it to the source.
   */
  onDurable?: (position: Position) => Promise<void> | void;
  /** Called once when a send fails (publishing then stops until `reset`): the reader restarts without waiting for its next batch. */
  onFailure?: (err: ChartlogError) => void;
  /** An existing client (tests); otherwise one is made from `settings`. */
  kafka?: Kafka;
  /**
   * Test only (config/test-hooks.ts, CHARTLOG_TEST_KAFKA_DROP_GROUP=N): the table messages of the
   * Nth group with any are not sent but reported acknowledged, as kafkajs 2.2.4 can when a leader
   * dies mid-send (lost-transaction.ts). The integration test shows nothing is lost through it.
   */
  testDropGroup?: number;
}

/**
 * The producer side of the Kafka bus. `publish` queues a whole transaction and returns (waiting
 * only while the queue is full); one sender sends queued transactions, several per request, in
 * order, with up to `settings.maxInFlightRequests` requests awaiting acks = all at once: BEGIN
 * and the table messages, then — in a request sent once those were acknowledged — END. When
 * the END of a transaction is acknowledged, `onDurable` reports it (in order): everything up
 * to it is durable in Kafka.
 *
 * Not idempotent and no Kafka transactions: a retried request can duplicate messages, which
 * the compactor drops by position. After a failed send the bus refuses publishes until
 * `reset()`; the caller restarts its stream from `durablePosition`.
 */
export class KafkaBus {
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly topics: TopicCreator;
  private readonly queue: BusBatch[] = [];
  /** The bytes of each queued batch, in step with `queue` (counted once, at publish). */
  private readonly queueSizes: number[] = [];
  private readonly roomWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private readonly schemasSent = new Set<string>();
  private readonly maxQueued: number;
  private readonly maxQueuedBytes: number;
  private queuedBytes = 0;
  private readonly maxPerSend: number;
  private readonly maxBytesPerSend: number;
  private readonly maxBytesPerRequest: number;
  private readonly maxBytesPerRecord: number;
  private readonly topicsByTable = new Map<string, string>();
  /**
   * Places messages as kafkajs would, so requests can be bounded per partition: keyless ones and
   * those of the other topics (table events' keys: keyPartition, the same murmur2 without Long).
   */
  private readonly placer = Partitioners.DefaultPartitioner();
  private sending = false;
  private failure: ChartlogError | null = null;
  private durable: Position | null = null;
  private connected = false;
  /**
   * END records of groups whose every request was acknowledged, oldest first: they go with the
   * next request (see sendGroup).
   */
  private ends: { messages: Message[]; last: Position } | null = null;
  /** Produce requests sent and not yet settled, in send order (at most maxInFlight). */
  private readonly inFlight: InFlight[] = [];
  private readonly maxInFlight: number;
  /** Test only: `KafkaBusOptions.testDropGroup`, counted down. */
  private dropGroup: number;
  /** Transactions, change events, table records and requests sent (metrics, benchmarks). */
  readonly stats = { batches: 0, messages: 0, records: 0, requests: 0 };

  constructor(private readonly options: KafkaBusOptions) {
    this.kafka = options.kafka ?? createKafka(options.settings, '-producer');
    // Correctness rests on positions, not on idempotence or on the order within a partition
    // (the hour closer sorts by position and drops copies): up to maxInFlight requests at once.
    // The default (murmur2 of the key, Java-compatible) partitioner, named so kafkajs does not warn.
    this.maxInFlight = options.settings.maxInFlightRequests;
    this.producer = this.kafka.producer({ idempotent: false, maxInFlightRequests: this.maxInFlight, allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner });
    this.topics = new TopicCreator(this.kafka, options.settings, options.source);
    this.maxQueued = options.maxQueuedBatches ?? 4096;
    this.maxQueuedBytes = options.maxQueuedBytes ?? Number.POSITIVE_INFINITY;
    this.maxPerSend = options.maxMessagesPerSend ?? 2000;
    this.maxBytesPerSend = options.maxBytesPerSend ?? 512 * 1024;
    this.dropGroup = options.testDropGroup ?? 0;
    this.maxBytesPerRequest = options.maxBytesPerRequest ?? 8 * 1024 * 1024;
    this.maxBytesPerRecord = options.maxBytesPerRecord ?? 64 * 1024;
  }

  async connect(): Promise<void> {
    try {
      await this.producer.connect();
    } catch (err) {
      throw kafkaError(err, 'cannot connect to the Kafka brokers');
    }
    this.connected = true;
    const { topicPrefix: prefix } = this.options.settings;
    await this.topics.ensure([{ topic: transactionsTopic(prefix, this.options.source) }, { topic: schemasTopic(prefix, this.options.source), schemaHistory: true }]);
  }

  /** The last position the broker acknowledged, or null. */
  get durablePosition(): Position | null {
    return this.durable;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Queues a whole transaction; waits while the queue is full; throws after a failed send. */
  async publish(batch: BusBatch): Promise<void> {
    if (batch.source !== this.options.source) throw new ChartlogError('internal', `batch of source ${batch.source} on the bus of ${this.options.source}`);
    const size = batchBytes(batch);
    while ((this.queue.length >= this.maxQueued || (this.queue.length > 0 && this.queuedBytes + size > this.maxQueuedBytes)) && !this.failure) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
    if (this.failure) throw this.failure;
    this.queue.push(batch);
    this.queueSizes.push(size);
    this.queuedBytes += size;
    if (!this.sending) void this.drain();
  }

  /** Waits until every queued batch is durable; throws the send failure if there was one. */
  async flush(): Promise<void> {
    while ((this.sending || this.queue.length > 0) && !this.failure) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Clears a send failure so publishing can start again (from `durablePosition`). */
  reset(): void {
    this.failure = null;
  }

  /** Publishes one writer schema to the compacted schema-history topic (key = fingerprint). */
  async publishSchema(fingerprint: string, schemaJson: string): Promise<void> {
    await this.send([{ topic: schemasTopic(this.options.settings.topicPrefix, this.options.source), messages: [{ key: fingerprint, value: schemaJson }] }]);
    this.schemasSent.add(fingerprint);
  }

  /**
   * The newest transaction in the transactions topic: what Kafka already holds, and so what the
   * source may already have been acknowledged up to. A restarted stream continues after it (not
   * after the object store's checkpoint, which lags), so its first transaction names its true
   * predecessor. Null when the topic is empty.
   */
  async lastPublished(): Promise<{ position: Position; commitTsUs: bigint } | null> {
    const topic = transactionsTopic(this.options.settings.topicPrefix, this.options.source);
    const admin = this.kafka.admin();
    let high: bigint;
    let low: bigint;
    try {
      await admin.connect();
      if (!(await admin.listTopics()).includes(topic)) return null;
      const p = (await admin.fetchTopicOffsets(topic)).find((o) => o.partition === TRANSACTIONS_PARTITION);
      if (!p) return null;
      high = BigInt(p.high);
      low = BigInt(p.low);
    } catch (err) {
      throw kafkaError(err, 'cannot read the end of the transactions topic');
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    if (high <= low) return null;
    // The newest END is at most one group of BEGINs (and a retried request's copies) from the end.
    const window = BigInt(2 * this.maxPerSend + 16);
    const from = high - window > low ? high - window : low;
    const consumer = this.kafka.consumer({ groupId: `${this.options.settings.groupId}.tail.${randomUUID()}`, maxWaitTimeInMs: 200 });
    let best: { position: Position; commitTsUs: bigint } | null = null;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic] });
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      consumer.on(consumer.events.GROUP_JOIN, () => consumer.seek({ topic, partition: TRANSACTIONS_PARTITION, offset: from.toString() }));
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          if (partition !== TRANSACTIONS_PARTITION || BigInt(message.offset) < from) return;
          const { status, record } = decodeTransactionMessage(message.value, `${topic}/${partition}@${message.offset}`);
          const position = Position.parse(record.pos);
          if (status === 'END' && (!best || Position.compare(position, best.position) > 0)) best = { position, commitTsUs: BigInt(record.commitTsUs) };
          if (BigInt(message.offset) + 1n >= high) done();
        },
      });
      await finished;
    } catch (err) {
      throw kafkaError(err, 'cannot read the end of the transactions topic');
    } finally {
      await consumer.disconnect().catch(() => undefined);
    }
    return best;
  }

  /** Sends what is queued, then disconnects. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      if (this.connected) await this.producer.disconnect().catch(() => undefined);
      this.connected = false;
    }
  }

  /**
   * Sends groups of queued transactions while fewer than maxInFlight requests await their
   * acknowledgement, and settles the oldest request otherwise (requests settle in send order).
   */
  private async drain(): Promise<void> {
    this.sending = true;
    try {
      // Carried END records are sent even when nothing else is queued: they make it durable.
      while ((this.queue.length > 0 || this.ends || this.inFlight.length > 0) && !this.failure) {
        if (this.inFlight.length < this.maxInFlight && (this.queue.length > 0 || this.ends)) await this.sendGroup(this.queue.length > 0 ? this.takeGroup() : []);
        else await this.settleOldest();
      }
    } catch (err) {
      this.failure = kafkaError(err, 'publishing to Kafka failed');
      // Requests still under way may land or not: the restart sends them again, and copies are
      // dropped by position. Waited for, so the restarted stream's requests come after them.
      await Promise.allSettled(this.inFlight.splice(0).map((f) => f.done));
      // Nothing queued after a failure can be sent in order: the caller restarts its
      // stream from durablePosition, which brings these transactions again.
      this.queue.length = 0;
      this.queueSizes.length = 0;
      this.queuedBytes = 0;
      this.ends = null;
      logger().warn({ err: this.failure, source: this.options.source, durable: this.durable ? Position.format(this.durable) : null }, 'kafka send failed; publishing stops until the stream restarts');
      this.options.onFailure?.(this.failure);
    } finally {
      this.sending = false;
      for (const w of this.roomWaiters.splice(0)) w();
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * Waits for the oldest request under way (every one before it has settled). The request that
   * completes a group makes that group's END records ready to send; the one that carried END
   * records makes their last transaction durable — everything before it is acknowledged too.
   */
  private async settleOldest(): Promise<void> {
    const request = this.inFlight.shift()!;
    await request.done;
    if (request.completes) {
      const { messages, last } = request.completes;
      this.ends = this.ends ? { messages: [...this.ends.messages, ...messages], last } : request.completes;
    }
    if (request.carries) {
      this.durable = request.carries;
      await this.options.onDurable?.(request.carries);
    }
  }

  private takeGroup(): BusBatch[] {
    const group: BusBatch[] = [];
    let messages = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (group.length > 0 && messages + next.messages.length > this.maxPerSend) break;
      group.push(this.queue.shift()!);
      this.queuedBytes -= this.queueSizes.shift()!;
      messages += next.messages.length;
    }
    // Room was made: every waiter looks again (by batches and by bytes).
    for (const w of this.roomWaiters.splice(0)) w();
    return group;
  }

  /**
   * Sends BEGIN and the table messages of `group`, with the END records of the groups before it
   * whose every request was acknowledged: an END reaches Kafka only after every message it
   * counts was acknowledged, so an END in Kafka always means a whole transaction there — the
   * newest END is a safe place to resume from (`lastPublished`), and the compactor never waits
   * for events that were lost with a crash. The requests are sent without waiting for their
   * acknowledgement while fewer than maxInFlight are under way (settleOldest).
   */
  private async sendGroup(group: BusBatch[]): Promise<void> {
    const { topicPrefix: prefix } = this.options.settings;
    const source = this.options.source;
    const txTopic = transactionsTopic(prefix, source);
    const carried = this.ends;
    this.ends = null;
    const byTopic = new Map<string, Message[]>([[txTopic, [...(carried?.messages ?? [])]]]);
    const push = (topic: string, m: Message) => {
      let list = byTopic.get(topic);
      if (!list) byTopic.set(topic, (list = []));
      list.push(m);
    };
    const ends: Message[] = [];
    const newTopics = new Set<string>();
    const newSchemas = new Set<string>();
    let count = 0;
    for (const batch of group) {
      for (const m of batch.messages) {
        newTopics.add(this.topicOf(m.table));
        if (!this.schemasSent.has(m.fingerprint)) newSchemas.add(m.fingerprint);
      }
    }
    // Before the table records are made: their partitions are placed by the topics' partition counts.
    await this.topics.ensure([...newTopics].map((topic) => ({ topic })));
    for (const batch of group) {
      const record = transactionRecordOf(batch);
      const txHeaders = { [HEADER.position]: record.pos, [HEADER.commitTsUs]: batch.commitTsUs.toString(), ...(batch.txId !== null ? { [HEADER.txId]: batch.txId } : {}) };
      push(txTopic, { partition: TRANSACTIONS_PARTITION, value: encodeTransactionMessage('BEGIN', record), headers: { ...txHeaders, [HEADER.status]: 'BEGIN' } });
      for (const [topic, m] of this.tableRecordsOf(batch)) push(topic, m);
      count += batch.messages.length;
      ends.push({ partition: TRANSACTIONS_PARTITION, value: encodeTransactionMessage('END', record), headers: { ...txHeaders, [HEADER.status]: 'END' } });
    }
    if (this.options.schemas && newSchemas.size > 0) {
      const schemaMessages: Message[] = [];
      for (const fp of newSchemas) schemaMessages.push({ key: fp, value: await this.options.schemas.schemaJson(source, fp) });
      // First, so a consumer of the schema topic never sees a message before its schema.
      await this.send([{ topic: schemasTopic(prefix, source), messages: schemaMessages }]);
      for (const fp of newSchemas) this.schemasSent.add(fp);
    }
    // Within one request the broker appends per partition in order, so the transactions
    // partition reads: END records of earlier groups, then BEGIN of this one. A group larger
    // than one request allows (a large transaction's piece alone can be) goes in several
    // requests, in order, and the group's END records wait for the first request sent after
    // every one of them was acknowledged (settleOldest).
    if (this.dropGroup > 0 && count > 0 && --this.dropGroup === 0) {
      for (const topic of [...byTopic.keys()]) if (topic !== txTopic) byTopic.delete(topic);
    }
    const requests = this.requestsOf(byTopic);
    // The carried END records are the first of the transactions partition's messages: the
    // request holding the last of them makes their transactions durable once it settles.
    const carriedLast = carried ? carried.messages[carried.messages.length - 1] : undefined;
    const last = group[group.length - 1];
    for (let i = 0; i < requests.length; i++) {
      const request = requests[i]!;
      while (this.inFlight.length >= this.maxInFlight) await this.settleOldest();
      const carries = carried && carriedLast && request.some((t) => t.topic === txTopic && t.messages.includes(carriedLast)) ? carried.last : null;
      const done = this.send(request);
      // Awaited in order by settleOldest; not an unhandled rejection meanwhile.
      done.catch(() => undefined);
      this.inFlight.push({ done, carries, completes: i === requests.length - 1 && last ? { messages: ends, last: last.position } : null });
      this.stats.requests++;
    }
    this.stats.batches += group.length;
    this.stats.messages += count;
  }

  /** The topic of a table (kept: the name is escaped character by character). */
  private topicOf(table: string): string {
    let topic = this.topicsByTable.get(table);
    if (topic === undefined) this.topicsByTable.set(table, (topic = tableTopic(this.options.settings.topicPrefix, this.options.source, table)));
    return topic;
  }

  /**
   * The table records of one transaction (format 2, table-record.ts): its events of one table
   * and one partition, in order, up to maxBytesPerRecord bytes each. The partition is the one
   * Kafka's default partitioner gives the event's key (murmur2 over the topic's partition
   * count, key-partition.ts), so a key keeps its one partition. Where the count is not known (CreateTopics
   * refused), each event is a record of its own with its key, placed by kafkajs.
   */
  private tableRecordsOf(batch: BusBatch): [string, Message][] {
    const out: [string, Message][] = [];
    // Within half the per-partition bound of a request too (a record is never split across
    // requests; the half leaves room for its headers and a second record).
    const limit = Math.min(this.maxBytesPerRecord, this.maxBytesPerSend / 2);
    const emit = (topic: string, partition: number | undefined, messages: BusMessage[]) => {
      const { headers, value } = encodeTableRecord(messages, batch.txId, batch.commitTsUs);
      const key = messages.length === 1 && messages[0]!.key ? Buffer.from(messages[0]!.key) : null;
      out.push([topic, partition === undefined ? { key, value, headers } : { partition, key, value, headers }]);
      this.stats.records++;
    };
    // The open record of each table and partition. Most batches are of one table: the last
    // table's state is kept at hand rather than looked up per event.
    const byTable = new Map<string, TablePacks>();
    let last: TablePacks | null = null;
    for (const m of batch.messages) {
      if (last === null || last.table !== m.table) {
        last = byTable.get(m.table) ?? null;
        if (last === null) {
          const topic = this.topicOf(m.table);
          byTable.set(m.table, (last = { table: m.table, topic, partitions: this.topics.partitionsOf(topic), open: [] }));
        }
      }
      const { topic, partitions } = last;
      if (!partitions) {
        emit(topic, undefined, [m]);
        continue;
      }
      // One partition (the broker's default): no hash. A key's partition is Kafka's murmur2 of
      // it (key-partition.ts); keyless events are spread as kafkajs spreads them.
      const partition =
        partitions === 1 ? 0 : m.key ? keyPartition(m.key, partitions) : this.placer({ topic, partitionMetadata: partitionMetadata(partitions), message: { key: null, value: null } });
      const size = eventBytes(m);
      let pack = last.open[partition];
      if (pack && pack.bytes + size > limit) {
        emit(topic, partition, pack.messages);
        pack = undefined;
      }
      if (!pack) last.open[partition] = pack = { messages: [], bytes: 0 };
      pack.messages.push(m);
      pack.bytes += size;
    }
    for (const t of byTable.values()) t.open.forEach((pack, partition) => pack && emit(t.topic, partition, pack.messages));
    return out;
  }

  /**
   * The messages of `byTopic` in requests, in order: at most maxBytesPerSend bytes of one
   * partition and maxBytesPerRequest bytes in all (or one message). Table messages get their
   * partition here, the one kafkajs's default partitioner would choose (murmur2 of the key over
   * the topic's partition count): the bound is the broker's per record batch, so a request may
   * carry that much for every partition, not for all of them together — fewer requests, each
   * awaited, for the same bytes. A topic whose partition count is unknown counts as one partition.
   */
  private requestsOf(byTopic: Map<string, Message[]>): TopicMessages[][] {
    const requests: TopicMessages[][] = [];
    let current = new Map<string, Message[]>();
    const perPartition = new Map<string, number>();
    let count = 0;
    let bytes = 0;
    const close = () => {
      if (count > 0) requests.push([...current].map(([topic, messages]) => ({ topic, messages })));
      current = new Map();
      perPartition.clear();
      count = 0;
      bytes = 0;
    };
    for (const [topic, messages] of byTopic) {
      const partitions = this.topics.partitionsOf(topic);
      const metadata = partitions ? partitionMetadata(partitions) : null;
      for (const m of messages) {
        if (metadata && (m.partition === undefined || m.partition === null)) m.partition = this.placer({ topic, partitionMetadata: metadata, message: m });
        const size = messageBytes(m);
        const where = m.partition === undefined || m.partition === null || !metadata ? `${topic}\u0000*` : `${topic}\u0000${m.partition}`;
        const inPartition = perPartition.get(where) ?? 0;
        // Only bytes: takeGroup bounds the messages of a group (a single transaction may be larger).
        if (count > 0 && (inPartition + size > this.maxBytesPerSend || bytes + size > this.maxBytesPerRequest)) close();
        let list = current.get(topic);
        if (!list) current.set(topic, (list = []));
        list.push(m);
        perPartition.set(where, (perPartition.get(where) ?? 0) + size);
        count++;
        bytes += size;
      }
    }
    close();
    return requests;
  }

  private async send(topicMessages: TopicMessages[]): Promise<void> {
    await this.producer.sendBatch({
      topicMessages,
      acks: -1,
      compression: this.options.settings.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
    });
  }
}

/** A produce request under way (KafkaBus.inFlight). */
interface InFlight {
  done: Promise<void>;
  /** The newest transaction whose END record this request carries: durable once it settles. */
  carries: Position | null;
  /** The END records of the group whose last request this is: sent once it settles. */
  completes: { messages: Message[]; last: Position } | null;
}

/** The records of one table being filled in `tableRecordsOf`, by partition. */
interface TablePacks {
  table: string;
  topic: string;
  /** Undefined when the topic's partition count is not known (CreateTopics refused). */
  partitions: number | undefined;
  open: ({ messages: BusMessage[]; bytes: number } | undefined)[];
}

const metadataByCount = new Map<number, PartitionMetadata[]>();

/** Partition metadata enough for kafkajs's default partitioner, which reads only the count (and leaders, for keyless messages). */
function partitionMetadata(count: number): PartitionMetadata[] {
  let m = metadataByCount.get(count);
  if (!m) {
    m = Array.from({ length: count }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 0, replicas: [], isr: [], offlineReplicas: [] }));
    metadataByCount.set(count, m);
  }
  return m;
}

function batchBytes(batch: BusBatch): number {
  let n = 0;
  for (const m of batch.messages) n += m.value.byteLength + (m.key?.byteLength ?? 0);
  return n;
}

/** A message's size before compression, as the record batch holds it (near enough: a bound, not an exact count). */
function messageBytes(m: Message): number {
  let n = 64; // record overhead: lengths, offsets, timestamp
  if (m.key) n += typeof m.key === 'string' ? Buffer.byteLength(m.key) : m.key.byteLength;
  if (m.value) n += typeof m.value === 'string' ? Buffer.byteLength(m.value) : m.value.byteLength;
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    n += Buffer.byteLength(k) + 8;
    for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined) n += typeof one === 'string' ? Buffer.byteLength(one) : one.byteLength;
  }
  return n;
}

/**
 * kafkajs errors as ChartlogErrors. kafkajs has already retried by the time one reaches us, but
 * an outage of the brokers still passes: every failure is retriable (the stream restarts from
 * the last acknowledged position) except refused credentials, which only the operator can fix.
 */
export function kafkaError(err: unknown, message: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const name = err instanceof Error ? err.name : '';
  const detail = err instanceof Error ? err.message : String(err);
  if (/SASL|Authentication|Authorization/i.test(name) || /authoriz|authenticat/i.test(detail)) {
    return new ChartlogError('auth', `${message}: ${detail}`, { cause: err, hint: 'check bus.kafka.sasl and the ACLs of the user on the chartlog topics' });
  }
  return new ChartlogError('connection', `${message}: ${detail}`, {
    retriable: true,
    cause: err,
    hint: 'check bus.kafka.brokers and that the brokers are up; chartlog retries and resumes from the last position Kafka acknowledged',
  });
}
