import { deserialize, serialize } from 'node:v8';
import type { ChangeEvent, Op } from '../../src/core/change-event.js';
import { Position } from '../../src/core/position.js';
import type { Row, TableSchema } from '../../src/core/table-schema.js';
import { TransactionBuffer, type TransactionBufferOptions } from '../../src/core/transaction-buffer.js';

/** One event as stored: op, index of its table version, seq, before, after. */
type StoredEvent = [Op, number, number, Row | null, Row | null];

/**
 * The decoded events of one large binlog transaction (or XA prepare group), held in the shared
 * TransactionBuffer until the transaction ends: in memory up to its threshold, past it in a file
 * encrypted with a key only this process holds (src/core/transaction-buffer.ts).
 *
 * Events are stored in groups (one buffer message per `add`), serialised with V8's structured
 * serialisation, which keeps every value of the value model exactly (bigint, -0, NaN, bytes,
 * SET arrays); MySQL never produces UNCHANGED, the one value it cannot carry. Table versions
 * stay in memory, referenced by index.
 */
export class EventSpill {
  private readonly buffer: TransactionBuffer;
  private readonly schemas: TableSchema[] = [];
  private readonly schemaIndex = new Map<TableSchema, number>();
  private count = 0;

  constructor(options: TransactionBufferOptions) {
    this.buffer = new TransactionBuffer(options);
  }

  /** Events held so far. */
  get size(): number {
    return this.count;
  }

  get spilled(): boolean {
    return this.buffer.spilled;
  }

  async add(events: readonly ChangeEvent[]): Promise<void> {
    if (events.length === 0) return;
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
    await this.buffer.add(serialize(stored));
    this.count += events.length;
  }

  /**
   * The events in the order added, a group at a time, with the commit part `commit`; `renumber`
   * gives them seq 0, 1, … (XA rows taking their XA COMMIT's position) instead of their own.
   * The spill is empty afterwards.
   */
  async *drain(commit: string, renumber: boolean): AsyncGenerator<ChangeEvent[]> {
    let next = 0;
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
  }

  async discard(): Promise<void> {
    this.count = 0;
    await this.buffer.discard();
  }
}
