import { usageError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import type { Op } from '../core/change-event.js';
import type { Position } from '../core/position.js';
import type { Row, TableSchema } from '../core/table-schema.js';

/**
 * What a replica holds of PHI columns: `open` (opened with the keyring, audited per session),
 * `sealed` (the sealed bytes, in a bytes column), `omit` (NULL: an analytics replica without PHI).
 */
export type PhiMode = 'open' | 'sealed' | 'omit';
export const PHI_MODES: readonly PhiMode[] = ['open', 'sealed', 'omit'];

/** The table in the target that records the replica's position, updated in every applied transaction. */
export const REPLICA_TABLE = 'chartlog_replica';

/**
 * The table in the target that records which table base (`chartlog resync`, table-snapshots/)
 * each replica table was last rebuilt from: one row per source and table, moved in the same
 * target transaction as the rebuild (table-resyncs.ts). The table `*` holds the load's mark.
 */
export const REPLICA_BASES_TABLE = 'chartlog_replica_bases';

/**
 * A table of the replica rebuilt from a new base (`chartlog resync`, automatic or not): its rows
 * replaced by the base's rows and the table's changes after the base up to the replica's
 * position, in ONE target transaction that also records the base (REPLICA_BASES_TABLE) and checks
 * the position row (which stays where it is): a reader sees the old table or the new one, and a
 * kill leaves either, the base recorded only with the new one.
 */
export interface TableReplacement {
  /** "schema.table" */
  table: string;
  baseId: string;
  /** The base's version of the table (a base with no rows still makes the table). */
  schema: TableSchema;
  phiColumns: ReadonlySet<string>;
  /** The base's rows (op r), a batch at a time. */
  rows: AsyncIterable<readonly ReplicaChange[]>;
  /** The table's changes after the base's position up to the replica's, in source order. */
  later: readonly ReplicaChange[];
  /** The replica's position (unchanged by the replacement). */
  position: Position;
  /** The base's position: the mark recorded for the table. */
  basePosition: Position;
}

/** The replica's row of the position table. */
export interface ReplicaRecord {
  source: string;
  /** `loading` until the initial load has committed every table; then `following`. */
  state: 'loading' | 'following';
  /** The last source transaction applied (or the position the replica was loaded to). */
  position: Position;
  commitTsUs: bigint;
  phi: PhiMode;
  /** The tables in scope ("schema.table", sorted); null: every table of the archive. */
  tables: readonly string[] | null;
}

/** What `inspect` found in the target. */
export interface TargetInspection {
  /** Tables of the target other than the position table ("schema.table"). */
  tables: readonly string[];
  /** Whether the position table exists. */
  hasReplicaTable: boolean;
  /** Its rows (any source). */
  replicas: readonly ReplicaRecord[];
}

/** One change to apply: decoded, with the PHI columns of its table version. */
export interface ReplicaChange {
  op: Op;
  /** "schema.table" */
  table: string;
  schema: TableSchema;
  before: Row | null;
  after: Row | null;
  position: Position;
  /** Columns that are PHI in this record's table version. */
  phiColumns: ReadonlySet<string>;
}

/**
 * One source transaction, applied as one target transaction — or several consecutive ones grouped
 * (transaction-groups.ts): their changes in order, the last one's position and commit time.
 */
export interface ReplicaTransaction {
  position: Position;
  commitTsUs: bigint;
  changes: readonly ReplicaChange[];
  /** Source transactions it holds (default 1): what the position row's `transactions` counts. */
  transactions?: number;
}

/**
 * One debug line per applied target transaction (CHARTLOG_LOG_LEVEL=debug), to see where a
 * replica's lag goes: how far behind the source commit the apply started (archive freshness plus
 * the follower's poll, read and decode, plus earlier applies) and how long the apply took.
 * Counts and times only, never values.
 */
export function logApplied(target: string, tx: ReplicaTransaction, rows: number, statements: number, startedMs: number): void {
  const log = logger();
  if (!log.isLevelEnabled('debug')) return;
  const commitMs = Number(tx.commitTsUs / 1000n);
  log.debug({ component: 'replicate', target, transactions: tx.transactions ?? 1, rows, statements, behindAtStartMs: Math.round(startedMs - commitMs), applyMs: Math.round(Date.now() - startedMs) }, 'applied');
}

/**
 * A live database kept equal to a source. Contract:
 * - `inspect` connects and reads what the target holds; it writes nothing.
 * - `beginLoad` creates the position table and records a `loading` replica, in one transaction.
 * - `finishLoad` marks it `following` at the position the load reached.
 * - `apply` applies one source transaction and moves the position row from `from` to the
 *   transaction's position in ONE target transaction. When the row no longer holds `from`
 *   (another replicator moved it), nothing is applied and a fatal error says so. A change that
 *   finds the target different from the source (an update or delete matching no row) fails the
 *   whole transaction: the replica stops rather than diverge.
 */
export interface ReplicaTarget {
  /** Where, for messages and the audit log: never a password. */
  readonly description: string;
  inspect(): Promise<TargetInspection>;
  beginLoad(r: ReplicaRecord): Promise<void>;
  finishLoad(source: string, position: Position, commitTsUs: bigint): Promise<void>;
  apply(source: string, tx: ReplicaTransaction, from: Position, phi: PhiMode): Promise<{ rows: number }>;
  /** The base positions recorded in REPLICA_BASES_TABLE for `source` (table → position; `*`: the load's); empty when the table is absent. */
  takenBases(source: string): Promise<Map<string, Position>>;
  /** Records base positions (upsert; created if absent), e.g. the load's mark after the initial load. */
  recordBases(source: string, bases: ReadonlyMap<string, Position>): Promise<void>;
  /** Rebuilds one table from a new base (TableReplacement). Absent: the target cannot, and the replica stops naming the table. */
  replaceTable?(source: string, r: TableReplacement, phi: PhiMode): Promise<{ rows: number }>;
  close(): Promise<void>;
}

/**
 * Whether to load the target or resume it (pure). Refuses, with a usage error (exit 2, nothing
 * written), every target that is neither empty nor a finished replica of this source with the
 * same PHI mode and tables.
 */
export function startDecision(found: TargetInspection, want: { source: string; phi: PhiMode; tables: readonly string[] | null; target: string }): { kind: 'load' } | { kind: 'resume'; replica: ReplicaRecord } {
  const mine = found.replicas.find((r) => r.source === want.source);
  if (!found.hasReplicaTable) {
    if (found.tables.length === 0) return { kind: 'load' };
    const shown = found.tables.slice(0, 5).join(', ') + (found.tables.length > 5 ? `, … (${found.tables.length} tables)` : '');
    throw usageError(
      `the target ${want.target} holds tables (${shown}) but no replica position (no ${REPLICA_TABLE} table): it is neither empty nor a replica, so chartlog cannot know what it already holds`,
      'replicate into an empty database (CREATE DATABASE …), or drop those tables first; nothing was written',
    );
  }
  if (!mine) {
    throw usageError(
      `the target ${want.target} is a replica of ${found.replicas.map((r) => r.source).join(', ') || 'no source'} (its ${REPLICA_TABLE} has no row for source ${want.source})`,
      `give each replica its own database (CREATE DATABASE …); nothing was written`,
    );
  }
  if (mine.state === 'loading') {
    throw usageError(
      `the initial load of ${want.target} from source ${want.source} did not finish (the process stopped during it): the target holds part of the tables`,
      `drop and recreate the target database (or drop its tables and ${REPLICA_TABLE}), then run chartlog replicate again; nothing was written`,
    );
  }
  if (mine.phi !== want.phi) {
    throw usageError(
      `--phi ${want.phi}: the replica in ${want.target} was built with --phi ${mine.phi}; mixing them would leave rows of both kinds`,
      `run with --phi ${mine.phi}, or build a new replica into an empty database; nothing was written`,
    );
  }
  const have = mine.tables?.join(',') ?? '(all)';
  const asked = want.tables?.join(',') ?? '(all)';
  if (have !== asked) {
    throw usageError(
      `--tables ${asked}: the replica in ${want.target} follows ${have}`,
      `run with the same --tables, or build a new replica into an empty database; nothing was written`,
    );
  }
  return { kind: 'resume', replica: mine };
}
