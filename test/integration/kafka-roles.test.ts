import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../../src/config/load.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { runChartlog } from '../support/chartlog-process.js';
import { createClinicTables, prng, Workload } from '../support/run-harness.js';
import { positionSetDiff } from '../support/kafka-positions.js';
import { KafkaFixture } from '../support/kafka-fixture.js';

/**
 * `chartlog run --role capture` and `--role compact` as separate processes on the real 3-node
 * Kafka cluster, a PostgreSQL source under a concurrent writer:
 * - with no compactor running, the capture process sends to Kafka but does not acknowledge the
 *   source past the snapshot (it acknowledges by the compactor's checkpoint, not by Kafka);
 * - compactor A runs, compactor B waits on the compactor lease as a standby; A is killed with -9
 *   mid-run and B takes over;
 * - after the writer stops and the slot confirmed everything, `restore --to latest` equals the
 *   source value by value, `verify` finds no gap, and the archive holds exactly the positions
 *   Kafka holds after dedup — none missing, none extra.
 */


test('position set comparison catches a planted missing and a planted extra position (negative control)', () => {
  const kafka = new Set(['a', 'b', 'c']);
  assert.deepEqual(positionSetDiff(new Set(['a', 'b', 'c']), kafka), { missing: [], extra: [] });
  assert.deepEqual(positionSetDiff(new Set(['a', 'c']), kafka), { missing: ['b'], extra: [] });
  assert.deepEqual(positionSetDiff(new Set(['a', 'b', 'c', 'd']), kafka), { missing: [], extra: ['d'] });
});

test('run --role capture + two --role compact processes (one killed -9 mid-run): restore equals the source, no gap, no loss, no duplicate', { timeout: 240_000 }, async () => {
  const fx = await KafkaFixture.open({ tag: 'roles', label: 'roles' });
  const { engine, configFile, unique, admin, work, slot } = fx;
  const start = (role: string, name: string) => fx.start(role, name);
  const target = await fx.target('roles');
  try {
    await createClinicTables(engine);
    const workload = new Workload(engine, prng(77));

    // Refused combinations: exit 2, naming the flag, before anything is started.
    const bad = await runChartlog(['run', '--config', configFile, '--role', 'compactor']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--role "compactor" is not a role/);
    const embeddedConfig = join(work, 'embedded.yaml');
    writeFileSync(embeddedConfig, readFileSync(configFile, 'utf8').replace(/^bus: .*$/m, 'bus: { type: embedded }'));
    const badBus = await runChartlog(['run', '--config', embeddedConfig, '--role', 'capture']);
    assert.equal(badBus.code, 2, badBus.stderr);
    assert.match(badBus.stderr, /--role capture needs the Kafka bus/);
    assert.equal(await fx.confirmedLsn(), null, 'the refused run created no slot');
    const badSlot = await runChartlog(['run', '--config', configFile, '--role', 'compact', '--take-over-slot']);
    assert.equal(badSlot.code, 2, badSlot.stderr);
    assert.match(badSlot.stderr, /--take-over-slot with --role compact/);

    // 1. Capture alone: Kafka receives the changes, the source is not acknowledged past the snapshot.
    const capture = start('capture', 'capture');
    await capture.waitFor(/"msg":"pipeline streaming"/, 'the capture process did not start streaming');
    const afterSnapshot = await fx.confirmedLsn();
    for (let i = 0; i < 10; i++) await workload.transaction();
    const txTopic = `t-${unique}.clinic.__transactions`;
    const written = await fx.currentLsn();
    for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
      const high = (await admin.fetchTopicOffsets(txTopic).catch(() => [])).find((p) => p.partition === 0)?.high ?? '0';
      if (Number(high) >= 20) break; // BEGIN and END of each of the ≥ 10 transactions
      assert.ok(Date.now() < deadline, `the capture process did not send the transactions to Kafka (see ${capture.logFile})`);
    }
    const [{ behind }] = (await engine.query(`SELECT confirmed_flush_lsn < '${written}'::pg_lsn AS behind FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as [{ behind: boolean }];
    assert.ok(behind, `with no compactor, the slot stays behind what Kafka holds (confirmed ${await fx.confirmedLsn()}, after the snapshot ${afterSnapshot}, written ${written})`);

    // 2. Compactor A, then B (a standby on the compactor lease), under a concurrent writer.
    const a = start('compact', 'compact-a');
    await a.waitFor(/"msg":"kafka compactor consuming"/, 'compactor A did not start consuming');
    const b = start('compact', 'compact-b');
    let writing = true;
    let transactions = 0;
    const writer = (async () => {
      while (writing) {
        await workload.transaction();
        transactions++;
      }
    })();
    const config = loadConfig(configFile);
    const store = openObjectStore(config.storage);
    // A has stored some of the writer's transactions (its checkpoint moved past what was written before it started).
    for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
      const cp = await readCheckpoint(store, 'clinic');
      if (cp && transactions >= 20 && (await fx.slotConfirmed(written))) break;
      assert.ok(Date.now() < deadline, `compactor A did not store anything (see ${a.logFile})`);
    }
    await a.stop('SIGKILL');
    const killedAt = transactions;
    await b.waitFor(/"msg":"kafka compactor consuming"/, 'compactor B did not take over', 90_000);
    while (transactions < killedAt + 40) await sleep(50);
    writing = false;
    await writer;

    // 3. Everything is acknowledged only once B stored it; then clean stops.
    await fx.slotCaughtUp(90_000);
    assert.equal(await capture.stop('SIGTERM'), 0, `capture exits 0 (see ${capture.logFile})`);
    assert.equal(await b.stop('SIGTERM'), 0, `compactor B exits 0 (see ${b.logFile})`);

    await fx.assertRestoresExactly(target);
    await fx.assertVerifies(killedAt);
    // The archive holds exactly the positions Kafka holds (after dedup): none missing, none extra.
    await fx.assertArchiveHoldsKafka(killedAt);
    await store.close();
  } finally {
    await fx.close();
  }
});
