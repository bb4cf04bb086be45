import type { BusBatch, BusMessage } from '../codec/bus-message.js';
import type { ChangeBatch } from '../core/change-event.js';
import type { Position } from '../core/position.js';

/**
 * Publishes a source's batches in order while the next one is encoded: a large batch seals
 * its PHI on a worker thread (phi/crypto-pool.ts), and the pipeline reads and writes the
 * following transaction meanwhile. At most one batch is encoded ahead of the one publishing,
 * so the bus's bound still bounds memory.
 *
 * A failed encode or publish surfaces at the next `push` or at `drain`. After a failure,
 * `recover()` forgets what was not published and says where the stream must start again.
 */
export class PublishAhead {
  private tail: Promise<void> = Promise.resolve();
  private lastPublished: Position | null;

  constructor(
    from: Position | null,
    private readonly source: string,
    private readonly encode: (batch: ChangeBatch) => Promise<BusMessage[]>,
    private readonly publish: (batch: BusBatch) => Promise<void>,
  ) {
    this.lastPublished = from;
  }

  /** The newest batch published (or the position it started from). */
  get published(): Position | null {
    return this.lastPublished;
  }

  /**
   * Starts encoding `batch` (published after `previous`), and returns once the batch pushed
   * before it is published; throws what failed for an earlier batch.
   */
  async push(batch: ChangeBatch, previous: Position | null): Promise<void> {
    const encoding = this.encode(batch);
    // Awaited below, possibly only after the previous batch: not an unhandled rejection meanwhile.
    encoding.catch(() => undefined);
    const prior = this.tail;
    // The publishing step keeps these, not the batch: its events can be collected once encoded
    // instead of living on (and being promoted) until the batch is published.
    const { position, txId, commitTsUs } = batch;
    this.tail = (async () => {
      await prior;
      const messages = await encoding;
      await this.publish({ source: this.source, position, previous, txId, commitTsUs, messages });
      this.lastPublished = position;
    })();
    this.tail.catch(() => undefined);
    await prior;
  }

  /** Waits until everything pushed is published; throws the first failure. */
  async drain(): Promise<void> {
    await this.tail;
  }

  /** After a failure: waits for what is under way, drops the rest, and returns the newest published position. */
  async recover(): Promise<Position | null> {
    await this.tail.catch(() => undefined);
    this.tail = Promise.resolve();
    return this.lastPublished;
  }
}
