import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Producer } from 'kafkajs';
import { Partitioners } from '../bus/kafkajs.js';
import { ChartlogError, isRetriable, toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Backoff, sleep } from '../core/retry.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { kafkaError } from '../bus/kafka-bus.js';
import {
  compactorGroupId,
  SETTLER_GROUP_SUFFIX,
  createKafka,
  decodeTransactionMessage,
  isTableTopic,
  tableTopic,
  transactionsTopic,
  TRANSACTIONS_PARTITION,
  type KafkaSettings,
} from '../bus/kafka-topics.js';
import { TopicCreator } from '../bus/topic-creator.js';
import { decodeTableRecord } from '../bus/table-record.js';
import { readCheckpoint, writeCheckpoint } from '../archive/checkpoint.js';
import { NO_FENCE, type WriterFence } from '../archive/lease.js';
import { HourCloser } from './hour-closer.js';
import { type EnvelopeReader } from '../archive/envelope-reader.js';
import { hourOf, nextHour, type HourKey } from '../archive/layout.js';
import { PartWriter } from './part-writer.js';
import { hoursToClose } from './close-decision.js';
import type { TransactionRecord } from '../archive/transaction-log.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import { Settlement } from './settlement.js';
import { decodeProgress, encodeProgress, progressTopic } from '../bus/kafka-progress.js';

export interface KafkaCompactorOptions {
  settings: KafkaSettings;
  flushIntervalMs: number;
  maxPartBytes: number;
  /** As CompactorOptions.closeGraceMs. */
  closeGraceMs: number;
  snapshotId: string | null;
  /** As CompactorOptions.archiveId. */
  archiveId?: string;
  /** The writer lease, as CompactorOptions.fence. */
  fence?: WriterFence;
  /** Archive MACs, as CompactorOptions.signer. */
  signer?: ArchiveSigner;
  /** Milliseconds since the epoch; tests move time by hand. */
  now?: () => number;
  /** Longest a fetch waits for data (default: half the flush interval, at most 500 ms). */
  fetchMaxWaitMs?: number;
  /** Consumer group session timeout (default: settings.sessionTimeoutMs). */
  sessionTimeoutMs?: number;
  /** An existing client (tests); otherwise one is made from `settings`. */
  kafka?: Kafka;
  /**
   * `single` (default): one compactor reads every partition and settles. With `bus.kafka.scaleOut`
   * a `worker` stores table messages and publishes progress records, and the `settler` (the
   * compactor lease's holder) reads the transactions and progress topics, settles, writes the
   * checkpoint and closes hours.
   */
  mode?: CompactorMode;
  /** A worker's name in its progress records (logs only). */
  member?: string;
}

export type CompactorMode = 'single' | 'worker' | 'settler';

/** Where a message sits in a partition, and the position that settles it (its END's, or the event's own). */
interface Entry {
  offset: bigint;
  tx: Position;
}

interface PartitionProgress {
  topic: string;
  partition: number;
  /** Processed messages not yet settled (their transaction is not complete and durable). */
  entries: Entry[];
  /** One past the highest offset processed. */
  next: bigint;
}

/** What arrived since the last flush; it counts only once the flush made it durable. */
interface Pending {
  /** `commit`: the commit part of the event's position (its source transaction). */
  events: { commit: string; table: string; seq: number }[];
  ends: TransactionRecord[];
  progress: Map<string, PartitionProgress>;
}

export { pieceRange } from './settlement.js';

/** Starting the consumer while the brokers are down: 1 s doubling to 30 s apart, for as long as it takes. */
const CONSUMER_BACKOFF = { initialDelayMs: 1000, maxDelayMs: 30_000 } as const;

const emptyPending = (): Pending => ({ events: [], ends: [], progress: new Map() });
const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/**
 * The compactor of one source on the Kafka bus: a member of the source's own consumer group
 * (`compactorGroupId`), reading the source's table topics and its transactions topic. Messages are buffered into
 * parts of their commit hour and flushed every flushIntervalMs (or at maxPartBytes).
 *
 * What it commits is decided by transactions, not by messages: a transaction is *settled* once
 * its END record and every event its END counts are in durable parts, and its predecessor (the
 * END's `previous`) is settled. A transaction too large for one batch comes in pieces, each
 * with its own END (at its last event's position) counting its own events: a piece settles as
 * a transaction does, its events counted against their source transaction within the piece's
 * seq range (`pieceRange`), so P may stop between two pieces of one transaction — the
 * checkpoint then names a piece, from which the source resumes after that event. The settled
 * position P only moves forward, in position order.
 * After each flush it writes P as the checkpoint, then
 * commits, per partition, the offset of the first processed message whose transaction is not
 * settled (or one past the last processed message). So every offset below a committed one is
 * durable, and after any crash everything after P comes again whole — re-counted, and dropped
 * by position where it was already stored. Messages at or below P that come again are skipped
 * at once, so no duplicate lands in a later hour. Hours close when P passes them (hoursToClose).
 *
 * Topics are listed at subscription; an END that counts events of a table whose topic appeared
 * since makes it subscribe again (a new consumer, same group).
 *
 * `single` mode (the default) is one compactor per source: hour closing assumes it sees every
 * partition, and settling needs the transactions partition. A compactor assigned a generation
 * without it (another member in its group) stops with a fatal error rather than go on storing
 * events it can never settle. With `bus.kafka.scaleOut` the work is split (docs/architecture.md
 * §1, "Several active compactors"): `worker`s share the table partitions and vouch for what
 * their durable parts hold with progress records, committing offsets only below the settler's
 * checkpoint; the `settler` counts from progress records instead of table messages, under the
 * same rules (`Settlement`).
 */
export class KafkaCompactor {
  private readonly kafka: Kafka;
  private readonly writer: PartWriter;
  private readonly closer: HourCloser;
  private readonly fence: WriterFence;
  private readonly now: () => number;
  private readonly txTopic: string;
  private readonly groupId: string;
  private readonly topics: TopicCreator;
  private readonly openHours = new Set<HourKey>();
  private floor: HourKey | null = null;
  /** END records and events durable, and what they settle (the checkpoint). */
  private settlement = new Settlement();
  private readonly mode: CompactorMode;
  /** `scaleOut`: the topic of progress records (published by workers, read by the settler). */
  private readonly progressTopicName: string;
  private readonly member: string;
  /** A worker lists the topics again now and then: a table's topic may appear after it subscribed. */
  private topicsListedAt = 0;
  private pending = emptyPending();
  private readonly progress = new Map<string, PartitionProgress>();
  private readonly committed = new Map<string, bigint>();
  private subscribed = new Set<string>();
  private consumer: Consumer | null = null;
  private resubscribe = false;
  private stopping = false;
  private abandoned = false;
  private failure: ChartlogError | null = null;
  /** Set while an assignment lacks the transactions partition: fails the compactor unless a rebalance brings it in time. */
  private missingTxTimer: NodeJS.Timeout | null = null;
  private lastMessageAt = 0;
  private nextFlushAt = 0;
  private lock: Promise<void> = Promise.resolve();
  /** Callers of `caughtUp`, told after each checkpoint and when the compactor stops. */
  private readonly settleWaiters = new Set<() => void>();
  private ended = false;
  private checkpointed: Position | null = null;
  /** Cuts the wait between flushes short (stop, failure, new consumer needed). */
  private wake = new AbortController();
  /** Counters for tests and metrics: Kafka records taken (`messages`), change events in the table records among them, records skipped as settled. */
  readonly stats = { messages: 0, events: 0, skipped: 0, flushes: 0, commits: 0, generations: 0 };

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    envelopes: EnvelopeReader,
    private readonly options: KafkaCompactorOptions,
    private readonly signal?: AbortSignal,
  ) {
    this.kafka = options.kafka ?? createKafka(options.settings, '-compactor');
    this.fence = options.fence ?? NO_FENCE;
    this.writer = new PartWriter(store, source, envelopes, signal, this.fence);
    this.closer = new HourCloser(store, source, envelopes, signal, this.fence, options.signer);
    this.now = options.now ?? Date.now;
    this.txTopic = transactionsTopic(options.settings.topicPrefix, source);
    this.mode = options.mode ?? 'single';
    this.member = options.member ?? 'compactor';
    this.progressTopicName = progressTopic(options.settings.topicPrefix, source);
    // The settler is alone in a group of its own (the compactor lease keeps it one process), so
    // the transactions partition and the progress partition are both always its.
    this.groupId = compactorGroupId(options.settings, source) + (this.mode === 'settler' ? SETTLER_GROUP_SUFFIX : '');
    this.topics = new TopicCreator(this.kafka, options.settings, source);
  }

  /** The newest transaction known complete and durable (what the checkpoint says). */
  get settledPosition(): Position | null {
    return this.settlement.position;
  }

  /** The newest position written as the checkpoint by this compactor (null before its first). */
  get checkpointedPosition(): Position | null {
    return this.checkpointed;
  }

  /** The oldest END record in durable parts whose transaction has not settled (Settlement.oldestUnsettled). */
  get oldestUnsettled(): Position | null {
    return this.settlement.oldestUnsettled;
  }

  /** Reads where the last run stopped: the checkpoint, the closed hours, hours left open. */
  async start(): Promise<void> {
    const last = await this.closer.lastClosed();
    this.floor = last ? nextHour(last.hour) : null;
    for (const h of await this.closer.hoursWithParts()) this.openHours.add(h);
    const cp = await readCheckpoint(this.store, this.source);
    if (cp) this.settlement = new Settlement({ position: cp.position, commitTsUs: cp.commitTsUs });
    this.lastMessageAt = this.now();
  }

  /**
   * Consumes until `signal` aborts, then flushes, commits and leaves the group. Throws a fatal
   * error (an undecodable message, a store refusing writes for good).
   */
  async run(signal: AbortSignal): Promise<void> {
    const onAbort = () => this.wake.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const backoff = new Backoff(CONSUMER_BACKOFF);
      while (!signal.aborted && !this.abandoned && !this.failure) {
        let consumer: Consumer;
        try {
          consumer = await this.startConsumer();
          backoff.reset();
        } catch (err) {
          // Brokers down at start or after a crash of the consumer: wait and try again.
          if (!isRetriable(err)) throw err;
          const delayMs = backoff.next()!;
          logger().warn({ err, source: this.source, attempt: backoff.attempts, delayMs }, 'kafka compactor cannot start its consumer; retrying');
          await sleep(delayMs, this.wake.signal);
          continue;
        }
        this.nextFlushAt = this.now() + this.options.flushIntervalMs;
        while (!signal.aborted && !this.abandoned && !this.failure && !this.resubscribe) {
          await sleep(Math.max(1, Math.min(this.nextFlushAt - this.now(), this.options.flushIntervalMs)), this.wake.signal);
          if (this.now() >= this.nextFlushAt) await this.exclusive(() => this.flushAndClose()).catch((err: unknown) => this.fail(err));
        }
        // Stop taking messages, make what was taken durable and commit it, then leave.
        this.stopping = true;
        if (!this.abandoned && !this.failure) await this.exclusive(() => this.flushAndClose()).catch((err: unknown) => this.fail(err));
        await consumer.disconnect().catch((err: unknown) => logger().warn({ err, source: this.source }, 'kafka consumer did not disconnect cleanly'));
        this.consumer = null;
        this.resubscribe = false;
        this.stopping = false;
        if (!signal.aborted && !this.abandoned && !this.failure) this.wake = new AbortController();
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      await this.producer?.disconnect().catch(() => undefined);
      this.ended = true;
      this.notifySettleWaiters();
    }
    if (this.failure) throw this.failure;
  }

  /**
   * Waits, while the consumer keeps running, until every transaction up to `position` is
   * settled (stored whole and checkpointed): 'settled'; or until `timeoutMs` passes: 'timeout';
   * or until the compactor stops or fails first: 'stopped'.
   *
   * A clean stop calls it with the newest position its producer made durable in Kafka before it
   * stops the compactor. Partitions are consumed independently and one can lag far behind the
   * others — the single transactions partition carries two records per transaction — so table
   * events can be stored while their END records are still only in Kafka; stopping at that
   * moment would leave the store with events no logged transaction accounts for until the next
   * run.
   */
  async caughtUp(position: Position, timeoutMs: number): Promise<'settled' | 'timeout' | 'stopped'> {
    const state = () => {
      const settled = this.settlement.position;
      if (settled !== null && Position.compare(settled, position) >= 0) return 'settled' as const;
      return this.failure || this.abandoned || this.ended ? ('stopped' as const) : null;
    };
    const now = state();
    if (now) return now;
    return await new Promise((resolve) => {
      const check = () => {
        const s = state();
        if (s) finish(s);
      };
      const finish = (s: 'settled' | 'timeout' | 'stopped') => {
        clearTimeout(timer);
        this.settleWaiters.delete(check);
        resolve(s);
      };
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      this.settleWaiters.add(check);
    });
  }

  private notifySettleWaiters(): void {
    for (const check of [...this.settleWaiters]) check();
  }

  /**
   * Stops like a killed process would: no flush, no checkpoint, no commit. What was buffered is
   * lost here and comes again from Kafka to the next compactor of the group. For tests.
   */
  async abandon(): Promise<void> {
    this.abandoned = true;
    this.wake.abort();
    this.notifySettleWaiters();
  }

  /** Closes every open hour the settled stream (or the clock, when quiet) has left behind. */
  async closeFinishedHours(force = false): Promise<void> {
    await this.exclusive(() => this.closeLocked(force));
  }

  // -------------------------------------------------------------------------------------------

  private async startConsumer(): Promise<Consumer> {
    // The transactions topic must exist before the group assigns partitions, or this member's
    // first generation would lack its partition (a broker without topic auto-creation, or the
    // compactor starting before the producer's first send).
    await this.topics.ensure([{ topic: this.txTopic }, ...(this.mode === 'single' ? [] : [{ topic: this.progressTopicName }])]);
    let topics: string[] = [];
    if (this.mode !== 'settler') topics = await this.listTableTopics();
    this.topicsListedAt = this.now();
    if (this.mode !== 'worker') topics.push(this.txTopic);
    if (this.mode === 'settler') topics.push(this.progressTopicName);
    this.subscribed = new Set(topics);
    if (topics.length === 0) throw new ChartlogError('not_found', `no table topic of source ${this.source} exists yet`, { retriable: true, hint: 'start the capture process (chartlog run --role capture)' });
    const consumer = this.kafka.consumer({
      groupId: this.groupId,
      sessionTimeout: this.sessionTimeoutMs(),
      // Some brokers (librdkafka's mock cluster) answer a fetch only at its deadline, not when
      // data arrives; the deadline then adds to the commit → durable latency, so keep it short.
      maxWaitTimeInMs: this.options.fetchMaxWaitMs ?? Math.max(50, Math.min(500, Math.floor(this.options.flushIntervalMs / 2))),
      allowAutoTopicCreation: true,
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => this.onAssignment(e.payload.memberAssignment));
    consumer.on(consumer.events.CRASH, (e) => {
      // kafkajs restarts itself when it can; when it gives up, start a new consumer.
      if (!e.payload.restart) {
        logger().warn({ err: kafkaError(e.payload.error, 'kafka consumer crashed'), source: this.source }, 'kafka consumer crashed; starting a new one');
        this.resubscribe = true;
        this.wake.abort();
      }
    });
    try {
      await consumer.connect();
      // A new group starts at the beginning: nothing in Kafka may be skipped.
      await consumer.subscribe({ topics, fromBeginning: true });
      await consumer.run({ autoCommit: false, eachBatch: (p) => this.eachBatch(p) });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      throw kafkaError(err, 'cannot start the Kafka consumer');
    }
    this.consumer = consumer;
    this.stats.generations++;
    logger().info({ source: this.source, groupId: this.groupId, topics: topics.length, mode: this.mode }, 'kafka compactor consuming');
    return consumer;
  }

  private sessionTimeoutMs(): number {
    return this.options.sessionTimeoutMs ?? this.options.settings.sessionTimeoutMs ?? 30_000;
  }

  /** After a rebalance, partitions given away are forgotten: their uncommitted rest is redelivered to their new owner. */
  private onAssignment(assignment: Record<string, number[]>): void {
    const mine = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) for (const p of partitions) mine.add(tpKey(topic, p));
    if (this.mode === 'worker') {
      // What the tests and the operator read to see that the partitions are shared.
      logger().info({ source: this.source, member: this.member, partitions: [...mine].map((k) => k.replace('\u0000', '/')).sort() }, 'kafka compactor worker assigned');
    } else if (!mine.has(tpKey(this.txTopic, TRANSACTIONS_PARTITION))) {
      // A member killed with -9 (a previous run of this source) stays in the group until its
      // session times out and may be given the partition meanwhile; the rebalance after its
      // expiry gives everything to this member. Only a partition still held past that is
      // another live consumer: then stop, and say who to look for. What it buffered is not
      // committed, so the member that holds the partition (or the next run) gets it again.
      if (!this.missingTxTimer) {
        const graceMs = 3 * this.sessionTimeoutMs();
        this.missingTxTimer = setTimeout(() => {
          this.missingTxTimer = null;
          // A compactor stopping anyway (clean stop, abandoned) does not fail for it.
          if (this.stopping || this.abandoned) return;
          this.fail(
            new ChartlogError('lease', `the Kafka compactor of source ${this.source} was not given the transactions partition ${this.txTopic}/${TRANSACTIONS_PARTITION} for ${Math.round(graceMs / 1000)} s: another member of consumer group "${this.groupId}" holds it, or the topic does not exist`, {
              hint: `run one compactor per source: stop the other process consuming as group "${this.groupId}" (another chartlog run of this source, or a configuration whose bus.kafka.groupId/sourceGroupIds names the same group); where topics are not auto-created, create ${this.txTopic} first`,
            }),
          );
        }, graceMs);
        this.missingTxTimer.unref();
      }
      return;
    }
    if (this.missingTxTimer) {
      clearTimeout(this.missingTxTimer);
      this.missingTxTimer = null;
    }
    for (const map of [this.progress, this.pending.progress, this.committed]) {
      for (const key of [...map.keys()]) if (!mine.has(key)) map.delete(key);
    }
  }

  private async eachBatch({ batch, isRunning, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    // kafkajs heartbeats between batches only: a batch waiting here for a long flush (a slow
    // store, a large part) held the member silent past the session timeout, and the group
    // dropped it mid-flush. Heartbeat while waiting and working; kafkajs sends one at most every
    // heartbeatInterval.
    const beat = setInterval(() => void heartbeat().catch(() => undefined), Math.max(100, Math.min(1000, Math.floor(this.sessionTimeoutMs() / 3))));
    try {
      await this.exclusiveBatch(batch, isRunning, isStale);
    } finally {
      clearInterval(beat);
    }
  }

  private async exclusiveBatch(batch: EachBatchPayload['batch'], isRunning: () => boolean, isStale: () => boolean): Promise<void> {
    await this.exclusive(async () => {
      if (this.stopping || this.abandoned || this.failure) return;
      try {
        for (const m of batch.messages) {
          if (!isRunning() || isStale()) break;
          this.take(batch.topic, batch.partition, m);
        }
        if (this.writer.pendingBytes >= this.options.maxPartBytes) await this.flushAndClose();
      } catch (err) {
        this.fail(err);
      }
    });
  }

  private take(topic: string, partition: number, m: KafkaMessage): void {
    const where = `${topic}/${partition}@${m.offset}`;
    const offset = BigInt(m.offset);
    // What decides whether the message is settled: the position of its END record (a whole
    // transaction's, or a piece's of a large one) or of the event itself. Never the
    // transaction's commit position for an event: the pieces of a large transaction settle one
    // by one, before the transaction does.
    let at: Position | null;
    if (topic === this.txTopic) {
      const { status, record } = decodeTransactionMessage(m.value, where);
      at = Position.parse(record.pos);
      if (!this.isSettled(at) && status === 'END') {
        this.writer.addTransaction(this.hourFor(BigInt(record.commitTsUs)), record);
        this.pending.ends.push(record);
        // A settler reads no table topics; its workers list the topics again by themselves.
        if (this.mode === 'single') for (const table of Object.keys(record.tables)) {
          // A table whose topic appeared after we subscribed: subscribe again, or the
          // transaction would never complete.
          if (!this.subscribed.has(tableTopic(this.options.settings.topicPrefix, this.source, table))) this.resubscribe = true;
        }
      }
    } else if (topic === this.progressTopicName) {
      // Events another compactor vouches are in durable parts: counted at the next flush, after
      // the END records this settler stores are durable too. The record is done with once the
      // newest event it vouches for has settled.
      const { events } = decodeProgress(m.value, where);
      let newest: Position | null = null;
      for (const e of events) {
        const pos = Position.of(e.commit, e.seq);
        if (this.isSettled(pos)) continue;
        this.pending.events.push(e);
        if (newest === null || Position.compare(pos, newest) > 0) newest = pos;
      }
      // Nothing unsettled (null): the record is done with at once.
      at = newest;
    } else {
      // One event (formats 0, 1) or several of one transaction and table (format 2), in
      // position order: the record is done with once its newest event has settled.
      const r = decodeTableRecord(m, where);
      this.stats.events += r.events.length;
      at = null;
      let hour: HourKey | null = null;
      for (const e of r.events) {
        if (at === null || Position.compare(e.position, at) > 0) at = e.position;
        if (this.isSettled(e.position)) continue;
        hour ??= this.hourFor(r.commitTsUs);
        this.writer.addMessage(hour, { table: r.table, fingerprint: e.fingerprint, key: e.key, value: e.value, position: e.position });
        this.pending.events.push({ commit: e.position.commit, table: r.table, seq: e.position.seq });
      }
    }
    const done = at === null || this.isSettled(at);
    if (done) this.stats.skipped++;
    this.stats.messages++;
    const key = tpKey(topic, partition);
    // The group already resumes at (or before) the first offset this member was given: a
    // commit of that offset would say nothing new. Without this baseline a flush with nothing
    // to write (say, only a BEGIN taken) committed offset 0 while the store refused writes.
    if (!this.committed.has(key)) this.committed.set(key, offset);
    let p = this.pending.progress.get(key);
    if (!p) this.pending.progress.set(key, (p = { topic, partition, entries: [], next: 0n }));
    if (at !== null && !done) p.entries.push({ offset, tx: at });
    if (offset + 1n > p.next) p.next = offset + 1n;
    this.lastMessageAt = this.now();
  }

  private isSettled(tx: Position): boolean {
    return this.settlement.isSettled(tx);
  }

  /** The commit hour, or the first open one when that hour is already closed. */
  private hourFor(commitTsUs: bigint): HourKey {
    let hour = hourOf(commitTsUs);
    if (this.floor && hour < this.floor) hour = this.floor;
    this.openHours.add(hour);
    return hour;
  }

  /** Flush, settle, checkpoint, commit, close hours — in that order. Runs under the lock. */
  private async flushAndClose(): Promise<void> {
    if (this.abandoned) return;
    this.nextFlushAt = this.now() + this.options.flushIntervalMs;
    const taken = this.pending;
    this.pending = emptyPending();
    const written = await this.writer.flushRuns();
    if (this.abandoned) return;
    if (written.objects.length > 0) this.stats.flushes++;
    if (this.mode === 'worker') {
      await this.workerAfterFlush(taken);
      return;
    }
    this.absorb(taken);
    const before = this.settlement.position;
    this.settle();
    const settled = this.settlement.position;
    if (settled && (!before || !Position.equals(before, settled))) {
      await this.writeCheckpoint();
      logger().debug({ source: this.source, settled: Position.format(settled), objects: written.objects.length }, 'kafka compactor: parts durable, checkpoint written');
      this.notifySettleWaiters();
    }
    if (this.abandoned) return;
    await this.commit();
    await this.closeLocked(false);
  }

  /**
   * A worker (`scaleOut`), once its parts are durable: vouches for the events they hold with
   * progress records (acks = all), then learns the settled position from the settler's
   * checkpoint and commits offsets only below what that covers. When the progress cannot be
   * published, nothing is committed and a new consumer reads the partitions again from the
   * committed offsets: the events are stored and vouched for again (counted once by seq).
   */
  private async workerAfterFlush(taken: Pending): Promise<void> {
    const records = encodeProgress(this.member, taken.events);
    if (records.length > 0) {
      try {
        await this.progressProducer().send({ topic: this.progressTopicName, acks: -1, messages: records.map((value) => ({ value })) });
      } catch (err) {
        logger().warn({ err: kafkaError(err, 'progress not published'), source: this.source }, 'kafka compactor: progress records not published; reading the partitions again');
        this.progress.clear();
        if (!this.stopping) {
          this.resubscribe = true;
          this.wake.abort();
        }
        return;
      }
    }
    for (const [key, t] of taken.progress) {
      const p = this.progress.get(key);
      if (!p) this.progress.set(key, t);
      else {
        p.entries.push(...t.entries);
        if (t.next > p.next) p.next = t.next;
      }
    }
    const cp = await readCheckpoint(this.store, this.source);
    if (cp) this.settlement.advanceTo(cp.position, cp.commitTsUs);
    this.pruneProgress();
    if (this.abandoned) return;
    await this.commit();
    // A table whose topic appeared since this worker subscribed: subscribe again (every 5 s at most).
    if (!this.stopping && this.now() - this.topicsListedAt >= 5000) {
      this.topicsListedAt = this.now();
      const topics = await this.listTableTopics().catch(() => null);
      if (topics?.some((t) => !this.subscribed.has(t))) {
        this.resubscribe = true;
        this.wake.abort();
      }
    }
  }

  private producer: Producer | null = null;
  private producerReady: Promise<void> | null = null;

  private progressProducer(): { send: Producer['send'] } {
    const producer = (this.producer ??= this.kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner }));
    this.producerReady ??= producer.connect();
    const ready = this.producerReady;
    return {
      send: async (record) => {
        try {
          await ready;
        } catch (err) {
          this.producerReady = null;
          throw err;
        }
        return await producer.send(record);
      },
    };
  }

  private async listTableTopics(): Promise<string[]> {
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      return (await admin.listTopics()).filter((t) => isTableTopic(this.options.settings.topicPrefix, this.source, t));
    } catch (err) {
      throw kafkaError(err, 'cannot list the Kafka topics');
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /** Counts what the flush just made durable. */
  private absorb(taken: Pending): void {
    for (const e of taken.events) this.settlement.addEvent(e);
    for (const r of taken.ends) this.settlement.addEnd(r);
    for (const [key, t] of taken.progress) {
      const p = this.progress.get(key);
      if (!p) this.progress.set(key, t);
      else {
        p.entries.push(...t.entries);
        if (t.next > p.next) p.next = t.next;
      }
    }
  }

  /** Moves the settled position over every complete transaction in position order (Settlement.settle). */
  private settle(): void {
    const { waiting } = this.settlement.settle();
    if (waiting) this.warnChainGap(waiting.tx, waiting.previous);
    this.pruneProgress();
  }

  private pruneProgress(): void {
    for (const p of this.progress.values()) p.entries = p.entries.filter((e) => !this.isSettled(e.tx));
  }

  private chainGapWarnedAt = 0;

  private warnChainGap(tx: Position, previous: Position): void {
    if (this.now() - this.chainGapWarnedAt < 60_000) return;
    this.chainGapWarnedAt = this.now();
    logger().warn(
      { source: this.source, waiting: Position.format(tx), for: Position.format(previous), settled: this.settlement.position ? Position.format(this.settlement.position) : null },
      'kafka compactor: a transaction waits for its predecessor, which has not arrived; if Kafka lost it (retention), restart the source from the checkpoint',
    );
  }

  /** Commits, per partition, the first offset not known durable and settled. */
  private async commit(): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) return;
    const offsets: { topic: string; partition: number; offset: string }[] = [];
    for (const [key, p] of this.progress) {
      let at = p.next;
      for (const e of p.entries) if (e.offset < at) at = e.offset;
      if (this.committed.get(key) === at) continue;
      offsets.push({ topic: p.topic, partition: p.partition, offset: at.toString() });
    }
    if (offsets.length === 0) return;
    try {
      await consumer.commitOffsets(offsets);
      for (const o of offsets) this.committed.set(tpKey(o.topic, o.partition), BigInt(o.offset));
      this.stats.commits++;
    } catch (err) {
      // Not committing is always safe: the messages come again and are dropped by position.
      // But kafkajs keeps a dead group coordinator cached ("Broker 2 not found in the cached
      // metadata" after a kill -9 of that broker): the member neither commits nor fetches again.
      // A new consumer looks the coordinator up afresh (measured: test/integration/kafka-broker-failure.test.ts).
      logger().warn({ err: kafkaError(err, 'commit failed'), source: this.source }, 'kafka offset commit failed; the messages will be redelivered; starting a new consumer');
      if (!this.stopping) {
        this.resubscribe = true;
        this.wake.abort();
      }
    }
  }

  private async closeLocked(force: boolean): Promise<void> {
    if (this.writer.pendingBatches > 0 || this.writer.pendingBytes > 0) return; // only durable data is closed into segments
    const quiet = this.settlement.idle && this.now() - this.lastMessageAt >= this.options.flushIntervalMs;
    const state = { durableCommitUs: this.settlement.commitTsUs, nowMs: this.now(), quiet, closeGraceMs: this.options.closeGraceMs, force };
    let closed = false;
    for (const hour of hoursToClose(this.openHours, state)) {
      // Later messages of this hour go to the next one from now on (readers go by commit time).
      this.floor = nextHour(hour);
      await this.closer.close(hour);
      this.openHours.delete(hour);
      closed = true;
    }
    // The checkpoint anchors the newest manifest (as Compactor.closeFinishedHours).
    if (closed && this.options.signer && this.settlement.position) await this.writeCheckpoint();
  }

  private async writeCheckpoint(): Promise<void> {
    const signer = this.options.signer;
    const auth = signer ? { signer, head: await this.closer.lastClosed() } : undefined;
    const position = this.settlement.position!;
    await writeCheckpoint(this.store, { source: this.source, position, commitTsUs: this.settlement.commitTsUs, snapshotId: this.options.snapshotId, archiveId: this.options.archiveId }, this.signal, this.fence, auth);
    this.checkpointed = position;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private fail(err: unknown): void {
    if (this.missingTxTimer) clearTimeout(this.missingTxTimer);
    this.missingTxTimer = null;
    // A killed compactor's interrupted writes are not failures: the next one redoes them.
    if (!this.failure && !this.abandoned) {
      this.failure = toChartlogError(err);
      logger().error({ err: this.failure, source: this.source }, 'kafka compactor stopped');
    }
    this.wake.abort();
    this.notifySettleWaiters();
  }
}
