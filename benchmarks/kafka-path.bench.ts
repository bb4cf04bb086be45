/**
 * The Kafka bus's own cost, without PostgreSQL: the same sealed patient rows (benchmarks/lib/
 * patient-codec.ts, 12 columns, 4 PHI) encoded once, then made durable in a file:// store
 *
 *   embedded  EmbeddedBus → Compactor (what `chartlog run` does with bus.type embedded)
 *   kafka     KafkaBus (acks = all) → the 3-node cluster of scripts/services.sh → KafkaCompactor
 *
 * in the same process, one after the other, per repetition; each timed from the first publish
 * until the checkpoint covers the last transaction. Prints CPU µs per row (user + system of the
 * whole process: main thread, crypto thread, libuv's pool) and rows/s; the difference of the two
 * CPU figures is what the Kafka path adds per row. Rows are encoded before the clock starts, so
 * neither figure holds the encoding (the cdc-postgres benchmark has the whole pipeline).
 *
 *   eval "$(bash scripts/services.sh env)"
 *   CHARTLOG_LOG_LEVEL=error node --import tsx benchmarks/kafka-path.bench.ts [--rows 200000]
 *        [--tx-rows 10000] [--reps 3] [--compression gzip|none] [--only kafka|embedded] [--split]
 *
 * --split: the Kafka phase produces everything first (timed alone: the producer's CPU), then
 * starts the compactor on the full topics (timed alone: the consumer's CPU, its group join
 * included), instead of both at once.
 * Not in `npm run bench`, writes no report: an A/B tool for the Kafka path (use `node --cpu-prof`
 * on it for where the time goes). Topics stay in the cluster until `scripts/services.sh down`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CodecEnvelopeReader } from '../src/archive/codec-envelope-reader.js';
import { EmbeddedBus } from '../src/bus/embedded-bus.js';
import { KafkaBus } from '../src/bus/kafka-bus.js';
import type { KafkaSettings } from '../src/bus/kafka-topics.js';
import type { BusBatch } from '../src/codec/bus-message.js';
import { SchemaStore } from '../src/codec/schema-store.js';
import { Compactor } from '../src/compactor/compactor.js';
import { KafkaCompactor } from '../src/compactor/kafka-compactor.js';
import type { ChangeBatch } from '../src/core/change-event.js';
import { createLogger } from '../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../src/core/position.js';
import { KeyManager } from '../src/phi/key-manager.js';
import { FsObjectStore } from '../src/storage/fs-object-store.js';
import { benchKeyring, patientBatches, patientCodec, PATIENTS } from './lib/patient-codec.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    'tx-rows': { type: 'string', default: '10000' },
    reps: { type: 'string', default: '3' },
    compression: { type: 'string', default: 'gzip' },
    only: { type: 'string' },
    split: { type: 'boolean', default: false },
  },
});
const ROWS = Number(args.rows);
const TX_ROWS = Number(args['tx-rows']);
const REPS = Number(args.reps);
const compression = args.compression as 'gzip' | 'none';
const brokers = process.env.CHARTLOG_TEST_KAFKA_BROKERS?.split(',');
if (!brokers) throw new Error('CHARTLOG_TEST_KAFKA_BROKERS is not set: eval "$(bash scripts/services.sh env)" first');
const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });

/** The rows as transactions of TX_ROWS events, encoded (sealed) once into the store's schemas and keys. */
async function encodedBatches(dir: string): Promise<BusBatch[]> {
  const store = new FsObjectStore(dir);
  const keys = new KeyManager({ source: 'clinic', store, keyring: benchKeyring(), log });
  const codec = patientCodec({ store, log, sealing: true, keys });
  await codec.fingerprintOf(PATIENTS);
  const events = patientBatches(ROWS).flatMap((b) => b.events);
  const out: BusBatch[] = [];
  let previous: Position | null = null;
  // Commit times of now: an hour of the past would be closed (segments merged) inside the timed run.
  const nowUs = BigInt(Date.now()) * 1000n;
  for (let t = 0; t * TX_ROWS < events.length; t++) {
    const commit = (0x200000 + t).toString(16).padStart(16, '0');
    const slice = events.slice(t * TX_ROWS, (t + 1) * TX_ROWS).map((e, seq) => ({ ...e, position: Position.of(commit, seq) }));
    const position = Position.of(commit, COMMIT_SEQ);
    const change: ChangeBatch = { source: 'clinic', txId: String(t), position, commitTsUs: nowUs + BigInt(t), snapshot: false, events: slice };
    out.push({ source: 'clinic', position, previous, txId: change.txId, commitTsUs: change.commitTsUs, messages: await codec.encodeBatch(change) });
    previous = position;
  }
  return out;
}

function kafkaSettings(): KafkaSettings {
  const unique = `kpath-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  return {
    brokers: brokers!,
    topicPrefix: unique,
    clientId: 'chartlog-bench',
    groupId: unique,
    sessionTimeoutMs: 10_000,
    scaleOut: false,
    maxInFlightRequests: 3,
    compression,
    tls: { mode: 'disable' },
    topics: { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false },
  } as KafkaSettings;
}

interface Timing {
  cpuUs: number;
  ms: number;
}

async function timed(run: () => Promise<void>): Promise<Timing> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  // For a CPU profile of this process: its samples from here on (cpu-profile-summary --from-ms).
  if (process.execArgv.includes('--cpu-prof')) console.log(`  (timed from ${Math.round(t0)} ms)`);
  await run();
  const c = process.cpuUsage(c0);
  return { cpuUs: c.user + c.system, ms: performance.now() - t0 };
}

/** Copies the store's schemas and keys into a fresh store folder for one phase. */
async function phaseStore(seed: string): Promise<{ dir: string; store: FsObjectStore; envelopes: CodecEnvelopeReader }> {
  const dir = await mkdtemp(join(tmpdir(), 'chartlog-kpath-'));
  const { cp } = await import('node:fs/promises');
  await cp(seed, dir, { recursive: true });
  const store = new FsObjectStore(dir);
  return { dir, store, envelopes: new CodecEnvelopeReader(new SchemaStore({ source: 'clinic', store, log })) };
}

async function embeddedPhase(seed: string, batches: BusBatch[]): Promise<Timing> {
  const { dir, store, envelopes } = await phaseStore(seed);
  const bus = new EmbeddedBus(4096, 256 * 1024 * 1024);
  const last = batches.at(-1)!.position;
  let durable: Position | null = null;
  const compactor = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 1000, maxPartBytes: 64 << 20, closeGraceMs: 120_000, snapshotId: null }, async (r) => {
    durable = r.upTo;
  });
  await compactor.start();
  const t = await timed(async () => {
    const running = compactor.run(bus);
    for (const b of batches) await bus.publish(b);
    while (!durable || Position.compare(durable, last) < 0) await sleep(5);
    bus.close();
    await running;
  });
  await rm(dir, { recursive: true, force: true });
  return t;
}

async function kafkaPhase(seed: string, batches: BusBatch[]): Promise<Timing & { requests: number; records: number; produce?: Timing; consume?: Timing }> {
  const { dir, store, envelopes } = await phaseStore(seed);
  const settings = kafkaSettings();
  const bus = new KafkaBus({ settings, source: 'clinic', schemas: envelopes, maxQueuedBytes: 256 * 1024 * 1024 });
  await bus.connect();
  const compactor = new KafkaCompactor(store, 'clinic', envelopes, { settings, flushIntervalMs: 1000, maxPartBytes: 64 << 20, closeGraceMs: 120_000, snapshotId: null });
  await compactor.start();
  // Warm-up, not timed: topic creation, the group join. A transaction before the first one.
  const commit = (0x1fffff).toString(16).padStart(16, '0');
  const warm = { ...batches[0]!, position: Position.of(commit, COMMIT_SEQ), previous: null, txId: 'warm', messages: batches[0]!.messages.slice(0, 10).map((m, seq) => ({ ...m, position: Position.of(commit, seq) })) };
  const first = { ...batches[0]!, previous: warm.position };
  const stop = new AbortController();
  const last = batches.at(-1)!.position;
  const stored = async () => {
    while (!compactor.checkpointedPosition || Position.compare(compactor.checkpointedPosition, last) < 0) await sleep(5);
  };
  const produce = async () => {
    for (const b of [first, ...batches.slice(1)]) await bus.publish(b);
    await bus.flush();
  };
  let running: Promise<void>;
  let t: Timing;
  let split: { produce?: Timing; consume?: Timing } = {};
  if (args.split) {
    await bus.publish(warm);
    const p = await timed(produce);
    running = compactor.run(stop.signal);
    const c = await timed(stored);
    split = { produce: p, consume: c };
    t = { cpuUs: p.cpuUs + c.cpuUs, ms: p.ms + c.ms };
  } else {
    running = compactor.run(stop.signal);
    await bus.publish(warm);
    await bus.flush();
    while (!compactor.settledPosition || Position.compare(compactor.settledPosition, warm.position) < 0) await sleep(20);
    t = await timed(async () => {
      await produce();
      await stored();
    });
  }
  stop.abort();
  await running;
  await bus.close();
  await rm(dir, { recursive: true, force: true });
  return { ...t, ...split, requests: bus.stats.requests, records: bus.stats.records };
}

const seed = await mkdtemp(join(tmpdir(), 'chartlog-kpath-seed-'));
const batches = await encodedBatches(seed);
const bytes = batches.reduce((n, b) => n + b.messages.reduce((k, m) => k + m.value.byteLength + (m.key?.byteLength ?? 0), 0), 0);
console.log(`${ROWS} rows in ${batches.length} transactions, ${(bytes / ROWS).toFixed(0)} B a row (key + value); compression ${compression}; load ${loadavg()[0]!.toFixed(1)}`);
const fmt = (name: string, t: Timing, extra = '') => `  ${name.padEnd(8)} ${((t.cpuUs / ROWS)).toFixed(2).padStart(6)} µs CPU/row  ${Math.round(ROWS / (t.ms / 1000)).toLocaleString('en-US').padStart(8)} rows/s${extra}`;
for (let r = 1; r <= REPS; r++) {
  console.log(`rep ${r} (load ${loadavg()[0]!.toFixed(1)})`);
  let e: Timing | null = null;
  let k: Timing | null = null;
  if (args.only !== 'kafka') console.log(fmt('embedded', (e = await embeddedPhase(seed, batches))));
  if (args.only !== 'embedded') {
    const kt = await kafkaPhase(seed, batches);
    k = kt;
    console.log(fmt('kafka', kt, `  (${kt.requests} requests, ${kt.records} records)`));
    if (kt.produce && kt.consume) console.log(`${fmt('produce', kt.produce)}\n${fmt('consume', kt.consume)}`);
  }
  if (e && k) console.log(`  kafka adds ${((k.cpuUs - e.cpuUs) / ROWS).toFixed(2)} µs CPU/row`);
}
await rm(seed, { recursive: true, force: true });
process.exit(0);
