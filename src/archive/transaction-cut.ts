import { COMMIT_SEQ, Position } from '../core/position.js';
import type { TransactionRecord } from './transaction-log.js';

/**
 * Where a restore (or a synthesised snapshot) ends, decided on the transaction log alone
 * (docs/architecture.md §5, "Whole transactions only"). Pure: no I/O.
 *
 * A transaction too large for one batch is stored in pieces, each with its own log record at
 * its last event's position (seq < COMMIT_SEQ); only its last piece has the transaction's own
 * position (seq = COMMIT_SEQ). A transaction is *whole* when that last record is stored and the
 * chain of its pieces (each record's `previous`, within the same commit) is unbroken back to
 * the piece that follows another transaction. A kill -9 between pieces leaves pieces with no
 * last record: such a transaction, and everything after it, lies beyond every cut.
 */

/** The last transaction a cut includes. */
export interface CutTransaction {
  position: Position;
  txId: string | null;
  commitTsUs: bigint;
}

/** What bounds the cut, besides "whole transactions only". */
export interface CutBound {
  /** Nothing after this position (the durable checkpoint, or a position asked for). */
  position?: Position;
  /**
   * Nothing that may have committed after this moment (µs). With a commit-time resolution r, a
   * transaction stamped s may have committed as late as s + r − 1 µs: it is included only when
   * that is at or before the moment (fail closed). The first transaction that may have committed
   * after the moment ends the cut, even if later ones carry earlier stamps (a clock stepped
   * back): a cut never shows a later transaction without an earlier one. Such a later
   * transaction within the moment is reported (`laterWithin`), and restore refuses the moment.
   */
  us?: bigint;
  /** Resolution of the source's commit times in µs: 1 (PostgreSQL), 1_000_000 (binlog headers in seconds). */
  resolutionUs?: bigint;
}

export interface CutResult {
  /** The last whole transaction within the bound; null when none follows the starting point. */
  last: CutTransaction | null;
  /** The transaction after the cut that stopped it by its time (for the far-cut warning); null otherwise. */
  stoppedBy: CutTransaction | null;
  /**
   * The last whole transaction after `stoppedBy` that did commit by the moment: the moment falls
   * where commit times are not monotonic (a clock stepped forward then back, or stamps of one
   * second apart), so a time cut would silently leave it out — restore refuses such a moment
   * and asks for a position (replay.ts). null when every transaction after the cut is after it.
   */
  laterWithin: CutTransaction | null;
  /** Pieces stored after the cut of a transaction that is not whole (kill -9 inside it): their commit part. */
  incomplete: string | null;
}

/** Whether a transaction stamped `commitTsUs` certainly committed at or before `us`. */
export function committedBy(commitTsUs: bigint, us: bigint, resolutionUs: bigint = 1n): boolean {
  return commitTsUs + resolutionUs - 1n <= us;
}

/**
 * The last whole transaction of `log` (records after the starting point, in position order)
 * within `bound`. Records after a broken chain are never reached: the cut stops before the
 * first transaction that is not whole. With a time bound, the whole transactions after the one
 * that stopped the cut are still read, to find one stamped within the moment (`laterWithin`).
 */
export function cutTransactions(log: Iterable<TransactionRecord>, bound: CutBound = {}): CutResult {
  const cut = new TransactionCutter(bound);
  for (const r of log) if (!cut.push(r)) break;
  return cut.result();
}

/**
 * `cutTransactions` a record at a time, for a log read as a stream (ArchiveReader.foldTransactions):
 * memory holds the cut so far, never the log (an archive of a busy day has millions of
 * transactions). `push` says whether a later record can still change the result.
 */
export class TransactionCutter {
  private last: CutTransaction | null = null;
  private stoppedBy: CutTransaction | null = null;
  private laterWithin: CutTransaction | null = null;
  /** The record before, when it is a piece of the transaction being read. */
  private piece: Position | null = null;
  /** Set when the cut ended before the log did: the commit part of the transaction left incomplete, or null. */
  private ended: { incomplete: string | null } | null = null;

  constructor(private readonly bound: CutBound = {}) {}

  /** Reads the next record of the log; false once nothing later can change the cut. */
  push(r: TransactionRecord): boolean {
    if (this.ended) return false;
    const p = Position.parse(r.pos);
    if (this.bound.position && Position.compare(Position.commitOf(p), this.bound.position) > 0) return this.end(this.piece?.commit ?? null);
    const previous = r.previous === null ? null : Position.parse(r.previous);
    const continues = previous !== null && previous.commit === p.commit && previous.seq !== COMMIT_SEQ;
    // Pieces re-published after a restart may overlap the stored ones (their events are deduplicated
    // by position); a piece that starts past the piece before it leaves a gap.
    if (continues && (this.piece === null || previous.seq > this.piece.seq)) {
      // A piece whose predecessor piece is missing: this transaction is not whole.
      return this.end(p.commit);
    }
    if (!continues && this.piece !== null) {
      // The transaction read so far ended in pieces without its last record.
      return this.end(this.piece.commit);
    }
    if (p.seq !== COMMIT_SEQ) {
      this.piece = p;
      return true;
    }
    this.piece = null;
    const tx: CutTransaction = { position: p, txId: r.txId, commitTsUs: BigInt(r.commitTsUs) };
    const within = this.bound.us === undefined || committedBy(tx.commitTsUs, this.bound.us, this.bound.resolutionUs);
    if (this.stoppedBy) {
      if (within) this.laterWithin = tx;
    } else if (!within) {
      this.stoppedBy = tx;
    } else {
      this.last = tx;
    }
    return true;
  }

  /** The last whole transaction read so far (the cut, once the log is read to its end or `push` said false). */
  get lastWhole(): CutTransaction | null {
    return this.last;
  }

  result(): CutResult {
    const incomplete = this.ended ? this.ended.incomplete : (this.piece?.commit ?? null);
    return { last: this.last, stoppedBy: this.stoppedBy, laterWithin: this.laterWithin, incomplete: this.stoppedBy ? null : incomplete };
  }

  private end(incomplete: string | null): false {
    this.ended = { incomplete };
    return false;
  }
}

/** A cut this far before the moment asked for is warned about (a clock stepped forward, or a quiet source). */
export const FAR_CUT_US = 60_000_000n;

/**
 * Commit times that step backwards along the log (a clock set back, or commits of one second
 * stamped apart): each transaction whose stamp is earlier than the newest stamp before it.
 */
export function backwardSteps(log: readonly TransactionRecord[]): { position: string; commitTsUs: bigint; newestBeforeUs: bigint }[] {
  const out: { position: string; commitTsUs: bigint; newestBeforeUs: bigint }[] = [];
  let newest: bigint | null = null;
  for (const r of log) {
    if (Position.parse(r.pos).seq !== COMMIT_SEQ) continue;
    const ts = BigInt(r.commitTsUs);
    if (newest !== null && ts < newest) out.push({ position: r.pos, commitTsUs: ts, newestBeforeUs: newest });
    if (newest === null || ts > newest) newest = ts;
  }
  return out;
}

/** One transaction of a stretch, for messages. */
export interface StampedPosition {
  position: string;
  commitTsUs: bigint;
}

/**
 * A stretch of the log where commit times are not monotonic: from the first transaction stamped
 * later than a transaction after it to the last transaction stamped earlier than one before it
 * (overlapping inversions merged). A time cut between its earliest and latest stamps can fall
 * between a transaction and a later one stamped earlier: restore refuses such a moment.
 */
export interface NonMonotonicStretch {
  from: StampedPosition;
  to: StampedPosition;
  /** The earliest stamp of a transaction stamped earlier than one before it, within the stretch. */
  earliestUs: bigint;
  /** The latest stamp of a transaction stamped later than one after it, within the stretch. */
  latestUs: bigint;
  /** Transactions in the stretch stamped earlier than the newest one before them. */
  steps: number;
}

/** The stretches of `log` (whole transactions' records, in position order) where commit times step backwards. */
export function nonMonotonicStretches(log: readonly TransactionRecord[]): NonMonotonicStretch[] {
  const out: (NonMonotonicStretch & { toIndex: number })[] = [];
  let newest: (StampedPosition & { i: number }) | null = null;
  let open: (NonMonotonicStretch & { toIndex: number }) | null = null;
  let i = 0;
  for (const r of log) {
    if (Position.parse(r.pos).seq !== COMMIT_SEQ) continue;
    i++;
    const tx = { position: r.pos, commitTsUs: BigInt(r.commitTsUs), i };
    if (newest !== null && tx.commitTsUs < newest.commitTsUs) {
      // The newest stamp before it was set at or before the open stretch's end: one stretch.
      if (open !== null && newest.i <= open.toIndex) {
        open.to = { position: tx.position, commitTsUs: tx.commitTsUs };
        open.toIndex = i;
        if (tx.commitTsUs < open.earliestUs) open.earliestUs = tx.commitTsUs;
        if (newest.commitTsUs > open.latestUs) open.latestUs = newest.commitTsUs;
        open.steps++;
      } else {
        open = {
          from: { position: newest.position, commitTsUs: newest.commitTsUs },
          to: { position: tx.position, commitTsUs: tx.commitTsUs },
          earliestUs: tx.commitTsUs,
          latestUs: newest.commitTsUs,
          steps: 1,
          toIndex: i,
        };
        out.push(open);
      }
    }
    if (newest === null || tx.commitTsUs > newest.commitTsUs) newest = tx;
  }
  return out.map(({ toIndex: _, ...s }) => s);
}
