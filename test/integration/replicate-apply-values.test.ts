import assert from 'node:assert/strict';
import { test } from 'node:test';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { Position } from '../../src/core/position.js';
import type { ColumnType, Row, TableSchema } from '../../src/core/table-schema.js';
import { MysqlReplicaTarget } from '../../src/replicate/mysql-replica-target.js';
import { PostgresReplicaTarget } from '../../src/replicate/postgres-replica-target.js';
import type { ReplicaChange, ReplicaTarget, ReplicaTransaction } from '../../src/replicate/replica-target.js';
import { createMariadbDatabase, createPgDatabase } from '../support/restore-engines.js';

/**
 * The PostgreSQL replica target's batched statements against a real server, edge values only: a
 * batched INSERT, a batched UPDATE and a batched DELETE (the UPDATE and DELETE join `unnest` of
 * one text[] literal per column, each element cast to the column's type), read back as text and
 * compared with the values written out by hand here (not by the code under test). On MariaDB,
 * the batched UPDATE (rows counted, then one INSERT … ON DUPLICATE KEY UPDATE) is compared with
 * what the plain INSERT path writes for the same values.
 */

const col = (name: string, sourceType: string, type: ColumnType, nullable = true) => ({ name, sourceType, type, nullable });
const schema: TableSchema = {
  schema: 'public',
  table: 'edge',
  primaryKey: ['id'],
  columns: [
    col('id', 'bigint', { kind: 'int', bits: 64 }, false),
    col('i8', 'bigint', { kind: 'int', bits: 64 }),
    col('num', 'numeric(30,10)', { kind: 'decimal', precision: 30, scale: 10 }),
    col('numx', 'numeric', { kind: 'decimal' }),
    col('ts', 'timestamp(6) without time zone', { kind: 'timestamp' }),
    col('tstz', 'timestamp(6) with time zone', { kind: 'timestamptz' }),
    col('by', 'bytea', { kind: 'bytes' }),
    col('js', 'json', { kind: 'json' }),
    col('jb', 'jsonb', { kind: 'json' }),
    col('t', 'text', { kind: 'text' }),
    col('arr', 'text[]', { kind: 'array', element: { kind: 'text' } }),
    col('b', 'boolean', { kind: 'boolean' }),
  ],
};
const NAMES = schema.columns.map((c) => c.name);

/** Awkward text for every quoting layer: SQL quote, array double quote and backslash, comma, braces, the word NULL, emoji. */
const AWKWARD = `quote's "dq" \\ back, {brace} NULL ✓ 😀`;

/** Rows as the value model carries them, and as the replica must read them back (`::text`, bytes as hex). */
const cases: { row: Row; text: (string | null)[] }[] = [
  {
    row: { id: 1n, i8: 9223372036854775807n, num: '12345678901234567890.1234567890', numx: '1234567890123456789012345678901234567890.123456789', ts: '1970-01-01 00:00:00.000001', tstz: '2024-06-01 10:00:00.123456+00', by: new Uint8Array([0x00, 0x5c, 0x22, 0x27, 0xff]), js: '{"big": 123456789012345678901234567890, "f": 1.0000000000000001}', jb: '{"big": -123456789012345678901234567890}', t: AWKWARD, arr: ['a,b', null, 'NULL', '', '"q"', '\\'], b: true },
    text: ['1', '9223372036854775807', '12345678901234567890.1234567890', '1234567890123456789012345678901234567890.123456789', '1970-01-01 00:00:00.000001', '2024-06-01 10:00:00.123456+00', '005c2227ff', '{"big": 123456789012345678901234567890, "f": 1.0000000000000001}', '{"big": -123456789012345678901234567890}', AWKWARD, '{"a,b",NULL,"NULL","","\\"q\\"","\\\\"}', 'true'],
  },
  {
    row: { id: 2n, i8: -9223372036854775808n, num: '-0.0000000001', numx: '-0.000000000000000000000000000001', ts: '2262-04-11 23:47:16.854775', tstz: '1999-12-31 23:59:59.999999+00', by: new Uint8Array([]), js: '[]', jb: '{"a": [1, 2.50, null]}', t: '', arr: [], b: false },
    text: ['2', '-9223372036854775808', '-0.0000000001', '-0.000000000000000000000000000001', '2262-04-11 23:47:16.854775', '1999-12-31 23:59:59.999999+00', '', '[]', '{"a": [1, 2.50, null]}', '', '{}', 'false'],
  },
  {
    row: { id: 3n, i8: null, num: null, numx: null, ts: null, tstz: null, by: null, js: null, jb: null, t: null, arr: null, b: null },
    text: ['3', null, null, null, null, null, null, null, null, null, null, null],
  },
];

const READ = `SELECT id::text, i8::text, num::text, numx::text, ts::text, tstz::text, encode(by, 'hex') AS by, js::text, jb::text, t, arr::text, b::text FROM edge ORDER BY id`;

let lsn = 0x1000;
const tx = (changes: Omit<ReplicaChange, 'table' | 'schema' | 'position' | 'phiColumns'>[]): ReplicaTransaction => {
  const at = (lsn++).toString(16).padStart(8, '0');
  return { position: Position.of(at), commitTsUs: 1_700_000_000_000_000n, changes: changes.map((c, i) => ({ ...c, table: 'public.edge', schema, position: Position.of(at, i), phiColumns: new Set() })) };
};

/** The target recorded as a following replica; `apply` applies a transaction from the position the last one reached. */
async function following(target: ReplicaTarget): Promise<{ apply: (t: ReplicaTransaction) => Promise<void>; from: () => Position }> {
  let from = Position.of('00000100');
  await target.beginLoad({ source: 'clinic', state: 'loading', position: from, commitTsUs: 0n, phi: 'open', tables: null });
  await target.finishLoad('clinic', from, 0n);
  return {
    apply: async (t) => {
      await target.apply('clinic', t, from, 'open');
      from = t.position;
    },
    from: () => from,
  };
}

test('PostgreSQL replica target: batched INSERT, UPDATE and DELETE (unnest of text[] literals) keep edge values exact; a batch that misses a row applies nothing', { timeout: 120_000 }, async () => {
  const db = await createPgDatabase('rav');
  const target = new PostgresReplicaTarget(db.url, 'postgres');
  const reader = new pg.Client({ connectionString: db.url, options: '-c TimeZone=UTC -c extra_float_digits=3' });
  await reader.connect();
  const read = async () => (await reader.query({ text: READ, rowMode: 'array' })).rows as (string | null)[][];
  try {
    const replica = await following(target);
    const apply = replica.apply;

    // Inserted as placeholders, then every column updated to its edge value in one batched UPDATE.
    await apply(tx(cases.map((c) => ({ op: 'c' as const, before: null, after: { ...Object.fromEntries(NAMES.map((n) => [n, null])), id: c.row.id!, t: 'placeholder' } }))));
    await apply(tx(cases.map((c) => ({ op: 'u' as const, before: null, after: c.row }))));
    assert.deepEqual(await read(), cases.map((c) => c.text), 'the batched UPDATE wrote every edge value exactly');

    // Deleted and inserted again in one transaction (a DELETE batch, then an INSERT batch).
    await apply(tx([...cases.map((c) => ({ op: 'd' as const, before: { id: c.row.id as bigint }, after: null })), ...cases.map((c) => ({ op: 'c' as const, before: null, after: c.row }))]));
    assert.deepEqual(await read(), cases.map((c) => c.text), 'the batched DELETE and INSERT kept every edge value exactly');

    // A key change and a delete by key, batched with others.
    await apply(tx([{ op: 'u', before: { id: 1n }, after: { ...cases[0]!.row, id: 10n } }, { op: 'u', before: null, after: { ...cases[1]!.row, t: AWKWARD } }]));
    await apply(tx([{ op: 'd', before: { id: 10n }, after: null }, { op: 'd', before: { id: 3n }, after: null }]));
    assert.deepEqual(await read(), [[...cases[1]!.text.slice(0, 9), AWKWARD, ...cases[1]!.text.slice(10)]]);

    // A batch of which one row is missing from the replica (diverged): the whole transaction is refused, nothing applied.
    const before = await read();
    const diverged = tx([{ op: 'u', before: null, after: { ...cases[1]!.row, t: 'changed' } }, { op: 'u', before: null, after: { ...cases[0]!.row, id: 99n } }]);
    await assert.rejects(target.apply('clinic', diverged, replica.from(), 'open'), /public\.edge: the change at .* does not meet exactly one row of the replica/);
    assert.deepEqual(await read(), before, 'nothing of the refused transaction was applied');
    const { rows } = await reader.query<{ position: string }>('SELECT position FROM chartlog_replica');
    assert.equal(rows[0]!.position, Position.format(replica.from()), 'the position row did not move');
  } finally {
    await target.close();
    await reader.end();
    await db.drop();
  }
});

test('MariaDB replica target: a batched UPDATE of whole rows (counted, then INSERT … ON DUPLICATE KEY UPDATE) writes what an INSERT writes; a batch that misses a row applies nothing, inserts nothing', { timeout: 120_000 }, async () => {
  const db = await createMariadbDatabase('rav');
  const target = new MysqlReplicaTarget(db.url, 'postgres');
  const reader = await mysql.createConnection({ uri: db.url, charset: 'utf8mb4', dateStrings: true, supportBigNumbers: true, bigNumberStrings: true });
  // Every column as text (bytes as hex), without the id: rows are compared with each other.
  const read = async (ids: readonly bigint[]) => {
    const cols = NAMES.filter((n) => n !== 'id').map((n) => `HEX(\`${n}\`)`).join(', ');
    const [rows] = await reader.query({ sql: `SELECT ${cols} FROM edge WHERE id IN (${ids.join(', ')}) ORDER BY FIELD(id, ${ids.join(', ')})`, rowsAsArray: true });
    return rows as unknown[][];
  };
  try {
    const replica = await following(target);
    const apply = replica.apply;
    const placeholder = (id: bigint): Row => ({ ...Object.fromEntries(NAMES.map((n) => [n, null])), id, t: 'placeholder' });
    // Rows 101…103 inserted with the edge values; rows 1…3 inserted as placeholders, then updated to them.
    await apply(tx(cases.map((c) => ({ op: 'c' as const, before: null, after: { ...c.row, id: (c.row.id as bigint) + 100n } }))));
    await apply(tx(cases.map((c) => ({ op: 'c' as const, before: null, after: placeholder(c.row.id as bigint) }))));
    const inserted = await read([101n, 102n, 103n]);
    assert.notDeepEqual(await read([1n, 2n, 3n]), inserted, 'control: the placeholders differ from the edge rows');
    await apply(tx(cases.map((c) => ({ op: 'u' as const, before: null, after: c.row }))));
    assert.deepEqual(await read([1n, 2n, 3n]), inserted, 'the batched UPDATE wrote exactly what the INSERT wrote');

    // One row of the batch missing from the replica: without the count, the upsert would insert it.
    const [[{ n: before }]] = (await reader.query('SELECT COUNT(*) AS n FROM edge')) as unknown as [[{ n: string }]];
    const diverged = tx([{ op: 'u', before: null, after: { ...cases[1]!.row, t: 'changed' } }, { op: 'u', before: null, after: { ...cases[0]!.row, id: 99n } }]);
    await assert.rejects(target.apply('clinic', diverged, replica.from(), 'open'), /public\.edge: the change at .* does not meet exactly the rows it changes in the replica/);
    const [[{ n: after }]] = (await reader.query('SELECT COUNT(*) AS n FROM edge')) as unknown as [[{ n: string }]];
    assert.equal(after, before, 'no row was inserted');
    assert.deepEqual(await read([1n, 2n, 3n]), inserted, 'nothing of the refused transaction was applied');
    const [pos] = (await reader.query('SELECT position FROM chartlog_replica')) as unknown as [{ position: string }[]];
    assert.equal(pos[0]!.position, Position.format(replica.from()), 'the position row did not move');
  } finally {
    await target.close();
    await reader.end();
    await db.drop();
  }
});
