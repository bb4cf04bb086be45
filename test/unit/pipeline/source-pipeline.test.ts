import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { runSourcePipeline } from '../../../src/pipeline/source-pipeline.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { SourceConnector, StreamOptions } from '../../../src/core/source-connector.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import type { BatchEncoder } from '../../../src/codec/batch-encoder.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { listSnapshots } from '../../../src/archive/snapshot-manifest.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { envelopes, T0, types } from '../../support/fake-envelopes.js';

// Pure orchestration logic with a scripted connector; the real connectors have their own
// integration tests against real servers.
const config = parseConfig(
  `sources: [{ name: clinic, type: postgres, url: "postgres://x@127.0.0.1:1/db" }]\nstorage: { url: "file:///nowhere" }\nphi: { keyring: "file:///k.json" }\nsegments: { flushIntervalMs: 50 }\n`,
  'test.yaml',
  {},
);
const schema: TableSchema = { schema: 'public', table: 'patients', columns: [], primaryKey: [] };
const commitOf = (n: number) => n.toString(16).padStart(16, '0');

function txn(n: number): ChangeBatch {
  const position = Position.of(commitOf(n), COMMIT_SEQ);
  return { source: 'clinic', txId: String(n), position, commitTsUs: T0 + BigInt(n), snapshot: false, events: [{ op: 'c', schema, before: null, after: {}, position: Position.of(commitOf(n), 0) }] };
}

const encoder: BatchEncoder = {
  async encode(batch) {
    return batch.events.map((e) => ({
      table: 'public.patients',
      fingerprint: '00000000000000a1',
      key: null,
      value: Buffer.concat([Buffer.alloc(10), types['00000000000000a1']!.toBuffer({ pos: Position.format(e.position), ts: Number(batch.commitTsUs), v: 'x' })]),
      position: e.position,
    }));
  },
  async fingerprintOf() {
    return '00000000000000a1';
  },
};

class ScriptedConnector implements SourceConnector {
  readonly name = 'clinic';
  readonly capabilities = { beforeImage: 'full', truncate: true, snapshot: true, unchangedValues: false } as const;
  acked: Position[] = [];
  streams: (Position | null)[] = [];
  failOnceAt: number | null = null;
  constructor(
    private readonly total: number,
    private readonly stopWhenDone: AbortController,
  ) {}
  async check() {}
  async *snapshot(): AsyncIterable<ChangeBatch> {
    const position = Position.of(commitOf(0), COMMIT_SEQ);
    yield { source: 'clinic', txId: null, position, commitTsUs: T0, snapshot: true, schemaChanges: [schema], events: [{ op: 'r', schema, before: null, after: {}, position: Position.of(commitOf(0), 0) }] };
  }
  async *stream(options: StreamOptions): AsyncIterable<ChangeBatch> {
    this.streams.push(options.from);
    const start = options.from ? Number.parseInt(options.from.commit, 16) - 2 : 1; // repeats two, as a slot may
    for (let n = Math.max(1, start); n <= this.total; n++) {
      if (this.failOnceAt === n) {
        this.failOnceAt = null;
        throw new ChartlogError('connection', 'connection lost', { retriable: true });
      }
      yield txn(n);
    }
    // Let the compactor make the last batches durable, then stop like SIGTERM would.
    setTimeout(() => this.stopWhenDone.abort(), 200);
    await new Promise((resolve) => options.signal?.addEventListener('abort', resolve));
  }
  async acknowledge(p: Position) {
    this.acked.push(p);
  }
  async close() {}
}

test('snapshot, stream, a lost connection, and stop: every transaction durable once, acknowledged in order', async () => {
  const store = new MemoryObjectStore();
  const stop = new AbortController();
  const connector = new ScriptedConnector(25, stop);
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
  await runSourcePipeline({ config, source: config.sources[0]!, connector: new ScriptedConnector(5, first), encoder, envelopes, store }, first.signal);
  const second = new AbortController();
  const again = new ScriptedConnector(9, second);
  await runSourcePipeline({ config, source: config.sources[0]!, connector: again, encoder, envelopes, store }, second.signal);
  assert.deepEqual(again.streams, [txn(5).position]);
  assert.equal((await listSnapshots(store, 'clinic')).length, 1);
  assert.deepEqual((await readCheckpoint(store, 'clinic'))?.position, txn(9).position);
});
