import { createHash } from 'node:crypto';
import { Position } from '../core/position.js';
import { logger } from '../core/logger.js';
import { withRetry } from '../core/retry.js';
import { NO_FENCE, type WriterFence } from '../archive/lease.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { SchemaSource } from '../archive/envelope-reader.js';
import type { BusBatch, BusMessage } from '../codec/bus-message.js';
import { recordBody } from '../codec/single-object.js';
import { AvroContainerWriter, BLOCK_RECORDS } from '../archive/avro-container.js';
import { FLUSH_PARTS, hourOf, partKey, TRANSACTIONS_TABLE, type HourKey } from '../archive/layout.js';
import { encodeFlushPart, type SectionBody } from '../archive/flush-part.js';
import { sha256HexOffThread } from '../archive/manifest.js';
import { encodeTransaction, transactionRecordOf, transactionSchemaJson, type TransactionRecord } from '../archive/transaction-log.js';

/** A run of consecutive records of one table, one schema version, in one hour. */
interface Run {
  readonly hour: HourKey;
  readonly table: string;
  readonly fingerprint: string;
  readonly bodies: Uint8Array[];
  /** Lowest and highest position (the Kafka compactor adds records out of position order). */
  min: Position;
  max: Position;
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
 * Buffers a source's batches and writes them as parts of the open hour: one flush part per flush
 * and hour (src/archive/flush-part.ts), holding a section — an Avro container — per table and
 * schema version and the transaction log, named by its lowest and highest position and its
 * sha256, created only if absent: a repeated flush after a crash writes the same names and
 * changes nothing. One object per flush keeps the store's write requests at one per flush,
 * whatever the number of tables that changed, and makes the transaction log durable in the same
 * write as the table records it vouches for.
 */
export class PartWriter {
  private runs = new Map<string, Run>();
  private order: Run[] = [];
  private bytes = 0;
  private batches = 0;
  private events = 0;
  private lastBatch: BusBatch | null = null;
  /** The run the last record went to: the next one of a batch almost always goes there too. */
  private lastRun: Run | null = null;

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
    let run = this.lastRun;
    if (run && run.hour === hour && run.table === table && run.fingerprint === fingerprint) {
      // Without the map's key string and lookup per record (most of a record's cost here).
      run.bodies.push(body);
      if (Position.compare(position, run.max) > 0) run.max = position;
      else if (Position.compare(position, run.min) < 0) run.min = position;
      this.bytes += body.byteLength;
      return;
    }
    const id = `${hour}\u0000${table}`;
    run = this.runs.get(id) ?? null;
    if (run && run.fingerprint !== fingerprint) {
      // A new schema version starts a new container: one writer schema per file.
      this.runs.delete(id);
      run = null;
    }
    if (!run) {
      run = { hour, table, fingerprint, bodies: [], min: position, max: position };
      this.runs.set(id, run);
      this.order.push(run);
    }
    run.bodies.push(body);
    if (Position.compare(position, run.min) < 0) run.min = position;
    if (Position.compare(position, run.max) > 0) run.max = position;
    this.bytes += body.byteLength;
    this.lastRun = run;
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
    this.lastRun = null;

    // One object per hour touched (a flush that spans an hour's end writes two): each holds its
    // table records and their transaction-log records together, so a stored log record always has
    // its events stored beside it — no order of writes to get right, no kill -9 window between.
    const hours = new Map<HourKey, Run[]>();
    for (const run of runs) hours.set(run.hour, [...(hours.get(run.hour) ?? []), run]);
    const objects = await Promise.all([...hours].map(([hour, hourRuns]) => this.writeFlushPart(hour, hourRuns)));
    return { ...result, objects: objects.sort() };
  }

  private async writeFlushPart(hour: HourKey, runs: Run[]): Promise<string> {
    let min = runs[0]!.min;
    let max = runs[0]!.max;
    for (const r of runs) {
      if (Position.compare(r.min, min) < 0) min = r.min;
      if (Position.compare(r.max, max) > 0) max = r.max;
    }
    const stem = partKey(this.source, hour, FLUSH_PARTS, min, max);
    const sections: SectionBody[] = [];
    for (const [i, run] of runs.entries()) {
      const schema = run.table === TRANSACTIONS_TABLE ? transactionSchemaJson : await this.schemas.schemaJson(this.source, run.fingerprint);
      const w = new AvroContainerWriter(schema, {
        // Same records, same bytes, same name: sync markers come from the name, not randomness.
        sync: syncOf(`${stem}\u0000${i}`),
        // Parts live until their hour is closed into a segment (at the default level): the
        // fastest level keeps compression off the critical path of freshness and throughput.
        level: 1,
        metadata: { 'chartlog.table': run.table, 'chartlog.fingerprint': run.fingerprint },
      });
      // Blocks of a bounded record count: a large transaction's section stays far below the readers' inflation bound.
      for (let b = 0; b < run.bodies.length; b += BLOCK_RECORDS) await w.addBlock(run.bodies.slice(b, b + BLOCK_RECORDS));
      const container = w.toChunks();
      sections.push({ table: run.table, fingerprint: run.fingerprint, records: run.bodies.length, bytes: container.length, first: run.min, last: run.max, container: container.chunks });
    }
    const body = await encodeFlushPart(sections, syncOf(stem));
    const key = partKey(this.source, hour, FLUSH_PARTS, min, max, await sha256HexOffThread(body));
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

function syncOf(name: string): Buffer {
  return createHash('sha256').update(name).digest().subarray(0, 16);
}
