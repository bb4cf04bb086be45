import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { changeSql, positionSql } from '../../../src/replicate/postgres-replica-target.js';
import { startDecision, type ReplicaChange, type ReplicaRecord } from '../../../src/replicate/replica-target.js';

/** Whether a target is loaded, resumed or refused; and the SQL a change becomes. */

const want = { source: 'clinic', phi: 'omit' as const, tables: null, target: 'postgres://r@h/db' };
const replica = (over: Partial<ReplicaRecord> = {}): ReplicaRecord => ({ source: 'clinic', state: 'following', position: Position.of('00ff'), commitTsUs: 1n, phi: 'omit', tables: null, ...over });
const refusal = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof ChartlogError && e.exitCode === 2 && pattern.test(e.describe()));

test('an empty target is loaded; a finished replica of the source resumes', () => {
  assert.deepEqual(startDecision({ tables: [], hasReplicaTable: false, replicas: [] }, want), { kind: 'load' });
  const r = replica();
  assert.deepEqual(startDecision({ tables: ['public.t'], hasReplicaTable: true, replicas: [r] }, want), { kind: 'resume', replica: r });
});

test('refusals: tables without a position, another source, an interrupted load, another PHI mode or table set', () => {
  refusal(() => startDecision({ tables: ['public.t'], hasReplicaTable: false, replicas: [] }, want), /holds tables \(public\.t\) but no replica position[\s\S]*fix: replicate into an empty database/);
  refusal(() => startDecision({ tables: [], hasReplicaTable: true, replicas: [replica({ source: 'other' })] }, want), /replica of other/);
  refusal(() => startDecision({ tables: [], hasReplicaTable: true, replicas: [replica({ state: 'loading' })] }, want), /did not finish/);
  refusal(() => startDecision({ tables: [], hasReplicaTable: true, replicas: [replica({ phi: 'open' })] }, want), /built with --phi open/);
  refusal(() => startDecision({ tables: [], hasReplicaTable: true, replicas: [replica({ tables: ['public.a'] })] }, want), /follows public\.a/);
});

const schema: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'ssn', sourceType: 'text', type: { kind: 'text' }, nullable: true },
    { name: 'note', sourceType: 'text', type: { kind: 'text' }, nullable: true },
  ],
};
const change = (over: Partial<ReplicaChange>): ReplicaChange => ({ op: 'c', table: 'public.patients', schema, before: null, after: null, position: Position.of('00ff', 0), phiColumns: new Set(['ssn']), ...over });

test('PHI per mode: open writes the value, omit NULL, sealed the sealed bytes', () => {
  const after = { id: 7n, ssn: 'CANARY-SSN-1', note: "it's" };
  assert.equal(changeSql(change({ after }), 'open', 'postgres'), `INSERT INTO "public"."patients" ("id", "ssn", "note") VALUES ('7', 'CANARY-SSN-1', 'it''s')`);
  assert.doesNotMatch(changeSql(change({ after }), 'omit', 'postgres'), /CANARY/);
  assert.match(changeSql(change({ after }), 'omit', 'postgres'), /VALUES \('7', NULL, 'it''s'\)/);
  const sealed = changeSql(change({ after: { ...after, ssn: new Uint8Array([1, 2, 255]) } }), 'sealed', 'postgres');
  assert.match(sealed, /'\\x0102ff'/);
  // A sealed column that holds no sealed bytes is refused, never written as it is.
  assert.throws(() => changeSql(change({ after }), 'sealed', 'postgres'), /sealed but holds no sealed bytes/);
});

test('updates and deletes find the row by key and fail in the server unless they meet exactly one', () => {
  const u = changeSql(change({ op: 'u', before: { id: 7n }, after: { id: 8n, ssn: null, note: 'n' } }), 'omit', 'postgres');
  assert.match(u, /^WITH u AS \(UPDATE "public"\."patients" SET "id" = '8', "ssn" = NULL, "note" = 'n' WHERE "id" = '7' RETURNING 1\)/);
  assert.match(u, /CASE WHEN count\(\*\) = 1 THEN '1' ELSE 'chartlog-replica-diverged public\.patients 00ff\.00000000' END\)::int/);
  const d = changeSql(change({ op: 'd', before: { id: 7n } }), 'open', 'postgres');
  assert.match(d, /DELETE FROM "public"\."patients" WHERE "id" = '7'/);
  assert.match(positionSql('clinic', Position.of('0100'), 5n, Position.of('00ff')), /WHERE source = 'clinic' AND position = '00ff\.ffffffff'.*chartlog-replica-position-moved/);
});

test('a PHI key column cannot be followed without opening it', () => {
  const keyed = { ...schema, primaryKey: ['ssn'] };
  assert.throws(() => changeSql(change({ schema: keyed, after: { id: 1n, ssn: new Uint8Array([1]), note: null } }), 'sealed', 'postgres'), /primary-key column is PHI/);
});

test('poll defaults: 50 ms checkpoint looks and 250 ms reads on a local store; slower on S3, where each look is a billed request', async () => {
  const { pollDefaults } = await import('../../../src/replicate/replicator.js');
  assert.deepEqual(pollDefaults('file:///var/lib/chartlog'), { pollMs: 250, checkpointLookMs: 50 });
  assert.deepEqual(pollDefaults('s3://bucket/prefix'), { pollMs: 1000, checkpointLookMs: 200 });
});
