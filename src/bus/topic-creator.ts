import type { ITopicConfig, Kafka } from 'kafkajs';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Backoff, sleep } from '../core/retry.js';
import { describeDurability, durabilityError, durabilityProblems } from './kafka-durability.js';
import type { KafkaSettings } from './kafka-topics.js';

export interface TopicSpec {
  topic: string;
  /** The schema-history topic: compacted, its own retention (bus.kafka.topics.schemaHistory). */
  schemaHistory?: boolean;
}

/** The CreateTopics entry of `spec` under `bus.kafka.topics`. Pure. */
export function topicConfig(spec: TopicSpec, topics: KafkaSettings['topics']): ITopicConfig {
  const entries: { name: string; value: string }[] = [{ name: 'min.insync.replicas', value: String(topics.minInsyncReplicas) }];
  if (spec.schemaHistory) {
    entries.push({ name: 'cleanup.policy', value: topics.schemaHistory.cleanupPolicy }, { name: 'retention.ms', value: String(topics.schemaHistory.retentionMs) });
  } else if (topics.retentionMs !== undefined) {
    entries.push({ name: 'retention.ms', value: String(topics.retentionMs) });
  }
  return { topic: spec.topic, replicationFactor: topics.replicationFactor, configEntries: entries };
}

/**
 * Creates topics with the admin API and `bus.kafka.topics` where the broker allows it, then
 * checks that each one — created now, or already there, made by someone else — keeps
 * acknowledged writes when a broker fails (kafka-durability.ts): an unsafe one is refused with
 * the 'config' error. When the broker refuses CreateTopics (no ACL, no such API), falls back to the broker's
 * auto-creation on first produce and stops asking; those topics get the broker's defaults, which
 * the next start checks (checkSourceTopics).
 */
export class TopicCreator {
  private readonly known = new Set<string>();
  /** Partition counts of the topics checked (none when CreateTopics was refused). */
  private readonly partitionCounts = new Map<string, number>();
  private refused = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly settings: KafkaSettings,
    private readonly source: string,
  ) {}

  get adminRefused(): boolean {
    return this.refused;
  }

  /** The partition count of `topic` as of its check by `ensure`, or undefined when not known. */
  partitionsOf(topic: string): number | undefined {
    return this.partitionCounts.get(topic);
  }

  async ensure(specs: readonly TopicSpec[]): Promise<void> {
    const todo = specs.filter((s) => !this.known.has(s.topic));
    if (todo.length === 0) return;
    if (this.refused) {
      for (const s of todo) this.known.add(s.topic);
      return;
    }
    const admin = this.kafka.admin({ retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 500 } });
    try {
      await admin.connect();
      try {
        // kafkajs reports "already exists" as success (false). Waiting for the leaders reads
        // metadata that brokers learn a moment later ("This server does not host this
        // topic-partition"), seconds later while the cluster creates other topics: retried.
        const topics = todo.map((s) => topicConfig(s, this.settings.topics));
        await retryBriefly(() => admin.createTopics({ waitForLeaders: true, topics }), (err) => !isRefusal(err));
      } catch (err) {
        // A broker that went away mid-request (one killed of three) is not a refusal: asking
        // again later must stay possible, or new topics would silently get the broker defaults.
        if (!isRefusal(err)) throw err;
        this.refused = true;
        logger().info(
          { topics: todo.map((s) => s.topic), reason: err instanceof Error ? err.message : String(err) },
          'kafka: the broker refused CreateTopics; relying on topic auto-creation (the topics get the broker defaults, checked at the next start)',
        );
      }
      if (!this.refused) {
        const described = await retryBriefly(() => describeDurability(admin, todo.map((s) => s.topic)));
        const err = durabilityError(durabilityProblems(described), this.settings, this.source);
        if (err) throw err;
        for (const d of described) if (d.partitions) this.partitionCounts.set(d.topic, d.partitions);
      }
    } catch (err) {
      if (err instanceof ChartlogError) throw err;
      throw new ChartlogError('connection', `cannot check the Kafka topics of source ${this.source}: ${err instanceof Error ? err.message : String(err)}`, {
        retriable: true,
        cause: err,
        hint: 'check that the brokers are up; the user needs Describe and DescribeConfigs on the chartlog topics',
      });
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    for (const s of todo) this.known.add(s.topic);
  }
}

/** CreateTopics refused for good: no right to create, or a broker without the API. */
function isRefusal(err: unknown): boolean {
  const type = (err as { type?: unknown }).type;
  const text = `${typeof type === 'string' ? type : ''} ${err instanceof Error ? err.message : String(err)}`;
  return /AUTHORIZATION|authoriz|UNSUPPORTED|not supported|INVALID_REQUEST/i.test(text);
}

/**
 * A topic just created is not yet in every broker's metadata ("This server does not host this
 * topic-partition" for a moment, for seconds on a loaded machine): retried with the one backoff
 * (200 ms doubling to 2 s, about 17 s in all) before the error counts.
 */
async function retryBriefly<T>(op: () => Promise<T>, retryIf: (err: unknown) => boolean = () => true): Promise<T> {
  const backoff = new Backoff({ initialDelayMs: 200, maxDelayMs: 2_000, maxAttempts: 12 });
  for (;;) {
    try {
      return await op();
    } catch (err) {
      const delay = retryIf(err) ? backoff.next() : null;
      if (delay === null) throw err;
      await sleep(delay);
    }
  }
}
