import type { Kafka } from 'kafkajs';
import { KafkaBus } from '../bus/kafka-bus.js';
import { KafkaCompactor } from '../compactor/kafka-compactor.js';
import { ChartlogError, toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { prepareSource, type SourcePipelineDeps } from './prepare-source.js';
import { PublishAhead } from './publish-ahead.js';
import { runStreamLoop } from './stream-loop.js';
import { readCheckpoint } from '../archive/checkpoint.js';
import { sleep } from '../core/retry.js';
import { LostTransactionDetector } from './lost-transaction.js';
import { CompactorPresence } from '../bus/compactor-presence.js';
import { createKafka } from '../bus/kafka-topics.js';

export interface KafkaPipelineOptions {
  /** Run this source's compactor in this process too (default true; `false` for producer-only hosts). */
  compactor?: boolean;
  /**
   * On a clean stop, how long the compactor may keep consuming to store everything the producer
   * made durable in Kafka (default 30 s; a second SIGINT/SIGTERM exits at once anyway).
   */
  drainTimeoutMs?: number;
  /** An existing client for both the producer and the compactor (tests); otherwise made from the configuration. */
  kafka?: Kafka;
  /**
   * What acknowledges the source (docs/operations.md, "Roles"): `kafka` (default, `--role all`)
   * — Kafka has every message up to the position (acks = all) and this process's own compactor
   * stored it (its checkpoint); `checkpoint` (`--role capture`) — the compactor, another
   * process, has stored every transaction up to it: the checkpoint in the object store is polled
   * and the source acknowledged up to min(checkpoint, what Kafka acknowledged). Either way the
   * stream starts at the checkpoint, never after what Kafka holds.
   */
  acknowledge?: 'kafka' | 'checkpoint';
  /** How often `acknowledge: 'checkpoint'` reads the checkpoint (default 1 s; 250 ms for the in-process compactor). */
  checkpointPollMs?: number;
  /**
   * How long the oldest unsettled transaction (in-process compactor), or the checkpoint in the
   * store (`acknowledge: 'checkpoint'`), may wait while Kafka acknowledged past it before the
   * transaction is judged lost and the source read again from the checkpoint
   * (lost-transaction.ts; default 60 s; CHARTLOG_TEST_LOST_AFTER_MS in tests, config/test-hooks.ts). With
   * `checkpoint` and no compactor consuming (CompactorPresence), nothing is read again: a
   * warning says the source stays unacknowledged and its WAL or binlog grows.
   */
  lostAfterMs?: number;
  /** Test only (config/test-hooks.ts, CHARTLOG_TEST_KAFKA_DROP_GROUP): the bus's `testDropGroup`. */
  testDropGroup?: number;
}

const DRAIN_TIMEOUT_MS = 30_000;
const LOST_AFTER_MS = 60_000;
const IN_PROCESS_POLL_MS = 250;

/**
 * One source, end to end on the Kafka bus (docs/architecture.md §1):
 *
 *   connector ─► encoder (seal + Avro) ─► KafkaBus ══ Kafka ══► KafkaCompactor ─► object store
 *        ▲                                   │                          │
 *        └── acknowledge once acks=all ◄─────┘      commit offsets once durable
 *
 * The source position is acknowledged up to min(what Kafka acknowledged, the compactor's
 * checkpoint) — never on Kafka's word alone, which kafkajs can give for messages the cluster
 * lost (lost-transaction.ts); the compactor commits offsets only after the parts holding them
 * are durable. The stream starts at the checkpoint. A transaction Kafka acknowledged but the
 * compactor never gets whole is judged lost after `lostAfterMs` — by the in-process
 * compactor's oldest unsettled END (`--role all`), or by the checkpoint in the store not
 * moving while a compactor consumes (`--role capture`) — and the source is read again from
 * the checkpoint. A failed send
 * restarts the stream from the last position Kafka acknowledged, with the source's backoff
 * (stream-loop.ts). Aborting `signal` stops
 * reading, sends what is queued, acknowledges it, lets the compactor store every transaction
 * Kafka now holds (at most `drainTimeoutMs`), then stops it (flush, checkpoint, commit): a
 * clean stop leaves the store whole, not with events whose END records are still in Kafka.
 */
export async function runKafkaSourcePipeline(deps: SourcePipelineDeps, signal: AbortSignal, options: KafkaPipelineOptions = {}): Promise<void> {
  const { config, source, connector, encoder, envelopes, store } = deps;
  const settings = config.bus.kafka;
  if (!settings) throw new ChartlogError('config', 'bus.type is kafka but bus.kafka is missing', { hint: 'add bus.kafka.brokers' });
  const log = logger().child({ source: source.name, bus: 'kafka' });
  const { checkpoint, snapshotId } = await prepareSource(deps, signal);

  // The reader stops on the caller's signal, or when the compactor fails: a backup that only
  // fills Kafka and never the store must not look healthy.
  const reading = new AbortController();
  const stopReading = () => reading.abort();
  signal.addEventListener('abort', stopReading, { once: true });
  if (signal.aborted) reading.abort();

  const compactorStop = new AbortController();
  let compacting: Promise<ChartlogError | null> = Promise.resolve(null);
  let compactor: KafkaCompactor | null = null;
  if (options.compactor ?? true) {
    compactor = new KafkaCompactor(store, source.name, envelopes, {
      settings,
      flushIntervalMs: config.segments.flushIntervalMs,
      maxPartBytes: config.segments.maxPartBytes,
      closeGraceMs: 120_000,
      snapshotId,
      ...(deps.archiveId ? { archiveId: deps.archiveId } : {}),
      ...(deps.fence ? { fence: deps.fence } : {}),
      ...(deps.signer ? { signer: deps.signer } : {}),
      ...(options.kafka ? { kafka: options.kafka } : {}),
    });
    await compactor.start();
    compacting = compactor.run(compactorStop.signal).then(
      () => null,
      (err: unknown) => {
        reading.abort();
        return toChartlogError(err);
      },
    );
  }

  const ackByCheckpoint = (options.acknowledge ?? 'kafka') === 'checkpoint';
  /** The stream loop's listener for a send that failed in the background (set once the loop starts). */
  let publishFailed: ((err: ChartlogError) => void) | null = null;
  const bus = new KafkaBus({
    settings,
    source: source.name,
    schemas: envelopes,
    maxQueuedBatches: config.bus.maxBufferedBatches,
    maxQueuedBytes: config.bus.maxBufferedBytes,
    // Kafka's acknowledgement alone acknowledges the source only on a producer-only host
    // (`compactor: false` with `acknowledge: 'kafka'`, not a role chartlog run uses).
    onDurable: (p) => (ackByCheckpoint || compactor ? undefined : connector.acknowledge(p)),
    onFailure: (err) => publishFailed?.(err),
    ...(options.kafka ? { kafka: options.kafka } : {}),
    ...(options.testDropGroup ? { testDropGroup: options.testDropGroup } : {}),
  });
  // --role capture: the compactor runs elsewhere; its checkpoint says what is stored. --role
  // all: this process's compactor says it, without reading the store.
  const inProcess = compactor;
  const acker = ackByCheckpoint
    ? new CheckpointAcknowledger(deps, () => bus.durablePosition, options.checkpointPollMs ?? CHECKPOINT_POLL_MS)
    : inProcess
      ? new CheckpointAcknowledger(deps, () => bus.durablePosition, options.checkpointPollMs ?? IN_PROCESS_POLL_MS, async () => inProcess.checkpointedPosition)
      : null;
  acker?.start();

  // A transaction Kafka acknowledged that never settles: read the source again from the checkpoint.
  const start = checkpoint?.position ?? null;
  const lostAfterMs = options.lostAfterMs ?? LOST_AFTER_MS;
  const detector = new LostTransactionDetector(lostAfterMs);
  /** Set when a re-read is due: afterFailure starts the stream at `from`. */
  let reread: { from: Position | null } | null = null;
  /** What the last restart was, for its log line. */
  let restarting: 'reread' | 'failure' = 'failure';
  const readAgain = (from: Position | null, fields: Record<string, unknown>, reason: string, message: string) => {
    reread = { from };
    log.warn({ ...fields, checkpoint: from ? Position.format(from) : null }, message);
    publishFailed?.(new ChartlogError('connection', reason, { retriable: true }));
  };
  let lossWatch: NodeJS.Timeout | null = null;
  let presence: CompactorPresence | null = null;
  if (inProcess) {
    lossWatch = setInterval(() => {
      if (reread) return;
      const lost = detector.observe(Date.now(), inProcess.oldestUnsettled, bus.durablePosition);
      if (!lost) return;
      readAgain(
        inProcess.checkpointedPosition ?? start,
        { waiting: Position.format(lost) },
        `transaction ${Position.format(lost)} acknowledged by Kafka but not stored whole`,
        'a transaction Kafka acknowledged has not reached the compactor whole; reading the source again from the checkpoint (duplicates are dropped by position)',
      );
    }, IN_PROCESS_POLL_MS).unref();
  } else if (acker) {
    // --role capture sees only the checkpoint: stuck while Kafka acknowledged past it means a
    // lost transaction if a compactor consumes, and no compactor if none does (then reading
    // again cannot help; the source simply stays unacknowledged).
    const watch = presence = new CompactorPresence(options.kafka ?? createKafka(settings, '-presence'), settings, source.name);
    const checkpointAcker = acker;
    let asking = false;
    lossWatch = setInterval(() => {
      if (reread || asking) return;
      const stored = checkpointAcker.storedPosition;
      const kafkaAcked = bus.durablePosition;
      if (!detector.observeCheckpoint(Date.now(), stored, kafkaAcked)) return;
      asking = true;
      const fields = { checkpoint: stored ? Position.format(stored) : null, kafka: kafkaAcked ? Position.format(kafkaAcked) : null, waitedMs: lostAfterMs, group: watch.groupId };
      void watch
        .members()
        .then((members) => {
          if (reread) return;
          if (members === 0) {
            log.warn(
              fields,
              'no compactor is running for this source (its Kafka consumer group has no members) and the checkpoint has not moved while Kafka holds transactions past it: the source is not acknowledged past the checkpoint, so the database keeps its WAL or binlog from there and it grows until a `chartlog run --role compact` process stores them',
            );
            return;
          }
          readAgain(
            stored ?? start,
            { kafka: fields.kafka, waitedMs: lostAfterMs, compactors: members },
            `the checkpoint stayed at ${fields.checkpoint ?? 'none'} while Kafka acknowledged up to ${fields.kafka ?? 'none'}`,
            'the checkpoint has not moved while the compactor consumes and Kafka acknowledged transactions past it: one of them has not reached the compactor whole; reading the source again from the checkpoint (duplicates are dropped by position)',
          );
        })
        .finally(() => (asking = false));
    }, options.checkpointPollMs ?? CHECKPOINT_POLL_MS).unref();
  }

  let connected = false;
  const ahead = new PublishAhead(start, source.name, (b) => encoder.encode(b), (b) => bus.publish(b));
  const { failure, unpublished } = await runStreamLoop({
    watchPublishing: (onFailure) => (publishFailed = onFailure),
    connector,
    ahead,
    from: start,
    policy: source.reconnect,
    signal: reading.signal,
    log,
    beforeStart: async (from) => {
      if (connected) return from;
      await bus.connect();
      // Every role starts at the checkpoint, not after the newest transaction in Kafka: only
      // the checkpoint is proven stored (Kafka may lack what it acknowledged), and the source was
      // never acknowledged past it. What Kafka already holds is sent again and dropped by position.
      connected = true;
      log.info({ from: from ? Position.format(from) : null }, 'pipeline streaming');
      return from;
    },
    // What was queued is either sent now or dropped by the failed bus: restart right after
    // what Kafka acknowledged (or the checkpoint when nothing was, this run).
    afterFailure: async (queue) => {
      await queue.recover();
      await bus.flush().catch(() => undefined);
      let from = bus.durablePosition ?? start;
      restarting = reread ? 'reread' : 'failure';
      if (reread) {
        from = reread.from;
        reread = null;
      }
      bus.reset();
      return from;
    },
    restartMessage: () =>
      restarting === 'reread'
        ? 'reading the source again from the checkpoint, as planned after a transaction Kafka acknowledged was not stored whole; what the store already has is dropped by position'
        : 'stream or Kafka failed; restarting from the last position Kafka acknowledged',
    ...(deps.resync ? { beforePublish: () => deps.resync!.durable() } : {}),
  });
  signal.removeEventListener('abort', stopReading);
  if (lossWatch) clearInterval(lossWatch);
  await presence?.close();

  let closeError: ChartlogError | null = null;
  await bus.close().catch((err: unknown) => (closeError = toChartlogError(err)));
  // Kafka holds every transaction up to `target`; the compactor's partitions are consumed
  // independently (the transactions partition often last), so let it catch up before it stops.
  const target = bus.durablePosition ?? start;
  if (acker && target) {
    const waitFrom = Date.now();
    const drained = await acker.until(target, options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS);
    if (drained) log.info({ upTo: Position.format(target), waitedMs: Date.now() - waitFrom }, 'the compactor stored everything this process sent to Kafka');
    else {
      const acked = acker.acknowledged;
      log.warn(
        { upTo: Position.format(target), acknowledged: acked ? Position.format(acked) : null },
        'stopping before the compactor stored everything this process sent to Kafka; the source is acknowledged only up to the checkpoint, the rest is read again (and deduplicated) or stored from Kafka',
      );
    }
  }
  await acker?.stop();
  if (compactor && target) {
    const waitFrom = Date.now();
    const drained = await compactor.caughtUp(target, options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS);
    if (drained === 'settled' && Date.now() - waitFrom >= 10) {
      log.info({ upTo: Position.format(target), waitedMs: Date.now() - waitFrom }, 'the compactor stored everything Kafka holds');
    } else if (drained === 'timeout') {
      const settled = compactor.settledPosition;
      log.warn(
        { upTo: Position.format(target), settled: settled ? Position.format(settled) : null },
        'stopping before the compactor stored everything Kafka holds; the next run stores the rest (until then verify counts events of unlogged transactions)',
      );
    }
  }
  compactorStop.abort();
  const compactorError = await compacting;
  await connector.close();
  const err = failure ?? compactorError ?? closeError ?? unpublished;
  if (err) throw err;
  if (acker) {
    const acked = acker.acknowledged;
    log.info({ upTo: acked ? Position.format(acked) : null }, 'stopped; the source is acknowledged up to the compactor\'s checkpoint');
    return;
  }
  const durable = bus.durablePosition;
  log.info({ upTo: durable ? Position.format(durable) : null }, 'stopped; everything Kafka acknowledged is acknowledged to the source');
}

const CHECKPOINT_POLL_MS = 1000;

/**
 * `--role capture`: acknowledges the source up to what the compactor (another process) made
 * durable, read from its checkpoint in the object store — never beyond what Kafka acknowledged
 * to this process, and never backwards. The checkpoint names a transaction only once it and all
 * before it are in durable parts (kafka-compactor.ts), so an acknowledged position is in the
 * store, not only in Kafka.
 */
export class CheckpointAcknowledger {
  private timer: NodeJS.Timeout | null = null;
  private acked: Position | null = null;
  private stored: Position | null = null;
  private polling: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: Pick<SourcePipelineDeps, 'connector' | 'store' | 'source'>,
    private readonly kafkaDurable: () => Position | null,
    private readonly pollMs: number,
    /** What is stored: by default the checkpoint read from the store; the in-process compactor's own for --role all. */
    private readonly readStored: () => Promise<Position | null> = async () => (await readCheckpoint(deps.store, deps.source.name))?.position ?? null,
  ) {}

  get acknowledged(): Position | null {
    return this.acked;
  }

  /** The checkpoint last read (null before the first read, or when none exists yet). */
  get storedPosition(): Position | null {
    return this.stored;
  }

  start(): void {
    const tick = () => {
      this.polling = this.poll().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.pollMs).unref();
      });
    };
    this.timer = setTimeout(tick, this.pollMs).unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.polling;
    await this.poll();
  }

  /** Polls until the checkpoint covers `target` (true) or `timeoutMs` passes (false). */
  async until(target: Position, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.poll();
      if (this.acked && Position.compare(this.acked, target) >= 0) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
    }
  }

  private async poll(): Promise<void> {
    let cp;
    try {
      cp = await this.readStored();
    } catch (err) {
      // Not acknowledging is always safe: the slot keeps what the store may not have.
      logger().warn({ err: toChartlogError(err), source: this.deps.source.name }, 'cannot read the checkpoint; the source is not acknowledged until it can be read');
      return;
    }
    if (!cp) return;
    this.stored = cp;
    const sent = this.kafkaDurable();
    let upTo = cp;
    if (sent && Position.compare(sent, upTo) < 0) upTo = sent;
    if (this.acked && Position.compare(upTo, this.acked) <= 0) return;
    this.acked = upTo;
    // A failed acknowledgement is told again with the next one (acknowledge is cumulative).
    await this.deps.connector.acknowledge(upTo).catch((err: unknown) => logger().warn({ err: toChartlogError(err), source: this.deps.source.name }, 'acknowledging the source failed; retried with the next checkpoint'));
  }
}
