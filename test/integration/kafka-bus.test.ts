import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { parseConfig } from '../../src/config/load.js';
import { ChartlogError } from '../../src/core/errors.js';
import { runSourcePipeline } from '../../src/pipeline/source-pipeline.js';
import { listSnapshots } from '../../src/archive/snapshot-manifest.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { BusBatch } from '../../src/codec/bus-message.js';
import { singleObjectHeader } from '../../src/codec/single-object.js';
import { KafkaBus } from '../../src/bus/kafka-bus.js';
import { compactorGroupId, decodeTransactionMessage, schemasTopic, tableTopic, transactionsTopic, type KafkaSettings } from '../../src/bus/kafka-topics.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { KafkaCompactor } from '../../src/compactor/kafka-compactor.js';
import { TRANSACTIONS_TABLE } from '../../src/archive/layout.js';
import { listManifestHours, readManifest } from '../../src/archive/manifest.js';
import { decodeTableRecord, type TableRecord } from '../../src/bus/table-record.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import type { ObjectStore, PutOptions } from '../../src/storage/object-store.js';
import { decodeAll, envelopes, HOUR_US, types } from '../support/fake-envelopes.js';
import { commitOf, ScriptedConnector, scriptedEncoder, scriptedTxn } from '../support/scripted-source.js';
import { requireEnv } from '../support/env.js';
import { ArchiveReader, NO_ENVELOPES } from '../../src/archive/archive-reader.js';
import { readArchiveIndex } from '../../src/archive/archive-index.js';

// A real Apache Kafka cluster (3 nodes, scripts/services.sh) and a real file:// store.

const brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
const SOURCE = 'clinic';
const BASE_US = BigInt(Date.parse('2026-11-20T05:00:00Z')) * 1000n;
const quietKafka = new Kafka({ clientId: 'chartlog-test', brokers, logLevel: logLevel.NOTHING });

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chartlog-kafka-'));
});
/** Every compactor a test started: stopped at the end even when an assertion failed midway. */
const live: { c: KafkaCompactor; stop: AbortController }[] = [];
after(async () => {
  for (const { c, stop } of live) {
    await c.abandon();
    stop.abort();
  }
  await rm(dir, { recursive: true, force: true });
});

function settingsFor(name: string): KafkaSettings {
  // Fresh topics and group per test: the cluster keeps state for its lifetime.
  const unique = `${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  return { brokers, topicPrefix: `t-${unique}`, clientId: 'chartlog-test', groupId: `g-${unique}`, sessionTimeoutMs: 6000, scaleOut: false, maxInFlightRequests: 3, compression: 'gzip', tls: { mode: 'disable' }, topics: { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false } };
}

const TABLES: [string, string][] = [
  ['public.patients', '00000000000000a1'],
  ['public.encounters', '00000000000000a1'],
  ['public.patients', '00000000000000a2'],
  ['public.notes', '00000000000000a1'],
];

/** Transaction n: 1–3 events over tables that change with n (a schema change, a new table), spread over three hours. */
function txn(n: number, total: number, previous: Position | null): BusBatch {
  const commit = n.toString(16).padStart(16, '0');
  const tsUs = BASE_US + (BigInt(n) * 3n * HOUR_US) / BigInt(total + 1);
  const count = 1 + (n % 3);
  const late = n > total / 2;
  const messages = Array.from({ length: count }, (_, seq) => {
    const [table, fp] = late ? TABLES[2 + (seq % 2)]! : TABLES[seq % 2]!;
    const position = Position.of(commit, seq);
    const body = types[fp]!.toBuffer({ pos: Position.format(position), ts: Number(tsUs), v: `row ${n}/${seq}`, w: 7 });
    const value = Buffer.concat([singleObjectHeader(BigInt(`0x${fp}`)), body]);
    return { table, fingerprint: fp, key: Buffer.from(`patient-${n % 11}`), value, position };
  });
  return { source: SOURCE, position: Position.of(commit, COMMIT_SEQ), previous, txId: `tx${n}`, commitTsUs: tsUs, messages };
}

function workload(total: number): BusBatch[] {
  const out: BusBatch[] = [];
  let prev: Position | null = null;
  for (let n = 1; n <= total; n++) {
    const b = txn(n, total, prev);
    out.push(b);
    prev = b.position;
  }
  return out;
}

async function publish(settings: KafkaSettings, batches: BusBatch[]): Promise<Position[]> {
  const durable: Position[] = [];
  const bus = new KafkaBus({ settings, source: SOURCE, schemas: envelopes, maxMessagesPerSend: 40, onDurable: (p) => void durable.push(p) });
  await bus.connect();
  for (const b of batches) await bus.publish(b);
  await bus.close();
  return durable;
}

function compactorOf(store: ObjectStore, settings: KafkaSettings, stop: AbortController): KafkaCompactor {
  const c = newCompactor(store, settings, stop.signal);
  live.push({ c, stop });
  return c;
}

function newCompactor(store: ObjectStore, settings: KafkaSettings, signal?: AbortSignal): KafkaCompactor {
  return new KafkaCompactor(store, SOURCE, envelopes, { settings, flushIntervalMs: 50, maxPartBytes: 1 << 20, closeGraceMs: 30 * 24 * 3600_000, snapshotId: null }, signal);
}

async function until(what: string, cond: () => boolean | Promise<boolean>, limitMs = 60_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
    await sleep(25);
  }
}

/** Every sealed record per table, in the order the segments hold them (hours in order). */
async function sealedRecords(store: ObjectStore): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const hour of await listManifestHours(store, SOURCE)) {
    const { manifest } = await readManifest(store, SOURCE, hour);
    for (const o of manifest.objects) {
      const positions = decodeAll(await store.get(o.key), o.key).map((r) => r.pos);
      out.set(o.table, [...(out.get(o.table) ?? []), ...positions]);
    }
  }
  return out;
}

async function assertExactlyOnceInOrder(store: ObjectStore, batches: BusBatch[]): Promise<void> {
  const sealed = await sealedRecords(store);
  const expected = new Map<string, string[]>();
  for (const b of batches) {
    for (const m of b.messages) expected.set(m.table, [...(expected.get(m.table) ?? []), Position.format(m.position)]);
    expected.set(TRANSACTIONS_TABLE, [...(expected.get(TRANSACTIONS_TABLE) ?? []), Position.format(b.position)]);
  }
  assert.deepEqual([...sealed.keys()].sort(), [...expected.keys()].sort());
  for (const [table, positions] of expected) {
    // Equal lists: every change once, none extra, and in position order across all hours.
    assert.deepEqual(sealed.get(table), positions, `table ${table}`);
  }
  const leftover: string[] = [];
  for await (const o of store.listAll(`${SOURCE}/parts/`)) leftover.push(o.key);
  assert.deepEqual(leftover, [], 'sealing removed every part');
}

/** Committed offsets of the group against the end of every partition of its topics. */
async function committedVsEnd(groupId: string, topics: string[]): Promise<{ committed: number; end: number }[]> {
  const admin = quietKafka.admin();
  await admin.connect();
  try {
    const committed = await admin.fetchOffsets({ groupId, topics });
    const out: { committed: number; end: number }[] = [];
    for (const t of committed) {
      const ends = await admin.fetchTopicOffsets(t.topic);
      for (const p of t.partitions) out.push({ committed: Number(p.offset), end: Number(ends.find((e) => e.partition === p.partition)!.high) });
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

function topicsOf(settings: KafkaSettings): string[] {
  return [...new Set(TABLES.map(([t]) => tableTopic(settings.topicPrefix, SOURCE, t))), transactionsTopic(settings.topicPrefix, SOURCE)];
}

test('the producer writes table records of several events (each on its key\'s partition), BEGIN/END records with counts, and schemas', { timeout: 180_000 }, async () => {
  const settings = settingsFor('produce');
  const batches = workload(6);
  const durable = await publish(settings, batches);
  assert.deepEqual(durable.at(-1), batches.at(-1)!.position, 'the last transaction was reported durable');

  const consumer = quietKafka.consumer({ groupId: `${settings.groupId}-reader` });
  const seen = new Map<string, { key: string | null; record: TableRecord | null; value: Buffer }[]>();
  const txAndSchemas = 2 * batches.length + 2;
  let events = 0;
  let others = 0;
  const expectedEvents = batches.reduce((n, b) => n + b.messages.length, 0);
  await consumer.connect();
  await consumer.subscribe({ topics: [...topicsOf(settings), schemasTopic(settings.topicPrefix, SOURCE)], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const isTable = !topic.endsWith('__transactions') && !topic.endsWith('__schemas');
      const record = isTable ? decodeTableRecord(message, topic) : null;
      const entry = { key: message.key?.toString() ?? null, record, value: message.value! };
      seen.set(`${topic}/${partition}`, [...(seen.get(`${topic}/${partition}`) ?? []), entry]);
      if (record) events += record.events.length;
      else others++;
    },
  });
  await until('every record consumed', () => events >= expectedEvents && others >= txAndSchemas);
  await consumer.disconnect();
  const tableRecords = [...seen.values()].flat().filter((e) => e.record);
  assert.equal(events, expectedEvents);
  assert.equal(others, txAndSchemas);
  assert.ok(tableRecords.length < expectedEvents, `${tableRecords.length} table records for ${expectedEvents} events: several in one`);

  for (const b of batches) {
    for (const m of b.messages) {
      const topic = tableTopic(settings.topicPrefix, SOURCE, m.table);
      const found = [...seen]
        .filter(([k]) => k.startsWith(`${topic}/`))
        .flatMap(([, list]) => list.flatMap((r) => r.record!.events.map((e) => ({ r: r.record!, e }))))
        .filter(({ e }) => Position.equals(e.position, m.position));
      assert.equal(found.length, 1, `one event for ${Position.format(m.position)}`);
      const { r, e } = found[0]!;
      assert.equal(e.key?.toString(), Buffer.from(m.key!).toString());
      assert.deepEqual(e.value, Buffer.from(m.value));
      assert.deepEqual({ table: r.table, fingerprint: e.fingerprint, txId: r.txId, commitTsUs: r.commitTsUs }, { table: m.table, fingerprint: m.fingerprint, txId: b.txId, commitTsUs: b.commitTsUs });
    }
  }
  // All BEGIN/END records in partition 0: each once, END after BEGIN, END counting events per table.
  const tx = seen.get(`${transactionsTopic(settings.topicPrefix, SOURCE)}/0`)!.map((e) => decodeTransactionMessage(e.value, 'test'));
  assert.equal(tx.length, 2 * batches.length);
  for (const b of batches) {
    const counts: Record<string, number> = {};
    for (const m of b.messages) counts[m.table] = (counts[m.table] ?? 0) + 1;
    const pos = Position.format(b.position);
    const begin = tx.findIndex((t) => t.status === 'BEGIN' && t.record.pos === pos);
    const end = tx.findIndex((t) => t.status === 'END' && t.record.pos === pos);
    assert.ok(begin >= 0 && end > begin);
    assert.deepEqual(tx[end]!.record, { pos, previous: b.previous ? Position.format(b.previous) : null, txId: b.txId, commitTsUs: Number(b.commitTsUs), tables: counts });
  }
  const schemaMessages = [...seen].filter(([k]) => k.startsWith(`${schemasTopic(settings.topicPrefix, SOURCE)}/`)).flatMap(([, l]) => l);
  assert.deepEqual(new Set(schemaMessages.map((s) => s.key)), new Set(['00000000000000a1', '00000000000000a2']));
  for (const s of schemaMessages) assert.equal(s.value.toString(), await envelopes.schemaJson(SOURCE, s.key!));
});

test('a compactor killed mid-stream and a new one in the same group store every change exactly once, in position order', { timeout: 180_000 }, async () => {
  const settings = settingsFor('crash');
  const store = new FsObjectStore(join(dir, 'crash'));
  const all = workload(240);
  // The first half, then part of it again (a producer that restarted from an older position).
  await publish(settings, [...all.slice(0, 120), ...all.slice(90, 120)]);

  const abortA = new AbortController();
  const a = compactorOf(store, settings, abortA);
  await a.start();
  const runningA = a.run(abortA.signal);
  await until('the first compactor made some transactions durable', () => a.settledPosition !== null && Position.compare(a.settledPosition, all[60]!.position) >= 0);
  // A new table (public.notes) appears while it runs: its topic did not exist at subscription.
  await publish(settings, all.slice(120, 180));
  await until('the first compactor subscribed again', () => a.stats.generations >= 2);
  await a.abandon();
  abortA.abort();
  await runningA;
  assert.ok(a.settledPosition !== null && Position.compare(a.settledPosition, all[179]!.position) <= 0);
  await publish(settings, all.slice(180));

  const stop = new AbortController();
  const b = compactorOf(store, settings, stop);
  await b.start();
  assert.deepEqual(b.settledPosition, (await readCheckpoint(store, SOURCE))!.position, 'the new compactor starts from the checkpoint');
  const runningB = b.run(stop.signal);
  await until('the second compactor settled the whole stream', () => b.settledPosition !== null && Position.equals(b.settledPosition, all.at(-1)!.position));
  stop.abort();
  await runningB;
  await b.closeFinishedHours(true);

  await assertExactlyOnceInOrder(store, all);
  assert.deepEqual((await readCheckpoint(store, SOURCE))!.position, all.at(-1)!.position);
  assert.ok((await listManifestHours(store, SOURCE)).length >= 3, 'three hours of commits, three closed hours');
  for (const p of await committedVsEnd(compactorGroupId(settings, SOURCE), topicsOf(settings))) {
    assert.equal(p.committed === -1 ? 0 : p.committed, p.end, 'everything consumed is committed at the end');
  }
});

/** A store whose writes fail with a retriable error while `failing` is set. */
class FlakyStore implements ObjectStore {
  failing = true;
  failures = 0;
  constructor(private readonly inner: ObjectStore) {}
  get description() {
    return `flaky ${this.inner.description}`;
  }
  private check(key: string) {
    if (this.failing) {
      this.failures++;
      throw new ChartlogError('storage', `injected write failure for ${key}`, { retriable: true });
    }
  }
  async put(key: string, body: Uint8Array | Readable, o?: PutOptions) {
    this.check(key);
    return this.inner.put(key, body, o);
  }
  async putIfAbsent(key: string, body: Uint8Array | Readable, o?: PutOptions) {
    this.check(key);
    return this.inner.putIfAbsent(key, body, o);
  }
  get(key: string) {
    return this.inner.get(key);
  }
  getVersioned(key: string) {
    return this.inner.getVersioned(key);
  }
  async putIfVersion(key: string, body: Uint8Array, version: string) {
    this.check(key);
    return this.inner.putIfVersion(key, body, version);
  }
  getRange(key: string, s: number, e: number) {
    return this.inner.getRange(key, s, e);
  }
  getStream(key: string) {
    return this.inner.getStream(key);
  }
  head(key: string) {
    return this.inner.head(key);
  }
  list(prefix: string, o?: Parameters<ObjectStore['list']>[1]) {
    return this.inner.list(prefix, o);
  }
  listAll(prefix: string) {
    return this.inner.listAll(prefix);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  close() {
    return this.inner.close();
  }
}

test('offsets are committed only after the parts are durable: a store outage commits nothing, and a new compactor gets everything again', { timeout: 180_000 }, async () => {
  const settings = settingsFor('outage');
  const inner = new FsObjectStore(join(dir, 'outage'));
  const flaky = new FlakyStore(inner);
  const all = workload(40);
  await publish(settings, all);
  const events = all.reduce((n, b) => n + b.messages.length, 0);

  const abortA = new AbortController();
  const a = compactorOf(flaky, settings, abortA);
  await a.start();
  const runningA = a.run(abortA.signal);
  // Its first flush keeps retrying; taking more messages waits behind it.
  await until('the compactor took messages and its writes failed a few times', () => a.stats.messages > 0 && flaky.failures >= 4);
  for (const p of await committedVsEnd(compactorGroupId(settings, SOURCE), topicsOf(settings))) assert.equal(p.committed, -1, 'nothing committed while the store refuses writes');
  assert.equal(a.settledPosition, null);
  await a.abandon();
  abortA.abort();
  await runningA;

  // The store is back; a new member of the group is given every message again.
  flaky.failing = false;
  const stop = new AbortController();
  const b = compactorOf(flaky, settings, stop);
  await b.start();
  const runningB = b.run(stop.signal);
  await until('the stream is settled', () => b.settledPosition !== null && Position.equals(b.settledPosition, all.at(-1)!.position));
  stop.abort();
  await runningB;
  assert.ok(b.stats.events >= events, `redelivered ${b.stats.events} of ${events} events`);
  await b.closeFinishedHours(true);
  await assertExactlyOnceInOrder(inner, all);
  for (const p of await committedVsEnd(compactorGroupId(settings, SOURCE), topicsOf(settings))) assert.equal(p.committed === -1 ? 0 : p.committed, p.end);
});

// ---------------------------------------------------------------------------------------------
// The source pipeline on the Kafka bus: a scripted connector (the real connectors have their
// own integration tests), the real Kafka protocol and a real file:// store.

/** Stops the pipeline, as SIGTERM would, once the compactor has made the whole stream durable. */
function scriptedSource(total: number, store: ObjectStore, stop: AbortController): ScriptedConnector {
  const last = change(total).position;
  return new ScriptedConnector(total, {
    source: SOURCE,
    baseUs: BASE_US,
    redeliver: 3, // repeats the last two transactions on a resume, as a slot may
    whenDelivered: () =>
      void until('the store checkpoint reaches the end of the stream', async () => {
        const cp = await readCheckpoint(store, SOURCE);
        return cp !== null && Position.equals(cp.position, last);
      }).then(() => stop.abort()),
  });
}
const change = (n: number) => scriptedTxn(n, SOURCE, BASE_US);

test('the source pipeline on the Kafka bus: snapshot, stream, a lost connection, acknowledged once Kafka has it, stored once', { timeout: 180_000 }, async () => {
  const settings = settingsFor('pipeline');
  const config = parseConfig(
    [
      `sources: [{ name: ${SOURCE}, type: postgres, url: "postgres://x@127.0.0.1:1/db" }]`,
      `bus: { type: kafka, kafka: { brokers: ${JSON.stringify(brokers)}, topicPrefix: "${settings.topicPrefix}", groupId: "${settings.groupId}", sessionTimeoutMs: 6000 } }`,
      `storage: { url: "file://${join(dir, 'pipeline')}" }`,
      'phi: { keyring: "file:///k.json" }',
      'segments: { flushIntervalMs: 50 }',
    ].join('\n'),
    'test.yaml',
    {},
  );
  const store = new FsObjectStore(join(dir, 'pipeline'));
  const stop = new AbortController();
  const connector = scriptedSource(25, store, stop);
  connector.failOnceAt = 12;
  await runSourcePipeline({ config, source: config.sources[0]!, connector, encoder: scriptedEncoder(Buffer.from('k')), envelopes, store }, stop.signal);

  assert.equal((await listSnapshots(store, SOURCE)).length, 1);
  assert.deepEqual(connector.streams[0], Position.of(commitOf(0), COMMIT_SEQ), 'the stream starts at the snapshot position');
  assert.equal(connector.streams.length, 2, 'one restart after the lost connection');
  assert.deepEqual(connector.acked.at(-1), change(25).position);
  for (let i = 1; i < connector.acked.length; i++) assert.ok(Position.compare(connector.acked[i]!, connector.acked[i - 1]!) > 0, 'acknowledgements only move forward');
  assert.deepEqual((await readCheckpoint(store, SOURCE))?.position, change(25).position);

  // Every transaction reached the store (closed segments and open flush parts, as a restore reads them); sealed segments hold none twice.
  const stored = await new ArchiveReader(store, await readArchiveIndex(store, SOURCE), NO_ENVELOPES).transactions(null);
  assert.deepEqual(stored.map((r) => r.pos), Array.from({ length: 25 }, (_, i) => Position.format(change(i + 1).position)));
  const inSegments: string[] = [];
  for await (const o of store.listAll(`${SOURCE}/`)) {
    if (o.key.includes('/segments/') && o.key.includes(`/${TRANSACTIONS_TABLE}/`)) inSegments.push(...decodeAll(await store.get(o.key), o.key).map((r) => r.pos));
  }
  assert.equal(new Set(inSegments).size, inSegments.length);
  // The messages went through Kafka: the group committed the whole transactions topic.
  const [tx] = await committedVsEnd(compactorGroupId(settings, SOURCE), [transactionsTopic(settings.topicPrefix, SOURCE)]);
  assert.ok(tx && tx.end > 0 && tx.committed === tx.end);
});
