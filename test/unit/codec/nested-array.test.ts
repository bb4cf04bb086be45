import assert from 'node:assert/strict';
import { test } from 'node:test';
import avro from 'avsc';
import { columnCodec, OID, type PgTypeInfo } from '../../../connectors/postgres/type-parsers.js';
import { toAvroSchema } from '../../../src/codec/avro-schema.js';
import { bigintTypeHook } from '../../../src/codec/bigint-long.js';
import { mappingFor, NESTED_ARRAY_NAMESPACE } from '../../../src/codec/value-mapping.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { freezeTableSchema, type CellValue, type ColumnType, type TableSchema } from '../../../src/core/table-schema.js';
import { codecRig } from '../../support/codec-support.js';

/**
 * Multi-dimensional PostgreSQL arrays: `int4[]` holds '{{1,2},{3,4}}' as well as '{1,2}', so
 * array values nest to any depth under one element type. These once stopped `chartlog run`
 * with "expected a 32-bit integer number, got array".
 */

const INT4: ColumnType = { kind: 'int', bits: 32 };

/** The catalog rows the connector would look up for int4[] and text[]. */
function arrayTypeInfo(oid: number, elementOid: number, name: string): PgTypeInfo {
  return { oid, schema: 'pg_catalog', name, typtype: 'b', category: 'A', elementOid, baseOid: 0, baseTypmod: -1, delimiter: ',' };
}
const CATALOG = new Map<number, PgTypeInfo>([
  [1007, arrayTypeInfo(1007, OID.int4, '_int4')],
  [1009, arrayTypeInfo(1009, OID.text, '_text')],
]);

function tableOf(columns: { name: string; sourceType: string; type: ColumnType }[]): TableSchema {
  return freezeTableSchema({
    schema: 'public',
    table: 'labs',
    primaryKey: ['id'],
    columns: [{ name: 'id', sourceType: 'integer', type: INT4, nullable: false }, ...columns.map((c) => ({ ...c, nullable: true }))],
  });
}

function batchOf(table: TableSchema, rows: Record<string, CellValue>[]): ChangeBatch {
  const commit = '0000000000000a00';
  return {
    source: 'clinic',
    txId: '42',
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 1_700_000_000_000_000n,
    snapshot: false,
    events: rows.map((after, seq) => ({ op: 'c', schema: table, before: null, after, position: Position.of(commit, seq) })),
  };
}

/** Encodes, then decodes with the same codec and with a fresh reader of the archive. */
async function roundTrip(batch: ChangeBatch): Promise<void> {
  const rig = codecRig();
  const messages = await rig.codec.encodeBatch(batch);
  for (const decoder of [rig.codec, rig.reader()]) {
    for (const [i, m] of messages.entries()) assert.deepStrictEqual((await decoder.decode(m.value)).event, batch.events[i]);
  }
}

test("the failing case: '{{1,2},{3,4}}' in an int4[] column, parsed as the connector parses it, round-trips", async () => {
  const int4Array = columnCodec(1007, -1, CATALOG);
  assert.deepStrictEqual(int4Array.type, { kind: 'array', element: INT4 });
  const value = int4Array.parse('{{1,2},{3,4}}');
  assert.deepStrictEqual(value, [[1, 2], [3, 4]]);
  const table = tableOf([{ name: 'md', sourceType: 'integer[]', type: int4Array.type }]);
  await roundTrip(batchOf(table, [{ id: 1, md: value }]));
});

test('int4[] and text[] of 1–4 dimensions, empty, with nulls and PostgreSQL text that looks like syntax', async () => {
  const int4Array = columnCodec(1007, -1, CATALOG);
  const textArray = columnCodec(1009, -1, CATALOG);
  const table = tableOf([
    { name: 'md', sourceType: 'integer[]', type: int4Array.type },
    { name: 'tx', sourceType: 'text[]', type: textArray.type },
  ]);
  const ints = ['{}', '{1,NULL}', '{{NULL,NULL}}', '{{-2147483648,2147483647},{0,NULL}}', '{{{1},{2}},{{3},{4}}}', '{{{{5}}}}', '[0:1][1:2]={{1,2},{3,4}}'];
  const texts = ['{}', '{{"a,b","quo\\"ted"},{NULL,"NULL"}}', '{{"",""},{" sp ","{brace}"}}', '{{{"back\\\\slash"}}}', '{{"{1,2}",null}}', '{"x"}', '{{"日本","😀"}}'];
  const rows = ints.map((t, i): Record<string, CellValue> => ({ id: i + 1, md: int4Array.parse(t), tx: textArray.parse(texts[i]!) }));
  assert.deepStrictEqual(rows[3]!.md, [[-2147483648, 2147483647], [0, null]]);
  assert.deepStrictEqual(rows[1]!.tx, [['a,b', 'quo"ted'], [null, 'NULL']]);
  assert.deepStrictEqual(rows[4]!.tx, [['{1,2}', null]]);
  await roundTrip(batchOf(table, rows));
});

test('every element kind nests exactly: ragged lists, empty lists and nulls at every level', () => {
  const cases: [ColumnType, CellValue[]][] = [
    [{ kind: 'int', bits: 16 }, [[-32768, 32767], [], [null, [0]]]],
    [{ kind: 'int', bits: 64 }, [[-(1n << 63n), (1n << 63n) - 1n], [[null], []], 0n]],
    [{ kind: 'decimal', precision: 10, scale: 3 }, [['1.500', 'NaN', '-0.000', 'Infinity'], [null, ['0.001', '1e5']]]],
    [{ kind: 'decimal' }, [['123456789012345678901234567890.5', '-Infinity'], [[null]]]],
    [{ kind: 'string' }, [['NULL', 'null', '', 'a,b', 'quo"ted', '{x}'], [null, ['\\']]]],
    [{ kind: 'boolean' }, [[true, false], [null, [true]]]],
    [{ kind: 'float', bits: 64 }, [[NaN, Infinity, -Infinity, -0], [0, [5e-324, null]]]],
    [{ kind: 'bytes' }, [[Uint8Array.of(), Uint8Array.of(0, 255)], [null, [Uint8Array.of(92, 34)]]]],
    [{ kind: 'date' }, [['2024-02-29', 'infinity'], ['0044-03-15 BC', [null, '-infinity']]]],
    [{ kind: 'timestamp' }, [['1970-01-01 00:00:00.000001', 'infinity'], [['0044-03-15 12:00:00 BC']]]],
    [{ kind: 'timestamptz' }, [['2024-06-01 10:00:00.123456+00', '-infinity'], [null]]],
    [{ kind: 'time' }, [['24:00:00', '12:00:00.5'], [['00:00:00']]]],
    [{ kind: 'uuid' }, [['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'], [null, ['00000000-0000-0000-0000-000000000000']]]],
    [{ kind: 'json' }, [['{"big": 123456789012345678901234567890}', 'null'], [['[1.10, -0]']]]],
    [{ kind: 'enum', values: ['sad', 'happy, very'] }, [['sad', 'happy, very'], [null, []]]],
  ];
  for (const [element, value] of cases) {
    const m = mappingFor({ kind: 'array', element });
    const wrapped = m.toAvro(value);
    const branch = Object.keys(wrapped)[0]!;
    assert.equal(branch, 'array');
    // Through avsc's bytes too, with the column's whole branch as the schema.
    const type = avro.Type.forSchema(m.branches[0] as avro.Schema, { wrapUnions: true, typeHook: bigintTypeHook as never });
    const decoded = type.fromBuffer(type.toBuffer(wrapped[branch]));
    assert.deepStrictEqual(m.fromAvro(branch, decoded), value, element.kind);
  }
  for (const deep of [[], [[]], [[[[[[[]]]]]]], [null, [null, [null, [null]]]], [[[[[[1]]]]], 2]]) {
    assert.deepStrictEqual(mappingFor({ kind: 'array', element: INT4 }).fromAvro('array', mappingFor({ kind: 'array', element: INT4 }).toAvro(deep).array), deep);
  }
});

test('a wrong value deep inside an array is refused by type, never quoted', () => {
  const m = mappingFor({ kind: 'array', element: INT4 });
  assert.throws(() => m.toAvro([[1, 2], [3, 'CANARY-SSN-123-45-6789']]), (err: Error) => {
    assert.match(err.message, /expected a 32-bit integer number, got string/);
    assert.ok(!err.message.includes('CANARY'));
    return true;
  });
  assert.throws(() => m.toAvro(5), /expected array, got number/);
});

test('schema shape: items are [null, element branches, a self-referencing record] named per column', () => {
  const table = tableOf([
    { name: 'md', sourceType: 'integer[]', type: { kind: 'array', element: INT4 } },
    { name: 'lab values', sourceType: 'numeric(10,3)[]', type: { kind: 'array', element: { kind: 'decimal', precision: 10, scale: 3 } } },
  ]);
  const schema = toAvroSchema('clinic', table, new Set());
  const value = ((schema.fields as { name: string; type: unknown[] }[])[0]!.type[1] as { fields: { name: string; type: unknown[] }[] }).fields;
  const md = value.find((f) => f.name === 'md')!.type[1];
  const level = `${NESTED_ARRAY_NAMESPACE}.md_level`;
  assert.deepStrictEqual(md, {
    type: 'array',
    items: ['null', 'int', { type: 'record', name: level, doc: 'one nested level of a multi-dimensional array', fields: [{ name: 'items', type: { type: 'array', items: ['null', 'int', level] } }] }],
  });
  const labs = value.find((f) => f.name === 'lab_values')!.type[1] as { items: { name?: string }[] };
  assert.equal(labs.items.at(-1)!.name, `${NESTED_ARRAY_NAMESPACE}.lab_values_level`);
  // A standard Avro library accepts the schema (two recursive records, distinct names).
  avro.Type.forSchema(schema as avro.Schema, { wrapUnions: true, typeHook: bigintTypeHook as never });
});

test('a one-dimensional value is byte for byte what a plain array of nullable elements writes', () => {
  const m = mappingFor({ kind: 'array', element: { kind: 'string' } });
  const nested = avro.Type.forSchema(m.branches[0] as avro.Schema, { wrapUnions: true });
  const plain = avro.Type.forSchema({ type: 'array', items: ['null', 'string'] }, { wrapUnions: true });
  const value = ['a', null, 'NULL', ''];
  const bytes = nested.toBuffer(m.toAvro(value).array);
  assert.deepEqual(bytes, plain.toBuffer([{ string: 'a' }, null, { string: 'NULL' }, { string: '' }]));
  // So values written before nesting was supported decode unchanged.
  assert.deepStrictEqual(m.fromAvro('array', plain.fromBuffer(bytes)), value);
});
