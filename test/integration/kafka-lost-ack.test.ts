import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createClinicTables } from '../support/run-harness.js';
import { kafkaTablePositions } from '../support/kafka-positions.js';
import { KafkaFixture } from '../support/kafka-fixture.js';

/**
 * kafkajs 2.2.4 can acknowledge messages the cluster never stored (a leader killed mid-send,
 * tulios/kafkajs#1303). Planted here with CHARTLOG_TEST_KAFKA_DROP_GROUP: one group's table
 * messages are not sent but reported acknowledged (its END records are sent).
 *
 * 1. Detection off: the slot is not confirmed past the lost transaction (the source is
 *    acknowledged by the compactor's checkpoint, not by Kafka's word) — then a crash.
 * 2. Restart, with another group lost and detection after 3 s: the stream resumes from the
 *    checkpoint (not after the newest transaction in Kafka), so the first loss is read again; the
 *    second is found (the oldest unsettled END waits while Kafka acknowledged it) and read again
 *    in-run. The slot confirms everything, every change is in Kafka after dedup by position, and
 *    the restore equals the source value by value.
 */

const HOOKS = ['CHARTLOG_TEST_KAFKA_DROP_GROUP', 'CHARTLOG_TEST_LOST_AFTER_MS'] as const;

/** The test hooks' values in this process's environment (children inherit them), to put back after a test. */
function saveHooks(): () => void {
  const saved = HOOKS.map((k) => [k, process.env[k]] as const);
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

const LOST_WARNING = /"msg":"a transaction Kafka acknowledged has not reached the compactor whole/g;

test('a transaction Kafka acknowledged but never stored: the slot is not confirmed past it, it is read again from the checkpoint, nothing lost', { timeout: 300_000 }, async () => {
  const fx = await KafkaFixture.open({ tag: 'la', label: 'lostack' });
  const { engine, prefix, kafka, admin } = fx;
  const run = fx.run();
  const target = await fx.target('rlostack');
  const restoreHooks = saveHooks();
  const transaction = (i: number) => fx.numberedTransaction(i);
  try {
    await createClinicTables(engine);
    // 1. The first group's table messages are lost (the bus groups what queued meanwhile, so a
    // later group number may never come); detection is off (an hour).
    process.env.CHARTLOG_TEST_KAFKA_DROP_GROUP = '1';
    process.env.CHARTLOG_TEST_LOST_AFTER_MS = '3600000';
    await run.start(60_000);
    let i = 1;
    for (; i <= 20; i++) await transaction(i);
    const phase1End = await fx.currentLsn();
    // Kafka acknowledges all of it within a second or two; the compactor can never settle past
    // the lost transaction, so the slot must stay behind however long we wait (20 s here, 100
    // flush intervals; before this change the slot confirmed it within about a second).
    assert.equal(await fx.waitSlotConfirmed(phase1End, 20_000), false, 'the slot is not confirmed past a transaction the store never got');
    await run.stop('SIGKILL');
    assert.equal(readFileSync(run.logFile, 'utf8').match(LOST_WARNING), null, 'detection was off in phase 1');

    // 2. Restart: resumes from the checkpoint; the new process loses its first group too (the
    // re-read of phase 1's loss, or what follows) and finds that in-run.
    process.env.CHARTLOG_TEST_LOST_AFTER_MS = '3000';
    await run.start(60_000);
    for (; i <= 40; i++) await transaction(i);
    const end = await fx.currentLsn();
    assert.equal(await fx.waitSlotConfirmed(end, 180_000), true, 'the slot confirms everything once the lost transactions were read again');
    await run.stop('SIGTERM');
    const log = readFileSync(run.logFile, 'utf8');
    assert.ok((log.match(LOST_WARNING) ?? []).length >= 1, 'the loss in phase 2 was detected in-run');
    assert.doesNotMatch(log, /resuming after the newest transaction in Kafka/, 'role all does not skip to the Kafka tail');
    assert.doesNotMatch(log, /"msg":"kafka compactor stopped"/, 'the compactor did not fail');
    assert.doesNotMatch(log, /CANARY/, 'no PHI in the log');

    await fx.assertRestoresExactly(target);
    const positions = await kafkaTablePositions(kafka, admin, `${prefix}.clinic.`);
    assert.equal(new Set(positions).size, fx.changes, 'every change is in Kafka after dedup by position: the lost ones were sent again');
    console.log(JSON.stringify({ changes: fx.changes, kafkaMessages: positions.length, distinct: new Set(positions).size, detected: (log.match(LOST_WARNING) ?? []).length }));
  } finally {
    restoreHooks();
    await fx.close();
  }
});

/**
 * The same loss under `--role capture` + `--role compact` (separate processes; the hook is on in
 * the capture process only). The capture process sees only the checkpoint in the store:
 *
 * A. Detection off: the slot is not confirmed past the first transaction, the one lost (the
 *    source is acknowledged by the compactor's checkpoint, which cannot pass it) — then a crash.
 * B. No compactor, detection after 3 s: the restarted capture process resumes from the
 *    checkpoint (not Kafka's tail), loses the re-sent first group again, and finds the
 *    checkpoint stalled with no compactor: it warns (WAL grows) and reads nothing again.
 * C. A compactor again: the stalled checkpoint is now a loss; the source is read again from it,
 *    the slot confirms everything, and the restore equals the source value by value.
 */
test('--role capture + --role compact: a transaction Kafka acknowledged but never stored holds the slot back, is read again once a compactor consumes, nothing lost', { timeout: 240_000 }, async () => {
  const fx = await KafkaFixture.open({ tag: 'lc', label: 'lostcap' });
  const { engine, prefix, kafka, admin } = fx;
  const target = await fx.target('rlostcap');
  const restoreHooks = saveHooks();
  /** A chartlog process of `role`, with the test hooks given (and no others) in its environment. */
  const start = (role: 'capture' | 'compact', name: string, hooks: { drop?: string; after?: string } = {}) => {
    delete process.env.CHARTLOG_TEST_KAFKA_DROP_GROUP;
    delete process.env.CHARTLOG_TEST_LOST_AFTER_MS;
    if (hooks.drop) process.env.CHARTLOG_TEST_KAFKA_DROP_GROUP = hooks.drop;
    if (hooks.after) process.env.CHARTLOG_TEST_LOST_AFTER_MS = hooks.after;
    return fx.start(role, name);
  };
  const transaction = (i: number) => fx.numberedTransaction(i);
  const STREAMING = /"msg":"pipeline streaming"/;
  const CONSUMING = /"msg":"kafka compactor consuming"/;
  const CAPTURE_LOST = /"msg":"the checkpoint has not moved while the compactor consumes/g;
  const NO_COMPACTOR = /"msg":"no compactor is running for this source/;
  const PLANNED = /"msg":"reading the source again from the checkpoint, as planned/;
  try {
    await createClinicTables(engine);
    // A. The first group with table messages is lost; detection is off (an hour).
    const compactA = start('compact', 'compact-a');
    const captureA = start('capture', 'capture-a', { drop: '1', after: '3600000' });
    await captureA.waitFor(STREAMING, 'capture A streams');
    await compactA.waitFor(CONSUMING, 'compactor A consumes');
    let i = 1;
    await transaction(i++);
    const afterFirst = await fx.currentLsn();
    for (; i <= 15; i++) await transaction(i);
    const phaseAEnd = await fx.currentLsn();
    // Kafka acknowledges all of it within a second or two and the compactor stores what came;
    // the checkpoint cannot pass the lost first transaction. 10 s = 50 flush intervals and 10
    // checkpoint polls (before this change the slot confirmed it within about a second).
    assert.equal(await fx.waitSlotConfirmed(phaseAEnd, 10_000), false, 'the slot is not confirmed past a transaction the store never got');
    assert.equal(await fx.slotConfirmed(afterFirst), false, 'the slot is not confirmed past the lost (first) transaction either');
    const [, compactACode] = await Promise.all([captureA.stop('SIGKILL'), compactA.stop('SIGTERM')]);
    assert.equal(compactACode, 0, 'compactor A stopped cleanly');
    assert.doesNotMatch(captureA.text(), CAPTURE_LOST, 'detection was off in phase A');

    // B. No compactor; detection after 3 s. The restart loses its first group again (the
    // re-sent first transaction): with nobody consuming, that is a warning, not a re-read.
    const captureB = start('capture', 'capture-b', { drop: '1', after: '3000' });
    await captureB.waitFor(STREAMING, 'capture B streams');
    for (; i <= 20; i++) await transaction(i);
    await captureB.waitFor(NO_COMPACTOR, 'capture B warns that no compactor runs', 30_000);
    assert.doesNotMatch(captureB.text(), CAPTURE_LOST, 'no re-read without a compactor');
    assert.equal(await fx.slotConfirmed(afterFirst), false, 'still not confirmed past the lost transaction');

    // C. A compactor again: the checkpoint stalls at the lost transaction while it consumes.
    const compactC = start('compact', 'compact-c');
    await compactC.waitFor(CONSUMING, 'compactor C consumes');
    for (; i <= 25; i++) await transaction(i);
    const end = await fx.currentLsn();
    assert.equal(await fx.waitSlotConfirmed(end, 120_000), true, 'the slot confirms everything once the lost transactions were read again');
    assert.equal(await captureB.stop('SIGTERM'), 0, 'capture B stopped cleanly');
    assert.equal(await compactC.stop('SIGTERM'), 0, 'compactor C stopped cleanly');
    const log = captureA.text() + captureB.text();
    assert.ok((captureB.text().match(CAPTURE_LOST) ?? []).length >= 1, 'the loss was found in-run once a compactor consumed');
    assert.match(captureB.text(), PLANNED, 'the re-read is logged as what it is');
    assert.doesNotMatch(log, /resuming after the newest transaction in Kafka/, 'role capture does not skip to the Kafka tail');
    assert.doesNotMatch(log + compactA.text() + compactC.text(), /CANARY/, 'no PHI in the logs');

    await fx.assertRestoresExactly(target);
    const positions = await kafkaTablePositions(kafka, admin, `${prefix}.clinic.`);
    assert.equal(new Set(positions).size, fx.changes, 'every change is in Kafka after dedup by position: the lost ones were sent again');
    console.log(JSON.stringify({ changes: fx.changes, kafkaMessages: positions.length, distinct: new Set(positions).size, detected: (captureB.text().match(CAPTURE_LOST) ?? []).length }));
  } finally {
    restoreHooks();
    await fx.close();
  }
});
