import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { verifyArchive } from '../../src/restore/verify.js';
import { requireEnv, testServices } from '../support/env.js';
import { createClinicTables, postgresEngine, prng, RunHarness, Workload } from '../support/run-harness.js';

/**
 * radosgw is stopped for a few seconds while `chartlog run` writes to it: the writes fail and
 * are retried, nothing is acknowledged to PostgreSQL meanwhile (the slot does not move past
 * what was durable before), and once radosgw is back everything arrives, once.
 */

const rgwPidFile = () => join(requireEnv('CHARTLOG_TEST_SERVICES_DIR'), 's3', 'run', 'client.rgw.a.pid');

function lsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

async function rgwAnswers(endpoint: string): Promise<boolean> {
  try {
    await fetch(endpoint, { signal: AbortSignal.timeout(1000) });
    return true;
  } catch {
    return false;
  }
}

test('postgres → s3://: radosgw stopped for seconds: retried, nothing acknowledged meanwhile, nothing lost', { timeout: 180_000 }, async () => {
  const engine = await postgresEngine();
  const h = new RunHarness(engine, 's3');
  const endpoint = testServices().s3.endpoint;
  const pid = Number(readFileSync(rgwPidFile(), 'utf8').trim());
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  let stopped = false;
  const startRgw = async () => {
    if (!stopped) return;
    execFileSync(argv[0]!, argv.slice(1), { stdio: 'ignore' }); // radosgw daemonizes itself
    for (let i = 0; i < 200 && !(await rgwAnswers(endpoint)); i++) await sleep(100);
    stopped = false;
  };
  try {
    await createClinicTables(engine);
    const workload = new Workload(engine, prng(3));
    await h.start();
    for (let i = 0; i < 20; i++) await workload.transaction();
    assert.equal(await h.converge(), '', 'durable before the outage');
    const [slot] = await engine.query(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE starts_with(slot_name, '${h.slotName}')`);
    const confirmedBefore = lsn(String(slot!.lsn));
    const [pre] = await engine.query(`SELECT pg_current_wal_lsn()::text AS lsn`);
    const walBeforeOutage = lsn(String(pre!.lsn));

    process.kill(pid, 'SIGTERM');
    stopped = true;
    for (let i = 0; i < 100 && (await rgwAnswers(endpoint)); i++) await sleep(100);
    assert.equal(await rgwAnswers(endpoint), false, 'radosgw is down');
    const outageEnds = Date.now() + 6000;
    while (Date.now() < outageEnds) {
      await workload.transaction();
      await sleep(20);
    }
    const [during] = await engine.query(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE starts_with(slot_name, '${h.slotName}')`);
    const confirmedDuring = lsn(String(during!.lsn));
    assert.ok(confirmedDuring >= confirmedBefore);
    assert.ok(confirmedDuring <= walBeforeOutage, 'nothing written during the outage was acknowledged to PostgreSQL');
    assert.match(h.logText(), /object store write failed; retrying/);

    await startRgw();
    for (let i = 0; i < 10; i++) await workload.transaction();
    assert.equal(await h.converge(90_000), '', 'everything arrives once radosgw is back');
    assert.equal(await h.kill('SIGTERM'), 0);
    const archive = openArchiveCodec(h.config, h.config.sources[0]!, h.store, false);
    const report = await verifyArchive(h.store, await readArchiveIndex(h.store, 'clinic'), archive.envelopes);
    assert.deepEqual(report.problems, []);
  } finally {
    await startRgw();
    await h.close();
    await engine.close();
  }
});
