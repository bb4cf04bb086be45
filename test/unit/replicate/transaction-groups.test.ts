import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { groupTransactions, transactionRuns, type GroupableTransaction } from '../../../src/replicate/transaction-groups.js';
import type { ReplicaChange } from '../../../src/replicate/replica-target.js';

/** Which consecutive source transactions are applied as one target transaction. */

const schema: TableSchema = {
  schema: 'public',
  table: 'a',
  primaryKey: ['id'],
  columns: [{ name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false }],
};
let lsn = 0x100;
/** A transaction of `ops` on tables (name:version), e.g. tx(['c', 'a:v1'], ['d', 'b:v1']). */
function tx(...changes: [ReplicaChange['op'], string][]): GroupableTransaction {
  const at = (lsn++).toString(16).padStart(8, '0');
  return {
    position: Position.of(at),
    commitTsUs: BigInt(lsn),
    changes: changes.map(([op, tv], i) => ({ op, table: `public.${tv.split(':')[0]}`, schema, before: null, after: { id: BigInt(i) }, position: Position.of(at, i), phiColumns: new Set<string>() })),
    versions: changes.map(([, tv]) => tv.split(':')[1]!),
  };
}
const shape = (groups: ReturnType<typeof groupTransactions>) => groups.map((g) => `${g.transactions}:${g.changes.length}`);

test('consecutive plain transactions form one group that ends at the last one, changes in source order', () => {
  const txs = [tx(['c', 'a:v1'], ['u', 'a:v1']), tx(['d', 'a:v1']), tx(), tx(['c', 'b:v1'])];
  const groups = groupTransactions(txs);
  assert.deepEqual(shape(groups), ['4:4']);
  assert.deepEqual(groups[0]!.position, txs[3]!.position);
  assert.equal(groups[0]!.commitTsUs, txs[3]!.commitTsUs);
  assert.deepEqual(groups[0]!.changes, txs.flatMap((t) => t.changes));
});

test('a TRUNCATE, a dropped table or a new table version goes alone; the groups around it stay apart', () => {
  assert.deepEqual(shape(groupTransactions([tx(['c', 'a:v1']), tx(['t', 'a:v1']), tx(['c', 'a:v1']), tx(['x', 'b:v1']), tx(['c', 'a:v1'])])), ['1:1', '1:1', '1:1', '1:1', '1:1']);
  // a:v2 after a:v1 (a DDL between): a new group; b's version does not matter to a.
  assert.deepEqual(shape(groupTransactions([tx(['c', 'a:v1']), tx(['c', 'b:v1']), tx(['c', 'a:v2']), tx(['c', 'a:v2'], ['c', 'b:v1'])])), ['2:2', '2:3']);
  // One transaction holding two versions of a table (a DDL inside it) goes alone.
  assert.deepEqual(shape(groupTransactions([tx(['c', 'a:v1']), tx(['c', 'a:v1'], ['c', 'a:v2']), tx(['c', 'a:v2'])])), ['1:1', '1:2', '1:1']);
});

test('a group holds at most maxRows rows; a larger transaction is a group of its own; maxRows 1 applies each alone', () => {
  const big = tx(...Array.from({ length: 5 }, () => ['c', 'a:v1'] as [ReplicaChange['op'], string]));
  assert.deepEqual(shape(groupTransactions([tx(['c', 'a:v1']), tx(['c', 'a:v1']), big, tx(['c', 'a:v1']), tx(['c', 'a:v1']), tx(['c', 'a:v1'])], 3)), ['2:2', '1:5', '3:3']);
  assert.deepEqual(shape(groupTransactions([tx(['c', 'a:v1']), tx(['c', 'a:v1'])], 1)), ['1:1', '1:1']);
});

test('runs: whole transactions in order, at most maxRecords records each, a larger transaction alone, empty ones kept', () => {
  const t = (name: string, records: number) => ({ name, records: Array.from({ length: records }, () => 0) });
  const runs = transactionRuns([t('a', 3), t('b', 2), t('c', 0), t('d', 1), t('e', 9), t('f', 4), t('g', 2)], 5);
  assert.deepEqual(runs.map((r) => r.map((x) => x.name).join('')), ['abc', 'd', 'e', 'f', 'g']);
  assert.deepEqual(transactionRuns([], 5), []);
  // Every transaction once, in order, whatever the cut.
  const txs = Array.from({ length: 50 }, (_, i) => t(String(i), i % 7));
  for (const max of [1, 3, 10, 1000]) assert.deepEqual(transactionRuns(txs, max).flat(), txs);
});
