import { toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Backoff, sleep } from '../core/retry.js';
import type { RequestResync, ResyncRequest } from '../core/resync-request.js';
import type { SnapshotManifest } from '../archive/snapshot-manifest.js';
import { resyncTables, type ResyncOptions } from './resync-tables.js';

/**
 * The pipeline's answer to a connector's RequestResync (src/core/resync-request.ts): table
 * resyncs run one at a time in the background, beside the stream. Tables asked for while one
 * runs are gathered into the next. A retriable failure is tried again after the one backoff; a
 * fatal one is logged with its reason and hint and the tables are dropped (the operator can run
 * `chartlog resync` by hand).
 *
 *   const queue = new ResyncQueue({ run: (tables) => resyncTables({ deps, tables, rowsPerSecond, signal }) });
 *   connectorOptions.requestResync = queue.request;
 */
export class ResyncQueue {
  private readonly pending = new Map<string, string>();
  private running: Promise<void> | null = null;
  private readonly backoff: Backoff;

  constructor(
    private readonly o: {
      /** Runs one resync of these tables (resyncTables, or a fake in tests). */
      run: (tables: readonly string[]) => Promise<SnapshotManifest | unknown>;
      signal?: AbortSignal;
      retry?: ConstructorParameters<typeof Backoff>[0];
    },
  ) {
    this.backoff = new Backoff(o.retry ?? { initialDelayMs: 1000, maxDelayMs: 60_000, maxAttempts: 10 });
  }

  /** The function handed to a connector: queue, never block, never throw. */
  readonly request: RequestResync = (r: ResyncRequest): void => {
    for (const t of r.tables) if (!this.pending.has(t)) this.pending.set(t, r.reason);
    logger().warn({ tables: r.tables, reason: r.reason }, 'table resync requested');
    this.running ??= this.drain().finally(() => {
      this.running = null;
    });
  };

  /** Resolves once nothing is queued or running (tests, a clean stop). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0 && !this.o.signal?.aborted) {
      const tables = [...this.pending.keys()].sort();
      this.pending.clear();
      try {
        await this.o.run(tables);
        this.backoff.reset();
      } catch (err) {
        const e = toChartlogError(err);
        const delay = e.retriable ? this.backoff.next() : null;
        if (delay === null) {
          logger().error({ tables, err: e }, 'table resync failed; run `chartlog resync` for these tables by hand');
          continue;
        }
        logger().warn({ tables, err: e, delayMs: delay }, 'table resync failed; trying again');
        for (const t of tables) if (!this.pending.has(t)) this.pending.set(t, 'retry');
        await sleep(delay, this.o.signal).catch(() => undefined);
      }
    }
  }
}

/** A ResyncQueue that runs resyncTables with these options for each batch of tables. */
export function resyncQueueFor(o: Omit<ResyncOptions, 'tables'>): ResyncQueue {
  return new ResyncQueue({ run: (tables) => resyncTables({ ...o, tables }), ...(o.signal ? { signal: o.signal } : {}) });
}
