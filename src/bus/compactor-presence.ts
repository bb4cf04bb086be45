import type { Admin, Kafka } from 'kafkajs';
import { settlerGroupId, type KafkaSettings } from './kafka-topics.js';

/**
 * Whether the compactor that writes a source's checkpoint is running, as Kafka sees it: the
 * members of its consumer group (`settlerGroupId`). `--role capture` asks when the checkpoint
 * has stopped moving: with no member, nothing is lost — nothing consumes — and reading the
 * source again would not help; with members, a transaction Kafka acknowledged never reached
 * them whole (lost-transaction.ts) and the source is read again.
 */
export class CompactorPresence {
  private admin: Admin | null = null;
  readonly groupId: string;

  constructor(
    private readonly kafka: Kafka,
    settings: Pick<KafkaSettings, 'groupId' | 'sourceGroupIds' | 'scaleOut'>,
    source: string,
  ) {
    this.groupId = settlerGroupId(settings, source);
  }

  /** The group's member count, or null when Kafka cannot say now (unreachable, or an error). */
  async members(): Promise<number | null> {
    try {
      if (!this.admin) {
        const admin = this.kafka.admin();
        await admin.connect();
        this.admin = admin;
      }
      const { groups } = await this.admin.describeGroups([this.groupId]);
      return groups.find((g) => g.groupId === this.groupId)?.members.length ?? 0;
    } catch {
      await this.close();
      return null;
    }
  }

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = null;
    await admin?.disconnect().catch(() => undefined);
  }
}
