import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ArchiveMac } from '../phi/archive-mac.js';
import { authenticateArchive, refuseUnauthentic } from '../archive/archive-auth.js';
import type { ArchiveCodec } from '../archive/archive-codec.js';
import { ArchiveIndexCache, readArchiveIndex, tablesOf, type ArchiveIndex } from '../archive/archive-index.js';
import { ArchiveReader, type StoredRecord } from '../archive/archive-reader.js';
import type { TransactionRecord } from '../archive/transaction-log.js';
import { FLUSH_PARTS, TRANSACTIONS_TABLE, checkpointKey } from '../archive/layout.js';
import { sha256Hex } from '../archive/manifest.js';
import { sleep } from '../core/retry.js';
import { settledTransactions, type SettledPlan } from './settled-transactions.js';
import { RecordsOutOfOrder } from '../archive/position-merge.js';

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
  private durable: Position | null = null;
  private index: ArchiveIndex | null = null;
  /**
   * A read takes the listed objects a prefix at a time (readPrefix). When the last successful read
   * left some: the position below which every record listed is read (only transactions before it
   * are planned), and the index they were listed in (the next read goes on with them without
   * listing again; dropped when a read fails, so a part merged away meanwhile is listed anew).
   */
  private bound: Position | null = null;
  private unreadIndex: ArchiveIndex | null = null;

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    private readonly archive: ArchiveCodec,
    private readonly mac: ArchiveMac | null,
    private readonly inScope: (table: string) => boolean,
  ) {}

  /**
   * Makes the next read take its objects from `index` (listed and authenticated by the caller,
   * e.g. at the replica's start) instead of listing the archive again: a resumed replica read the
   * whole index twice before its first transaction. A part merged away since is met by that read
   * as a vanished object, which the replicator retries with a fresh listing.
   */
  seed(index: ArchiveIndex): void {
    this.unreadIndex = index;
  }

  /** What the last successful read found: the index and how many objects it read anew. */
  lastRead: { objects: number; index: ArchiveIndex; indexMs: number; objectsMs: number } | null = null;

  /**
   * Reads what is new in the archive; records at or before `after` are not kept. A backlog is read
   * a prefix of objects at a time (about `budgetBytes` stored, in position order: readPrefix), so
   * a replica starts applying after its first objects rather than after all of them; the next
   * read takes the next prefix of the same listing (`behind` says whether some are left).
   */
  async read(after: Position, budgetBytes = READ_BUDGET_BYTES): Promise<void> {
    const started = performance.now();
    const listedBefore = this.unreadIndex;
    this.unreadIndex = null;
    const index = listedBefore ?? (await readArchiveIndex(this.store, this.source, this.cache));
    const indexMs = Math.round(performance.now() - started);
    // Each listing's checkpoint and manifests are authenticated as at start: a planted checkpoint
    // would otherwise make the replica apply what is not durable (or not the source's).
    if (!listedBefore) refuseUnauthentic(this.source, authenticateArchive(index, this.mac), 'replicate');
    const listed: PrefixObject[] = [];
    for (const h of index.hours) for (const o of h.manifest.objects) if (!this.consumed.has(o.key)) listed.push({ key: o.key, first: Position.parse(o.firstPos), last: Position.parse(o.lastPos), bytes: o.bytes, needed: this.needed(o.table) });
    for (const p of index.openParts) if (!this.consumed.has(p.key)) listed.push({ key: p.key, first: p.first, last: p.last, bytes: p.bytes ?? 0, needed: this.needed(p.table) });
    const { take, bound } = readPrefix(listed, after, budgetBytes);
    const present = new Set<string>();
    const fresh: ArchiveIndex = {
      ...index,
      hours: index.hours.map((h) => ({
        ...h,
        manifest: {
          ...h.manifest,
          objects: h.manifest.objects.filter((o) => {
            present.add(o.key);
            return take.has(o.key);
          }),
        },
      })),
      openParts: index.openParts.filter((p) => {
        present.add(p.key);
        return take.has(p.key);
      }),
    };
    const reader = new ArchiveReader(this.store, fresh, this.archive.envelopes, new Map());
    const log = await reader.transactions(after);
    const records: FollowedRecord[] = [];
    // Each record is the reader's own fresh object: its table is set on it rather than copied per record.
    for (const table of tablesOf(fresh).filter(this.inScope)) for (const r of await recordsOf(reader, table, after)) records.push(Object.assign(r, { table }));

    // Everything read: kept at once, so a failed read leaves nothing half-kept.
    let objects = 0;
    for (const h of fresh.hours) for (const o of h.manifest.objects) objects += this.consume(o.key);
    for (const p of fresh.openParts) objects += this.consume(p.key);
    for (const k of this.consumed) if (!present.has(k)) this.consumed.delete(k); // deleted parts are never listed again
    const newLog = log.filter((t) => !this.logIds.has(t.pos) && this.logIds.add(t.pos));
    if (newLog.length > 0) this.log = inOrder([...this.log, ...newLog], (t) => Position.parse(t.pos));
    if (records.length > 0) this.records = mergeNew(this.records, inOrder(records, (r) => r.position));
    this.prune(after);
    this.durable = index.checkpoint?.position ?? null;
    this.index = index;
    this.bound = bound;
    this.unreadIndex = bound ? index : null;
    this.lastRead = { objects, index, indexMs, objectsMs: Math.round(performance.now() - started) - indexMs };
  }

  /** Which kept transactions after `after` are settled (settled-transactions.ts), at most `limit`. */
  plan(after: Position, limit: number): SettledPlan<FollowedRecord> {
    this.prune(after);
    if (this.log.length === 0) return { transactions: [], inFlight: 0, oldestInFlightUs: null };
    // Objects left unread (a prefix read) may hold records and log entries from the bound on:
    // only the log before it is planned (every record of those transactions is read), so no
    // count or chain check meets a transaction read in part. What lies past it is in flight.
    const bound = this.bound;
    const cut = bound ? this.log.findIndex((t) => Position.compare(Position.parse(t.pos), bound) >= 0) : -1;
    if (cut < 0) return settledTransactions({ after, durable: this.durable, log: this.log, records: this.records, inScope: this.inScope, limit });
    const plan = settledTransactions({ after, durable: this.durable, log: this.log.slice(0, cut), records: this.records, inScope: this.inScope, limit });
    return { ...plan, inFlight: plan.inFlight + this.log.length - cut, oldestInFlightUs: plan.oldestInFlightUs ?? BigInt(this.log[cut]!.commitTsUs) };
  }

  /** Whether the last read left listed objects unread: the next read goes on at once with them. */
  get behind(): boolean {
    return this.bound !== null;
  }

  /** Whether an object can hold what the replica reads: the transaction log, a flush part, or a table in scope. */
  private needed(table: string): boolean {
    return table === TRANSACTIONS_TABLE || table === FLUSH_PARTS || this.inScope(table);
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
    while (n < this.records.length && Position.compare(this.records[n]!.position, after) <= 0) n++;
    if (n > 0) this.records = this.records.slice(n);
  }
}

/**
 * A table's records after `after` in the objects of one read, in position order, each once: merged
 * as they are read (tableRecordBatches: the messages of a container block are views of one buffer,
 * duplicates dropped by comparing neighbours) rather than gathered in a map keyed by formatted
 * positions with a buffer copied per record — a backlog's read holds tens of thousands, and those
 * strings and copies were a tenth of the replicator's time and much of its garbage. A part from a
 * reordered delivery (RecordsOutOfOrder) is read the whole-table way, as restore does.
 */
async function recordsOf(reader: ArchiveReader, table: string, after: Position): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  try {
    for await (const batch of reader.tableRecordBatches(table, after)) for (const r of batch) out.push(r);
    return out;
  } catch (err) {
    if (!(err instanceof RecordsOutOfOrder)) throw err;
    return reader.tableRecords(table, after);
  }
}

/** Stored bytes one read takes at most (past its first object): a few flush parts. */
export const READ_BUDGET_BYTES = 4 * 1024 * 1024;

/** A listed object as readPrefix sees it. */
export interface PrefixObject {
  key: string;
  first: Position;
  last: Position;
  bytes: number;
  /** False for an object of a table out of scope: taken (consumed) without being read. */
  needed: boolean;
}

/**
 * Which listed objects one read takes (pure): in order of their first position, those needed
 * until `budgetBytes` are taken (at least one), plus every object not needed or wholly at or
 * before `after` (read for nothing, or not at all). `bound`: the first position of the first
 * needed object left, below which every record of every object listed is taken (objects are
 * ranges: nothing in one starts before its first position); null when none is left.
 */
export function readPrefix(objects: readonly PrefixObject[], after: Position, budgetBytes: number): { take: Set<string>; bound: Position | null } {
  const take = new Set<string>();
  let bytes = 0;
  let bound: Position | null = null;
  for (const o of [...objects].sort((a, b) => Position.compare(a.first, b.first))) {
    if (!o.needed || Position.compare(o.last, after) <= 0) take.add(o.key);
    else if (bound === null && (bytes === 0 || bytes + o.bytes <= budgetBytes)) {
      take.add(o.key);
      bytes += Math.max(1, o.bytes);
    } else bound ??= o.first;
  }
  return { take, bound };
}

/**
 * The records of `fresh` (sorted, each once: one read's) that `kept` (sorted, each once) lacks,
 * merged into it in position order (pure). What a read brings usually follows what is kept, which
 * is then only appended to; a segment an hour closing wrote from parts already read brings kept
 * records again, dropped here by position. A merge of sorted lists instead of a set of formatted
 * positions: no string built and kept per record (a backlog's read holds tens of thousands).
 */
export function mergeNew<T extends { position: Position }>(kept: readonly T[], fresh: readonly T[]): T[] {
  if (fresh.length === 0) return kept as T[];
  if (kept.length === 0 || Position.compare(kept.at(-1)!.position, fresh[0]!.position) < 0) return kept.length === 0 ? (fresh as T[]) : kept.concat(fresh);
  const out: T[] = [];
  let i = 0;
  let j = 0;
  while (i < kept.length || j < fresh.length) {
    const c = i >= kept.length ? 1 : j >= fresh.length ? -1 : Position.compare(kept[i]!.position, fresh[j]!.position);
    if (c <= 0) out.push(kept[i++]!);
    else out.push(fresh[j++]!);
    if (c === 0) j++; // the same record read again: kept once
  }
  return out;
}

/**
 * `items` sorted by position (in place), skipping the sort when they already are: what a read adds
 * usually follows what was kept, and a backlog's one table comes sorted, so one pass replaces a
 * sort that parsed positions on every comparison.
 */
function inOrder<T>(items: T[], positionOf: (item: T) => Position): T[] {
  const positions = items.map(positionOf);
  let sorted = true;
  for (let i = 1; i < positions.length && sorted; i++) sorted = Position.compare(positions[i - 1]!, positions[i]!) < 0;
  if (sorted) return items;
  const order = items.map((_, i) => i).sort((a, b) => Position.compare(positions[a]!, positions[b]!));
  return order.map((i) => items[i]!);
}
