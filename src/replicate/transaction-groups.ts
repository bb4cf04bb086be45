import type { ReplicaChange, ReplicaTransaction } from './replica-target.js';

/** Rows of source transactions grouped into one target transaction at most. */
export const GROUP_ROWS = 5000;

/** A source transaction as the grouping sees it: its changes and each change's table version. */
export interface GroupableTransaction extends ReplicaTransaction {
  /** One per change: which version of its table the change was stored with (the schema fingerprint). */
  readonly versions: readonly string[];
}

/**
 * Consecutive settled source transactions cut into groups, each applied as ONE target
 * transaction that also moves the position row to the group's last transaction (pure).
 *
 * Why a group keeps the guarantees of one target transaction per source transaction: the
 * position row moves in the same target transaction as the changes, from the position before
 * the group to its last transaction's, so a kill at any moment leaves the replica at a position
 * that matches what it holds (all of the group, or none of it) — nothing lost, nothing applied
 * twice. The changes are applied in source order, so the replica ends each group in the state the
 * source had at the group's last commit; a reader of the replica sees that state or the one
 * before the group, never part of a source transaction. What it no longer sees are the
 * intermediate states between the grouped commits; groups form only from transactions already
 * settled together, so a replica that keeps up applies them one by one as before.
 *
 * A transaction goes alone when it needs more than rows: a TRUNCATE, a dropped table, or a table
 * version other than the one the group holds for that table (a DDL between them) — the targets
 * change a table's shape before the transaction's statements (MariaDB even commits around DDL),
 * which is right for one source transaction but not across a shape change inside a group. A
 * group holds at most `maxRows` rows (a transaction larger than that is a group of its own).
 */
export function groupTransactions(txs: readonly GroupableTransaction[], maxRows = GROUP_ROWS): ReplicaTransaction[] {
  const out: ReplicaTransaction[] = [];
  let open: { changes: ReplicaChange[]; versions: Map<string, string>; last: GroupableTransaction; count: number } | null = null;
  const close = () => {
    if (open) out.push({ position: open.last.position, commitTsUs: open.last.commitTsUs, changes: open.changes, transactions: open.count });
    open = null;
  };
  for (const tx of txs) {
    const plain = tx.changes.every((c) => c.op === 'c' || c.op === 'r' || c.op === 'u' || c.op === 'd');
    const own = new Map<string, string>();
    let oneVersion = true;
    tx.changes.forEach((c, i) => {
      const v = tx.versions[i]!;
      if ((own.get(c.table) ?? v) !== v) oneVersion = false;
      own.set(c.table, v);
    });
    const fits =
      open !== null &&
      plain &&
      oneVersion &&
      open.changes.length + tx.changes.length <= maxRows &&
      [...own].every(([table, v]) => (open!.versions.get(table) ?? v) === v);
    if (!fits) {
      close();
      if (!plain || !oneVersion) {
        out.push({ position: tx.position, commitTsUs: tx.commitTsUs, changes: tx.changes, transactions: 1 });
        continue;
      }
      open = { changes: [], versions: new Map(), last: tx, count: 0 };
    }
    const g = open!;
    g.changes.push(...tx.changes);
    for (const [table, v] of own) g.versions.set(table, v);
    g.last = tx;
    g.count++;
  }
  close();
  return out;
}

/**
 * Consecutive transactions cut into runs of at most `maxRecords` records each, in order, a larger
 * transaction a run of its own (pure). The replicator decodes one run while it applies the one
 * before it; a run boundary is also a group boundary, so runs of at least a group's rows leave
 * the grouping as it was.
 */
export function transactionRuns<T extends { readonly records: readonly unknown[] }>(txs: readonly T[], maxRecords: number): T[][] {
  const runs: T[][] = [];
  let run: T[] = [];
  let records = 0;
  for (const tx of txs) {
    if (run.length > 0 && records + tx.records.length > maxRecords) {
      runs.push(run);
      run = [];
      records = 0;
    }
    run.push(tx);
    records += tx.records.length;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}
