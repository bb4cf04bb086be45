import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseArrayLiteral } from '../../../connectors/postgres/type-parsers.js';
import type { CellValue, ColumnSchema, ColumnType } from '../../../src/core/table-schema.js';
import { csvText, jsonValue } from '../../../src/restore/targets/file-target.js';
import { mysqlLiteral } from '../../../src/restore/targets/mysql-text.js';
import { copyEscape, pgText } from '../../../src/restore/targets/postgres-text.js';
import type { TablePlan } from '../../../src/restore/targets/restore-target.js';

/**
 * Multi-dimensional PostgreSQL arrays in every restore form: nested levels stay nested (never
 * flattened), and every element keeps its element type's form at any depth.
 */

const col = (type: ColumnType): ColumnSchema => ({ name: 'c', sourceType: 'x[]', type, nullable: true });
const plan = (type: ColumnType): TablePlan => ({ name: 's.t', table: { schema: 's', table: 't', columns: [col(type)], primaryKey: [] }, sealed: new Set(), sourceEngine: 'postgres' });
const arrayOf = (element: ColumnType): ColumnType => ({ kind: 'array', element });

test('PostgreSQL text form: nested braces, elements quoted at every depth, read back to the same value', () => {
  const hex = (e: string): CellValue => Uint8Array.from(Buffer.from(e.slice(2), 'hex'));
  const cases: [ColumnType, CellValue[], string, (e: string) => CellValue][] = [
    [{ kind: 'int', bits: 32 }, [[1, 2], [3, null]], '{{"1","2"},{"3",NULL}}', Number],
    [{ kind: 'int', bits: 32 }, [[[1], [null]], [[-2147483648], [2147483647]]], '{{{"1"},{NULL}},{{"-2147483648"},{"2147483647"}}}', Number],
    [{ kind: 'string' }, [['a,b', 'quo"ted'], ['NULL', null], ['', 'back\\slash']], '{{"a,b","quo\\"ted"},{"NULL",NULL},{"","back\\\\slash"}}', String],
    [{ kind: 'float', bits: 64 }, [[-0, NaN], [Infinity, -Infinity]], '{{"-0","NaN"},{"Infinity","-Infinity"}}', Number],
    [{ kind: 'bytes' }, [[Uint8Array.of(0, 255)], [Uint8Array.of()]], '{{"\\\\x00ff"},{"\\\\x"}}', hex],
    [{ kind: 'int', bits: 64 }, [[9223372036854775807n], [null]], '{{"9223372036854775807"},{NULL}}', BigInt],
  ];
  for (const [element, value, text, parse] of cases) {
    assert.equal(pgText(value, col(arrayOf(element)), false, 'postgres'), text);
    // What PostgreSQL's array input reads back, with the connector's own array parser.
    assert.deepStrictEqual(parseArrayLiteral(text, ',', parse), value);
  }
  // COPY escapes the literal's backslashes once more; the array syntax stays intact.
  assert.equal(copyEscape('{{"\\\\x00ff"}}'), '{{"\\\\\\\\x00ff"}}');
});

test('csv: the same PostgreSQL array literal, nested', () => {
  const t = arrayOf({ kind: 'string' });
  assert.equal(csvText([['a', null], ['NULL', '']], col(t), false, plan(t)), '{{"a",NULL},{"NULL",""}}');
  const f = arrayOf({ kind: 'float', bits: 32 });
  assert.equal(csvText([[-0], [NaN]], col(f), false, plan(f)), '{{"-0"},{"NaN"}}');
});

test('jsonl: nested JSON arrays with each element in its exact form at every depth', () => {
  assert.deepStrictEqual(jsonValue([[1n, null], [[-1n]]], { type: arrayOf({ kind: 'int', bits: 64 }) }, false), [['1', null], [['-1']]]);
  assert.deepStrictEqual(jsonValue([[-0, NaN], [1.5]], { type: arrayOf({ kind: 'float', bits: 64 }) }, false), [['-0', 'NaN'], [1.5]]);
  assert.deepStrictEqual(jsonValue([[Uint8Array.of(255)], []], { type: arrayOf({ kind: 'bytes' }) }, false), [['/w=='], []]);
  assert.deepStrictEqual(jsonValue([[['NULL', null]]], { type: arrayOf({ kind: 'string' }) }, false), [[['NULL', null]]]);
});

test('MySQL targets: nested arrays as nested JSON', () => {
  assert.equal(mysqlLiteral([[1, 2], [null, 4]], col(arrayOf({ kind: 'int', bits: 32 })), false, 'postgres'), `'[[1,2],[null,4]]'`);
  assert.equal(mysqlLiteral([['a"b'], [9007199254740993n]], col(arrayOf({ kind: 'string' })), false, 'postgres'), `'[["a\\\\"b"],["9007199254740993"]]'`);
});
