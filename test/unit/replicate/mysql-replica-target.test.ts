import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { batchChanges } from '../../../src/replicate/change-batches.js';
import { batchSteps } from '../../../src/replicate/mysql-replica-target.js';
import type { ReplicaChange } from '../../../src/replicate/replica-target.js';

/** The statements a MySQL replica applies per batch, and the rows each must meet. */

const schema: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'ssn', sourceType: 'text', type: { kind: 'text' }, nullable: true },
    { name: 'at', sourceType: 'timestamp', type: { kind: 'timestamp' }, nullable: true },
  ],
};
let seq = 0;
const ch = (op: ReplicaChange['op'], before: ReplicaChange['before'], after: ReplicaChange['after'], s = schema): ReplicaChange => ({ op, table: 'public.patients', schema: s, before, after, position: Position.of('0100', seq++), phiColumns: new Set(['ssn']) });
const steps = (changes: ReplicaChange[], phi: 'open' | 'omit' = 'open') => batchChanges(changes).flatMap((b) => batchSteps(b, phi, 'postgres')).map((s) => [s.sql, s.expect]);

test('inserts, deletes and updates as MySQL statements with the rows each must meet; PHI omitted as NULL', () => {
  assert.deepEqual(steps([ch('c', null, { id: 1n, ssn: "CANARY-SSN-1 it's", at: '2024-01-01 00:00:00.000001' }), ch('c', null, { id: 9223372036854775807n, ssn: null, at: null })]), [
    ["INSERT INTO `patients` (`id`, `ssn`, `at`) VALUES (1, 'CANARY-SSN-1 it\\'s', '2024-01-01 00:00:00.000001'), (9223372036854775807, NULL, NULL)", 2],
  ]);
  assert.doesNotMatch(String(steps([ch('c', null, { id: 1n, ssn: 'CANARY-SSN-1', at: null })], 'omit')[0]![0]), /CANARY/);
  assert.deepEqual(steps([ch('d', { id: 1n }, null), ch('d', { id: 2n }, null)]), [['DELETE FROM `patients` WHERE `id` IN (1, 2)', 2]]);
  assert.deepEqual(steps([ch('u', { id: 1n }, { id: 3n, ssn: 'x', at: null }), ch('u', null, { id: 2n, ssn: 'y', at: null })]), [
    ["UPDATE `patients` SET `id` = 3, `ssn` = 'x', `at` = NULL WHERE `id` = 1", 1],
    ["UPDATE `patients` SET `id` = 2, `ssn` = 'y', `at` = NULL WHERE `id` = 2", 1],
  ]);
  // TRUNCATE stays inside the transaction as DELETE FROM; a keyless table's delete is matched by its before-image, one row.
  assert.deepEqual(steps([ch('t', null, null)]), [['DELETE FROM `patients`', null]]);
  const keyless = { ...schema, primaryKey: [] };
  assert.deepEqual(steps([ch('d', { id: 5n, ssn: 's', at: null }, null, keyless)]), [["DELETE FROM `patients` WHERE `id` <=> 5 AND `ssn` <=> 's' AND `at` <=> NULL LIMIT 1", 1]]);
});

test('updates of whole rows that keep their key: the rows counted (and locked), then one INSERT … ON DUPLICATE KEY UPDATE with edge values as literals', () => {
  const at = '2024-02-29 23:59:59.999999';
  const got = batchChanges([ch('u', null, { id: 9223372036854775807n, ssn: `quote's "dq" \\ back\nline ✓`, at }), ch('u', { id: -9223372036854775808n }, { id: -9223372036854775808n, ssn: null, at: null })]).flatMap((b) => batchSteps(b, 'open', 'postgres'));
  assert.deepEqual(
    got.map((s) => [s.sql, s.expect, s.count ?? false]),
    [
      ['SELECT COUNT(*) AS n FROM `patients` WHERE `id` IN (9223372036854775807, -9223372036854775808) FOR UPDATE', 2, true],
      ["INSERT INTO `patients` (`id`, `ssn`, `at`) VALUES (9223372036854775807, 'quote\\'s \"dq\" \\\\ back\\nline ✓', '2024-02-29 23:59:59.999999'), (-9223372036854775808, NULL, NULL) ON DUPLICATE KEY UPDATE `ssn` = VALUES(`ssn`), `at` = VALUES(`at`)", null, false],
    ],
  );
  // --phi omit: the PHI column written as NULL, never the value.
  const omitted = batchChanges([ch('u', null, { id: 1n, ssn: 'CANARY-SSN-2', at }), ch('u', null, { id: 2n, ssn: 'CANARY-SSN-3', at })]).flatMap((b) => batchSteps(b, 'omit', 'postgres'));
  assert.doesNotMatch(omitted.map((s) => s.sql).join('\n'), /CANARY/);
  assert.match(omitted[1]!.sql, /VALUES \(1, NULL, '2024-02-29 23:59:59\.999999'\), \(2, NULL, /);
  // A table of key columns only: the count alone (nothing else to set).
  const keyOnly: TableSchema = { ...schema, columns: [schema.columns[0]!] };
  assert.deepEqual(batchChanges([ch('u', null, { id: 1n }, keyOnly), ch('u', null, { id: 2n }, keyOnly)]).flatMap((b) => batchSteps(b, 'open', 'postgres')).map((s) => s.sql), ['SELECT COUNT(*) AS n FROM `patients` WHERE `id` IN (1, 2) FOR UPDATE']);
  // Not whole rows (an unchanged TOAST value left out) or a key changed: one UPDATE per row, as before.
  assert.equal(batchChanges([ch('u', null, { id: 1n, ssn: 'a' }), ch('u', null, { id: 2n, ssn: 'b' })]).flatMap((b) => batchSteps(b, 'open', 'postgres')).filter((s) => s.sql.startsWith('UPDATE')).length, 2);
  assert.equal(steps([ch('u', { id: 1n }, { id: 3n, ssn: 'x', at: null }), ch('u', null, { id: 2n, ssn: 'y', at: null })])[0]![0], "UPDATE `patients` SET `id` = 3, `ssn` = 'x', `at` = NULL WHERE `id` = 1");
});
