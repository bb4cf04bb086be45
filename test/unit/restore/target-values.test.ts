import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CellValue, ColumnSchema, ColumnType } from '../../../src/core/table-schema.js';
import { UNCHANGED } from '../../../src/core/table-schema.js';
import { csvText, fileNameOf, jsonValue } from '../../../src/restore/targets/file-target.js';
import { mysqlColumnType, mysqlLiteral } from '../../../src/restore/targets/mysql-text.js';
import { arrayLiteral, copyEscape, enumOf, pgColumnType, pgText, sqlLiteral } from '../../../src/restore/targets/postgres-text.js';
import { maskUrl } from '../../../src/core/mask-url.js';
import { scrubMessage, type TablePlan } from '../../../src/restore/targets/restore-target.js';

const col = (type: ColumnType, sourceType = 'x', name = 'c'): ColumnSchema => ({ name, sourceType, type, nullable: true });
const pg = (v: CellValue | undefined, type: ColumnType) => pgText(v, col(type), false, 'postgres');
const my = (v: CellValue | undefined, type: ColumnType, engine: 'mysql' | 'postgres' = 'mysql') => mysqlLiteral(v, col(type), false, engine);

test('PostgreSQL text forms keep every value exactly', () => {
  assert.equal(pg(null, { kind: 'string' }), null);
  assert.equal(pg(undefined, { kind: 'string' }), null, 'a column the row version lacked is NULL');
  assert.equal(pg('', { kind: 'string' }), '', "'' stays '' (not NULL)");
  assert.equal(pg(true, { kind: 'boolean' }), 't');
  assert.equal(pg(-9223372036854775808n, { kind: 'int', bits: 64 }), '-9223372036854775808');
  assert.equal(pg(-0, { kind: 'float', bits: 64 }), '-0');
  assert.equal(pg(NaN, { kind: 'float', bits: 32 }), 'NaN');
  assert.equal(pg(-Infinity, { kind: 'float', bits: 64 }), '-Infinity');
  assert.equal(pg(0.1, { kind: 'float', bits: 64 }), '0.1');
  assert.equal(pg(3.4028234663852886e38, { kind: 'float', bits: 32 }), '3.4028234663852886e+38');
  assert.equal(pg('12345678901234567890.123456789012345678901234567890', { kind: 'decimal' }), '12345678901234567890.123456789012345678901234567890');
  assert.equal(pg(Uint8Array.of(0, 255, 16), { kind: 'bytes' }), '\\x00ff10');
  assert.equal(pg(new Uint8Array(0), { kind: 'bytes' }), '\\x');
  assert.equal(pg('0044-03-15 12:00:00+00 BC', { kind: 'timestamptz' }), '0044-03-15 12:00:00+00 BC');
  assert.equal(pg('{"big": 123456789012345678901234567890}', { kind: 'json' }), '{"big": 123456789012345678901234567890}');
  assert.throws(() => pg(UNCHANGED, { kind: 'string' }), /unchanged value reached the target/);
});

test('PostgreSQL arrays quote every element, NULL stays NULL and "NULL" stays text', () => {
  const ta = { kind: 'array', element: { kind: 'string' } } as const;
  assert.equal(pg(['a,b', 'quo"ted', 'back\\slash', null, 'NULL', '', '{brace}'], ta), '{"a,b","quo\\"ted","back\\\\slash",NULL,"NULL","","{brace}"}');
  assert.equal(pg([], ta), '{}');
  assert.equal(arrayLiteral([[1, 2], [null, 4]], { kind: 'int', bits: 32 }, 'postgres'), '{{"1","2"},{NULL,"4"}}');
  assert.equal(pg(['1.10', 'NaN'], { kind: 'array', element: { kind: 'decimal' } }), '{"1.10","NaN"}');
  assert.equal(pg([-0, NaN], { kind: 'array', element: { kind: 'float', bits: 64 } }), '{"-0","NaN"}');
});

test('COPY text escapes and SQL literals', () => {
  assert.equal(copyEscape('a\tb\nc\rd\\e'), 'a\\tb\\nc\\rd\\\\e');
  assert.equal(copyEscape('plain ✓'), 'plain ✓');
  assert.equal(sqlLiteral("it's"), "'it''s'");
  assert.equal(sqlLiteral(null), 'NULL');
});

test('PostgreSQL column types: recorded source type (user types quoted), bytea when sealed, enums found through arrays', () => {
  const e = col({ kind: 'array', element: { kind: 'enum', values: ['sad', 'ok'] } }, 'mood[]');
  assert.equal(pgColumnType(e, false, 'postgres'), '"mood"[]');
  assert.deepEqual(enumOf(e), { name: '"mood"', labels: ['sad', 'ok'] });
  assert.equal(pgColumnType(col({ kind: 'decimal', precision: 12, scale: 2 }, 'numeric(12,2)'), false, 'postgres'), 'numeric(12,2)');
  assert.throws(() => pgColumnType(col({ kind: 'string' }, 'text); DROP TABLE x; --'), false, 'postgres'), /not an allowed PostgreSQL type/);
  assert.equal(pgColumnType(col({ kind: 'string' }, 'character varying(10)'), true, 'postgres'), 'bytea');
  assert.equal(pgColumnType(col({ kind: 'int', bits: 64, unsigned: true }, 'bigint unsigned'), false, 'mysql'), 'numeric(20,0)');
  assert.equal(pgColumnType(col({ kind: 'time' }, 'time(6)'), false, 'mysql'), 'interval', 'MySQL TIME reaches ±838 hours');
  assert.equal(pgText('0000-00-00', col({ kind: 'date' }), false, 'mysql'), null, 'a MySQL zero date has no PostgreSQL form');
});

test('MySQL literals keep every value exactly', () => {
  assert.equal(my(null, { kind: 'string' }), 'NULL');
  assert.equal(my('', { kind: 'string' }), "''");
  assert.equal(my("it's \\ \n \0 \x1a", { kind: 'string' }), "'it\\'s \\\\ \\n \\0 \\Z'");
  assert.equal(my(18446744073709551615n, { kind: 'int', bits: 64, unsigned: true }), '18446744073709551615');
  assert.equal(my(0, { kind: 'year' }), "'0000'");
  assert.equal(my(1999, { kind: 'year' }), "'1999'");
  assert.equal(my(-0, { kind: 'float', bits: 64 }), '-0e0');
  assert.equal(my(1e-300, { kind: 'float', bits: 64 }), '1e-300');
  assert.equal(my('0000000001', { kind: 'bit', length: 10 }), "b'0000000001'");
  assert.equal(my(Uint8Array.of(0xde, 0xad), { kind: 'bytes' }), "X'dead'");
  assert.equal(my(new Uint8Array(0), { kind: 'bytes' }), "X''");
  assert.equal(my(['p', "q'r"], { kind: 'set', values: ['p', "q'r"] }), "'p,q\\'r'");
  assert.equal(my([], { kind: 'set', values: ['p'] }), "''");
  assert.equal(my('2038-01-19 03:14:07.999999+00', { kind: 'timestamptz' }), "'2038-01-19 03:14:07.999999'", 'TIMESTAMP given in UTC');
  assert.equal(my('0000-00-00 00:00:00.000000+00', { kind: 'timestamptz' }), "'0000-00-00 00:00:00.000000'");
  assert.equal(my('-838:59:59.000000', { kind: 'time' }), "'-838:59:59.000000'");
  // Best effort from PostgreSQL: what MySQL cannot hold becomes NULL.
  assert.equal(my('infinity', { kind: 'timestamptz' }, 'postgres'), 'NULL');
  assert.equal(my('0044-03-15 BC', { kind: 'date' }, 'postgres'), 'NULL');
  assert.equal(my(NaN, { kind: 'float', bits: 64 }, 'postgres'), 'NULL');
  assert.equal(my('NaN', { kind: 'decimal', precision: 10, scale: 2 }, 'postgres'), 'NULL');
  assert.equal(my(['1', null], { kind: 'array', element: { kind: 'string' } }, 'postgres'), `'["1",null]'`);
});

test('MySQL column types: COLUMN_TYPE re-spelt, labels as literals, bytes when sealed (key-sized in a key)', () => {
  const c = col({ kind: 'enum', values: ['a,b', "it's"] }, "enum('a,b','it''s')");
  assert.equal(mysqlColumnType(c, false, 'mysql', false), "enum('a,b','it\\'s')");
  assert.equal(mysqlColumnType(col({ kind: 'int', bits: 32, unsigned: true }, 'int(10) unsigned'), false, 'mysql', false), 'int(10) unsigned');
  assert.throws(() => mysqlColumnType(col({ kind: 'string' }, 'varchar(10)) ; DROP TABLE x; --'), false, 'mysql', false), /not an allowed MySQL type/);
  assert.equal(mysqlColumnType(c, true, 'mysql', false), 'longblob');
  assert.equal(mysqlColumnType(c, true, 'mysql', true), 'varbinary(3072)');
  assert.equal(mysqlColumnType(col({ kind: 'decimal' }, 'numeric'), false, 'postgres', false), 'longtext', 'unbounded numeric keeps its digits as text');
  assert.equal(mysqlColumnType(col({ kind: 'string' }, 'text'), false, 'postgres', true), 'varchar(255)', 'a key column needs a bounded type');
});

const plan = (type: ColumnType): TablePlan => ({ name: 's.t', table: { schema: 's', table: 't', columns: [col(type)], primaryKey: [] }, sealed: new Set(), sourceEngine: 'postgres' });

test('csv and jsonl forms', () => {
  const csv = (v: CellValue, type: ColumnType) => csvText(v, col(type), false, plan(type));
  assert.equal(csv(true, { kind: 'boolean' }), 'true');
  assert.equal(csv(Uint8Array.of(0, 1, 2), { kind: 'bytes' }), 'AAEC');
  assert.equal(csv(-0, { kind: 'float', bits: 64 }), '-0');
  assert.equal(csv(['p', 's'], { kind: 'set' }), 'p,s');
  assert.equal(csv(['a', null], { kind: 'array', element: { kind: 'string' } }), '{"a",NULL}');
  const json = (v: CellValue, type: ColumnType, sealed = false) => jsonValue(v, { type }, sealed);
  assert.equal(json(9223372036854775807n, { kind: 'int', bits: 64 }), '9223372036854775807');
  assert.equal(json(2147483647, { kind: 'int', bits: 32 }), 2147483647);
  assert.equal(json(-0, { kind: 'float', bits: 64 }), '-0');
  assert.equal(json(Infinity, { kind: 'float', bits: 64 }), 'Infinity');
  assert.equal(json(1.5, { kind: 'float', bits: 64 }), 1.5);
  assert.equal(json('{"n": 123456789012345678901234567890}', { kind: 'json' }), '{"n": 123456789012345678901234567890}', 'JSON text as a string: big integers stay exact');
  assert.deepEqual(json([1n, null], { kind: 'array', element: { kind: 'int', bits: 64 } }), ['1', null]);
  assert.equal(json(Uint8Array.of(255), { kind: 'string' }, true), '/w==', 'sealed bytes as base64');
  assert.throws(() => json('plain', { kind: 'string' }, true), /sealed column holds no sealed bytes/);
  assert.equal(fileNameOf('public.my table/x'), 'public.my%20table%2fx');
});

test('driver messages lose their quoted parts (they may quote values); URLs lose passwords', () => {
  assert.equal(scrubMessage('invalid input syntax for type integer: "CANARY-1"'), 'invalid input syntax for type integer: "…"');
  assert.equal(scrubMessage("Incorrect decimal value: 'CANARY' for column `d` at row 1"), "Incorrect decimal value: '…' for column `d` at row 1");
  assert.equal(maskUrl('postgres://u:secret@h:5432/db'), 'postgres://u:****@h:5432/db');
  assert.equal(maskUrl('mysql://root@h/db'), 'mysql://root@h/db');
});
