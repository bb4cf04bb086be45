/**
 * The PartWriter of chartlog before flush parts (main at 7acf0e8), kept verbatim so tests prove
 * that archives written by it (one part per table, hour and schema version) stay readable.
 * Do not change it: it stands for archives already in stores.
 */
import { createHash } from 'node:crypto';
import { Position } from '../../src/core/position.js';
import { logger } from '../../src/core/logger.js';
import { withRetry } from '../../src/core/retry.js';
import { NO_FENCE, type WriterFence } from '../../src/archive/lease.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import type { SchemaSource } from '../../src/archive/envelope-reader.js';
import type { BusBatch, BusMessage } from '../../src/codec/bus-message.js';
import { recordBody } from '../../src/codec/single-object.js';
import { AvroContainerWriter, BLOCK_RECORDS } from '../../src/archive/avro-container.js';
import { hourOf, partKey, TRANSACTIONS_TABLE, type HourKey } from '../../src/archive/layout.js';
import { sha256Hex } from '../../src/archive/manifest.js';
import { encodeTransaction, transactionRecordOf, transactionSchemaJson, type TransactionRecord } from '../../src/archive/transaction-log.js';

/** A run of consecutive records of one table, one schema version, in one hour. */
interface Run {
  readonly hour: HourKey;
  readonly table: string;
  readonly fingerprint: string;
  readonly bodies: Uint8Array[];
  first: Position;
  last: Position;
}

export interface FlushResult {
  /** Every whole batch added with `add` up to and including this position is durable. */
  readonly upTo: Position;
  readonly commitTsUs: bigint;
  readonly objects: readonly string[];
  readonly batches: number;
  readonly events: number;
}

/**
 * Buffers a source's batches and writes them as parts of the open hour: one Avro container per
 * table and schema version, named by its first and last position, created only if absent —
 * a repeated flush after a crash writes the same names and changes nothing.
 */
export class LegacyPartWriter {
  private runs = new Map<string, Run>();
  private order: Run[] = [];
  private bytes = 0;
  private batches = 0;
  private events = 0;
  private lastBatch: BusBatch | null = null;

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    private readonly schemas: SchemaSource,
    private readonly signal?: AbortSignal,
    /** The writer lease, asserted (by this process's clock) before every part write. */
    private readonly fence: WriterFence = NO_FENCE,
  ) {}

  get pendingBytes(): number {
    return this.bytes;
  }

  get pendingBatches(): number {
    return this.batches;
  }

  /**
   * Buffers a whole transaction in `hour` (its commit hour, or a later one when that hour is
   * already closed — readers go by each record's own commit time, never by the folder).
   */
  add(batch: BusBatch, hour: HourKey = hourOf(batch.commitTsUs)): void {
    for (const m of batch.messages) this.addMessage(hour, m);
    this.addTransaction(hour, transactionRecordOf(batch));
    this.lastBatch = batch;
  }

  /** Buffers one table record (the Kafka compactor receives them per table topic). */
  addMessage(hour: HourKey, m: BusMessage): void {
    this.append(hour, m.table, m.fingerprint, recordBody(m.value), m.position);
    this.events++;
  }

  /**
   * Buffers one transaction-log record at the batch's own position: the transaction's (after
   * its events), or for one part of a large transaction delivered in pieces (`partial`), its
   * last event's — so each piece keeps its own record and verify sums their counts.
   */
  addTransaction(hour: HourKey, record: TransactionRecord): void {
    this.append(hour, TRANSACTIONS_TABLE, TRANSACTIONS_TABLE, encodeTransaction(record), Position.parse(record.pos));
    this.batches++;
  }

  private append(hour: HourKey, table: string, fingerprint: string, body: Uint8Array, position: Position): void {
    const id = `${hour}\u0000${table}`;
    let run = this.runs.get(id);
    if (run && run.fingerprint !== fingerprint) {
      // A new schema version starts a new container: one writer schema per file.
      this.runs.delete(id);
      run = undefined;
    }
    if (!run) {
      run = { hour, table, fingerprint, bodies: [], first: position, last: position };
      this.runs.set(id, run);
      this.order.push(run);
    }
    run.bodies.push(body);
    run.last = position;
    this.bytes += body.byteLength;
  }

  /** Writes every buffered run; returns what became durable, or null when nothing was pending. */
  async flush(): Promise<FlushResult | null> {
    const last = this.lastBatch;
    if (!last) return null;
    const result = await this.flushRuns();
    return { ...result, upTo: last.position, commitTsUs: last.commitTsUs };
  }

  /** Writes every buffered run, whatever added it; returns the objects written. */
  async flushRuns(): Promise<{ objects: string[]; batches: number; events: number }> {
    const runs = this.order;
    const result = { batches: this.batches, events: this.events };
    this.runs = new Map();
    this.order = [];
    this.bytes = 0;
    this.batches = 0;
    this.events = 0;
    this.lastBatch = null;

    const objects: string[] = [];
    // Table parts first, the transaction log after them: a transaction-log record that is stored
    // always has its events stored (a kill -9 between the two leaves events with no log record,
    // which every reader ignores, never a log record that vouches for events that are missing).
    await this.writeConcurrently(runs.filter((r) => r.table !== TRANSACTIONS_TABLE), objects);
    await this.writeConcurrently(runs.filter((r) => r.table === TRANSACTIONS_TABLE), objects);
    return { ...result, objects: objects.sort() };
  }

  /** Parts are independent objects: written concurrently, a few at a time. */
  private async writeConcurrently(runs: Run[], objects: string[]): Promise<void> {
    const queue = [...runs];
    const workers = Array.from({ length: Math.min(8, queue.length) }, async () => {
      for (let run = queue.shift(); run; run = queue.shift()) objects.push(await this.writeRun(run));
    });
    await Promise.all(workers);
  }

  private async writeRun(run: Run): Promise<string> {
    const stem = partKey(this.source, run.hour, run.table, run.first, run.last);
    const schema = run.table === TRANSACTIONS_TABLE ? transactionSchemaJson : await this.schemas.schemaJson(this.source, run.fingerprint);
    const w = new AvroContainerWriter(schema, {
      // Same records, same bytes, same name: the sync marker comes from the name, not randomness.
      sync: createHash('sha256').update(stem).digest().subarray(0, 16),
      // Parts live until their hour is closed into a segment (at the default level): the
      // fastest level keeps compression off the critical path of freshness and throughput.
      level: 1,
      metadata: { 'chartlog.table': run.table, 'chartlog.fingerprint': run.fingerprint },
    });
    // Blocks of a bounded record count: a large transaction's part stays far below the readers' inflation bound.
    for (let i = 0; i < run.bodies.length; i += BLOCK_RECORDS) await w.addBlock(run.bodies.slice(i, i + BLOCK_RECORDS));
    const body = w.toBuffer();
    const key = partKey(this.source, run.hour, run.table, run.first, run.last, sha256Hex(body));
    await withRetry(async () => {
      this.fence.assertHeld();
      return this.store.putIfAbsent(key, body);
    }, {
      signal: this.signal,
      onRetry: (err, attempt, delayMs) =>
        logger().warn({ err, object: key, attempt, delayMs }, 'object store write failed; retrying, nothing is acknowledged meanwhile'),
    });
    return key;
  }
}
