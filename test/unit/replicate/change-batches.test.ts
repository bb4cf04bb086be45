import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import { UNCHANGED, type TableSchema } from '../../../src/core/table-schema.js';
import { batchChanges } from '../../../src/replicate/change-batches.js';
import { batchSql, textArrayLiteral } from '../../../src/replicate/postgres-replica-target.js';
import type { ReplicaChange } from '../../../src/replicate/replica-target.js';

/** How a transaction's changes are cut into one-statement batches, and the SQL of a batch. */

const keyed: TableSchema = {
  schema: 'public',
  table: 'accounts',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'bal', sourceType: 'numeric', type: { kind: 'decimal' }, nullable: true },
    { name: 'note', sourceType: 'text', type: { kind: 'text' }, nullable: true },
  ],
};
const keyless: TableSchema = { ...keyed, table: 'history', primaryKey: [] };
let seq = 0;
const ch = (op: ReplicaChange['op'], before: ReplicaChange['before'], after: ReplicaChange['after'], schema = keyed): ReplicaChange => ({
  op,
  table: `public.${schema.table}`,
  schema,
  before,
  after,
  position: Position.of('0100', seq++),
  phiColumns: new Set(['note']),
});
const kinds = (changes: ReplicaChange[]) => batchChanges(changes).map((b) => `${b.kind}:${b.changes.length}`);

test('runs of same-kind changes of a table become one batch each, in order', () => {
  const changes = [
    ...[1n, 2n, 3n].map((id) => ch('c', null, { id, bal: '1.5', note: 'n' })),
    ...[1n, 2n].map((id) => ch('u', null, { id, bal: '2', note: 'n' })),
    ch('c', null, { id: 9n, bal: '1', note: null }, keyless),
    ...[1n, 2n, 3n].map((id) => ch('d', { id }, null)),
    ch('t', null, null),
  ];
  assert.deepEqual(kinds(changes), ['insert:3', 'update:2', 'insert:1', 'delete:3', 'single:1']);
});

test('a batch never holds two changes of one row: a repeated or moved key starts a new batch', () => {
  assert.deepEqual(kinds([ch('u', null, { id: 1n, bal: '1', note: 'a' }), ch('u', null, { id: 2n, bal: '1', note: 'a' }), ch('u', null, { id: 1n, bal: '2', note: 'a' })]), ['update:2', 'update:1']);
  // 1 → 5, then 5 → 6: the second finds the row the first moved.
  assert.deepEqual(kinds([ch('u', { id: 1n }, { id: 5n, bal: '1', note: 'a' }), ch('u', { id: 5n }, { id: 6n, bal: '1', note: 'a' })]), ['update:1', 'update:1']);
  // A one-column key compared as itself (number or bigint, no text built): the same with number keys, -0 meeting 0.
  const int32 = (id: number) => ch('u', null, { id, bal: '1', note: 'a' });
  assert.deepEqual(kinds([int32(1), int32(2), int32(1)]), ['update:2', 'update:1']);
  assert.deepEqual(kinds([int32(0), int32(-0)]), ['update:1', 'update:1']);
  assert.deepEqual(kinds([ch('u', { id: 1 }, { id: 5, bal: '1', note: 'a' }), int32(5)]), ['update:1', 'update:1']);
  // Different columns set (an unchanged TOAST value) or another table: new batch.
  assert.deepEqual(kinds([ch('u', null, { id: 1n, bal: '1', note: 'a' }), ch('u', null, { id: 2n, bal: '1', note: UNCHANGED })]), ['update:1', 'update:1']);
  // A keyless table's updates and deletes go one by one (found by the whole before-image).
  const row = { id: 1n, bal: '1', note: 'a' };
  assert.deepEqual(kinds([ch('d', row, null, keyless), ch('d', row, null, keyless)]), ['single:1', 'single:1']);
  assert.deepEqual(batchChanges(Array.from({ length: 2500 }, (_, i) => ch('c', null, { id: BigInt(i), bal: '0', note: null }))).map((b) => b.changes.length), [1000, 1000, 500]);
});

test('batch SQL: multi-row INSERT; UPDATE and DELETE joined to unnest of one text[] per column, each cast to the column type, checked to meet every row', () => {
  const types = new Map([['id', 'bigint'], ['bal', 'numeric'], ['note', 'text']]);
  const [ins] = batchChanges([1n, 2n].map((id) => ch('c', null, { id, bal: '1.50', note: "it's" })));
  assert.equal(batchSql(ins!, 'open', 'postgres', types), `INSERT INTO "public"."accounts" ("id", "bal", "note") VALUES ('1', '1.50', 'it''s'), ('2', '1.50', 'it''s')`);
  assert.match(batchSql(ins!, 'omit', 'postgres', types), /VALUES \('1', '1\.50', NULL\), \('2', '1\.50', NULL\)$/);
  const [upd] = batchChanges([ch('u', { id: 1n }, { id: 3n, bal: '2', note: 'x' }), ch('u', null, { id: 2n, bal: '4', note: null })]);
  assert.equal(
    batchSql(upd!, 'open', 'postgres', types),
    `WITH u AS (UPDATE "public"."accounts" t SET "id" = v.c0::bigint, "bal" = v.c1::numeric, "note" = v.c2::text FROM unnest('{"1","2"}'::text[], '{"3","2"}'::text[], '{"2","4"}'::text[], '{"x",NULL}'::text[]) AS v (k0, c0, c1, c2) WHERE t."id" = v.k0::bigint RETURNING 1) SELECT (CASE WHEN count(*) = 2 THEN '1' ELSE 'chartlog-replica-diverged public.accounts ${Position.format(upd!.changes[0]!.position)}' END)::int FROM u`,
  );
  // No change of the batch moves its key (no before-image, or one with the same key): the key is not set to itself.
  const [kept] = batchChanges([ch('u', null, { id: 1n, bal: '2', note: 'x' }), ch('u', { id: 2n, bal: '0', note: 'y' }, { id: 2n, bal: '4', note: null })]);
  assert.equal(
    batchSql(kept!, 'open', 'postgres', types),
    `WITH u AS (UPDATE "public"."accounts" t SET "bal" = v.c0::numeric, "note" = v.c1::text FROM unnest('{"1","2"}'::text[], '{"2","4"}'::text[], '{"x",NULL}'::text[]) AS v (k0, c0, c1) WHERE t."id" = v.k0::bigint RETURNING 1) SELECT (CASE WHEN count(*) = 2 THEN '1' ELSE 'chartlog-replica-diverged public.accounts ${Position.format(kept!.changes[0]!.position)}' END)::int FROM u`,
  );
  // --phi omit: the PHI column's array holds NULLs only.
  assert.match(batchSql(upd!, 'omit', 'postgres', types), /'\{NULL,NULL\}'::text\[\]\) AS v/);
  const [del] = batchChanges([ch('d', { id: 1n }, null), ch('d', { id: 2n }, null)]);
  assert.equal(
    batchSql(del!, 'open', 'postgres', types),
    `WITH d AS (DELETE FROM "public"."accounts" t USING unnest('{"1","2"}'::text[]) AS v (k0) WHERE t."id" = v.k0::bigint RETURNING 1) SELECT (CASE WHEN count(*) = 2 THEN '1' ELSE 'chartlog-replica-diverged public.accounts ${Position.format(del!.changes[0]!.position)}' END)::int FROM d`,
  );
  assert.throws(() => batchSql(del!, 'open', 'postgres', new Map()), /type of column id in the replica is not known/);
});

test('textArrayLiteral: edge values survive the array and SQL quoting (NULL apart from the text NULL and from empty)', () => {
  assert.equal(textArrayLiteral([]), `'{}'::text[]`);
  assert.equal(textArrayLiteral([null, 'NULL', '']), `'{NULL,"NULL",""}'::text[]`);
  // Quote, double quote, backslash, comma, braces, whitespace and newline: each element stays one element.
  assert.equal(textArrayLiteral([`it's`, `say "hi"`, 'C:\\dir\\', 'a,b', '{x}', ' pad ', 'l1\nl2']), `'{"it''s","say \\"hi\\"","C:\\\\dir\\\\","a,b","{x}"," pad ","l1\nl2"}'::text[]`);
  // Exact values as the text input form gives them: 64-bit integers, decimals, microseconds, bytea hex, JSON with a big integer, an array.
  const edge = ['-9223372036854775808', '99999999999999999999.9999999999', '2024-02-29 23:59:59.999999', '\\x005c2227ff', '{"x": 9007199254740993}', '{"a\\"b",NULL}'];
  assert.equal(textArrayLiteral(edge), `'{"-9223372036854775808","99999999999999999999.9999999999","2024-02-29 23:59:59.999999","\\\\x005c2227ff","{\\"x\\": 9007199254740993}","{\\"a\\\\\\"b\\",NULL}"}'::text[]`);
});
