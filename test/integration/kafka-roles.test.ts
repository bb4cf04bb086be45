import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { loadConfig } from '../../src/config/load.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { ArchiveReader } from '../../src/archive/archive-reader.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { Position } from '../../src/core/position.js';
import { runChartlog } from '../support/chartlog-process.js';
import { requireEnv } from '../support/env.js';
import { capturePg, createPgDatabase, diffCaptures } from '../support/restore-engines.js';
import { createClinicTables, postgresEngine, prng, Workload, type Engine } from '../support/run-harness.js';
import { kafkaTablePositions, positionSetDiff } from '../support/kafka-positions.js';
import { Proc } from '../support/chartlog-proc.js';

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

async function slotConfirmed(engine: Engine, slot: string): Promise<string | null> {
  const rows = (await engine.query(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as { lsn: string | null }[];
  return rows[0]?.lsn ?? null;
}

async function slotCaughtUp(engine: Engine, slot: string, timeoutMs = 90_000): Promise<void> {
  const [{ lsn }] = (await engine.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
  for (const deadline = Date.now() + timeoutMs; ; await sleep(200)) {
    const rows = (await engine.query(`SELECT confirmed_flush_lsn >= '${lsn}'::pg_lsn AS done FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as { done: boolean }[];
    if (rows[0]?.done) return;
    assert.ok(Date.now() < deadline, `slot ${slot} did not confirm ${lsn}`);
  }
}

test('run --role capture + two --role compact processes (one killed -9 mid-run): restore equals the source, no gap, no loss, no duplicate', { timeout: 240_000 }, async () => {
  const engine = await postgresEngine();
  const work = mkdtempSync(join(tmpdir(), 'chartlog-roles-'));
  const unique = `roles-${randomBytes(4).toString('hex')}`;
  const brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
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
      `bus: { type: kafka, kafka: { brokers: ${JSON.stringify(brokers)}, topicPrefix: "t-${unique}", groupId: "g-${unique}", sessionTimeoutMs: 6000 } }`,
      `storage: { url: "file://${work}/backup" }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${keyring}"`,
      '  columns: { public.patients: [full_name, ssn] }',
      '  strict: [public.patients]',
      '  publicColumns: { public.patients: [id, note, visits_count] }',
      `log: { level: ${process.env.ROLES_LOG ?? 'info'}, format: json }`,
    ].join('\n'),
  );
  const procs: Proc[] = [];
  const start = (role: string, name: string) => {
    const p = new Proc(['run', '--config', configFile, '--role', role], join(work, `${name}.log`));
    procs.push(p);
    return p;
  };
  const target = await createPgDatabase('roles');
  const kafka = new Kafka({ clientId: 'chartlog-test', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
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
    assert.equal(await slotConfirmed(engine, slot), null, 'the refused run created no slot');
    const badSlot = await runChartlog(['run', '--config', configFile, '--role', 'compact', '--take-over-slot']);
    assert.equal(badSlot.code, 2, badSlot.stderr);
    assert.match(badSlot.stderr, /--take-over-slot with --role compact/);

    // 1. Capture alone: Kafka receives the changes, the source is not acknowledged past the snapshot.
    const capture = start('capture', 'capture');
    await capture.waitFor(/"msg":"pipeline streaming"/, 'the capture process did not start streaming');
    const afterSnapshot = await slotConfirmed(engine, slot);
    for (let i = 0; i < 10; i++) await workload.transaction();
    const txTopic = `t-${unique}.clinic.__transactions`;
    const [{ lsn: written }] = (await engine.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
      const high = (await admin.fetchTopicOffsets(txTopic).catch(() => [])).find((p) => p.partition === 0)?.high ?? '0';
      if (Number(high) >= 20) break; // BEGIN and END of each of the ≥ 10 transactions
      assert.ok(Date.now() < deadline, `the capture process did not send the transactions to Kafka (see ${capture.logFile})`);
    }
    const [{ behind }] = (await engine.query(`SELECT confirmed_flush_lsn < '${written}'::pg_lsn AS behind FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as [{ behind: boolean }];
    assert.ok(behind, `with no compactor, the slot stays behind what Kafka holds (confirmed ${await slotConfirmed(engine, slot)}, after the snapshot ${afterSnapshot}, written ${written})`);

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
      if (cp && transactions >= 20 && (await slotCaughtUpTo(engine, slot, written))) break;
      assert.ok(Date.now() < deadline, `compactor A did not store anything (see ${a.logFile})`);
    }
    await a.stop('SIGKILL');
    const killedAt = transactions;
    await b.waitFor(/"msg":"kafka compactor consuming"/, 'compactor B did not take over', 90_000);
    while (transactions < killedAt + 40) await sleep(50);
    writing = false;
    await writer;

    // 3. Everything is acknowledged only once B stored it; then clean stops.
    await slotCaughtUp(engine, slot);
    assert.equal(await capture.stop('SIGTERM'), 0, `capture exits 0 (see ${capture.logFile})`);
    assert.equal(await b.stop('SIGTERM'), 0, `compactor B exits 0 (see ${b.logFile})`);

    const restored = await runChartlog(['restore', '--config', configFile, '--to', 'latest', '--target', target.url]);
    assert.equal(restored.code, 0, restored.stderr.slice(0, 2000));
    for (const table of ['patients', 'visits']) {
      const diff = diffCaptures(await capturePg(target.url, `public.${table}`), await capturePg(engine.url, `public.${table}`), `restore --to latest ${table}`);
      assert.equal(diff, null, diff ?? '');
    }
    const verified = await runChartlog(['verify', '--config', configFile, '--json']);
    assert.equal(verified.code, 0, verified.stdout.slice(0, 2000) + verified.stderr.slice(0, 2000));
    const reports = JSON.parse(verified.stdout) as { source: string; ok: boolean; problems: unknown[]; checked: { transactions: number } }[];
    assert.equal(reports.length, 1);
    assert.deepEqual([reports[0]!.source, reports[0]!.ok, reports[0]!.problems], ['clinic', true, []]);
    assert.ok(reports[0]!.checked.transactions > killedAt, `verify checked the writer's transactions (${reports[0]!.checked.transactions})`);

    // The archive holds exactly the positions Kafka holds (after dedup): none missing, none extra.
    const index = await readArchiveIndex(store, 'clinic');
    const codec = openArchiveCodec(config, config.sources[0]!, store, false);
    const reader = new ArchiveReader(store, index, codec.envelopes);
    const archived = new Set<string>();
    for (const table of ['public.patients', 'public.visits']) for (const r of await reader.tableRecords(table, null)) archived.add(Position.format(r.position));
    const inKafka = new Set(await kafkaTablePositions(kafka, admin, `t-${unique}.`, 60_000));
    assert.ok(inKafka.size > killedAt, `Kafka holds the writer's changes (${inKafka.size})`);
    const diff = positionSetDiff(archived, inKafka);
    assert.deepEqual({ missing: diff.missing.length, extra: diff.extra.length }, { missing: 0, extra: 0 }, `archive vs Kafka: ${JSON.stringify(diff).slice(0, 500)}`);
    await store.close();
  } finally {
    for (const p of procs) await p.stop('SIGKILL');
    await admin.disconnect();
    await target.drop();
    await engine.close();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  }
});

/** True once the slot confirmed `lsn`: the compactor stored (and the capture acknowledged) the first transactions. */
async function slotCaughtUpTo(engine: Engine, slot: string, lsn: string): Promise<boolean> {
  const rows = (await engine.query(`SELECT confirmed_flush_lsn >= '${lsn}'::pg_lsn AS done FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as { done: boolean }[];
  return rows[0]?.done ?? false;
}
