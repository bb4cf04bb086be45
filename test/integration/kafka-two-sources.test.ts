import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { capturePg } from '../support/restore-engines.js';
import { createClinicTables, prng, Workload } from '../support/run-harness.js';
import { KafkaFixture } from '../support/kafka-fixture.js';

/**
 * Two sources in one configuration on the Kafka bus (the real 3-node cluster). They used to
 * share one consumer group: its leader assigned partitions only among the topics it subscribed
 * to, so the other source's topics went unconsumed and its archive stayed empty. Now each
 * source's compactor has its own group (`<groupId>.<source>`). Both sources take small
 * transactions side by side and one of them a 12,000-row transaction (split in pieces); after
 * a clean stop, `chartlog restore --to latest` of each source equals its database value by
 * value, and each group has committed its whole transactions topic.
 */

const SOURCES = ['clinic', 'lab'] as const;

test('two sources in one configuration on the Kafka bus: each has its own consumer group, and both restore exactly', { timeout: 420_000 }, async () => {
  const fx = await KafkaFixture.open({ tag: 'two', sources: SOURCES });
  const { engines, unique, admin } = fx;
  try {
    for (const s of SOURCES) await createClinicTables(engines[s]!);
    const child = fx.start('all', 'chartlog');
    // Clock time, generous (was 600 polls, 30 s): the start compiles chartlog through tsx (over
    // 30 s at load 40–50, run-lease) before it meets Kafka.
    for (const deadline = Date.now() + 120_000; (child.text().match(/"msg":"pipeline streaming"/g) ?? []).length < 2; ) {
      assert.ok(Date.now() < deadline && child.child.exitCode === null, `both sources did not start streaming within 120 s (see ${child.logFile})`);
      await sleep(50);
    }

    const workloads = SOURCES.map((s, i) => new Workload(engines[s]!, prng(31 + i)));
    for (let round = 0; round < 40; round++) {
      await Promise.all(workloads.map((w) => w.transaction()));
      if (round === 20) {
        await engines.lab!.exec(
          `INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'bulk' FROM generate_series(1000001, 1012000) g`,
        );
      }
    }
    for (const s of SOURCES) await fx.slotCaughtUp(120_000, s);
    assert.equal(await child.stop('SIGTERM'), 0, `a clean stop exits 0 (see ${child.logFile})`);
    assert.doesNotMatch(child.text(), /not given the transactions partition/);

    // Each source's compactor in its own group, which committed its whole transactions topic.
    for (const s of SOURCES) {
      const topic = `t-${unique}.${s}.__transactions`;
      const [committed] = await admin.fetchOffsets({ groupId: `g-${unique}.${s}`, topics: [topic] });
      const end = (await admin.fetchTopicOffsets(topic)).find((p) => p.partition === 0)!;
      assert.ok(Number(end.high) > 0, `${s}: transactions in Kafka`);
      assert.equal(committed!.partitions.find((p) => p.partition === 0)!.offset, end.high, `${s}: group g-${unique}.${s} committed its transactions topic`);
    }

    assert.ok((await capturePg(engines.lab!.url, 'public.patients')).length > 12_000, 'the large transaction is in lab');
    for (const s of SOURCES) await fx.assertRestoresExactly(await fx.target(`r${s}`), s);
  } finally {
    await fx.close();
  }
});
