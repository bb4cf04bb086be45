import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireEnv } from '../support/env.js';
import { createClinicTables } from '../support/run-harness.js';
import { kafkaTablePositions } from '../support/kafka-positions.js';
import { KafkaFixture } from '../support/kafka-fixture.js';

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
  const fx = await KafkaFixture.open({ tag: 'bk', label: 'broker', bus: 'topics: { replicationFactor: 3, minInsyncReplicas: 2 }' });
  const { engine, prefix, kafka, admin } = fx;
  const kafkaDir = requireEnv('CHARTLOG_TEST_KAFKA_DIR');
  const run = fx.run();
  const target = await fx.target('rbroker');
  let killed: number | null = null;
  try {
    await createClinicTables(engine);
    await run.start(60_000);
    // Changes the workload makes, each one event (fx.changes): the distinct positions Kafka must hold.
    const transaction = (i: number) => fx.numberedTransaction(i, true);
    let i = 1;
    for (; i <= 60; i++) await transaction(i);
    // Steady state first: Kafka has acknowledged everything so far.
    await fx.slotCaughtUp(180_000);

    // The leader of the transactions partition: the producer's END records and the compactor's settling both hang on it.
    const meta = await admin.fetchTopicMetadata({ topics: [`${prefix}.clinic.__transactions`] });
    const leader = meta.topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader;
    // CHARTLOG_TEST_KILL_NODE picks another node (0 is the first bootstrap broker: the case that once left the producer failed unnoticed).
    killed = process.env.CHARTLOG_TEST_KILL_NODE ? Number(process.env.CHARTLOG_TEST_KILL_NODE) : leader - 1; // node.id = index + 1 (scripts/kafka-cluster.sh)
    execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'kill-node', kafkaDir, String(killed)], { stdio: 'ignore' });
    const killedAt = Date.now();

    for (; i <= 120; i++) await transaction(i);
    await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'bulk' FROM generate_series(1000001, 1012000) g`);
    fx.changes += 12_000;
    for (; i <= 180; i++) await transaction(i);
    await fx.slotCaughtUp(180_000);
    const caughtUpMs = Date.now() - killedAt;
    await run.stop('SIGTERM');
    const log = readFileSync(run.logFile, 'utf8');
    assert.doesNotMatch(log, /"msg":"kafka compactor stopped"/, 'the compactor did not fail');
    assert.doesNotMatch(log, /CANARY/, 'no PHI in the log');

    await fx.assertRestoresExactly(target);

    // The broker back (its partitions have leaders again), then every message read from Kafka.
    execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'start-node', kafkaDir, String(killed)], { stdio: 'ignore' });
    killed = null;
    const counts = positionCounts(await kafkaTablePositions(kafka, admin, `${prefix}.clinic.`));
    assert.equal(counts.distinct, fx.changes, 'every change is in Kafka once after dedup by position: none lost, none extra');
    console.log(JSON.stringify({ brokerKilled: leader, changes: fx.changes, kafka: counts, sourceConfirmedAllMsAfterKill: caughtUpMs }));
  } finally {
    if (killed !== null) execFileSync('bash', [join(scripts, 'kafka-cluster.sh'), 'start-node', kafkaDir, String(killed)], { stdio: 'ignore' });
    await fx.close();
  }
});
