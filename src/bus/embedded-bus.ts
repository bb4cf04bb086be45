import { ChartlogError } from '../core/errors.js';
import type { BusBatch } from '../codec/bus-message.js';

/**
 * The one-machine bus: a bounded in-process queue between a source's publisher and the
 * compactor. `publish` waits while the queue is full — by batches or by bytes — which pauses
 * the connector's loop: backpressure instead of unbounded memory. Bytes matter as much as
 * batches: the pieces of one large transaction are 10k-event batches of megabytes each, and
 * 1024 of them once held 1.5 GB of a 1M-row transaction in this queue. Nothing is durable here: the connector's position
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
  private readonly sizes: number[] = [];
  private queuedBytes = 0;
  private readonly waitingPublishers: (() => void)[] = [];
  private waitingConsumer: (() => void) | null = null;
  private closed = false;

  /**
   * `capacity`: batches queued at most; `maxBytes`: message bytes queued at most — a single
   * batch larger than that is still taken when the queue is empty, or it could never pass.
   */
  constructor(
    private readonly capacity: number,
    private readonly maxBytes: number = Number.POSITIVE_INFINITY,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new ChartlogError('internal', `bus capacity must be ≥ 1, got ${capacity}`);
    if (!(maxBytes >= 1)) throw new ChartlogError('internal', `bus byte limit must be ≥ 1, got ${maxBytes}`);
  }

  /** Queues a batch, waiting while the queue is full. */
  async publish(batch: BusBatch): Promise<void> {
    let size = 0;
    for (const m of batch.messages) size += m.value.byteLength;
    while (!this.closed && (this.queue.length >= this.capacity || (this.queue.length > 0 && this.queuedBytes + size > this.maxBytes))) {
      await new Promise<void>((resolve) => this.waitingPublishers.push(resolve));
    }
    if (this.closed) throw new ChartlogError('internal', 'publish on a closed bus');
    this.queue.push(batch);
    this.publishedAt.push(this.now());
    this.sizes.push(size);
    this.queuedBytes += size;
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
    for (const size of this.sizes.splice(0, out.length)) this.queuedBytes -= size;
    // Room was made: wake every waiting publisher; each checks again whether its batch fits.
    for (const w of this.waitingPublishers.splice(0)) w();
    return { batches: out, oldestPublishedAtMs: times[0] ?? null };
  }

  get size(): number {
    return this.queue.length;
  }

  /** Message bytes queued now. */
  get bytes(): number {
    return this.queuedBytes;
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
