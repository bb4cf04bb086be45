import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durabilityError, durabilityProblems } from '../../../src/bus/kafka-durability.js';
import { topicConfig } from '../../../src/bus/topic-creator.js';
import type { KafkaSettings } from '../../../src/bus/kafka-topics.js';

const topics: KafkaSettings['topics'] = { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false };

test('durabilityProblems names each topic with one replica or min.insync.replicas 1, and nothing else', () => {
  const problems = durabilityProblems([
    { topic: 'c.s.__transactions', replicationFactor: 3, minInsyncReplicas: 2 },
    { topic: 'c.s.public.a', replicationFactor: 1, minInsyncReplicas: 1 },
    { topic: 'c.s.public.b', replicationFactor: 3, minInsyncReplicas: 1 },
    { topic: 'c.s.public.c', replicationFactor: 2, minInsyncReplicas: 2 },
  ]);
  assert.deepEqual(problems, ['c.s.public.a: replication factor 1', 'c.s.public.b: min.insync.replicas 1']);
  assert.deepEqual(durabilityProblems([{ topic: 'x', replicationFactor: 3, minInsyncReplicas: 2 }]), []);
});

test('durabilityError: exit 2 naming the topic, the setting and the override; with the override, none', () => {
  const err = durabilityError(['c.s.public.a: replication factor 1'], { topics }, 's');
  assert.ok(err);
  assert.equal(err.exitCode, 2);
  assert.match(err.describe(), /c\.s\.public\.a: replication factor 1/);
  assert.match(err.describe(), /bus\.kafka\.topics\.allowUnsafeReplication: true/);
  assert.match(err.describe(), /min\.insync\.replicas=2/);
  assert.equal(durabilityError([], { topics }, 's'), null);
  assert.equal(durabilityError(['c.s.public.a: replication factor 1'], { topics: { ...topics, allowUnsafeReplication: true } }, 's'), null);
});

test('topicConfig: replication factor and min.insync.replicas on every topic; compaction and retention on the schema history; retention on the others only when set', () => {
  assert.deepEqual(topicConfig({ topic: 't' }, topics), { topic: 't', replicationFactor: 3, configEntries: [{ name: 'min.insync.replicas', value: '2' }] });
  assert.deepEqual(topicConfig({ topic: 't' }, { ...topics, retentionMs: 86_400_000 }).configEntries, [
    { name: 'min.insync.replicas', value: '2' },
    { name: 'retention.ms', value: '86400000' },
  ]);
  assert.deepEqual(topicConfig({ topic: 's', schemaHistory: true }, { ...topics, retentionMs: 5 }).configEntries, [
    { name: 'min.insync.replicas', value: '2' },
    { name: 'cleanup.policy', value: 'compact' },
    { name: 'retention.ms', value: '-1' },
  ]);
});
