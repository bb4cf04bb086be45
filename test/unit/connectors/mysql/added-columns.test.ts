import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withMissingValues } from '../../../../connectors/mysql/added-columns.js';
import type { ColumnSchema, TableSchema } from '../../../../src/core/table-schema.js';

const id: ColumnSchema = { name: 'id', sourceType: 'int(11)', type: { kind: 'int', bits: 32 }, nullable: false };
const v = (...columns: ColumnSchema[]): TableSchema => ({ schema: 'db', table: 't', primaryKey: ['id'], columns });
const col = (name: string, sourceType: string, type: ColumnSchema['type'], nullable = true): ColumnSchema => ({ name, sourceType, type, nullable });

test('constant defaults spelt by the ALTER become the value older rows read, in the value model', () => {
  const next = v(id,
    col('flag', 'int(11)', { kind: 'int', bits: 32 }, false),
    col('b', 'bigint(20)', { kind: 'int', bits: 64 }),
    col('s', 'varchar(10)', { kind: 'string' }),
    col('d', 'decimal(6,2)', { kind: 'decimal', precision: 6, scale: 2 }),
    col('e', "enum('x','y')", { kind: 'enum', values: ['x', 'y'] }),
    col('n', 'int(11)', { kind: 'int', bits: 32 }));
  const defaults = new Map<string, string | null>([['id', null], ['flag', '7'], ['b', '9007199254740993'], ['s', "'it''s'"], ['d', '1.50'], ['e', "'y'"], ['n', 'NULL']]);
  const sql = "ALTER TABLE t ADD COLUMN flag INT NOT NULL DEFAULT 7, ADD b BIGINT DEFAULT '9007199254740993', ADD s VARCHAR(10) DEFAULT 'it''s', ADD d DECIMAL(6,2) DEFAULT 1.50, ADD e ENUM('x','y') DEFAULT 'y', ADD n INT";
  const out = withMissingValues(v(id), next, defaults, sql);
  assert.deepEqual(out.columns.map((c) => c.missing), [undefined, { value: 7 }, { value: 9007199254740993n }, { value: "it's" }, { value: '1.50' }, { value: 'y' }, undefined]);
});

test('what cannot be proved is unknown: expressions, implicit NOT NULL values, a default the statement does not spell', () => {
  const next = v(id, col('ts', 'datetime', { kind: 'timestamp' }, false), col('k', 'int(11)', { kind: 'int', bits: 32 }, false), col('m', 'int(11)', { kind: 'int', bits: 32 }));
  const defaults = new Map<string, string | null>([['ts', 'current_timestamp()'], ['k', null], ['m', '9']]);
  const out = withMissingValues(v(id), next, defaults, 'ALTER TABLE t ADD ts DATETIME NOT NULL DEFAULT NOW(), ADD k INT NOT NULL, ADD m INT DEFAULT 8');
  for (const c of out.columns.slice(1)) assert.ok(c.missing && 'unknown' in c.missing, `${c.name} is unknown`);
  // Negative control: the same default, spelt by the statement, is accepted.
  const ok = withMissingValues(v(id), v(id, col('m', 'int(11)', { kind: 'int', bits: 32 })), new Map([['m', '9']]), 'ALTER TABLE t ADD m INT DEFAULT 9');
  assert.deepEqual(ok.columns[1]!.missing, { value: 9 });
});

test('columns the table had keep what their version recorded', () => {
  const prev = v(id, { ...col('flag', 'int(11)', { kind: 'int', bits: 32 }, false), missing: { value: 7 } });
  const out = withMissingValues(prev, v(id, col('flag', 'int(11)', { kind: 'int', bits: 32 }, false), col('z', 'int(11)', { kind: 'int', bits: 32 })), new Map([['z', 'NULL']]), 'ALTER TABLE t ADD z INT');
  assert.deepEqual(out.columns.map((c) => c.missing), [undefined, { value: 7 }, undefined]);
});

test('a renamed column carries renamedFrom (the one encoding, as on PostgreSQL); a swap, a reused name or a key column cannot be followed and is unknown', async () => {
  const { renamedColumn, withMissingValues } = await import('../../../../connectors/mysql/added-columns.js');
  const int = (name: string): ColumnSchema => ({ name, sourceType: 'int(11)', type: { kind: 'int', bits: 32 }, nullable: true });
  const t = (...cols: string[]): TableSchema => ({ schema: 'db', table: 't', primaryKey: ['id'], columns: cols.map(int) });
  assert.deepEqual(renamedColumn(t('id', 'note'), t('id', 'memo'), 'note', 'memo'), { renamedFrom: ['note'] });
  assert.match(String((renamedColumn(t('id', 'a', 'b'), t('id', 'a', 'b'), 'a', 'b').missing as { unknown: string }).unknown), /swap or a reused name/);
  assert.match(String((renamedColumn(t('id', 'x'), { ...t('pid', 'x'), primaryKey: ['pid'] }, 'id', 'pid').missing as { unknown: string }).unknown), /key column/);
  const v = withMissingValues(t('id', 'note'), t('id', 'memo'), new Map([['memo', null]]), 'ALTER TABLE t RENAME COLUMN note TO memo', new Map([['memo', 'note']]));
  assert.deepEqual([v.columns[1]!.renamedFrom, v.columns[1]!.missing], [['note'], undefined]);
  // Later versions keep the list; a second rename puts the newest name first and keeps the old column's missing value.
  const later = withMissingValues(v, t('id', 'memo', 'extra'), new Map([['extra', null]]), 'ALTER TABLE t ADD COLUMN extra int');
  assert.deepEqual(later.columns[1]!.renamedFrom, ['note']);
  const withValue = { ...later, columns: later.columns.map((c) => (c.name === 'memo' ? { ...c, missing: { value: 5 } } : c)) };
  const again = withMissingValues(withValue, t('id', 'text1', 'extra'), new Map(), 'ALTER TABLE t RENAME COLUMN memo TO text1', new Map([['text1', 'memo']]));
  assert.deepEqual([again.columns[1]!.renamedFrom, again.columns[1]!.missing], [['memo', 'note'], { value: 5 }]);
  // Negative control: without the rename the new column is taken as added (older rows read NULL).
  const plain = withMissingValues(t('id', 'note'), t('id', 'memo'), new Map([['memo', null]]), 'ALTER TABLE t RENAME COLUMN note TO memo').columns[1]!;
  assert.deepEqual([plain.renamedFrom, plain.missing], [undefined, undefined]);
});
