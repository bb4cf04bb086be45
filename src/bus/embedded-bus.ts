import { ChartlogError } from '../core/errors.js';
import type { BusBatch } from './bus-batch.js';

/**
 * The one-machine bus: a bounded in-process queue between a source's publisher and the
 * compactor. `publish` waits while the queue is full, which pauses the connector's loop —
 * backpressure instead of unbounded memory. Nothing is durable here: the connector's position
 * is acknowledged only when the compactor reports the part holding it durable.
 */
/** What one `take` returns: the batches, and when the oldest of them was published. */
export interface Taken {
  readonly batches: BusBatch[];
  /** Clock time (ms) the first of `batches` was published; null when none were taken. */
  readonly oldestPublishedAtMs: number | null;
}

export class EmbeddedBus {
  private readonly queue: BusBatch[] = [];
  /** When each queued batch was published, in step with `queue`: the compactor's flush deadline counts from it. */
  private readonly publishedAt: number[] = [];
  private readonly waitingPublishers: (() => void)[] = [];
  private waitingConsumer: (() => void) | null = null;
  private closed = false;

  constructor(
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new ChartlogError('internal', `bus capacity must be ≥ 1, got ${capacity}`);
  }

  /** Queues a batch, waiting while the queue is full. */
  async publish(batch: BusBatch): Promise<void> {
    while (this.queue.length >= this.capacity && !this.closed) {
      await new Promise<void>((resolve) => this.waitingPublishers.push(resolve));
    }
    if (this.closed) throw new ChartlogError('internal', 'publish on a closed bus');
    this.queue.push(batch);
    this.publishedAt.push(this.now());
    this.wakeConsumer();
  }

  /**
   * Takes every queued batch (up to `max`), waiting up to `waitMs` for the first one.
   * Returns [] on timeout or once closed and drained.
   */
  async take(max: number, waitMs: number): Promise<Taken> {
    if (this.queue.length === 0 && !this.closed && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.waitingConsumer = null;
          resolve();
        }, waitMs);
        this.waitingConsumer = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const out = this.queue.splice(0, max);
    const times = this.publishedAt.splice(0, out.length);
    // Room was made: let waiting publishers continue, in order.
    for (let i = 0; i < out.length && this.waitingPublishers.length > 0; i++) this.waitingPublishers.shift()!();
    return { batches: out, oldestPublishedAtMs: times[0] ?? null };
  }

  get size(): number {
    return this.queue.length;
  }

  /** True once closed and every queued batch was taken. */
  get drained(): boolean {
    return this.closed && this.queue.length === 0;
  }

  /** No more publishes; queued batches can still be taken. Wakes every waiter. */
  close(): void {
    this.closed = true;
    this.wakeConsumer();
    for (const w of this.waitingPublishers.splice(0)) w();
  }

  private wakeConsumer(): void {
    const w = this.waitingConsumer;
    this.waitingConsumer = null;
    w?.();
  }
}
