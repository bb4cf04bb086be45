import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { runSourcePipeline } from '../../../src/pipeline/source-pipeline.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { listSnapshots } from '../../../src/archive/snapshot-manifest.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { Lease, readLease } from '../../../src/archive/lease.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { envelopes } from '../../support/fake-envelopes.js';
import { commitOf, ScriptedConnector, scriptedEncoder, scriptedTxn as txn } from '../../support/scripted-source.js';

// Pure orchestration logic with a scripted connector; the real connectors have their own
// integration tests against real servers.
const config = parseConfig(
  `sources: [{ name: clinic, type: postgres, url: "postgres://x@127.0.0.1:1/db" }]\nstorage: { url: "file:///nowhere" }\nphi: { keyring: "file:///k.json" }\nsegments: { flushIntervalMs: 50 }\n`,
  'test.yaml',
  {},
);
const encoder = scriptedEncoder();
/** Repeats the last two transactions on a resume, as a slot may; stops 200 ms after the last (SIGTERM). */
const scripted = (total: number, stop: AbortController) => new ScriptedConnector(total, { redeliver: 3, whenDelivered: () => setTimeout(() => stop.abort(), 200) });

test('snapshot, stream, a lost connection, and stop: every transaction durable once, acknowledged in order', async () => {
  const store = new MemoryObjectStore();
  const stop = new AbortController();
  const connector = scripted(25, stop);
  connector.failOnceAt = 12;
  await runSourcePipeline({ config, source: config.sources[0]!, connector, encoder, envelopes, store }, stop.signal);

  const snaps = await listSnapshots(store, 'clinic');
  assert.equal(snaps.length, 1);
  assert.equal(snaps[0]!.tables['public.patients']?.rows, 1);
  assert.deepEqual(connector.streams[0], Position.of(commitOf(0), COMMIT_SEQ), 'the stream starts at the snapshot position');
  assert.equal(connector.streams.length, 2, 'one reconnect after the lost connection');

  const cp = await readCheckpoint(store, 'clinic');
  assert.deepEqual(cp?.position, txn(25).position);
  assert.equal(cp?.snapshotId, snaps[0]!.id);
  assert.deepEqual(connector.acked.at(-1), txn(25).position);
  for (let i = 1; i < connector.acked.length; i++) assert.ok(Position.compare(connector.acked[i]!, connector.acked[i - 1]!) > 0);

  // Every transaction is in the parts exactly once, after dedup of the reconnect's repeats.
  const txParts = [...store.objects.keys()].filter((k) => k.includes('/~transactions/'));
  assert.ok(txParts.length > 0);
  const seen = new Set<string>();
  for (const k of txParts) {
    const m = k.match(/([0-9a-f]{16})\.ffffffff-([0-9a-f]{16})\.ffffffff(?:\.[0-9a-f]{32})?\.avro$/);
    assert.ok(m, k);
    for (let n = Number.parseInt(m[1]!, 16); n <= Number.parseInt(m[2]!, 16); n++) {
      assert.ok(!seen.has(String(n)), `transaction ${n} written twice`);
      seen.add(String(n));
    }
  }
  assert.equal(seen.size, 25);
});

test('a restart resumes from the checkpoint without another snapshot', async () => {
  const store = new MemoryObjectStore();
  const first = new AbortController();
  await runSourcePipeline({ config, source: config.sources[0]!, connector: scripted(5, first), encoder, envelopes, store }, first.signal);
  const second = new AbortController();
  const again = scripted(9, second);
  await runSourcePipeline({ config, source: config.sources[0]!, connector: again, encoder, envelopes, store }, second.signal);
  assert.deepEqual(again.streams, [txn(5).position]);
  assert.equal((await listSnapshots(store, 'clinic')).length, 1);
  assert.deepEqual((await readCheckpoint(store, 'clinic'))?.position, txn(9).position);
});

test('two pipelines of one source at once: the second waits for the writer lease, then resumes from the checkpoint', async () => {
  const store = new MemoryObjectStore();
  const first = new AbortController();
  const a = new ScriptedConnector(10);
  const runA = runSourcePipeline({ config, source: config.sources[0]!, connector: a, encoder, envelopes, store }, first.signal);
  await new Promise((r) => setTimeout(r, 300));
  const second = new AbortController();
  const b = scripted(20, second);
  const runB = runSourcePipeline({ config, source: config.sources[0]!, connector: b, encoder, envelopes, store }, second.signal);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(b.streams, [], 'the second pipeline read the source while the first held the lease');
  assert.equal(b.acked.length, 0);
  first.abort();
  await runA;
  await runB;
  assert.deepEqual(b.streams, [txn(10).position], 'the second resumed where the first stopped');
  assert.deepEqual((await readCheckpoint(store, 'clinic'))?.position, txn(20).position);
  assert.equal((await listSnapshots(store, 'clinic')).length, 1, 'the second took no snapshot of its own');
  const rec = await readLease(store, 'clinic');
  assert.equal(rec?.epoch, 2);
  assert.equal(rec?.released, true);
});

test('a pipeline whose lease is taken over stops with the fatal lease error and writes nothing more', async () => {
  const store = new MemoryObjectStore();
  const stop = new AbortController();
  const connector = new ScriptedConnector(5);
  const lease = new Lease({ store, source: 'clinic', ttlMs: 600 });
  const run = runSourcePipeline({ config, source: config.sources[0]!, connector, encoder, envelopes, store }, stop.signal, { lease });
  await new Promise((r) => setTimeout(r, 400));
  const cp = await readCheckpoint(store, 'clinic');
  assert.deepEqual(cp?.position, txn(5).position);
  // Another process takes the lease over (its clock says it expired).
  const taker = new Lease({ store, source: 'clinic', ttlMs: 600, now: () => Date.now() + 10_000 });
  await taker.acquire();
  const keys = [...store.objects.keys()].filter((k) => !k.endsWith('/lease.json')).sort();
  await assert.rejects(run, (e: unknown) => e instanceof ChartlogError && e.code === 'lease' && !e.retriable);
  assert.deepEqual([...store.objects.keys()].filter((k) => !k.endsWith('/lease.json')).sort(), keys, 'objects written after the takeover');
  assert.equal((await readLease(store, 'clinic'))?.owner, taker.ownerId);
  await taker.release();
});

test('aborted while waiting for the lease: returns without reading or writing anything', async () => {
  const store = new MemoryObjectStore();
  const holder = new Lease({ store, source: 'clinic', ttlMs: 60_000 });
  await holder.acquire();
  const stop = new AbortController();
  const connector = new ScriptedConnector(5);
  const run = runSourcePipeline({ config, source: config.sources[0]!, connector, encoder, envelopes, store }, stop.signal);
  await new Promise((r) => setTimeout(r, 200));
  stop.abort();
  await run;
  assert.deepEqual(connector.streams, []);
  assert.deepEqual([...store.objects.keys()], ['clinic/state/lease.json']);
  await holder.release();
});
