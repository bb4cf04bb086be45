import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { runChartlog } from '../support/chartlog-process.js';
import { createClinicTables, filesUnder, prng, Workload } from '../support/run-harness.js';
import { KafkaFixture } from '../support/kafka-fixture.js';

/**
 * bus.kafka.topics against the real 3-node cluster. Topics that could lose what Kafka
 * acknowledged — one replica, or min.insync.replicas 1 — pre-created by "someone else": `chartlog
 * run` refuses them with exit 2, naming each topic, its setting and the override, before it
 * touches the source (no replication slot), the store (no file) or Kafka (no new topic, no
 * message). With `allowUnsafeReplication: true` the same topics are used: a workload streams and
 * restores value by value. Topics chartlog creates itself get the configured replication
 * factor, min.insync.replicas and, for the schema history, compaction and retention.
 */

test('Kafka topics that could lose acknowledged data are refused with exit 2 and nothing written; the override runs on them; created topics get bus.kafka.topics', { timeout: 300_000 }, async () => {
  const fx = await KafkaFixture.open({ tag: 'ts', label: 'topics' });
  const { engine, prefix, slot, configFile, backup, admin } = fx;
  const rf1 = `${prefix}.clinic.public.patients`;
  const isr1 = `${prefix}.clinic.public.visits`;
  const prefixTopics = async () => (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`)).sort();
  const messagesIn = async (topic: string) => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  const run = fx.run();
  const target = await fx.target('rtopics');
  try {
    await createClinicTables(engine);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic: rf1, numPartitions: 2, replicationFactor: 1 },
        { topic: isr1, numPartitions: 2, replicationFactor: 3, configEntries: [{ name: 'min.insync.replicas', value: '1' }] },
      ],
    });

    // 1. Refused: exit 2, each unsafe topic named with its setting, the fix and the override.
    fx.writeConfig('');
    const refused = await runChartlog(['run', '--config', configFile]);
    assert.equal(refused.code, 2, `exit code 2 (stderr: ${refused.stderr.slice(0, 2000)})`);
    assert.match(refused.stderr, new RegExp(`${rf1.replace(/\./g, '\\.')}: replication factor 1`));
    assert.match(refused.stderr, new RegExp(`${isr1.replace(/\./g, '\\.')}: min\\.insync\\.replicas 1`));
    assert.match(refused.stderr, /bus\.kafka\.topics\.allowUnsafeReplication: true/);
    assert.doesNotMatch(refused.stderr + refused.stdout, /CANARY/);
    // Nothing written: no file in the store, no slot on the source, no topic or message in Kafka.
    assert.deepEqual(existsSync(backup) ? filesUnder(backup) : [], [], 'nothing in the store');
    const slots = await engine.query(`SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}')`);
    assert.deepEqual(slots, [], 'no replication slot');
    assert.deepEqual(await prefixTopics(), [isr1, rf1].sort(), 'no topic created');
    assert.equal((await messagesIn(rf1)) + (await messagesIn(isr1)), 0, 'no message sent');

    // Negative control of "nothing written": the same checks see what a run writes (below).
    // 2. The override: the same topics are used, with a warning; the restore is exact.
    fx.writeConfig('topics: { allowUnsafeReplication: true, retentionMs: 604800000, schemaHistory: { cleanupPolicy: "compact,delete", retentionMs: 31536000000 } }');
    await run.start(60_000);
    const workload = new Workload(engine, prng(7));
    for (let i = 0; i < 30; i++) await workload.transaction();
    await fx.slotCaughtUp(120_000);
    await run.stop('SIGTERM');
    const log = readFileSync(run.logFile, 'utf8');
    assert.match(log, /allowUnsafeReplication is set/);
    assert.ok(filesUnder(backup).length > 0, 'the store was written');
    assert.ok((await messagesIn(rf1)) > 0, 'the RF-1 topic was used');
    assert.equal((await engine.query(`SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}')`)).length, 1, 'the slot was made');

    await fx.assertRestoresExactly(target);

    // 3. Topics chartlog created carry bus.kafka.topics.
    const created = [`${prefix}.clinic.__transactions`, `${prefix}.clinic.__schemas`];
    const meta = await admin.fetchTopicMetadata({ topics: created });
    for (const t of meta.topics) for (const p of t.partitions) assert.equal(p.replicas.length, 3, `${t.name} has 3 replicas`);
    const configs = await admin.describeConfigs({
      includeSynonyms: false,
      resources: created.map((name) => ({ type: 2, name, configNames: ['min.insync.replicas', 'cleanup.policy', 'retention.ms'] })),
    });
    const value = (topic: string, name: string) => configs.resources.find((c) => c.resourceName === topic)!.configEntries.find((e) => e.configName === name)?.configValue;
    assert.equal(value(created[0]!, 'min.insync.replicas'), '2');
    assert.equal(value(created[0]!, 'retention.ms'), '604800000');
    assert.equal(value(created[1]!, 'cleanup.policy'), 'compact,delete');
    assert.equal(value(created[1]!, 'retention.ms'), '31536000000');
  } finally {
    await fx.close();
  }
});
