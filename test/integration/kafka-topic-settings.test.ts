import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { requireEnv } from '../support/env.js';
import { capturePg, createPgDatabase, diffCaptures } from '../support/restore-engines.js';
import { createClinicTables, filesUnder, postgresEngine, prng, Workload, type Engine } from '../support/run-harness.js';

/**
 * bus.kafka.topics against the real 3-node cluster. Topics that could lose what Kafka
 * acknowledged — one replica, or min.insync.replicas 1 — pre-created by "someone else": `chartlog
 * run` refuses them with exit 2, naming each topic, its setting and the override, before it
 * touches the source (no replication slot), the store (no file) or Kafka (no new topic, no
 * message). With `allowUnsafeReplication: true` the same topics are used: a workload streams and
 * restores value by value. Topics chartlog creates itself get the configured replication
 * factor, min.insync.replicas and, for the schema history, compaction and retention.
 */

async function slotCaughtUp(engine: Engine, slot: string, timeoutMs = 120_000): Promise<void> {
  const [{ lsn }] = (await engine.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
  for (const deadline = Date.now() + timeoutMs; ; await sleep(200)) {
    const rows = (await engine.query(`SELECT confirmed_flush_lsn >= '${lsn}'::pg_lsn AS done FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as { done: boolean }[];
    if (rows[0]?.done) return;
    assert.ok(Date.now() < deadline, `slot ${slot} did not confirm ${lsn}`);
  }
}

test('Kafka topics that could lose acknowledged data are refused with exit 2 and nothing written; the override runs on them; created topics get bus.kafka.topics', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  const work = mkdtempSync(join(tmpdir(), 'chartlog-topics-'));
  const unique = `ts-${randomBytes(4).toString('hex')}`;
  const prefix = `t-${unique}`;
  const brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
  const slot = `chartlog_${engine.db}`;
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  const backup = join(work, 'backup');
  const configFile = join(work, 'chartlog.yaml');
  const writeConfig = (topics: string) =>
    writeFileSync(
      configFile,
      [
        'sources:',
        `  - { name: clinic, type: postgres, url: "${engine.url}", tables: [public.patients, public.visits], postgres: { slotName: ${slot}, publicationName: ${slot} } }`,
        `bus: { type: kafka, kafka: { brokers: ${JSON.stringify(brokers)}, topicPrefix: "${prefix}", groupId: "g-${unique}", sessionTimeoutMs: 6000${topics} } }`,
        `storage: { url: "file://${backup}" }`,
        'segments: { flushIntervalMs: 200 }',
        'phi:',
        `  keyring: "file://${keyring}"`,
        '  columns: { public.patients: [full_name, ssn] }',
        '  strict: [public.patients]',
        '  publicColumns: { public.patients: [id, note, visits_count] }',
        'log: { level: info, format: json }',
      ].join('\n'),
    );
  const admin = new Kafka({ clientId: 'chartlog-test', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const rf1 = `${prefix}.clinic.public.patients`;
  const isr1 = `${prefix}.clinic.public.visits`;
  const prefixTopics = async () => (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`)).sort();
  const messagesIn = async (topic: string) => (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  const run = new ChartlogRun(configFile, join(work, 'chartlog.log'));
  const target = await createPgDatabase('rtopics');
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
    writeConfig('');
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
    writeConfig(', topics: { allowUnsafeReplication: true, retentionMs: 604800000, schemaHistory: { cleanupPolicy: "compact,delete", retentionMs: 31536000000 } }');
    await run.start(60_000);
    const workload = new Workload(engine, prng(7));
    for (let i = 0; i < 30; i++) await workload.transaction();
    await slotCaughtUp(engine, slot);
    await run.stop('SIGTERM');
    const log = readFileSync(run.logFile, 'utf8');
    assert.match(log, /allowUnsafeReplication is set/);
    assert.ok(filesUnder(backup).length > 0, 'the store was written');
    assert.ok((await messagesIn(rf1)) > 0, 'the RF-1 topic was used');
    assert.equal((await engine.query(`SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}')`)).length, 1, 'the slot was made');

    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url]);
    assert.equal(r.code, 0, `restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    for (const table of ['public.patients', 'public.visits']) {
      const diff = diffCaptures(await capturePg(target.url, table), await capturePg(engine.url, table), `restore --to latest ${table}`);
      assert.equal(diff, null, diff ?? '');
    }

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
    await run.close();
    await admin.disconnect();
    await target.drop();
    await engine.close();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  }
});
