import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { verifyArchive } from '../../src/restore/verify.js';
import { Kafka, logLevel } from 'kafkajs';
import { requireEnv } from '../support/env.js';
import { appendKafkaBus } from '../support/kafka-fixture.js';
import { kafkaTopicObjects, plantKafkaCanary } from '../support/kafka-positions.js';
import { describeHits, scanForCanaries, scanTextForCanaries } from '../support/leak-scan.js';
import { createClinicTables, PHI_CANARIES, mariadbEngine, postgresEngine, prng, RunHarness, Workload, type StoreKind } from '../support/run-harness.js';

/**
 * `chartlog run` as a real process against real PostgreSQL and MariaDB, on the embedded bus and
 * on the Kafka bus (the 3-node Apache Kafka cluster of scripts/services.sh), storing to a local directory
 * and to radosgw, killed with SIGKILL at random moments while a workload of inserts, updates,
 * deletes, DDL and TRUNCATE runs, and restarted each time. The archive, replayed, must equal
 * the source row by row, its transaction chain be whole, and no PHI appear in clear.
 */

const KILLS = 10;

interface Bus {
  name: 'embedded' | 'kafka';
  /** Kill window after the run streams: a killed Kafka compactor never leaves its group, so
   * each restart first waits out its session (6 s here); longer runs get past that. */
  killAfterMs: [number, number];
  convergeMs: number;
  minTransactions: number;
  /** Sets the bus in the configuration; the Kafka topic prefix, or null. */
  configure(h: RunHarness): string | null;
}

const buses: Bus[] = [
  { name: 'embedded', killAfterMs: [100, 1500], convergeMs: 60_000, minTransactions: 100, configure: () => null },
  {
    name: 'kafka',
    killAfterMs: [300, 2800],
    convergeMs: 120_000,
    minTransactions: 50,
    configure: (h) => appendKafkaBus(h.configFile, 'run'),
  },
];

/**
 * Every message chartlog left on the Kafka topics (table, transactions, schemas, progress; read
 * decompressed from the start) is free of the PHI canaries; the same read and scan find a canary
 * planted in a gzip batch under the same prefix (the negative control).
 */
async function assertNoPhiOnKafka(prefix: string): Promise<void> {
  const kafka = new Kafka({ clientId: 'chartlog-leak-scan', brokers: requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const messages = await kafkaTopicObjects(kafka, admin, prefix);
    assert.ok(messages.length > 50, `only ${messages.length} messages read from the topics under ${prefix}`);
    const leaks = scanForCanaries(messages, PHI_CANARIES);
    assert.deepEqual(leaks, [], `PHI in clear on Kafka:\n${describeHits(leaks)}`);
    const planted = await plantKafkaCanary(kafka, admin, prefix, `${PHI_CANARIES[0]}planted`);
    const found = scanForCanaries(await kafkaTopicObjects(kafka, admin, prefix), PHI_CANARIES);
    assert.ok(found.length > 0 && found.every((hit) => hit.object.includes(planted)), `the planted canary was found, and only it:\n${describeHits(found)}`);
  } finally {
    await admin.disconnect();
  }
}

for (const bus of buses) {
  for (const make of [postgresEngine, mariadbEngine]) {
    for (const storeKind of ['file', 's3'] as StoreKind[]) {
      const name = `${make.name.replace('Engine', '')} → ${bus.name} bus → ${storeKind}://: kill -9 ${KILLS} times during a workload loses and duplicates nothing`;
      test(name, { timeout: 480_000 }, async () => {
        const engine = await make();
        const h = new RunHarness(engine, storeKind);
        const topicPrefix = bus.configure(h);
        try {
          await createClinicTables(engine);
          const rand = prng((engine.type === 'postgres' ? 7 : 11) + (bus.name === 'kafka' ? 10 : 0));
          const workload = new Workload(engine, rand);
          const [minMs, maxMs] = bus.killAfterMs;
          for (let round = 1; round <= KILLS; round++) {
            await h.start();
            // Killed in the middle of a burst of transactions, once it streams.
            const killAt = Date.now() + minMs + Math.floor(rand() * (maxMs - minMs));
            while (Date.now() < killAt) await workload.transaction();
            if (round === 3) await workload.addFlagColumn();
            if (round === 6) await engine.exec(`TRUNCATE TABLE visits`);
            const burst = (async () => {
              for (let i = 0; i < 5; i++) await workload.transaction();
            })();
            await h.kill('SIGKILL');
            await burst;
            // Changes keep coming while chartlog is down.
            for (let i = 0; i < 3; i++) await workload.transaction();
          }
          await h.start();
          for (let i = 0; i < 10; i++) await workload.transaction();

          assert.equal(await h.converge(bus.convergeMs), '', 'the archive converges to the source');
          await sleep(300);
          assert.equal(await h.kill('SIGTERM'), 0, 'a clean stop exits 0');
          if (bus.name === 'kafka') assert.match(h.logText(), /"bus":"kafka"/, 'it ran on the Kafka bus');

          const archive = openArchiveCodec(h.config, h.config.sources[0]!, h.store, false);
          const report = await verifyArchive(h.store, await readArchiveIndex(h.store, 'clinic'), archive.envelopes);
          assert.deepEqual(report.problems, [], 'the transaction chain and counts are whole');
          assert.ok(report.checked.transactions > bus.minTransactions, `only ${report.checked.transactions} transactions archived`);

          // Parts, segments and snapshots are deflated: the scan decodes every block first.
          const leaks = [...scanForCanaries(await h.storedObjects(), PHI_CANARIES), ...scanTextForCanaries('log', h.logText(), ['CANARY'])];
          assert.deepEqual(leaks, [], `PHI in clear:\n${describeHits(leaks)}`);
          if (topicPrefix !== null) await assertNoPhiOnKafka(topicPrefix);
        } finally {
          await h.close();
          await engine.close();
        }
      });
    }
  }
}
