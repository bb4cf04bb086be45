import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Kafka } from 'kafkajs';
import { loadConfig } from '../../src/config/load.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { Position } from '../../src/core/position.js';
import { decodeProgress } from '../../src/bus/kafka-progress.js';
import { runChartlog } from '../support/chartlog-process.js';
import { createClinicTables, prng, Workload } from '../support/run-harness.js';
import { positionSetDiff } from '../support/kafka-positions.js';
import { KafkaFixture } from '../support/kafka-fixture.js';

/**
 * Several ACTIVE compactors (`bus.kafka.scaleOut`) on the real 3-node Kafka cluster: one
 * `--role capture` and two `--role compact` processes under a steady writer. Both compact
 * processes hold table partitions at once (their assignment logs, and progress records from
 * both pids); the first, which also holds the compactor lease and settles, is killed with -9
 * mid-stream; the second takes the lease (settler) and the dead one's partitions. Then
 * `restore --to latest` equals the source value by value, `verify` is ok, and the archive holds
 * exactly the positions Kafka holds after dedup: none missing, none extra.
 */

test('position set comparison catches a planted missing and a planted extra position (negative control)', () => {
  const kafka = new Set(['a', 'b', 'c']);
  assert.deepEqual(positionSetDiff(new Set(['a', 'b', 'c']), kafka), { missing: [], extra: [] });
  assert.deepEqual(positionSetDiff(new Set(['a', 'c']), kafka), { missing: ['b'], extra: [] });
  assert.deepEqual(positionSetDiff(new Set(['a', 'b', 'c', 'd']), kafka), { missing: [], extra: ['d'] });
});

/** The table partitions of a compact process's newest worker assignment, from its JSON log. */
export function lastWorkerPartitions(log: string): string[] | null {
  let last: string[] | null = null;
  for (const line of log.split('\n')) {
    if (!line.includes('"kafka compactor worker assigned"')) continue;
    last = (JSON.parse(line) as { partitions: string[] }).partitions;
  }
  return last;
}

test('lastWorkerPartitions reads the newest assignment, null when there is none (negative control)', () => {
  const line = (p: string[]) => JSON.stringify({ msg: 'kafka compactor worker assigned', partitions: p });
  assert.equal(lastWorkerPartitions('{"msg":"other"}\n'), null);
  assert.deepEqual(lastWorkerPartitions([line(['t/0', 't/1']), line(['t/1'])].join('\n')), ['t/1']);
  assert.deepEqual(lastWorkerPartitions(line([])), []);
});

/** The `member` of every progress record in the topic. */
async function progressMembers(kafka: Kafka, admin: Admin, topic: string): Promise<Set<string>> {
  const want = new Map<number, bigint>();
  for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > 0n) want.set(p.partition, BigInt(p.high));
  const members = new Set<string>();
  if (want.size === 0) return members;
  const consumer = kafka.consumer({ groupId: `read-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      const high = want.get(partition);
      if (high === undefined || BigInt(message.offset) >= high) return;
      members.add(decodeProgress(message.value, `${topic}/${partition}@${message.offset}`).member);
      if (BigInt(message.offset) + 1n >= high) {
        want.delete(partition);
        if (want.size === 0) done();
      }
    },
  });
  await Promise.race([finished, sleep(60_000).then(() => assert.fail(`reading ${topic} did not finish`))]);
  await consumer.disconnect();
  return members;
}

test('run --role capture + two ACTIVE --role compact processes (scaleOut; the settler killed -9 mid-stream): restore equals the source, verify ok, no loss, no duplicate', { timeout: 240_000 }, async (t) => {
  const began = Date.now();
  const phase = (name: string) => t.diagnostic(`${name} at ${((Date.now() - began) / 1000).toFixed(1)} s`);
  const fx = await KafkaFixture.open({ tag: 'so', label: 'scaleout', bus: 'scaleOut: true' });
  const { engine, configFile, unique, kafka, admin } = fx;
  const start = (role: string, name: string) => fx.start(role, name);
  const target = await fx.target('scaleout');
  try {
    await createClinicTables(engine);
    const workload = new Workload(engine, prng(91));

    // --role all cannot run several compactors: exit 2 naming the setting, nothing started.
    const all = await runChartlog(['run', '--config', configFile]);
    assert.equal(all.code, 2, all.stderr);
    assert.match(all.stderr, /--role all with bus\.kafka\.scaleOut: true/);

    const capture = start('capture', 'capture');
    await capture.waitFor(/"msg":"pipeline streaming"/, 'the capture process did not start streaming');
    // Some changes first, so that every table topic exists when the workers subscribe.
    for (let i = 0; i < 10; i++) await workload.transaction();

    let writing = true;
    let transactions = 0;
    const writer = (async () => {
      while (writing) {
        await workload.transaction();
        transactions++;
        await sleep(5); // a steady load, not a flood: the test is about sharing, not throughput
      }
    })();
    phase('capture streaming, topics made');
    // Both at once (starting a process takes seconds on a loaded machine); one of them takes the
    // compactor lease and becomes the settler as well.
    const first = start('compact', 'compact-1');
    const second = start('compact', 'compact-2');
    const settlerLine = /"mode":"settler"[^\n]*"msg":"kafka compactor consuming"|"msg":"kafka compactor consuming"[^\n]*"mode":"settler"/;
    for (const deadline = Date.now() + 90_000; !settlerLine.test(first.text()) && !settlerLine.test(second.text()); await sleep(100)) {
      assert.ok(first.child.exitCode === null && second.child.exitCode === null, `a compact process exited (see ${first.logFile}, ${second.logFile})`);
      assert.ok(Date.now() < deadline, `no compact process became the settler (see ${first.logFile}, ${second.logFile})`);
    }
    // A: the settler, to be killed; B: the other, to take over.
    const [a, b] = settlerLine.test(first.text()) ? [first, second] : [second, first];
    assert.ok(!settlerLine.test(b.text()), 'one settler at a time');

    // Both are active: each holds table partitions, disjoint, in the same generation.
    for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
      const pa = lastWorkerPartitions(a.text()) ?? [];
      const pb = lastWorkerPartitions(b.text()) ?? [];
      if (pa.length > 0 && pb.length > 0 && pa.every((p) => !pb.includes(p))) break;
      assert.ok(Date.now() < deadline, `both compactors should hold table partitions: A ${JSON.stringify(pa)}, B ${JSON.stringify(pb)} (see ${a.logFile}, ${b.logFile})`);
    }
    phase('both compactors hold table partitions');
    const config = loadConfig(configFile);
    const store = openObjectStore(config.storage);
    // The checkpoint moves while both share the partitions: wait for 30 more transactions settled.
    const sharedFrom = transactions;
    let checkpointBeforeKill: Position | null = null;
    for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
      const cp = await readCheckpoint(store, 'clinic');
      if (cp && transactions >= sharedFrom + 30) {
        if (checkpointBeforeKill && Position.compare(cp.position, checkpointBeforeKill) > 0) break;
        checkpointBeforeKill ??= cp.position;
      }
      assert.ok(Date.now() < deadline, `the settler did not move the checkpoint while both compactors were active (see ${a.logFile})`);
    }
    const pidA = `/${a.child.pid}`;
    const pidB = `/${b.child.pid}`;
    phase('A (the settler) killed');
    await a.stop('SIGKILL');
    const killedAt = transactions;
    await b.waitFor(/"mode":"settler"[^\n]*"msg":"kafka compactor consuming"|"msg":"kafka compactor consuming"[^\n]*"mode":"settler"/, 'compactor B did not become the settler', 90_000);
    while (transactions < killedAt + 40) await sleep(50);
    writing = false;
    await writer;

    phase('writer stopped');
    // Everything is acknowledged only once B stored and settled it; then clean stops.
    await fx.slotCaughtUp(90_000);
    assert.equal(await capture.stop('SIGTERM'), 0, `capture exits 0 (see ${capture.logFile})`);
    assert.equal(await b.stop('SIGTERM'), 0, `compactor B exits 0 (see ${b.logFile})`);

    phase('slot confirmed everything, clean stops');
    // Both processes vouched for stored events (progress records from both pids).
    const members = [...(await progressMembers(kafka, admin, `t-${unique}.clinic.__progress`))];
    assert.ok(members.some((m) => m.endsWith(pidA)) && members.some((m) => m.endsWith(pidB)), `progress records from both compactors: ${JSON.stringify(members)}`);

    await fx.assertRestoresExactly(target);
    await fx.assertVerifies(killedAt);
    // The archive holds exactly the positions Kafka holds (after dedup): none missing, none extra.
    await fx.assertArchiveHoldsKafka(killedAt);
    await store.close();
    phase('restore, verify and position checks done');
  } finally {
    await fx.close();
  }
});
