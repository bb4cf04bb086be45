import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { ArchiveReader, NO_ENVELOPES } from '../../src/archive/archive-reader.js';
import { rangeOfKey } from '../../src/archive/layout.js';
import { readReplicaStates } from '../../src/archive/replica-state.js';
import type { TransactionRecord } from '../../src/archive/transaction-log.js';
import { Position } from '../../src/core/position.js';
import { runChartlog } from '../support/chartlog-process.js';
import { createTargetDb, ReplicaProcess } from '../support/replica-process.js';
import { postgresEngine, RunHarness } from '../support/run-harness.js';

/**
 * A hole in the archive stops `chartlog replicate` (issue 18): the parts holding a run of source
 * transactions are deleted from the store (a source-side gap as the replica meets it), later
 * transactions are stored after it; the replicator applies the whole transactions before the
 * hole, then exits 1 with a message naming the transaction after the hole, and applies nothing
 * past it. `chartlog timeline` shows the replica (running, then failed with the reason).
 */

/** The stored transactions touching public.g, once the checkpoint covers at least `count` of them. */
async function durable(h: RunHarness, count: number): Promise<TransactionRecord[]> {
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(200)) {
    const index = await readArchiveIndex(h.store, 'clinic');
    const cp = index.checkpoint;
    const log = (await new ArchiveReader(h.store, index, NO_ENVELOPES).transactions(null)).filter((t) => (t.tables['public.g'] ?? 0) > 0);
    if (cp && log.length >= count && Position.compare(Position.parse(log[count - 1]!.pos), cp.position) <= 0) return log;
  }
  throw new Error(`the archive did not hold ${count} durable transactions of public.g in 120 s (see ${h.logFile})`);
}

test('a gap in the archive stops the replica at the hole: the transactions before it applied, nothing after it, the gap named', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  await engine.exec('CREATE TABLE g (id int PRIMARY KEY, note text)');
  await engine.exec(`INSERT INTO g VALUES (0, 'base')`);
  const h = new RunHarness(engine, 'file', { tables: ['public.g'], phi: () => ['publicColumns: { public.g: [id, note] }'] });
  const target = await createTargetDb();
  const replica = new ReplicaProcess(['--config', h.configFile, '--target', target.url, '--phi', 'omit', '--name', 'gaptest'], h.env, join(h.work, 'replicate.log'));
  const batch = async (ids: number[]) => {
    for (const id of ids) await engine.exec(`INSERT INTO g VALUES (${id}, 'tx ${id}')`);
  };
  const ids = async () => (await target.client.query<{ id: number }>('SELECT id FROM g ORDER BY id')).rows.map((r) => r.id);
  const timeline = async () => {
    const r = await runChartlog(['timeline', '--config', h.configFile, '--json'], h.env);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { replicas: Record<string, unknown>[] }[])[0]!.replicas;
  };
  try {
    await h.start();
    replica.start();
    await replica.waitFor((s) => s.started === 'load', 60_000, 'the initial load');
    const A = [1, 2, 3, 4, 5];
    await batch(A);
    await replica.waitFor((s) => s.appliedTransactions >= A.length && s.lagTransactions === 0, 60_000, 'batch A applied');
    // While it runs, timeline shows it: where it is, not stale, and no credentials of the target.
    // (read in process here; the command itself is run once at the end: process start-up is slow on a loaded machine).
    const state = async () => (await readReplicaStates(h.store, 'clinic')).states.find((r) => r.name === 'gaptest');
    const running = await state();
    assert.ok(running, 'the replica recorded its state under its --name');
    assert.equal(running.status, 'running');
    assert.deepEqual({ ...running.target, port: null }, { kind: 'postgres', host: '127.0.0.1', port: null, database: new URL(target.url).pathname.slice(1) });
    assert.doesNotMatch(JSON.stringify(running), /:\/\/|@/, 'no URL or user@ in the state');
    assert.equal(await replica.kill('SIGTERM'), 0, 'a clean stop');
    assert.equal((await state())?.status, 'stopped');

    // The planted gap is in the open hour's parts: A2, B, the deletion and C within one hour
    // (seconds; the guard stands here, not at the test's start, so process start-ups on a
    // loaded machine do not count against it).
    const intoHour = Date.now() % 3_600_000;
    if (intoHour > 3_480_000) await sleep(3_600_000 - intoHour + 2000);
    // A2 (applied next time), then B (lost from the store), then C (stored after the hole).
    const A2 = [51, 52, 53];
    const B = [101, 102, 103];
    const C = [201, 202, 203];
    await batch(A2);
    await durable(h, A.length + A2.length); // the initial row is in the base snapshot, not the log
    await batch(B);
    const withB = await durable(h, A.length + A2.length + B.length);
    const bTx = withB.slice(-B.length).map((t) => Position.parse(t.pos));
    const lastA2 = withB.at(-B.length - 1)!.pos;
    // Delete every part holding one of B's transactions: A2 was durable before B began, and C
    // begins after B is durable, so those parts hold B alone.
    const index = await readArchiveIndex(h.store, 'clinic');
    const holding = index.openParts.map((p) => p.key).filter((key) => {
      const r = rangeOfKey(key);
      return r !== null && bTx.some((p) => Position.compare(p, r.first) >= 0 && Position.compare(p, r.last) <= 0);
    });
    assert.ok(holding.length > 0, `B's transactions are in open parts (${index.openParts.length} parts)`);
    for (const key of holding) await h.store.delete(key);
    await batch(C);
    const after = await durable(h, A.length + A2.length + C.length);
    const firstC = after.find((t) => Position.compare(Position.parse(t.pos), bTx.at(-1)!) > 0)!;
    assert.ok(!after.some((t) => bTx.some((p) => Position.compare(p, Position.parse(t.pos)) === 0)), 'the stored log no longer holds B');
    const posBefore = (await target.client.query<{ position: string }>('SELECT position FROM chartlog_replica')).rows[0]!.position;

    replica.start();
    for (const deadline = Date.now() + 60_000; replica.exitCode === null && Date.now() < deadline; ) await sleep(100);
    assert.equal(replica.exitCode, 1, `the replicator stops with exit 1 at the hole: ${replica.output.slice(-1500)}`);
    assert.match(replica.output, new RegExp(`the archive has a gap before transaction ${firstC.pos}: it follows ${firstC.previous}, but the replica's previous transaction is ${lastA2}; refusing to apply around it`));
    assert.match(replica.output, /fix: run `chartlog verify` on the source/);
    // Applied up to the hole (A2 too), nothing of B or C.
    assert.deepEqual(await ids(), [0, ...A, ...A2], 'the replica holds every transaction before the hole and none after it');
    const posAfter = (await target.client.query<{ position: string }>('SELECT position FROM chartlog_replica')).rows[0]!.position;
    assert.notEqual(posAfter, posBefore, 'the position moved over A2');
    assert.equal(posAfter, lastA2, 'the position is the last transaction before the hole');
    // Negative control of the id check: a row past the hole would be seen.
    await target.client.query(`INSERT INTO g VALUES (${C[0]}, 'planted')`);
    assert.notDeepEqual(await ids(), [0, ...A, ...A2]);
    await target.client.query(`DELETE FROM g WHERE id = ${C[0]}`);

    // Timeline: the replica is marked failed with the reason, at the position before the hole.
    const failed = (await timeline()).find((r) => r.name === 'gaptest')!;
    assert.equal(failed.stale, false);
    assert.match(String(failed.target), /^postgres 127\.0\.0\.1:\d+\/rep_[0-9a-f]+$/);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.position, lastA2);
    assert.match(String(failed.reason), new RegExp(`gap before transaction ${firstC.pos}`));
  } finally {
    await replica.kill('SIGKILL');
    await target.drop();
    await h.close();
    await engine.close();
  }
});
