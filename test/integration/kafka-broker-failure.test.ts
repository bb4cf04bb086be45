import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { requireEnv } from '../support/env.js';
import { capturePg, createPgDatabase, diffCaptures } from '../support/restore-engines.js';
import { createClinicTables, postgresEngine, type Engine } from '../support/run-harness.js';
import { kafkaTablePositions } from '../support/kafka-positions.js';

/**
 * One broker of the real 3-node cluster killed with -9 while `chartlog run` streams (topics with
 * replication factor 3, min.insync.replicas 2, the producer with acks = all): the broker that
 * leads the transactions partition, so both the producer and the compactor lose their leader.
 * The workload goes on, a 12,000-row transaction (split in pieces) among it, with the broker
 * still dead; the slot must confirm everything (the producer reconnected by itself), and after a
 * clean stop the restore equals the source value by value (the compactor did too). In Kafka,
 * every change the workload made is there exactly once after dedup by position: the distinct
 * positions equal the changes made, and the copies a retried request left are counted.
 */

const scripts = join(import.meta.dirname, '..', '..', 'scripts');

async function slotCaughtUp(engine: Engine, slot: string, timeoutMs = 180_000): Promise<void> {
  const [{ lsn }] = (await engine.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
  for (const deadline = Date.now() + timeoutMs; ; await sleep(200)) {
    const rows = (await engine.query(`SELECT confirmed_flush_lsn >= '${lsn}'::pg_lsn AS done FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as { done: boolean }[];
    if (rows[0]?.done) return;
    if (Date.now() >= deadline) {
      const state = await engine.query(`SELECT slot_name, active, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`);
      assert.fail(`slot ${slot} did not confirm ${lsn}: ${JSON.stringify(state)}`);
    }
  }
}

/** Messages and distinct positions: what dedup by position keeps, and the copies it drops. */
export function positionCounts(positions: readonly string[]): { messages: number; distinct: number; duplicates: number } {
  const distinct = new Set(positions).size;
  return { messages: positions.length, distinct, duplicates: positions.length - distinct };
}

test('position counting finds a planted duplicate (negative control of the duplicate count)', () => {
  assert.deepEqual(positionCounts(['a', 'b', 'c']), { messages: 3, distinct: 3, duplicates: 0 });
  assert.deepEqual(positionCounts(['a', 'b', 'c', 'b']), { messages: 4, distinct: 3, duplicates: 1 });
});

test('kill -9 of the broker leading the transactions partition while streaming: nothing lost, nothing duplicated after dedup; producer and compactor reconnect by themselves', { timeout: 600_000 }, async () => {
  const engine = await postgresEngine();
  const work = mkdtempSync(join(tmpdir(), 'chartlog-broker-'));
  const unique = `bk-${randomBytes(4).toString('hex')}`;
  const prefix = `t-${unique}`;
  const brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
  const kafkaDir = requireEnv('CHARTLOG_TEST_KAFKA_DIR');
  const slot = `chartlog_${engine.db}`;
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  const configFile = join(work, 'chartlog.yaml');
  writeFileSync(
    configFile,
    [
      'sources:',
      `  - { name: clinic, type: postgres, url: "${engine.url}", tables: [public.patients, public.visits], postgres: { slotName: ${slot}, publicationName: ${slot} } }`,
      `bus: { type: kafka, kafka: { brokers: ${JSON.stringify(brokers)}, topicPrefix: "${prefix}", groupId: "g-${unique}", sessionTimeoutMs: 6000, topics: { replicationFactor: 3, minInsyncReplicas: 2 } } }`,
      `storage: { url: "file://${work}/backup" }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${keyring}"`,
      '  columns: { public.patients: [full_name, ssn] }',
      '  strict: [public.patients]',
      '  publicColumns: { public.patients: [id, note, visits_count] }',
      'log: { level: info, format: json }',
    ].join('\n'),
  );
  const kafka = new Kafka({ clientId: 'chartlog-test', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const run = new ChartlogRun(configFile, join(work, 'chartlog.log'));
  const target = await createPgDatabase('rbroker');
  let killed: number | null = null;
  try {
    await createClinicTables(engine);
    await run.start(60_000);
    // Changes the workload makes, each one event: the distinct positions Kafka must hold.
    let changes = 0;
    const transaction = async (i: number) => {
      await engine.exec(`BEGIN; INSERT INTO patients (id, full_name, ssn, note) VALUES (${i + 10}, 'CANARY-NAME-${i}', 'CANARY-SSN-${i}', 'n${i}'); INSERT INTO visits (id, patient_id, reason) VALUES (${i}, ${i + 10}, 'intake'); COMMIT`);
      changes += 2;
      if (i % 3 === 0) {
        await engine.exec(`UPDATE patients SET note = 'u${i}', visits_count = visits_count + 1 WHERE id = ${i + 9}`);
        changes += 1;
      }
      if (i % 5 === 0) {
        await engine.exec(`DELETE FROM visits WHERE id = ${i - 1}`);
        changes += 1;
      }
    };
    let i = 1;
    for (; i <= 60; i++) await transaction(i);
    // Steady state first: Kafka has acknowledged everything so far.
    await slotCaughtUp(engine, slot);

    // The leader of the transactions partition: the producer's END records and the compactor's settling both hang on it.
    const meta = await admin.fetchTopicMetadata({ topics: [`${prefix}.clinic.__transactions`] });
    const leader = meta.topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader;
    // CHARTLOG_TEST_KILL_NODE picks another node (0 is the first bootstrap broker: the case that once left the producer failed unnoticed).
    killed = process.env.CHARTLOG_TEST_KILL_NODE ? Number(process.env.CHARTLOG_TEST_KILL_NODE) : leader - 1; // node.id = index + 1 (scripts/kafka-cluster.sh)
    execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'kill-node', kafkaDir, String(killed)], { stdio: 'ignore' });
    const killedAt = Date.now();

    for (; i <= 120; i++) await transaction(i);
    await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'bulk' FROM generate_series(1000001, 1012000) g`);
    changes += 12_000;
    for (; i <= 180; i++) await transaction(i);
    await slotCaughtUp(engine, slot);
    const caughtUpMs = Date.now() - killedAt;
    await run.stop('SIGTERM');
    const log = readFileSync(run.logFile, 'utf8');
    assert.doesNotMatch(log, /"msg":"kafka compactor stopped"/, 'the compactor did not fail');
    assert.doesNotMatch(log, /CANARY/, 'no PHI in the log');

    const r = await runChartlog(['restore', '--config', configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url]);
    assert.equal(r.code, 0, `restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    for (const table of ['public.patients', 'public.visits']) {
      const expected = await capturePg(engine.url, table);
      const diff = diffCaptures(await capturePg(target.url, table), expected, `restore --to latest ${table}`);
      assert.equal(diff, null, diff ?? '');
    }

    // The broker back (its partitions have leaders again), then every message read from Kafka.
    execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'start-node', kafkaDir, String(killed)], { stdio: 'ignore' });
    killed = null;
    const counts = positionCounts(await kafkaTablePositions(kafka, admin, `${prefix}.clinic.`));
    assert.equal(counts.distinct, changes, 'every change is in Kafka once after dedup by position: none lost, none extra');
    console.log(JSON.stringify({ brokerKilled: leader, changes, kafka: counts, sourceConfirmedAllMsAfterKill: caughtUpMs }));
  } finally {
    await run.close();
    if (killed !== null) execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'start-node', kafkaDir, String(killed)], { stdio: 'ignore' });
    await admin.disconnect();
    await target.drop();
    await engine.close();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  }
});
