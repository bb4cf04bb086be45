import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { BusBatch } from '../codec/bus-message.js';
import type { EmbeddedBus } from '../bus/embedded-bus.js';
import { readCheckpoint, writeCheckpoint } from '../archive/checkpoint.js';
import { NO_FENCE, type WriterFence } from '../archive/lease.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import { HourCloser } from './hour-closer.js';
import { type EnvelopeReader } from '../archive/envelope-reader.js';
import { checkpointKey, hourOf, nextHour, type HourKey } from '../archive/layout.js';
import { PartWriter, type FlushResult } from './part-writer.js';
import { hoursToClose } from './close-decision.js';

export interface CompactorOptions {
  flushIntervalMs: number;
  maxPartBytes: number;
  /**
   * An hour is closed once the stream has moved past it, or once the clock is this far past
   * its end while the source is quiet. Late transactions after that go into the next open hour
   * (readers use each record's commit time, never the folder).
   */
  closeGraceMs: number;
  snapshotId: string | null;
  /** The archive's id (src/archive/archive-identity.ts), recorded in the checkpoint; absent in tests. */
  archiveId?: string;
  /**
   * The writer lease (`chartlog run` always passes it): parts, checkpoint and hour closing are
   * fenced by it (docs/architecture.md §1). Default: none, for tests of a single writer.
   */
  fence?: WriterFence;
  /**
   * Authenticates manifests and the checkpoint (archive MACs, docs/formats.md): `chartlog run`
   * always passes it; the checkpoint then anchors the newest closed hour.
   */
  signer?: ArchiveSigner;
  /** Milliseconds since the epoch; tests move time by hand. */
  now?: () => number;
}

/**
 * One source's compactor on the embedded bus: takes batches, flushes parts every
 * flushIntervalMs (or at maxPartBytes), then records the checkpoint and acknowledges the
 * durable position — in that order, so nothing is acknowledged before it is stored — and closes
 * hours as they close.
 */
export class Compactor {
  private readonly writer: PartWriter;
  private readonly closer: HourCloser;
  private readonly fence: WriterFence;
  private readonly now: () => number;
  private readonly openHours = new Set<HourKey>();
  private floor: HourKey | null = null;
  private maxDurableCommitUs = 0n;
  private lastBatchAt = 0;
  /** The last checkpoint written, rewritten when closing an hour moves the anchored head. */
  private lastCheckpoint: FlushResult | null = null;

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    envelopes: EnvelopeReader,
    private readonly options: CompactorOptions,
    private readonly onDurable: (result: FlushResult) => Promise<void>,
    private readonly signal?: AbortSignal,
  ) {
    this.fence = options.fence ?? NO_FENCE;
    this.writer = new PartWriter(store, source, envelopes, signal, this.fence);
    this.closer = new HourCloser(store, source, envelopes, signal, this.fence, options.signer);
    this.now = options.now ?? Date.now;
  }

  /** Finds hours a previous run left open and the first hour still open. */
  async start(): Promise<void> {
    const last = await this.closer.lastClosed();
    this.floor = last ? nextHour(last.hour) : null;
    for (const h of await this.closer.hoursWithParts()) this.openHours.add(h);
  }

  /** Runs until the bus is closed and drained; ends with a final flush. */
  async run(bus: EmbeddedBus): Promise<void> {
    const interval = this.options.flushIntervalMs;
    // The flush deadline counts from when the oldest pending batch was *published*, not from
    // the end of the previous flush: a batch published while a flush runs would otherwise wait
    // that flush, a whole interval and its own flush (freshness p99 ≈ interval + 2 × flush).
    let pendingSince: number | null = null;
    let nextHousekeeping = this.now() + interval;
    while (!bus.drained) {
      const deadline = pendingSince === null ? nextHousekeeping : pendingSince + interval;
      const taken = await bus.take(1024, Math.max(0, deadline - this.now()));
      for (const b of taken.batches) this.add(b);
      if (taken.oldestPublishedAtMs !== null && pendingSince === null) pendingSince = taken.oldestPublishedAtMs;
      const now = this.now();
      const due = pendingSince !== null && now >= pendingSince + interval;
      if (this.writer.pendingBytes >= this.options.maxPartBytes || due || bus.drained) {
        await this.flush();
        pendingSince = null;
      }
      // Finished hours are closed between flushes, also while the source is idle.
      if (pendingSince === null && (due || now >= nextHousekeeping || bus.drained)) {
        await this.closeFinishedHours();
        nextHousekeeping = this.now() + interval;
      }
    }
    await this.flush();
  }

  add(batch: BusBatch): void {
    let hour = hourOf(batch.commitTsUs);
    if (this.floor && hour < this.floor) hour = this.floor;
    this.openHours.add(hour);
    this.writer.add(batch, hour);
    this.lastBatchAt = this.now();
  }

  /** Writes pending parts, then the checkpoint, then acknowledges. */
  async flush(): Promise<FlushResult | null> {
    const result = await this.writer.flush();
    if (!result) return null;
    await this.writeCheckpoint(result);
    if (result.commitTsUs > this.maxDurableCommitUs) this.maxDurableCommitUs = result.commitTsUs;
    await this.onDurable(result);
    logger().debug({ source: this.source, upTo: Position.format(result.upTo), batches: result.batches, events: result.events, objects: result.objects.length }, 'parts durable');
    return result;
  }

  /** Closes, oldest first, every open hour the stream or the clock has left behind. */
  async closeFinishedHours(force = false): Promise<void> {
    if (this.writer.pendingBatches > 0) return; // only durable data is closed into segments
    const quiet = this.now() - this.lastBatchAt >= this.options.flushIntervalMs;
    const state = { durableCommitUs: this.maxDurableCommitUs, nowMs: this.now(), quiet, closeGraceMs: this.options.closeGraceMs, force };
    let closed = false;
    for (const hour of hoursToClose(this.openHours, state)) {
      await this.closer.close(hour);
      this.openHours.delete(hour);
      this.floor = nextHour(hour);
      closed = true;
    }
    // The checkpoint anchors the newest manifest: move the anchor now, not at the next flush
    // (an idle source may not flush for hours, leaving the newest hour unanchored).
    if (closed && this.options.signer) await this.moveAnchor();
  }

  /**
   * Rewrites the checkpoint with the newest closed hour: the last one this process wrote, or —
   * when it closed hours a previous run left open before flushing anything — the stored one,
   * re-signed only when its own MAC holds (a forged checkpoint is never laundered).
   */
  private async moveAnchor(): Promise<void> {
    if (this.lastCheckpoint) return this.writeCheckpoint(this.lastCheckpoint);
    const signer = this.options.signer!;
    const cp = await readCheckpoint(this.store, this.source);
    if (!cp?.stored) return;
    const check = (await signer.key()).check(checkpointKey(this.source), cp.stored.object, cp.stored.sha256);
    if (check !== 'valid' && check !== 'adopted') {
      logger().warn({ source: this.source, check }, 'the stored checkpoint fails its MAC: not re-signed (`chartlog verify` names it)');
      return;
    }
    await writeCheckpoint(this.store, cp, this.signal, this.fence, { signer, head: await this.closer.lastClosed() });
  }

  private async writeCheckpoint(result: FlushResult): Promise<void> {
    const signer = this.options.signer;
    const auth = signer ? { signer, head: await this.closer.lastClosed() } : undefined;
    await writeCheckpoint(this.store, { source: this.source, position: result.upTo, commitTsUs: result.commitTsUs, snapshotId: this.options.snapshotId, archiveId: this.options.archiveId }, this.signal, this.fence, auth);
    this.lastCheckpoint = result;
  }
}
