import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { singleObjectHeader } from '../../../src/codec/single-object.js';
import { encodeHeaders, encodeTransactionMessage, tableTopic, transactionsTopic, type KafkaSettings } from '../../../src/bus/kafka-topics.js';
import { encodeTableRecord } from '../../../src/bus/table-record.js';
import { readCheckpoint } from '../../../src/archive/checkpoint.js';
import { KafkaCompactor, pieceRange } from '../../../src/compactor/kafka-compactor.js';
import { TRANSACTIONS_TABLE } from '../../../src/archive/layout.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { storedSections } from '../../support/stored-sections.js';
import { decodeAll, envelopes, T0, types } from '../../support/fake-envelopes.js';

// The commit rule of the Kafka compactor, driven message by message through a fake of the slice
// of kafkajs it uses. The real protocol is in test/integration/kafka-bus.test.ts.

const settings: KafkaSettings = { brokers: ['127.0.0.1:1'], topicPrefix: 'cl', clientId: 'c', groupId: 'g', sessionTimeoutMs: 30_000, scaleOut: false, maxInFlightRequests: 3, compression: 'gzip', tls: { mode: 'disable' }, topics: { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false } };
const PATIENTS = tableTopic('cl', 'clinic', 'public.patients');
const TX = transactionsTopic('cl', 'clinic');

type Commit = { topic: string; partition: number; offset: string };

class FakeGroupKafka {
  commits: Commit[][] = [];
  eachBatch: ((p: EachBatchPayload) => Promise<void>) | null = null;
  groupIds: string[] = [];
  onJoin: ((e: { payload: { memberAssignment: Record<string, number[]> } }) => void) | null = null;
  admin() {
    return { connect: async () => {}, disconnect: async () => {}, createTopics: async () => false,
      listTopics: async () => [PATIENTS, TX, 'cl.clinic.__schemas', 'cl.other.public.x'],
      // Topics created or found are checked for durability (kafka-durability.ts): safe ones here.
      fetchTopicMetadata: async ({ topics }: { topics: string[] }) => ({ topics: topics.map((name) => ({ name, partitions: [{ partitionId: 0, replicas: [1, 2, 3] }] })) }),
      describeConfigs: async ({ resources }: { resources: { name: string }[] }) => ({
        resources: resources.map((r) => ({ resourceName: r.name, configEntries: [{ configName: 'min.insync.replicas', configValue: '2' }] })),
      }),
    };
  }
  consumer({ groupId }: { groupId: string }) {
    this.groupIds.push(groupId);
    return {
      events: { GROUP_JOIN: 'consumer.group_join', CRASH: 'consumer.crash' },
      on: (event: string, handler: (e: { payload: { memberAssignment: Record<string, number[]> } }) => void) => {
        if (event === 'consumer.group_join') this.onJoin = handler;
      },
      connect: async () => {},
      subscribe: async ({ topics }: { topics: string[] }) => assert.deepEqual(topics.sort(), [PATIENTS, TX].sort(), 'only this source, no schema topic'),
      run: async ({ eachBatch }: { eachBatch: (p: EachBatchPayload) => Promise<void> }) => void (this.eachBatch = eachBatch),
      commitOffsets: async (o: Commit[]) => void this.commits.push(o),
      disconnect: async () => {},
    };
  }
  asKafka(): Kafka {
    return this as unknown as Kafka;
  }
  /** The newest committed offset per topic/partition. */
  committed(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const c of this.commits) for (const o of c) out[`${o.topic === TX ? 'tx' : 'patients'}/${o.partition}`] = o.offset;
    return out;
  }
  async deliver(topic: string, partition: number, messages: KafkaMessage[]): Promise<void> {
    await this.eachBatch!({ batch: { topic, partition, messages }, isRunning: () => true, isStale: () => false } as unknown as EachBatchPayload);
  }
}

const commitOf = (n: number) => n.toString(16).padStart(16, '0');
const txPos = (n: number) => Position.of(commitOf(n), COMMIT_SEQ);

function event(n: number, offset: number): KafkaMessage {
  const position = Position.of(commitOf(n), 0);
  const ts = T0 + BigInt(n);
  const body = types['00000000000000a1']!.toBuffer({ pos: Position.format(position), ts: Number(ts), v: `row ${n}` });
  return {
    offset: String(offset),
    key: Buffer.from('k'),
    value: Buffer.concat([singleObjectHeader(0xa1n), body]),
    headers: encodeHeaders({ table: 'public.patients', fingerprint: '00000000000000a1', position, txId: String(n), commitTsUs: ts }),
    timestamp: '0',
    attributes: 0,
  } as unknown as KafkaMessage;
}

function txRecord(status: 'BEGIN' | 'END', n: number, offset: number, previous: number | null = n - 1 > 0 ? n - 1 : null): KafkaMessage {
  const record = { pos: Position.format(txPos(n)), previous: previous === null ? null : Position.format(txPos(previous)), txId: String(n), commitTsUs: Number(T0 + BigInt(n)), tables: { 'public.patients': 1 } };
  return { offset: String(offset), key: null, value: encodeTransactionMessage(status, record), headers: {}, timestamp: '0', attributes: 0 } as unknown as KafkaMessage;
}

async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 10_000; !(await cond()); await sleep(5)) if (Date.now() > end) throw new Error(`gave up waiting: ${what}`);
}

/** Runs `body` with a started compactor, and stops it whatever happens (a failed assertion included). */
async function withCompactor(store: MemoryObjectStore, body: (s: Awaited<ReturnType<typeof started>>) => Promise<void>): Promise<void> {
  await withCompactorOn(store, new FakeGroupKafka(), body);
}

async function withCompactorOn(store: MemoryObjectStore, fake: FakeGroupKafka, body: (s: Awaited<ReturnType<typeof started>>) => Promise<void>): Promise<void> {
  const s = await startedWith(store, fake);
  try {
    await body(s);
  } finally {
    await s.c.abandon();
    s.stop.abort();
    await s.running.catch(() => undefined);
  }
}

async function started(store: MemoryObjectStore) {
  return startedWith(store, new FakeGroupKafka());
}

async function startedWith(store: MemoryObjectStore, fake: FakeGroupKafka, sessionTimeoutMs?: number) {
  const stop = new AbortController();
  const c = new KafkaCompactor(store, 'clinic', envelopes, { settings, kafka: fake.asKafka(), flushIntervalMs: 10, maxPartBytes: 1 << 20, closeGraceMs: 30 * 24 * 3_600_000, snapshotId: null, ...(sessionTimeoutMs ? { sessionTimeoutMs } : {}) }, stop.signal);
  await c.start();
  const running = c.run(stop.signal);
  await until('the consumer runs', () => fake.eachBatch !== null);
  return { fake, c, stop, running };
}

const checkpointOf = async (store: MemoryObjectStore) => (await readCheckpoint(store, 'clinic'))?.position ?? null;

test('offsets are committed up to the first message of a transaction that is not complete and durable', async () => {
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    await fake.deliver(PATIENTS, 0, [event(1, 0), event(2, 1), event(3, 2)]);
    await fake.deliver(TX, 0, [txRecord('BEGIN', 1, 0), txRecord('END', 1, 1), txRecord('BEGIN', 2, 2)]);
    await until('T1 settles', async () => Position.equals((await checkpointOf(store)) ?? txPos(0), txPos(1)));
    await until('a commit', () => fake.committed()['tx/0'] === '2');
    assert.deepEqual(fake.committed(), { 'patients/0': '1', 'tx/0': '2' }, 'T2 and T3 have no END yet: their messages stay uncommitted');
    assert.ok(storedSections(store).some((p) => p.table === 'public.patients' && p.first.commit === '0000000000000001'), 'the parts came first');

    await fake.deliver(TX, 0, [txRecord('END', 2, 3), txRecord('BEGIN', 3, 4), txRecord('END', 3, 5)]);
    await until('T3 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(3)));
    await until('everything committed', () => fake.committed()['tx/0'] === '6');
    assert.deepEqual(fake.committed(), { 'patients/0': '3', 'tx/0': '6' });
    assert.deepEqual(await checkpointOf(store), txPos(3));

    // Redelivered (after a rebalance): at or below the settled position, skipped, not stored again.
    const writes = store.writes;
    await fake.deliver(PATIENTS, 0, [event(2, 1), event(3, 2)]);
    await sleep(50);
    assert.equal(c.stats.skipped, 2);
    assert.equal(store.writes, writes, 'nothing new written');
  });
});

test('a transaction whose predecessor has not arrived waits for it, even when complete', async () => {
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    await fake.deliver(PATIENTS, 0, [event(1, 0), event(2, 1), event(3, 2)]);
    // T3's END overtook T2's (a retried request): T3 is complete, but T2 is not there yet.
    await fake.deliver(TX, 0, [txRecord('END', 1, 0), txRecord('END', 3, 1)]);
    await until('T1 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(1)));
    await sleep(60);
    assert.deepEqual(c.settledPosition, txPos(1), 'T3 does not settle before T2');
    assert.equal(fake.committed()['tx/0'], '1');
    await fake.deliver(TX, 0, [txRecord('END', 2, 2)]);
    await until('T3 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(3)));
  });
});

test('while the store refuses writes nothing is committed and no checkpoint is written', async () => {
  const store = new MemoryObjectStore();
  store.failNext(1_000_000);
  await withCompactor(store, async ({ fake, c }) => {
    await fake.deliver(PATIENTS, 0, [event(1, 0)]);
    await fake.deliver(TX, 0, [txRecord('BEGIN', 1, 0), txRecord('END', 1, 1)]);
    await sleep(400);
    assert.deepEqual(fake.commits, []);
    assert.equal(c.settledPosition, null);
    assert.equal(store.objects.size, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Transactions too large for one batch (ChangeBatch.partial), split as the PostgreSQL connector
// splits them past its threshold: every piece but the last has its last event's position, the
// last has the transaction's; each END counts only its piece's events, and names the piece
// before it as `previous`.

interface Piece {
  pos: Position;
  previous: Position | null;
  events: Position[];
}

/** Transaction n (1-based) has sizes[n-1] events; pieces of at most `threshold` events. */
function splitStream(sizes: number[], threshold: number): Piece[] {
  const pieces: Piece[] = [];
  let previous: Position | null = null;
  sizes.forEach((size, i) => {
    const commit = commitOf(i + 1);
    for (let first = 0; first < size; first += threshold) {
      const events = Array.from({ length: Math.min(threshold, size - first) }, (_, k) => Position.of(commit, first + k));
      const pos = first + threshold < size ? events.at(-1)! : Position.of(commit, COMMIT_SEQ);
      pieces.push({ pos, previous, events });
      previous = pos;
    }
  });
  return pieces;
}

function eventAt(position: Position, offset: number): KafkaMessage {
  const n = Number.parseInt(position.commit, 16);
  const ts = T0 + BigInt(n);
  const body = types['00000000000000a1']!.toBuffer({ pos: Position.format(position), ts: Number(ts), v: `row ${Position.format(position)}` });
  return {
    offset: String(offset),
    key: Buffer.from('k'),
    value: Buffer.concat([singleObjectHeader(0xa1n), body]),
    headers: encodeHeaders({ table: 'public.patients', fingerprint: '00000000000000a1', position, txId: String(n), commitTsUs: ts }),
    timestamp: '0',
    attributes: 0,
  } as unknown as KafkaMessage;
}

function pieceRecord(status: 'BEGIN' | 'END', p: Piece, offset: number): KafkaMessage {
  const n = Number.parseInt(p.pos.commit, 16);
  const record = { pos: Position.format(p.pos), previous: p.previous && Position.format(p.previous), txId: String(n), commitTsUs: Number(T0 + BigInt(n)), tables: { 'public.patients': p.events.length } };
  return { offset: String(offset), key: null, value: encodeTransactionMessage(status, record), headers: {}, timestamp: '0', attributes: 0 } as unknown as KafkaMessage;
}

/** What the producer writes for `pieces`: events over two partitions (by seq), BEGIN/END in order. */
function topicsFor(pieces: Piece[]): { patients: KafkaMessage[][]; tx: KafkaMessage[] } {
  const patients: KafkaMessage[][] = [[], []];
  const tx: KafkaMessage[] = [];
  for (const p of pieces) {
    tx.push(pieceRecord('BEGIN', p, tx.length));
    for (const e of p.events) {
      const part = patients[e.seq % 2]!;
      part.push(eventAt(e, part.length));
    }
    tx.push(pieceRecord('END', p, tx.length));
  }
  return { patients, tx };
}

const ENDS = (tx: KafkaMessage[]) => tx.filter((_, i) => i % 2 === 1);

/** Positions of the records in the closed hours' segments, per table, in stored order. */
function segmentPositions(store: MemoryObjectStore): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [key, o] of [...store.objects].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!key.startsWith('clinic/segments/')) continue;
    const table = key.includes(`/${TRANSACTIONS_TABLE}/`) ? TRANSACTIONS_TABLE : 'public.patients';
    out.set(table, [...(out.get(table) ?? []), ...decodeAll(o.body, key).map((r) => r.pos)]);
  }
  return out;
}

function assertStoredOnce(store: MemoryObjectStore, pieces: Piece[]): void {
  const stored = segmentPositions(store);
  assert.deepEqual(stored.get('public.patients'), pieces.flatMap((p) => p.events.map((e) => Position.format(e))), 'every event once, in order');
  assert.deepEqual(stored.get(TRANSACTIONS_TABLE), pieces.map((p) => Position.format(p.pos)), 'one transaction record per piece');
  assert.deepEqual([...store.objects.keys()].filter((k) => k.includes('/parts/')), [], 'closing removed every part');
}

test('pieceRange: a piece counts the events after its predecessor piece up to its own position', () => {
  const c = commitOf(9);
  assert.deepEqual(pieceRange(Position.of(c, 2), txPos(8)), { lo: 0, hi: 2 }, 'first piece: from seq 0');
  assert.deepEqual(pieceRange(Position.of(c, 5), Position.of(c, 2)), { lo: 3, hi: 5 });
  assert.deepEqual(pieceRange(Position.of(c, COMMIT_SEQ), Position.of(c, 5)), { lo: 6, hi: COMMIT_SEQ }, 'last piece: to the end');
  assert.deepEqual(pieceRange(txPos(9), txPos(8)), { lo: 0, hi: COMMIT_SEQ }, 'a whole transaction');
  assert.deepEqual(pieceRange(txPos(9), null), { lo: 0, hi: COMMIT_SEQ }, 'the first transaction ever');
});

test('transactions split into pieces settle piece by piece, interleaved with small ones, and are stored once', async () => {
  // T2 (7 events) and T4 (5 events) are split at 3 events; T1, T3, T5 are whole.
  const pieces = splitStream([1, 7, 1, 5, 1], 3);
  assert.deepEqual(pieces.map((p) => Position.format(p.pos)), [
    `${commitOf(1)}.ffffffff`, `${commitOf(2)}.00000002`, `${commitOf(2)}.00000005`, `${commitOf(2)}.ffffffff`,
    `${commitOf(3)}.ffffffff`, `${commitOf(4)}.00000002`, `${commitOf(4)}.ffffffff`, `${commitOf(5)}.ffffffff`,
  ]);
  const { patients, tx } = topicsFor(pieces);
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    // Every event, but the END records only up to T2's second piece.
    await fake.deliver(PATIENTS, 0, patients[0]!);
    await fake.deliver(PATIENTS, 1, patients[1]!);
    await fake.deliver(TX, 0, tx.slice(0, 6));
    const secondPiece = pieces[2]!.pos;
    await until('T2 settles up to its second piece', async () => Position.equals((await checkpointOf(store)) ?? txPos(0), secondPiece));
    await sleep(50);
    assert.deepEqual(c.settledPosition, secondPiece, 'not past the last END delivered');
    // The transactions partition is committed up to T2's last BEGIN; partition 0 up to T2's
    // seq 6 (offset 4: T1, then T2's seqs 0, 2, 4), partition 1 up to T4's seq 1 (offset 3,
    // after T2's seqs 1, 3, 5).
    await until('the piece commits', () => fake.committed()['tx/0'] === '6');
    assert.deepEqual(fake.committed(), { 'patients/0': '4', 'patients/1': '3', 'tx/0': '6' });

    await fake.deliver(TX, 0, tx.slice(6));
    await until('the whole stream settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(5)));
    await until('everything committed', () => fake.committed()['tx/0'] === String(tx.length));
    assert.deepEqual(fake.committed(), { 'patients/0': String(patients[0]!.length), 'patients/1': String(patients[1]!.length), 'tx/0': String(tx.length) });
    await c.closeFinishedHours(true);
    assertStoredOnce(store, pieces);
  });
});

test('a piece whose events are not all durable does not settle, nor anything after it', async () => {
  const pieces = splitStream([1, 7, 1], 3);
  const { patients, tx } = topicsFor(pieces);
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    // Partition 1 (odd seqs) holds back its last message: T2's seq 5, in its second piece.
    await fake.deliver(PATIENTS, 0, patients[0]!);
    await fake.deliver(PATIENTS, 1, patients[1]!.slice(0, -2));
    await fake.deliver(TX, 0, tx);
    await until('T2 settles up to its first piece', () => c.settledPosition !== null && Position.equals(c.settledPosition, pieces[1]!.pos));
    await sleep(80);
    assert.deepEqual(c.settledPosition, pieces[1]!.pos, 'the second piece misses seq 5; the third piece and T3 wait behind it');
    await fake.deliver(PATIENTS, 1, patients[1]!.slice(-2));
    await until('the whole stream settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(3)));
  });
});

test('a compactor killed between two pieces: the next one resumes from the piece it settled, and every event is stored once', async () => {
  // T2 (10 events) comes in four pieces: seqs 0–2, 3–5, 6–8 and 9.
  const pieces = splitStream([2, 10, 1, 4, 1], 3);
  const { patients, tx } = topicsFor(pieces);
  const store = new MemoryObjectStore();
  const firstFake = new FakeGroupKafka();
  const a = await startedWith(store, firstFake);
  let committed: Record<string, string>;
  try {
    // T1 and T2's first three pieces whole; T2's last piece (seq 9, partition 1) and the END
    // records after the third piece not yet; T3–T5's events on partition 0 already.
    await firstFake.deliver(PATIENTS, 0, patients[0]!);
    await firstFake.deliver(PATIENTS, 1, patients[1]!.slice(0, 5));
    await firstFake.deliver(TX, 0, tx.slice(0, 8));
    const thirdPiece = pieces[3]!.pos;
    await until('T2 settles up to its third piece', async () => Position.equals((await checkpointOf(store)) ?? txPos(0), thirdPiece));
    await until('the piece commits', () => firstFake.committed()['tx/0'] === '8');
    committed = firstFake.committed();
  } finally {
    await a.c.abandon(); // killed: no flush, no commit
    a.stop.abort();
    await a.running.catch(() => undefined);
  }

  // The group gives the next member every message from the committed offsets on.
  const secondFake = new FakeGroupKafka();
  await withCompactorOn(store, secondFake, async ({ c }) => {
    assert.deepEqual(c.settledPosition, pieces[3]!.pos, 'it starts from the piece in the checkpoint');
    const from = (key: string) => Number(committed[key] ?? 0);
    await secondFake.deliver(PATIENTS, 0, patients[0]!.slice(from('patients/0')));
    await secondFake.deliver(PATIENTS, 1, patients[1]!.slice(from('patients/1')));
    await secondFake.deliver(TX, 0, tx.slice(from('tx/0')));
    await until('the whole stream settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(5)));
    await c.closeFinishedHours(true);
    assertStoredOnce(store, pieces);
  });
  assert.ok(ENDS(tx).length === pieces.length);
});

test('the compactor joins the source\'s own consumer group, and stops with a fatal error when generations leave it without the transactions partition past 3 session timeouts', async () => {
  const store = new MemoryObjectStore();
  const fake = new FakeGroupKafka();
  const s = await startedWith(store, fake, 200);
  try {
    assert.deepEqual(fake.groupIds, ['g.clinic'], '<groupId>.<source>');
    // Its own generation: every partition of its topics. It goes on.
    fake.onJoin!({ payload: { memberAssignment: { [PATIENTS]: [0, 1, 2, 3], [TX]: [0] } } });
    await fake.deliver(PATIENTS, 0, [event(1, 0)]);
    await fake.deliver(TX, 0, [txRecord('BEGIN', 1, 0), txRecord('END', 1, 1)]);
    await until('T1 settles', () => s.c.settledPosition !== null && Position.equals(s.c.settledPosition, txPos(1)));
    assert.equal(await Promise.race([s.running.then(() => 'ended', () => 'failed'), sleep(100).then(() => 'running')]), 'running', 'negative control: a whole assignment does not stop it');
    // A killed previous run still in the group (until its session expires) is given the
    // partition for a generation: tolerated, and the next generation brings it back.
    fake.onJoin!({ payload: { memberAssignment: { [PATIENTS]: [0, 1] } } });
    await sleep(300);
    fake.onJoin!({ payload: { memberAssignment: { [PATIENTS]: [0, 1, 2, 3], [TX]: [0] } } });
    await sleep(500);
    assert.equal(await Promise.race([s.running.then(() => 'ended', () => 'failed'), sleep(10).then(() => 'running')]), 'running', 'a generation without the partition, then one with it, does not stop it');
    // Another member keeps the transactions partition: nothing taken from now on could settle.
    const lost = Date.now();
    fake.onJoin!({ payload: { memberAssignment: { [PATIENTS]: [0, 1] } } });
    await assert.rejects(s.running, (err: ChartlogError) => {
      assert.equal(err.code, 'lease');
      assert.equal(err.retriable, false);
      assert.match(err.message, /source clinic was not given the transactions partition cl\.clinic\.__transactions\/0 for 1 s: another member of consumer group "g\.clinic" holds it/);
      assert.match(err.hint ?? '', /run one compactor per source/);
      return true;
    });
    assert.ok(Date.now() - lost >= 550, 'it waited for 3 session timeouts');
    assert.deepEqual(s.c.settledPosition, txPos(1));
  } finally {
    await s.c.abandon();
    s.stop.abort();
    await s.running.catch(() => undefined);
  }
});

/** A store whose writes wait while `gate` is set: a slow flush. */
class SlowStore extends MemoryObjectStore {
  gate: Promise<void> | null = null;
  override async put(...args: Parameters<MemoryObjectStore['put']>): Promise<void> {
    if (this.gate) await this.gate;
    return super.put(...args);
  }
  override async putIfAbsent(...args: Parameters<MemoryObjectStore['putIfAbsent']>): Promise<boolean> {
    if (this.gate) await this.gate;
    return super.putIfAbsent(...args);
  }
}

test('a batch waiting for a long flush keeps heartbeating, so the group does not drop the member mid-flush', async () => {
  const store = new SlowStore();
  const fake = new FakeGroupKafka();
  const s = await startedWith(store, fake, 1500);
  let release = () => {};
  try {
    store.gate = new Promise<void>((resolve) => (release = resolve));
    await fake.deliver(PATIENTS, 0, [event(1, 0)]);
    await sleep(100); // the timer's flush now holds the lock, its write waiting at the gate
    let beats = 0;
    const waiting = s.fake.eachBatch!({
      batch: { topic: TX, partition: 0, messages: [txRecord('BEGIN', 1, 0), txRecord('END', 1, 1)] },
      isRunning: () => true,
      isStale: () => false,
      heartbeat: async () => void beats++,
    } as unknown as EachBatchPayload);
    await sleep(1600); // past the session timeout
    assert.ok(beats >= 2, `heartbeats while waiting: ${beats}`);
    store.gate = null;
    release();
    await waiting;
    const seen = beats;
    await sleep(1100);
    assert.equal(beats, seen, 'no heartbeat once the batch returned');
    await until('T1 settles', async () => Position.equals((await checkpointOf(store)) ?? txPos(0), txPos(1)));
  } finally {
    store.gate = null;
    release();
    await s.c.abandon();
    s.stop.abort();
    await s.running.catch(() => undefined);
  }
});

/** A table record of format 2 holding the events at `positions` (of one transaction), as the producer writes it. */
function recordOf(positions: Position[], offset: number): KafkaMessage {
  const n = Number.parseInt(positions[0]!.commit, 16);
  const ts = T0 + BigInt(n);
  const messages = positions.map((position) => ({
    table: 'public.patients',
    fingerprint: '00000000000000a1',
    key: Buffer.from('k'),
    value: Buffer.concat([singleObjectHeader(0xa1n), types['00000000000000a1']!.toBuffer({ pos: Position.format(position), ts: Number(ts), v: `row ${Position.format(position)}` })]),
    position,
  }));
  const { headers, value } = encodeTableRecord(messages, String(n), ts);
  return { offset: String(offset), key: null, value, headers, timestamp: '0', attributes: 0 } as unknown as KafkaMessage;
}

test('records of several events (format 2) beside records of one (format 1): every event stored once, a record committed once its newest event settled', async () => {
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    // T1 (3 events) and T2 (2) in one record each; T3 (1) of format 1.
    const [t1, t2, t3] = splitStream([3, 2, 1], 10);
    await fake.deliver(PATIENTS, 0, [recordOf(t1!.events, 0), recordOf(t2!.events, 1), eventAt(t3!.events[0]!, 2)]);
    await fake.deliver(TX, 0, [pieceRecord('BEGIN', t1!, 0), pieceRecord('END', t1!, 1), pieceRecord('BEGIN', t2!, 2), pieceRecord('END', t2!, 3), pieceRecord('BEGIN', t3!, 4)]);
    await until('T2 settles', async () => Position.equals((await checkpointOf(store)) ?? txPos(0), txPos(2)));
    await until('a commit', () => fake.committed()['tx/0'] === '4');
    assert.deepEqual(fake.committed(), { 'patients/0': '2', 'tx/0': '4' }, "T3's record stays uncommitted");
    const stored = () => storedSections(store).filter((p) => p.table === 'public.patients').reduce((n, p) => n + p.records, 0);
    assert.equal(stored(), 6, 'every event of both records, and T3 (buffered, stored at the flush)');
    await fake.deliver(TX, 0, [pieceRecord('END', t3!, 5)]);
    await until('T3 settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(3)));
    await until('everything committed', () => fake.committed()['patients/0'] === '3');
    // Redelivered: settled, skipped whole, nothing stored again.
    const writes = store.writes;
    await fake.deliver(PATIENTS, 0, [recordOf(t2!.events, 1)]);
    await sleep(50);
    assert.equal(store.writes, writes, 'nothing new written');
    assert.equal(stored(), 6);
  });
});

test('a record whose events span two pieces of a large transaction is committed only when the later piece settles', async () => {
  const store = new MemoryObjectStore();
  await withCompactor(store, async ({ fake, c }) => {
    const [p1, p2] = splitStream([4], 2);
    await fake.deliver(PATIENTS, 0, [recordOf([...p1!.events, ...p2!.events], 0)]);
    await fake.deliver(TX, 0, [pieceRecord('BEGIN', p1!, 0), pieceRecord('END', p1!, 1)]);
    await until('the first piece settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, p1!.pos));
    await sleep(60);
    assert.equal(fake.committed()['patients/0'], undefined, 'the record holds events of the unsettled piece: not committed');
    await fake.deliver(TX, 0, [pieceRecord('BEGIN', p2!, 2), pieceRecord('END', p2!, 3)]);
    await until('the transaction settles', () => c.settledPosition !== null && Position.equals(c.settledPosition, txPos(1)));
    await until('the record committed', () => fake.committed()['patients/0'] === '1');
    assert.equal(storedSections(store).filter((p) => p.table === 'public.patients').reduce((n, p) => n + p.records, 0), 4);
  });
});
