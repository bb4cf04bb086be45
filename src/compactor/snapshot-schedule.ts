import type { SourceConfig } from '../config/schema.js';
import { toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { WriterFence } from '../archive/lease.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import { listSnapshots } from '../archive/snapshot-manifest.js';
import { synthesiseSnapshot, type SynthesiseOptions, type SynthesisResult } from './snapshot-synthesiser.js';

export interface SnapshotScheduleOptions {
  store: ObjectStore;
  source: Readonly<SourceConfig>;
  /** A new snapshot once the newest is this old (`sources[].snapshot.everyHours`). */
  everyHours: number;
  /** How often to look whether one is due (default 10 minutes). */
  tickMs?: number;
  /** Milliseconds since the epoch; tests move time by hand. */
  now?: () => number;
  /** The writer lease `chartlog run` holds (lets synthesis remove interrupted attempts). */
  fence?: WriterFence;
  /** Archive MACs: the synthesis authenticates what it reads and signs its manifest. */
  signer?: ArchiveSigner;
  /** Memory budget and spill directory of each synthesis (`restore.memoryBudgetMiB`, `restore.spillDir`). */
  memory?: Pick<SynthesiseOptions, 'memoryBudgetBytes' | 'spillDir'>;
  /** The synthesis to run (tests replace it). */
  synthesise?: (o: SynthesiseOptions) => Promise<SynthesisResult>;
}

/**
 * `sources[].snapshot.everyHours` inside `chartlog run`: once the newest base snapshot is that
 * old, a new one is synthesised from closed hours only (snapshot-synthesiser.ts) — beside the
 * stream and the compactor, never in their path: it reads the object store alone, yields to
 * the event loop as it goes, and a failure is logged and tried again at the next tick, never
 * stopping the stream.
 */
export class SnapshotSchedule {
  private readonly tickMs: number;
  private readonly now: () => number;
  private readonly synthesise: (o: SynthesiseOptions) => Promise<SynthesisResult>;
  private readonly log;

  constructor(private readonly o: SnapshotScheduleOptions) {
    this.tickMs = o.tickMs ?? 10 * 60_000;
    this.now = o.now ?? Date.now;
    this.synthesise = o.synthesise ?? synthesiseSnapshot;
    this.log = logger().child({ source: o.source.name, component: 'snapshot-schedule' });
  }

  /** One look: synthesises when the newest snapshot is old enough; null when none is due. */
  async tick(signal?: AbortSignal): Promise<SynthesisResult | null> {
    const newest = (await listSnapshots(this.o.store, this.o.source.name)).at(-1);
    if (!newest) return null; // the first comes from the source (prepareSource)
    if (this.now() - Date.parse(newest.takenAt) < this.o.everyHours * 3_600_000) return null;
    const result = await this.synthesise({
      store: this.o.store,
      source: this.o.source.name,
      connector: this.o.source.type,
      db: databaseOfUrl(this.o.source.url),
      upTo: 'closed',
      ...(signal ? { signal } : {}),
      ...(this.o.fence ? { fence: this.o.fence } : {}),
      ...(this.o.signer ? { signer: this.o.signer } : {}),
      ...this.o.memory,
    });
    if (result.status !== 'written') this.log.debug({ status: result.status }, 'scheduled snapshot: nothing new closed since the newest one');
    return result;
  }

  /** Looks every tickMs until the signal aborts. Never throws. */
  async run(signal: AbortSignal): Promise<void> {
    this.log.info({ everyHours: this.o.everyHours }, 'snapshots will be synthesised from closed hours on schedule');
    while (!signal.aborted) {
      await sleep(this.tickMs, signal);
      if (signal.aborted) break;
      try {
        await this.tick(signal);
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn({ err: toChartlogError(err) }, 'scheduled snapshot synthesis failed; trying again at the next tick');
      }
    }
  }
}

/** The database a source URL names ('' when none): the envelope's source.db. */
export function databaseOfUrl(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  } catch {
    return '';
  }
}
