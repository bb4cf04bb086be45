import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ArchiveMac } from '../phi/archive-mac.js';
import { authenticateArchive, refuseUnauthentic } from '../archive/archive-auth.js';
import type { ArchiveCodec } from '../archive/archive-codec.js';
import { ArchiveIndexCache, readArchiveIndex, tablesOf, type ArchiveIndex } from '../archive/archive-index.js';
import { ArchiveReader, type StoredRecord } from '../archive/archive-reader.js';
import type { TransactionRecord } from '../archive/transaction-log.js';
import { checkpointKey } from '../archive/layout.js';
import { sha256Hex } from '../archive/manifest.js';
import { sleep } from '../core/retry.js';
import { settledTransactions, type SettledPlan } from './settled-transactions.js';

/** A stored change record of a table in scope. */
export type FollowedRecord = StoredRecord & { table: string };

/**
 * Follows a live archive for a replica, reading only what is new since the last read.
 *
 * Each `read` reads the archive's index as a reader that starts from nothing would (checkpoint
 * first, then parts, then manifests: readArchiveIndex), authenticates it as at start, and then
 * reads only the objects (open-hour parts, closed-hour segments) it has not read before: their
 * transaction-log records and the records of the tables in scope after the replica's position
 * join what earlier reads kept. Objects are immutable, so what was read of one stays true; a
 * segment that an hour closing wrote from parts already read brings the same records again,
 * dropped by position. So after a read, the records kept are exactly those a reader starting from
 * nothing would find after the replica's position: every one up to the checkpoint that read saw,
 * since everything the checkpoint covers was stored before it.
 *
 * A read that fails changes nothing kept (the next read tries its new objects again); an object
 * listed but gone (a part merged by an hour closing) is found next time in its segment.
 */
export class ArchiveFollower {
  private readonly cache = new ArchiveIndexCache();
  /** Keys of objects read (or passed over as wholly at or before the position). */
  private readonly consumed = new Set<string>();
  /** Transaction-log records after the position, in position order, each once (ids: `logIds`). */
  private log: TransactionRecord[] = [];
  private readonly logIds = new Set<string>();
  /** Change records of the tables in scope after the position, in position order, each once. */
  private records: FollowedRecord[] = [];
  private readonly recordIds = new Set<string>();
  private durable: Position | null = null;
  private index: ArchiveIndex | null = null;

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    private readonly archive: ArchiveCodec,
    private readonly mac: ArchiveMac | null,
    private readonly inScope: (table: string) => boolean,
  ) {}

  /** What the last successful read found: the index and how many objects it read anew. */
  lastRead: { objects: number; index: ArchiveIndex; indexMs: number; objectsMs: number } | null = null;

  /** Reads what is new in the archive; records at or before `after` are not kept. */
  async read(after: Position): Promise<void> {
    const started = performance.now();
    const index = await readArchiveIndex(this.store, this.source, this.cache);
    const indexMs = Math.round(performance.now() - started);
    // Each read's checkpoint and manifests are authenticated as at start: a planted checkpoint
    // would otherwise make the replica apply what is not durable (or not the source's).
    refuseUnauthentic(this.source, authenticateArchive(index, this.mac), 'replicate');
    const present = new Set<string>();
    const fresh: ArchiveIndex = {
      ...index,
      hours: index.hours.map((h) => ({
        ...h,
        manifest: {
          ...h.manifest,
          objects: h.manifest.objects.filter((o) => {
            present.add(o.key);
            return !this.consumed.has(o.key);
          }),
        },
      })),
      openParts: index.openParts.filter((p) => {
        present.add(p.key);
        return !this.consumed.has(p.key);
      }),
    };
    const reader = new ArchiveReader(this.store, fresh, this.archive.envelopes, new Map());
    const log = await reader.transactions(after);
    const records: FollowedRecord[] = [];
    for (const table of tablesOf(fresh).filter(this.inScope)) for (const r of await reader.tableRecords(table, after)) records.push({ ...r, table });

    // Everything read: kept at once, so a failed read leaves nothing half-kept.
    let objects = 0;
    for (const h of fresh.hours) for (const o of h.manifest.objects) objects += this.consume(o.key);
    for (const p of fresh.openParts) objects += this.consume(p.key);
    for (const k of this.consumed) if (!present.has(k)) this.consumed.delete(k); // deleted parts are never listed again
    const newLog = log.filter((t) => !this.logIds.has(t.pos) && this.logIds.add(t.pos));
    if (newLog.length > 0) this.log = [...this.log, ...newLog].sort((a, b) => Position.compare(Position.parse(a.pos), Position.parse(b.pos)));
    const newRecords = records.filter((r) => {
      const id = Position.format(r.position);
      return !this.recordIds.has(id) && this.recordIds.add(id);
    });
    if (newRecords.length > 0) this.records = [...this.records, ...newRecords].sort((a, b) => Position.compare(a.position, b.position));
    this.prune(after);
    this.durable = index.checkpoint?.position ?? null;
    this.index = index;
    this.lastRead = { objects, index, indexMs, objectsMs: Math.round(performance.now() - started) - indexMs };
  }

  /** Which kept transactions after `after` are settled (settled-transactions.ts), at most `limit`. */
  plan(after: Position, limit: number): SettledPlan<FollowedRecord> {
    this.prune(after);
    if (this.log.length === 0) return { transactions: [], inFlight: 0, oldestInFlightUs: null };
    return settledTransactions({ after, durable: this.durable, log: this.log, records: this.records, inScope: this.inScope, limit });
  }

  /**
   * Waits until the archive's checkpoint differs from the one the last read saw, looking every
   * `everyMs` (one small GET), or `ms` at most, or until `signal`. A replica applies nothing past
   * the checkpoint, so nothing new can be applied before it moves: this only shortens the wait
   * between reads (a full read lists the store), and a failed look ends it (the read that follows
   * meets the failure and retries). Table bases, which can come without the checkpoint moving,
   * are still seen at the latest after `ms`, as before.
   */
  async waitForCheckpoint(ms: number, everyMs: number, signal: AbortSignal): Promise<void> {
    const seen = this.index?.checkpoint?.stored?.sha256 ?? null;
    const until = performance.now() + ms;
    for (let left = ms; left > 0 && !signal.aborted; left = until - performance.now()) {
      await sleep(Math.min(everyMs, left), signal);
      if (signal.aborted || performance.now() >= until) return;
      try {
        if (sha256Hex(await this.store.get(checkpointKey(this.source))) !== seen) return;
      } catch (err) {
        if (!(seen === null && err instanceof ChartlogError && err.code === 'not_found')) return;
      }
    }
  }

  /** The index of the last read (null before the first). */
  get lastIndex(): ArchiveIndex | null {
    return this.index;
  }

  private consume(key: string): number {
    if (this.consumed.has(key)) return 0;
    this.consumed.add(key);
    return 1;
  }

  /** Drops what is at or before `after` (applied): a prefix of each list. */
  private prune(after: Position): void {
    let n = 0;
    while (n < this.log.length && Position.compare(Position.parse(this.log[n]!.pos), after) <= 0) this.logIds.delete(this.log[n++]!.pos);
    if (n > 0) this.log = this.log.slice(n);
    n = 0;
    while (n < this.records.length && Position.compare(this.records[n]!.position, after) <= 0) this.recordIds.delete(Position.format(this.records[n++]!.position));
    if (n > 0) this.records = this.records.slice(n);
  }
}
