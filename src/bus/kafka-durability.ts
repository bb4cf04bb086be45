import type { Admin, Kafka } from 'kafkajs';
import { ConfigResourceTypes } from './kafkajs.js';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { sourceTopicPrefix, type KafkaSettings } from './kafka-topics.js';

/**
 * Whether the topics chartlog writes to keep what Kafka acknowledged when a broker dies.
 *
 * The producer sends with acks = all, and the source is acknowledged on that acknowledgement
 * (docs/architecture.md §1). "All" means all *in-sync* replicas: with one replica, or with
 * min.insync.replicas 1 (the broker lets the in-sync set shrink to the leader alone), an
 * acknowledged write can live on a single disk, and one broker failure loses it — after the
 * source has been told it may forget it. chartlog refuses such topics unless the operator says
 * otherwise (`bus.kafka.topics.allowUnsafeReplication`).
 */

/** What the cluster reports for one topic. */
export interface TopicDurability {
  topic: string;
  /** The fewest replicas any partition of the topic has. */
  replicationFactor: number;
  /** The topic's effective min.insync.replicas (its own, or the broker default it inherits). */
  minInsyncReplicas: number;
  /** How many partitions it has (the producer places keyed messages by it; kafka-bus.ts). */
  partitions?: number;
}

/** The least either setting may be for an acknowledged write to survive one broker failure. */
export const SAFE_MINIMUM = 2;

/** One line per unsafe topic, naming the topic, the setting and its value; empty when all are safe. Pure. */
export function durabilityProblems(topics: readonly TopicDurability[]): string[] {
  const out: string[] = [];
  for (const t of topics) {
    if (t.replicationFactor < SAFE_MINIMUM) out.push(`${t.topic}: replication factor ${t.replicationFactor}`);
    else if (t.minInsyncReplicas < SAFE_MINIMUM) out.push(`${t.topic}: min.insync.replicas ${t.minInsyncReplicas}`);
  }
  return out;
}

/** The refusal (exit 2) for `problems`, or null. With the override set, a warning instead. */
export function durabilityError(problems: readonly string[], settings: Pick<KafkaSettings, 'topics'>, source: string): ChartlogError | null {
  if (problems.length === 0) return null;
  const list = problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : '');
  if (settings.topics.allowUnsafeReplication) {
    logger().warn({ source, topics: problems.length }, `kafka: topics that one broker failure can lose acknowledged changes from (bus.kafka.topics.allowUnsafeReplication is set): ${list}`);
    return null;
  }
  return new ChartlogError(
    'config',
    `the Kafka topics of source ${source} could lose changes Kafka acknowledged (and the source then forgot) when one broker fails: ${list}`,
    {
      hint:
        'raise them on the cluster (kafka-reassign-partitions for the replicas; kafka-configs --alter --add-config min.insync.replicas=2) to replication factor ≥ 2 and min.insync.replicas ≥ 2, ' +
        'or, on a test cluster only, set bus.kafka.topics.allowUnsafeReplication: true',
    },
  );
}

/** Replication factor and effective min.insync.replicas of `topics` (all must exist). */
export async function describeDurability(admin: Admin, topics: readonly string[]): Promise<TopicDurability[]> {
  if (topics.length === 0) return [];
  const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
  const configs = await admin.describeConfigs({
    includeSynonyms: false,
    resources: topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['min.insync.replicas'] })),
  });
  const minIsr = new Map<string, number>();
  for (const r of configs.resources) {
    const v = r.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue;
    if (v !== undefined && /^\d+$/.test(v)) minIsr.set(r.resourceName, Number(v));
  }
  return meta.topics.map((t) => ({
    topic: t.name,
    replicationFactor: t.partitions.length === 0 ? 0 : Math.min(...t.partitions.map((p) => p.replicas.length)),
    // Not reported (an old broker, no DescribeConfigs right): Kafka's own default, 1.
    minInsyncReplicas: minIsr.get(t.name) ?? 1,
    partitions: t.partitions.length,
  }));
}

/**
 * Checks every existing topic of `source` before anything is read or written: refuses (a
 * 'config' error, exit 2) when one could lose acknowledged data. Topics created later by
 * chartlog get `bus.kafka.topics` (TopicCreator), which the configuration check holds to the
 * same floor; a topic another party creates first is checked when chartlog first uses it.
 */
export async function checkSourceTopics(kafka: Kafka, settings: KafkaSettings, source: string): Promise<void> {
  const admin = kafka.admin({ retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1000 } });
  let described: TopicDurability[];
  try {
    await admin.connect();
    const prefix = sourceTopicPrefix(settings.topicPrefix, source);
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    described = await describeDurability(admin, topics);
  } catch (err) {
    throw new ChartlogError('connection', `cannot read the settings of the Kafka topics of source ${source}: ${err instanceof Error ? err.message : String(err)}`, {
      retriable: true,
      cause: err,
      hint: 'check bus.kafka.brokers and that the brokers are up; the user needs Describe and DescribeConfigs on the chartlog topics',
    });
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const err = durabilityError(durabilityProblems(described), settings, source);
  if (err) throw err;
}
