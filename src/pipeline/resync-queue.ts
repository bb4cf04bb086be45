import { ChartlogError, toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Backoff, sleep, withRetry } from '../core/retry.js';
import type { RequestResync, ResyncRequest } from '../core/resync-request.js';
import type { SnapshotManifest } from '../archive/snapshot-manifest.js';

/**
 * The pipeline's answer to a connector's RequestResync (src/core/resync-request.ts): table
 * resyncs run one at a time in the background, beside the stream. Tables asked for while one
 * runs are gathered into the next. A retriable failure is tried again after the one backoff; a
 * fatal one is logged with its reason and hint and the tables are dropped (the operator can run
 * `chartlog resync` by hand). `stop()` ends it with the run: a resync cut short writes no
 * manifest (nothing a restore uses), and the tables it leaves are logged with the command that
 * re-reads them.
 *
 * Durability (docs/operations.md, "Automatic table resyncs"): a request that carries its
 * window is recorded through `record` (an unproven-table record in the archive) at once, in the
 * background; `durable()` resolves once every request so far is recorded, and the stream loop
 * awaits it before publishing any later batch, so no position past the DDL is acknowledged or
 * checkpointed before its request is durable. At start the pipeline hands back the recorded
 * requests no base has closed yet (`resume`): a kill -9 mid-resync loses nothing.
 *
 *   const queue = new ResyncQueue({ run: (tables, signal) => resyncTables({ deps, tables, rowsPerSecond, signal }) });
 *   connectorOptions.requestResync = queue.request;
 */
export class ResyncQueue {
  private readonly pending = new Map<string, string>();
  private current: readonly string[] = [];
  private running: Promise<void> | null = null;
  private readonly backoff: Backoff;
  private readonly stopping = new AbortController();
  private readonly signal: AbortSignal;
  /** Requests not yet recorded (oldest first), and the write under way. */
  private readonly unrecorded: ResyncRequest[] = [];
  private recording: Promise<void> | null = null;

  constructor(
    private readonly o: {
      /** Runs one resync of these tables (resyncTables, or a fake in tests); stops when `signal` aborts. */
      run: (tables: readonly string[], signal: AbortSignal) => Promise<SnapshotManifest | unknown>;
      signal?: AbortSignal;
      retry?: ConstructorParameters<typeof Backoff>[0];
      /** Names the source in the log. */
      source?: string;
      /** Records a request's window durably (unproven-tables.ts); absent: nothing is recorded (tests). */
      record?: (r: ResyncRequest) => Promise<void>;
    },
  ) {
    this.backoff = new Backoff(o.retry ?? { initialDelayMs: 1000, maxDelayMs: 60_000, maxAttempts: 10 });
    this.signal = o.signal ? AbortSignal.any([o.signal, this.stopping.signal]) : this.stopping.signal;
  }

  /** The function handed to a connector: queue, never block, never throw. */
  readonly request: RequestResync = (r: ResyncRequest): void => {
    // Recorded even while stopping: the next start runs it.
    if (r.window && this.o.record) {
      this.unrecorded.push(r);
      this.startRecording();
    }
    if (this.signal.aborted) {
      this.log().error({ tables: r.tables, reason: r.reason }, `table resync requested while stopping; run it by hand: chartlog resync --tables ${r.tables.join(',')}`);
      return;
    }
    for (const t of r.tables) if (!this.pending.has(t)) this.pending.set(t, r.reason);
    this.log().warn({ tables: r.tables, reason: r.reason }, 'table resync requested');
    this.running ??= this.drain().finally(() => {
      this.running = null;
    });
  };

  /**
   * Resolves once every request made so far is recorded; throws a retriable error when one could
   * not be (the stream then restarts from what was published, and nothing later is published).
   */
  async durable(): Promise<void> {
    if (this.unrecorded.length === 0) return;
    await this.startRecording();
    if (this.unrecorded.length > 0) {
      const tables = [...new Set(this.unrecorded.flatMap((r) => r.tables))].sort();
      throw new ChartlogError('storage', `cannot record in the archive that ${tables.join(', ')} must be re-read (a DDL changed rows without row events)`, {
        retriable: true,
        hint: 'the object store refused the write; nothing past the DDL is published until it is recorded',
      });
    }
  }

  /** Requests recorded before a restart whose new base was never stored: run again, not recorded again. */
  resume(tables: readonly string[]): void {
    if (tables.length === 0) return;
    this.log().warn({ tables }, 'table resyncs recorded before this start and not finished: running them again');
    this.request({ tables, reason: 'recorded before a restart; its new base was not stored' });
  }

  private startRecording(): Promise<void> {
    this.recording ??= this.recordAll().finally(() => {
      this.recording = null;
    });
    return this.recording;
  }

  private async recordAll(): Promise<void> {
    while (this.unrecorded.length > 0) {
      const r = this.unrecorded[0]!;
      try {
        await withRetry(() => this.o.record!(r), { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 2000 });
      } catch (err) {
        this.log().error({ tables: r.tables, err: toChartlogError(err) }, 'cannot record a table resync request in the archive; the stream is held until it can');
        return;
      }
      this.unrecorded.shift();
    }
  }

  /** Tables queued or being read now (tests, status). */
  get tables(): readonly string[] {
    return [...new Set([...this.current, ...this.pending.keys()])].sort();
  }

  /** Resolves once nothing is queued or running (tests, a clean stop). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /**
   * Stops with the run: the resync being read is aborted (it leaves no manifest), nothing
   * queued starts, and what is left undone is logged with the command that does it.
   */
  async stop(): Promise<void> {
    const left = this.tables;
    this.stopping.abort();
    await this.idle();
    if (left.length > 0) {
      this.log().error({ tables: left }, `stopped before these tables were re-read; run: chartlog resync --tables ${left.join(',')}`);
    }
  }

  private log() {
    return this.o.source ? logger().child({ source: this.o.source, component: 'resync' }) : logger();
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0 && !this.signal.aborted) {
      const tables = [...this.pending.keys()].sort();
      const reasons = [...new Set(this.pending.values())];
      this.pending.clear();
      this.current = tables;
      const started = performance.now();
      try {
        this.log().info({ tables, reasons }, 'automatic table resync started');
        const result = await this.o.run(tables, this.signal);
        this.backoff.reset();
        const m = result as Partial<SnapshotManifest> | undefined;
        const rowCounts = m?.tables ? Object.fromEntries(Object.entries(m.tables).map(([k, t]) => [k, t.rows])) : undefined;
        this.log().info({ tables, rowCounts, snapshot: m?.id, position: m?.position, seconds: Math.round(performance.now() - started) / 1000 }, 'automatic table resync finished');
      } catch (err) {
        if (this.signal.aborted) {
          for (const t of tables) if (!this.pending.has(t)) this.pending.set(t, 'stopped');
          break;
        }
        const e = toChartlogError(err);
        const delay = e.retriable ? this.backoff.next() : null;
        if (delay === null) {
          this.log().error({ tables, err: e }, `table resync failed; run it by hand: chartlog resync --tables ${tables.join(',')}`);
          continue;
        }
        this.log().warn({ tables, err: e, delayMs: delay }, 'table resync failed; trying again');
        for (const t of tables) if (!this.pending.has(t)) this.pending.set(t, 'retry');
        await sleep(delay, this.signal).catch(() => undefined);
      } finally {
        this.current = [];
      }
    }
  }
}
