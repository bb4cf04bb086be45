import { ChartlogError } from '../core/errors.js';
import { COMMIT_SEQ, Position } from '../core/position.js';
import type { TransactionRecord } from '../archive/transaction-log.js';

/** A stored change record as the replica sees it: which table, and where in the stream. */
export interface TableRecord {
  readonly table: string;
  readonly position: Position;
}

/** A source transaction the replica may apply now: whole, durable, every event present. */
export interface SettledTransaction<R extends TableRecord> {
  /** The transaction's own position (seq = COMMIT_SEQ): what the replica records once applied. */
  readonly position: Position;
  readonly commitTsUs: bigint;
  /** Its events of the tables in scope, in source order (empty when it touched none of them). */
  readonly records: readonly R[];
}

export interface SettledPlan<R extends TableRecord> {
  readonly transactions: readonly SettledTransaction<R>[];
  /** Transactions logged after the replica's position that are not settled yet (in flight). */
  readonly inFlight: number;
  /** Commit time of the oldest of those, for the lag (null when none). */
  readonly oldestInFlightUs: bigint | null;
  /**
   * A hole found right after `transactions` (a break in the chain, missing events): the replica
   * applies the whole transactions before it, then stops with this error. When the hole comes
   * first, settledTransactions throws it instead.
   */
  readonly stop?: ChartlogError;
}

export interface SettleInput<R extends TableRecord> {
  /** The replica's position: the last transaction applied (or the position it was loaded to). */
  after: Position;
  /** The archive's checkpoint: everything up to it is durable (null: nothing is yet). */
  durable: Position | null;
  /** The transaction log after `after`, in position order, once each (ArchiveReader.transactions). */
  log: readonly TransactionRecord[];
  /** Change records after `after` of the tables in scope, in position order, once each. */
  records: readonly R[];
  inScope: (table: string) => boolean;
  /** At most this many transactions (bounds one apply round). */
  limit?: number;
}

/**
 * Which transactions after the replica's position may be applied now (pure).
 *
 * A transaction is settled when its last piece is the transaction's own position (seq =
 * COMMIT_SEQ: a large transaction stored in pieces is whole only with its last piece) and that
 * position is at or before the checkpoint (the compactor writes the checkpoint only after the
 * parts holding everything up to it are durable, open hours included). The first transaction
 * not settled ends the plan: the replica never applies around one.
 *
 * Two checks refuse to apply around a hole (integrity errors, the replica stops after applying
 * the whole transactions before it, never one after it):
 * - the chain: each logged transaction (or piece) names the one before it (`previous`); the first
 *   must follow the replica's position, each next one the one before it. A break is a gap in the
 *   source's stream (e.g. a new source snapshot after a pause), which a replica cannot bridge.
 * - the counts: a settled transaction holds, per table in scope, as many stored events as the
 *   log counts for it.
 */
export function settledTransactions<R extends TableRecord>(input: SettleInput<R>): SettledPlan<R> {
  const groups: { commit: string; pieces: TransactionRecord[] }[] = [];
  for (const t of input.log) {
    const commit = Position.parse(t.pos).commit;
    const last = groups.at(-1);
    if (last?.commit === commit) last.pieces.push(t);
    else groups.push({ commit, pieces: [t] });
  }
  const byCommit = new Map<string, R[]>();
  for (const r of input.records) {
    const list = byCommit.get(r.position.commit);
    if (list) list.push(r);
    else byCommit.set(r.position.commit, [r]);
  }

  const transactions: SettledTransaction<R>[] = [];
  let previous = Position.format(input.after);
  let i = 0;
  const holeAt = (err: ChartlogError): SettledPlan<R> => {
    if (transactions.length === 0) throw err;
    const rest = groups.slice(i);
    return { transactions, inFlight: rest.length, oldestInFlightUs: BigInt(rest[0]!.pieces[0]!.commitTsUs), stop: err };
  };
  for (; i < groups.length && transactions.length < (input.limit ?? Infinity); i++) {
    const g = groups[i]!;
    for (const piece of g.pieces) {
      const first = transactions.length === 0 && piece === g.pieces[0];
      // The very first transaction after a load may name a transaction before the base
      // snapshot's position (the load position is then the snapshot's, not a transaction's).
      const follows = piece.previous === previous || (first && (piece.previous === null || Position.compare(Position.parse(piece.previous), input.after) <= 0));
      if (!follows) {
        return holeAt(new ChartlogError('integrity', `the archive has a gap before transaction ${piece.pos}: it follows ${piece.previous ?? 'nothing'}, but the replica's previous transaction is ${previous}; refusing to apply around it`, {
          hint: 'run `chartlog verify` on the source; a replica cannot bridge a break in the stream (e.g. a new source snapshot taken while `chartlog run` was stopped): rebuild it into an empty database',
        }));
      }
      previous = piece.pos;
    }
    const last = Position.parse(g.pieces.at(-1)!.pos);
    if (last.seq !== COMMIT_SEQ || !input.durable || Position.compare(last, input.durable) > 0) break;
    const records = byCommit.get(g.commit) ?? [];
    const logged = new Map<string, number>();
    for (const p of g.pieces) for (const [table, n] of Object.entries(p.tables)) if (input.inScope(table)) logged.set(table, (logged.get(table) ?? 0) + Number(n));
    const stored = new Map<string, number>();
    for (const r of records) stored.set(r.table, (stored.get(r.table) ?? 0) + 1);
    for (const table of new Set([...logged.keys(), ...stored.keys()])) {
      const want = logged.get(table) ?? 0;
      const got = stored.get(table) ?? 0;
      if (want !== got) {
        return holeAt(new ChartlogError('integrity', `transaction ${g.pieces.at(-1)!.pos}: ${want} events of ${table} logged, ${got} stored; refusing to apply it`, {
          hint: 'run `chartlog verify` on the source and restore damaged objects from a copy of the archive',
        }));
      }
    }
    transactions.push({ position: last, commitTsUs: BigInt(g.pieces.at(-1)!.commitTsUs), records });
  }
  const rest = groups.slice(i);
  return {
    transactions,
    inFlight: rest.length,
    oldestInFlightUs: rest[0] ? BigInt(rest[0].pieces[0]!.commitTsUs) : null,
  };
}
