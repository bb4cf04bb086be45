import { COMMIT_SEQ, Position } from '../core/position.js';
import type { TransactionRecord } from '../archive/transaction-log.js';

/**
 * The distinct seqs of one table's events of one source transaction seen durable: duplicates
 * count once. A large transaction comes in pieces, each with its own END counting the events
 * of a seq range (see `pieceRange`), so counts are taken per range; a sorted copy is kept for
 * that and made again only after new seqs arrived.
 */
export class SeqSet {
  private readonly seqs = new Set<number>();
  private sorted: Uint32Array | null = null;

  add(seq: number): void {
    if (this.seqs.has(seq)) return;
    this.seqs.add(seq);
    this.sorted = null;
  }

  /** How many seqs lie in [lo, hi]. */
  countIn(lo: number, hi: number): number {
    if (lo <= 0 && hi >= COMMIT_SEQ) return this.seqs.size;
    const sorted = (this.sorted ??= Uint32Array.from(this.seqs).sort());
    return lowerBound(sorted, hi + 1) - lowerBound(sorted, lo);
  }
}

/** The first index of `sorted` whose value is ≥ `value`. */
function lowerBound(sorted: Uint32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The seqs whose events an END record counts. A whole transaction's END (seq COMMIT_SEQ, after
 * a transaction of another commit) counts all of them. A transaction too large for one batch
 * comes in pieces (ChangeBatch.partial): each piece's END has the position of its last event,
 * and its `previous` is the piece before it (same commit part) — or, for the first piece, the
 * transaction before it. A piece holds the events after `previous` up to its own position.
 */
export function pieceRange(end: Position, previous: Position | null): { lo: number; hi: number } {
  const lo = previous !== null && previous.commit === end.commit && previous.seq !== COMMIT_SEQ ? previous.seq + 1 : 0;
  return { lo, hi: end.seq };
}

/** One stored event, as counted: the commit part of its position (its source transaction), its table and seq. */
export interface CountedEvent {
  commit: string;
  table: string;
  seq: number;
}

/**
 * What is settled, from facts known durable: END records in durable parts, and events in
 * durable parts (seen by this process, or vouched for by another compactor's progress record).
 * Pure: no I/O, no clock. A transaction — or a piece of a large one — settles once every event
 * its END counts is counted (each seq once, so an event stored twice, say re-read after a
 * rebalance, counts once) and its predecessor (the END's `previous`) has settled; the settled
 * position only moves forward, in position order.
 */
export class Settlement {
  private settledAt: Position | null;
  private commitUs: bigint;
  /** END records durable and not settled, by their position (a whole transaction's or a piece's). */
  private readonly ends = new Map<string, TransactionRecord>();
  /** Event seqs durable and not settled, by the commit part of their transaction, per table. */
  private readonly seen = new Map<string, Map<string, SeqSet>>();

  constructor(from: { position: Position; commitTsUs: bigint } | null = null) {
    this.settledAt = from?.position ?? null;
    this.commitUs = from?.commitTsUs ?? 0n;
  }

  get position(): Position | null {
    return this.settledAt;
  }

  /** The commit time of the newest settled transaction. */
  get commitTsUs(): bigint {
    return this.commitUs;
  }

  /** Nothing waits to settle. */
  get idle(): boolean {
    return this.ends.size === 0 && this.seen.size === 0;
  }

  /**
   * The oldest END durable but not settled: what the settled position waits on (its events, or
   * its predecessor). Null when no END waits.
   */
  get oldestUnsettled(): Position | null {
    let oldest: Position | null = null;
    for (const pos of this.ends.keys()) {
      const p = Position.parse(pos);
      if (!this.isSettled(p) && (oldest === null || Position.compare(p, oldest) < 0)) oldest = p;
    }
    return oldest;
  }

  /** True when `pos` is at or below the settled position. */
  isSettled(pos: Position): boolean {
    return this.settledAt !== null && Position.compare(pos, this.settledAt) <= 0;
  }

  /** A later checkpoint written by another process (a compactor that only stores, reading the settler's checkpoint). */
  advanceTo(position: Position, commitTsUs: bigint): void {
    if (this.isSettled(position)) return;
    this.settledAt = position;
    if (commitTsUs > this.commitUs) this.commitUs = commitTsUs;
    this.prune();
  }

  addEvent(e: CountedEvent): void {
    if (this.isSettled(Position.of(e.commit, e.seq))) return;
    let tables = this.seen.get(e.commit);
    if (!tables) this.seen.set(e.commit, (tables = new Map()));
    let seqs = tables.get(e.table);
    if (!seqs) tables.set(e.table, (seqs = new SeqSet()));
    seqs.add(e.seq);
  }

  addEnd(r: TransactionRecord): void {
    if (this.isSettled(Position.parse(r.pos))) return;
    this.ends.set(r.pos, r);
  }

  /**
   * Moves the settled position over every complete transaction — or piece of a large one — in
   * position order. Complete: every event its END counts is durable, counted against the
   * events of its source transaction in the END's seq range (`pieceRange`). Returns the END
   * that waits for a predecessor that has not settled (a chain gap), if that is what stopped it.
   */
  settle(): { moved: boolean; waiting: { tx: Position; previous: Position } | null } {
    const before = this.settledAt;
    let waiting: { tx: Position; previous: Position } | null = null;
    const ended = [...this.ends].map(([pos, end]) => ({ pos, tx: Position.parse(pos), end })).sort((a, b) => Position.compare(a.tx, b.tx));
    for (const { pos, tx, end } of ended) {
      if (this.isSettled(tx)) {
        this.ends.delete(pos);
        continue;
      }
      const previous = end.previous === null ? null : Position.parse(end.previous);
      const { lo, hi } = pieceRange(tx, previous);
      const tables = this.seen.get(tx.commit);
      const complete = Object.entries(end.tables).every(([table, n]) => (tables?.get(table)?.countIn(lo, hi) ?? 0) >= n);
      if (!complete) break;
      // The chain of `previous` positions: a transaction whose predecessor has not settled waits
      // for it, so an END that overtook an earlier one (a retried request) cannot skip it.
      if (this.settledAt !== null && previous !== null && !this.isSettled(previous)) {
        waiting = { tx, previous };
        break;
      }
      this.settledAt = tx;
      if (BigInt(end.commitTsUs) > this.commitUs) this.commitUs = BigInt(end.commitTsUs);
      this.ends.delete(pos);
    }
    this.prune();
    return { moved: this.settledAt !== null && (before === null || !Position.equals(before, this.settledAt)), waiting };
  }

  /**
   * Events of transactions now settled whole (duplicates from a resend) need no counting. A
   * transaction settled only up to one of its pieces keeps its seqs: the next piece counts
   * within its own range.
   */
  private prune(): void {
    for (const commit of [...this.seen.keys()]) if (this.isSettled(Position.of(commit, COMMIT_SEQ))) this.seen.delete(commit);
    for (const pos of [...this.ends.keys()]) if (this.isSettled(Position.parse(pos))) this.ends.delete(pos);
  }
}
