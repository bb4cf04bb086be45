import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { chartlogBin, runChartlog } from '../support/chartlog-process.js';
import { requireEnv } from '../support/env.js';
import { capturePg, createPgDatabase, diffCaptures } from '../support/restore-engines.js';
import { createClinicTables, postgresEngine, prng, Workload, type Engine } from '../support/run-harness.js';

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

const capture = (url: string, table: string) => capturePg(url, table);

/** Waits until the slot has confirmed everything the server wrote up to now (Kafka has it all). `slot` is the configured base: chartlog run names its slot `<base>_<archive id>`. */
async function slotCaughtUp(engine: Engine, slot: string, timeoutMs = 120_000): Promise<void> {
  const [{ lsn }] = (await engine.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
  for (const deadline = Date.now() + timeoutMs; ; await sleep(200)) {
    const rows = (await engine.query(`SELECT confirmed_flush_lsn >= '${lsn}'::pg_lsn AS done FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`)) as { done: boolean }[];
    if (rows[0]?.done) return;
    assert.ok(Date.now() < deadline, `slot ${slot} did not confirm ${lsn}`);
  }
}

test('two sources in one configuration on the Kafka bus: each has its own consumer group, and both restore exactly', { timeout: 420_000 }, async () => {
  const engines = { clinic: await postgresEngine(), lab: await postgresEngine() };
  const targets: Awaited<ReturnType<typeof createPgDatabase>>[] = [];
  const work = mkdtempSync(join(tmpdir(), 'chartlog-two-'));
  const unique = `two-${randomBytes(4).toString('hex')}`;
  const brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
  const slot = (s: string) => `chartlog_${engines[s as keyof typeof engines].db}`;
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  const configFile = join(work, 'chartlog.yaml');
  const logFile = join(work, 'chartlog.log');
  writeFileSync(
    configFile,
    [
      'sources:',
      ...SOURCES.map((s) => `  - { name: ${s}, type: postgres, url: "${engines[s].url}", tables: [public.patients, public.visits], postgres: { slotName: ${slot(s)}, publicationName: ${slot(s)} } }`),
      `bus: { type: kafka, kafka: { brokers: ${JSON.stringify(brokers)}, topicPrefix: "t-${unique}", groupId: "g-${unique}", sessionTimeoutMs: 6000 } }`,
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
  writeFileSync(logFile, '');
  const log = createWriteStream(logFile, { flags: 'a' });
  const logText = () => readFileSync(logFile, 'utf8');
  let child: ReturnType<typeof spawn> | null = null;
  try {
    for (const s of SOURCES) await createClinicTables(engines[s]);
    child = spawn(process.execPath, [chartlogBin, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    for (let i = 0; (logText().match(/"msg":"pipeline streaming"/g) ?? []).length < 2; i++) {
      assert.ok(i < 600 && child.exitCode === null, `both sources did not start streaming (see ${logFile})`);
      await sleep(50);
    }

    const workloads = SOURCES.map((s, i) => new Workload(engines[s], prng(31 + i)));
    for (let round = 0; round < 40; round++) {
      await Promise.all(workloads.map((w) => w.transaction()));
      if (round === 20) {
        await engines.lab.exec(
          `INSERT INTO patients (id, full_name, ssn, note) SELECT g, 'CANARY-NAME-' || g, 'CANARY-SSN-' || g, 'bulk' FROM generate_series(1000001, 1012000) g`,
        );
      }
    }
    for (const s of SOURCES) await slotCaughtUp(engines[s], slot(s));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, `a clean stop exits 0 (see ${logFile})`);
    child = null;
    assert.doesNotMatch(logText(), /not given the transactions partition/);

    // Each source's compactor in its own group, which committed its whole transactions topic.
    const admin = new Kafka({ clientId: 'chartlog-test', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      for (const s of SOURCES) {
        const topic = `t-${unique}.${s}.__transactions`;
        const [committed] = await admin.fetchOffsets({ groupId: `g-${unique}.${s}`, topics: [topic] });
        const end = (await admin.fetchTopicOffsets(topic)).find((p) => p.partition === 0)!;
        assert.ok(Number(end.high) > 0, `${s}: transactions in Kafka`);
        assert.equal(committed!.partitions.find((p) => p.partition === 0)!.offset, end.high, `${s}: group g-${unique}.${s} committed its transactions topic`);
      }
    } finally {
      await admin.disconnect();
    }

    for (const s of SOURCES) {
      const target = await createPgDatabase(`r${s}`);
      targets.push(target);
      const r = await runChartlog(['restore', '--config', configFile, '--source', s, '--to', 'latest', '--target', target.url]);
      assert.equal(r.code, 0, `${s}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
      for (const table of ['patients', 'visits']) {
        const expected = await capture(engines[s].url, `public.${table}`);
        if (s === 'lab' && table === 'patients') assert.ok(expected.length > 12_000, 'the large transaction is in lab');
        const diff = diffCaptures(await capture(target.url, `public.${table}`), expected, `${s} restore --to latest ${table}`);
        assert.equal(diff, null, diff ?? '');
      }
    }
  } finally {
    if (child && child.exitCode === null) {
      const gone = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    }
    log.end();
    for (const t of targets) await t.drop();
    for (const s of SOURCES) await engines[s].close();
    if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
  }
});
