import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ChangeEvent, Op } from '../../../src/core/change-event.js';
import { Position } from '../../../src/core/position.js';
import { identityColumns, type Row, type TableSchema } from '../../../src/core/table-schema.js';
import { cellKey, TableState } from '../../../src/archive/table-state.js';
import { TableMerge } from '../../../src/archive/table-merge.js';
import { SpillKey } from '../../../src/archive/spill-file.js';
import { fromAvroSchema, toAvroSchema } from '../../../src/codec/avro-schema.js';

const col = (name: string, nullable = true) => ({ name, sourceType: 'text', type: { kind: 'string' as const }, nullable });
/** No primary key; REPLICA IDENTITY USING INDEX on a unique index over (code): old images carry `code` only. */
const usingIndex: TableSchema = { schema: 'public', table: 'visits', primaryKey: [], replicaIdentity: ['code'], columns: [col('code', false), col('note'), col('ward')] };
/** The same table keyed as before this change: by the whole row. */
const wholeRow: TableSchema = { ...usingIndex, replicaIdentity: undefined };

let seq = 0;
const ev = (schema: TableSchema, op: Op, before: Row | null, after: Row | null): ChangeEvent => ({ op, schema, before, after, position: Position.of('01', seq++) });

/** The workload: 100 inserts, 50 updates (10 change the key), 20 deletes — key-only old images, as pgoutput sends them. */
function workload(schema: TableSchema): { changes: ChangeEvent[]; source: Map<string, Row> } {
  const source = new Map<string, Row>();
  const changes: ChangeEvent[] = [];
  for (let i = 0; i < 100; i++) {
    const row = { code: `c${i}`, note: `n${i}`, ward: i % 3 === 0 ? null : `w${i % 5}` };
    source.set(row.code, row);
    changes.push(ev(schema, 'c', null, row));
  }
  for (let i = 0; i < 50; i++) {
    const old = source.get(`c${i}`)!;
    const keyChange = i % 5 === 0;
    const after = { ...old, note: `u${i}`, ...(keyChange ? { code: `k${i}` } : {}) };
    source.delete(old.code as string);
    source.set(after.code as string, after);
    // pgoutput sends the old key only when the key changed; otherwise no old image at all.
    changes.push(ev(schema, 'u', keyChange ? { code: old.code! } : null, after));
  }
  for (let i = 50; i < 70; i++) {
    source.delete(`c${i}`);
    changes.push(ev(schema, 'd', { code: `c${i}` }, null));
  }
  return { changes, source };
}

const rowId = (r: Row): string =>
  Object.keys(r)
    .sort()
    .map((k) => `${k}=${cellKey(r[k])}`)
    .join('|');

test('USING INDEX on a key-less table: key-only old images match rows by the index columns (TableState)', () => {
  const { changes, source } = workload(usingIndex);
  const t = new TableState(usingIndex);
  for (const e of changes) t.apply(e);
  assert.equal(source.size, 80);
  assert.deepEqual([...t.allRows()].map(rowId).sort(), [...source.values()].map(rowId).sort());
});

test('negative control: keyed by the whole row (as before), the same history restores 150 rows, not 80', () => {
  const { changes } = workload(wholeRow);
  const t = new TableState(wholeRow);
  for (const e of changes) t.apply(e);
  assert.equal(t.size, 150);
});

test('USING INDEX: the streaming merge (in memory and spilled) equals the source', async () => {
  const { changes, source } = workload(usingIndex);
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-identity-test-'));
  try {
    for (const budget of [1 << 30, 1]) {
      const merge = new TableMerge('public.visits', { budgetBytes: budget, dir, key: new SpillKey(), expectedBytes: 1 });
      for (const e of changes) await merge.apply(e);
      const rows: Row[] = [];
      for await (const b of merge.merge(async function* () {}, usingIndex)) rows.push(...b);
      assert.deepEqual(rows.map(rowId).sort(), [...source.values()].map(rowId).sort(), `budget ${budget}`);
      if (budget === 1) assert.ok(merge.everSpilled);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FULL on a key-less table: identical rows are counted, deleting one leaves one', () => {
  const t = new TableState(wholeRow);
  const row = { code: 'same', note: 'x', ward: null };
  t.apply(ev(wholeRow, 'c', null, row));
  t.apply(ev(wholeRow, 'c', null, { ...row }));
  t.apply(ev(wholeRow, 'd', { ...row }, null));
  assert.deepEqual([...t.allRows()], [row]);
});

test('identity columns: replica identity, else primary key, else every column', () => {
  assert.deepEqual(identityColumns(usingIndex), ['code']);
  assert.deepEqual(identityColumns({ ...usingIndex, replicaIdentity: undefined, primaryKey: ['note'] }), ['note']);
  assert.deepEqual(identityColumns(wholeRow), ['code', 'note', 'ward']);
});

test('the replica identity survives the stored schema; a table without one keeps its old schema text (same fingerprint input)', () => {
  const stored = fromAvroSchema(toAvroSchema('clinic', usingIndex, new Set()));
  assert.deepEqual(stored.table.replicaIdentity, ['code']);
  const plain = toAvroSchema('clinic', wholeRow, new Set());
  assert.equal(JSON.stringify(plain).includes('"identity"'), false);
  assert.equal(fromAvroSchema(plain).table.replicaIdentity, undefined);
});
