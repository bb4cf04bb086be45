import { deserialize, serialize } from 'node:v8';
import type { ChangeEvent, Op } from '../../src/core/change-event.js';
import { Position } from '../../src/core/position.js';
import type { CellValue, Row, TableSchema } from '../../src/core/table-schema.js';
import { TransactionBuffer, type TransactionBufferOptions } from '../../src/core/transaction-buffer.js';

/** One event as stored: op, index of its table version, seq, before, after. */
type StoredEvent = [Op, number, number, Row | null, Row | null];

/**
 * The decoded events of one large binlog transaction (or XA prepare group), held until the
 * transaction ends.
 *
 * While their estimated heap size (`heapBytes`) stays within the spill threshold, the groups
 * are kept as they are: a transaction of some thousands of rows (every transaction of the
 * cdc-mariadb benchmark's backlog) never pays for serialisation, which was 5 % of `chartlog
 * run`'s main thread there (V8 serialise + deserialise, and a second set of row objects for the
 * collector). The first group past the threshold, and every one after it, goes to the shared
 * TransactionBuffer: in memory up to its threshold as well, past it in a file encrypted with a
 * key only this process holds (src/core/transaction-buffer.ts). So memory holds at most about
 * two thresholds' worth (the held groups, one buffer chunk and the threshold the buffer keeps
 * before its file), for any transaction size; the held groups are drained first.
 *
 * Events go to the buffer in groups (one buffer message per `add`), serialised with V8's
 * structured serialisation, which keeps every value of the value model exactly (bigint, -0,
 * NaN, bytes, SET arrays); MySQL never produces UNCHANGED, the one value it cannot carry. Table
 * versions stay in memory, referenced by index.
 */
export class EventSpill {
  private readonly buffer: TransactionBuffer;
  private readonly thresholdBytes: number;
  private readonly schemas: TableSchema[] = [];
  private readonly schemaIndex = new Map<TableSchema, number>();
  /** Groups held as they are, the first ones of the transaction; in front of the buffer's. */
  private held: ChangeEvent[][] = [];
  private heldBytes = 0;
  /** Set once a group went past the threshold: from then on every group goes to the buffer. */
  private full = false;
  private count = 0;

  constructor(options: TransactionBufferOptions) {
    this.buffer = new TransactionBuffer(options);
    this.thresholdBytes = options.spillThresholdBytes;
  }

  /** Events held so far. */
  get size(): number {
    return this.count;
  }

  /** Whether the events went to the spill file (past the thresholds). */
  get spilled(): boolean {
    return this.buffer.spilled;
  }

  /** Whether events were serialised into the TransactionBuffer (past the threshold in memory). */
  get serialised(): boolean {
    return this.full;
  }

  /** Takes ownership of `events` (the caller must not change the array afterwards). */
  async add(events: ChangeEvent[]): Promise<void> {
    if (events.length === 0) return;
    this.count += events.length;
    if (!this.full) {
      const bytes = heapBytes(events);
      if (this.heldBytes + bytes <= this.thresholdBytes) {
        this.heldBytes += bytes;
        this.held.push(events);
        return;
      }
      this.full = true;
    }
    await this.buffer.add(this.serialise(events));
  }

  /**
   * The events in the order added, a group at a time, with the commit part `commit`; `renumber`
   * gives them seq 0, 1, … (XA rows taking their XA COMMIT's position) instead of their own.
   * The spill is empty afterwards.
   */
  async *drain(commit: string, renumber: boolean): AsyncGenerator<ChangeEvent[]> {
    let next = 0;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (let g = 0; g < held.length; g++) {
      const group = held[g]!;
      held[g] = []; // let each group go once delivered
      // Held events carry their own positions; only a renumbered (XA) transaction gets new ones.
      yield renumber ? group.map((e) => ({ ...e, position: Position.of(commit, next++) })) : group;
    }
    for await (const chunk of this.buffer.drainChunks()) {
      for (const message of chunk) {
        const stored = deserialize(message) as StoredEvent[];
        const out: ChangeEvent[] = new Array(stored.length);
        for (let i = 0; i < stored.length; i++) {
          const [op, s, seq, before, after] = stored[i]!;
          out[i] = { op, schema: this.schemas[s]!, before, after, position: Position.of(commit, renumber ? next++ : seq) };
        }
        yield out;
      }
    }
    this.count = 0;
    this.full = false;
  }

  async discard(): Promise<void> {
    this.count = 0;
    this.held = [];
    this.heldBytes = 0;
    this.full = false;
    await this.buffer.discard();
  }

  private serialise(events: readonly ChangeEvent[]): Buffer {
    const stored: StoredEvent[] = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      let s = this.schemaIndex.get(e.schema);
      if (s === undefined) {
        s = this.schemas.push(e.schema) - 1;
        this.schemaIndex.set(e.schema, s);
      }
      stored[i] = [e.op, s, e.position.seq, e.before, e.after];
    }
    return serialize(stored);
  }
}

/**
 * An estimate of the V8 heap the events hold: an event with its position 96 bytes, a row
 * object 32 plus 8 a property, a number 16, a string 24 plus its length, bytes 96 plus theirs.
 * Above what the heap shows for ASCII rows (benchmark rows of 12 columns: 650 estimated, 550
 * measured with `--expose-gc` and `heapUsed`); text outside Latin-1 (two bytes a character in
 * V8) is counted at up to half its size. Costs a pass over the values, far less than
 * serialising them.
 */
export function heapBytes(events: readonly ChangeEvent[]): number {
  let n = 0;
  for (const e of events) n += 96 + rowBytes(e.before) + rowBytes(e.after);
  return n;
}

function rowBytes(row: Row | null): number {
  if (row === null) return 0;
  let n = 32;
  for (const k in row) n += 8 + valueBytes(row[k]!);
  return n;
}

function valueBytes(v: CellValue): number {
  if (typeof v === 'string') return 24 + v.length; // one byte a character (V8's Latin-1 strings)
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return 16;
  if (typeof v === 'bigint') return 24;
  if (v instanceof Uint8Array) return 96 + v.byteLength;
  if (Array.isArray(v)) {
    let n = 32;
    for (const x of v as readonly CellValue[]) n += 8 + valueBytes(x);
    return n;
  }
  return 16;
}
