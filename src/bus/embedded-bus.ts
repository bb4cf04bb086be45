import { ChartlogError } from '../core/errors.js';
import type { BusBatch } from './bus-batch.js';

/**
 * The one-machine bus: a bounded in-process queue between a source's publisher and the
 * compactor. `publish` waits while the queue is full, which pauses the connector's loop —
 * backpressure instead of unbounded memory. Nothing is durable here: the connector's position
 * is acknowledged only when the compactor reports the part holding it durable.
 */
export class EmbeddedBus {
  private readonly queue: BusBatch[] = [];
  private readonly waitingPublishers: (() => void)[] = [];
  private waitingConsumer: (() => void) | null = null;
  private closed = false;

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new ChartlogError('internal', `bus capacity must be ≥ 1, got ${capacity}`);
  }

  /** Queues a batch, waiting while the queue is full. */
  async publish(batch: BusBatch): Promise<void> {
    while (this.queue.length >= this.capacity && !this.closed) {
      await new Promise<void>((resolve) => this.waitingPublishers.push(resolve));
    }
    if (this.closed) throw new ChartlogError('internal', 'publish on a closed bus');
    this.queue.push(batch);
    this.wakeConsumer();
  }

  /**
   * Takes every queued batch (up to `max`), waiting up to `waitMs` for the first one.
   * Returns [] on timeout or once closed and drained.
   */
  async take(max: number, waitMs: number): Promise<BusBatch[]> {
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
    // Room was made: let waiting publishers continue, in order.
    for (let i = 0; i < out.length && this.waitingPublishers.length > 0; i++) this.waitingPublishers.shift()!();
    return out;
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
