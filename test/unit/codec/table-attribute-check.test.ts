/* eslint-disable @typescript-eslint/no-explicit-any -- the tests edit parsed JSON freely, as an attacker would */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { TABLE_ATTRIBUTE, toAvroSchema, type AvroSchemaJson } from '../../../src/codec/avro-schema.js';
import { checkTableAttribute } from '../../../src/codec/table-attribute-check.js';
import { parseSqlType } from '../../../src/codec/sql-type.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import { ChartlogError } from '../../../src/core/errors.js';
import type { TableSchema } from '../../../src/core/table-schema.js';

const table: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'ssn', sourceType: 'character varying(11)', type: { kind: 'string', length: 11 }, nullable: true },
    { name: 'balance', sourceType: 'numeric(12,2)', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
    { name: 'mood', sourceType: 'mood[]', type: { kind: 'array', element: { kind: 'enum', values: ['sad', 'ok'] } }, nullable: true },
  ],
};
const WHERE = 'clinic/schemas/0123456789abcdef.json';
const good = (): AvroSchemaJson => JSON.parse(JSON.stringify(toAvroSchema('clinic', table, new Set(['ssn'])))) as AvroSchemaJson;

/** `schema` with its attribute edited by `edit`, and (like a careful forger) its namespace hash redone. */
function edited(edit: (attr: Record<string, any>) => void, rehash = true): AvroSchemaJson {
  const s = good();
  const attr = s[TABLE_ATTRIBUTE] as Record<string, any>;
  edit(attr);
  if (rehash) {
    const v = createHash('sha256').update(JSON.stringify(attr)).digest('hex').slice(0, 16);
    s.namespace = String(s.namespace).replace(/\.v[0-9a-f]{16}$/, `.v${v}`);
  }
  return s;
}

const refused = (field: RegExp) => (e: unknown) => e instanceof ChartlogError && e.code === 'integrity' && e.message.includes(WHERE) && field.test(e.message);

test('a schema as chartlog writes it passes, for its engine too', () => {
  checkTableAttribute(good(), WHERE, 'postgres');
  assert.ok(SchemaStore.parse(JSON.stringify(good()), WHERE, undefined, 'postgres').version);
});

test('altered type attributes are refused, naming the object and the field', () => {
  const cases: [string, (a: Record<string, any>) => void, RegExp][] = [
    ['length beyond range', (a) => (a.columns[1].type.length = 1e12), /columns\[1\]\.type\.length is not an integer/],
    ['length as an injection string', (a) => (a.columns[1].type.length = '11) ; DROP TABLE x; --'), /columns\[1\]\.type\.length is not an integer/],
    ['negative length', (a) => (a.columns[1].type.length = -1), /columns\[1\]\.type\.length/],
    ['fractional precision', (a) => (a.columns[2].type.precision = 12.5), /columns\[2\]\.type\.precision/],
    ['scale out of range', (a) => (a.columns[2].type.scale = 5000), /columns\[2\]\.type\.scale/],
    ['unknown kind', (a) => (a.columns[0].type.kind = 'int); DROP'), /columns\[0\]\.type\.kind is not a known value kind/],
    ['odd integer width', (a) => (a.columns[0].type.bits = 12), /columns\[0\]\.type\.bits/],
    ['unknown type attribute', (a) => (a.columns[0].type.sql = 'x'), /columns\[0\]\.type\.sql is not a type attribute/],
    ['labels that are not strings', (a) => (a.columns[3].type.element.values = [1]), /columns\[3\]\.type\.element\.values/],
    ['column name with a control character', (a) => (a.columns[1].name = 'ssn\u0000'), /columns\[1\]\.name is not an identifier/],
    ['over-long table name', (a) => (a.table = 'x'.repeat(65)), /table is not an identifier/],
    ['duplicate column', (a) => (a.columns[1].name = 'id'), /repeats a column name/],
    ['primary key naming no column', (a) => (a.primaryKey = ['nope']), /primaryKey/],
    ['field that is not an Avro name', (a) => (a.columns[1].field = 'a b'), /columns\[1\]\.field/],
  ];
  for (const [name, edit, field] of cases) {
    assert.throws(() => checkTableAttribute(edited(edit), WHERE), refused(field), name);
  }
});

test('a source type outside the engine allow-list is refused; an edit that leaves the namespace hash is caught by it', () => {
  const inject = edited((a) => (a.columns[1].sourceType = 'text); DROP TABLE public.patients; --'));
  checkTableAttribute(inject, WHERE); // without an engine only the shape is checked…
  assert.throws(() => checkTableAttribute(inject, WHERE, 'postgres'), refused(/columns\[1\]\.sourceType .*not an allowed PostgreSQL type/));
  assert.throws(() => checkTableAttribute(edited((a) => (a.columns[1].sourceType = 'character varying(99999999999)')), WHERE, 'postgres'), refused(/columns\[1\]\.sourceType/));
  // A valid-looking length edit without redoing the namespace hash.
  assert.throws(() => checkTableAttribute(edited((a) => (a.columns[1].type.length = 12), false), WHERE), refused(/version hash/));
});

test('PostgreSQL source types: built-ins re-spelt as recorded, user types quoted, the rest refused', () => {
  const same = ['smallint', 'integer', 'bigint', 'numeric', 'numeric(12,2)', 'real', 'double precision', 'boolean', 'text', 'character varying(10)',
    'character(5)', 'bytea', 'date', 'time without time zone', 'time with time zone', 'timestamp without time zone', 'timestamp(6) with time zone',
    'interval', 'interval year to month', 'uuid', 'json', 'jsonb', 'numeric[]', 'text[]', 'integer[]', 'inet', 'cidr', 'macaddr', 'bit(4)', 'int4range',
    'point', '"char"', 'bit varying(8)', 'numeric(10,3)[]', 'integer[][]'];
  for (const t of same) assert.equal(parseSqlType('postgres', t).ddl, t, t);
  assert.deepEqual(parseSqlType('postgres', 'mood[]'), { ddl: '"mood"[]', base: '"mood"', userType: true });
  assert.equal(parseSqlType('postgres', 'public.posint').ddl, '"public"."posint"');
  assert.equal(parseSqlType('postgres', '"My ""odd"" type"').ddl, '"My ""odd"" type"');
  for (const bad of ['text; DROP TABLE x', 'integer) , evil text', 'Integer', 'numeric(0,2)', 'numeric(1001)', 'timestamp(7) with time zone', 'a.b.c', '"unclosed', 'text --', 'varchar(10)/*', '']) {
    assert.throws(() => parseSqlType('postgres', bad), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity', bad);
  }
});

test('MySQL source types: COLUMN_TYPE re-spelt from the allow-list, labels left to the structured list', () => {
  const same = ['tinyint(4)', 'int(10) unsigned', 'bigint(20) unsigned zerofill', 'decimal(65,30)', 'decimal(10,2)', 'float', 'double', 'date', 'datetime(6)',
    'timestamp(6)', 'time(3)', 'year(4)', 'varchar(50)', 'char(5)', 'text', 'binary(4)', 'varbinary(10)', 'blob', 'bit(10)', 'json', 'uuid', 'inet4', 'inet6'];
  for (const t of same) assert.equal(parseSqlType('mysql', t).ddl, t, t);
  assert.equal(parseSqlType('mysql', 'INT(11) UNSIGNED').ddl, 'int(11) unsigned');
  assert.equal(parseSqlType('mysql', "enum('a,b','it''s','back\\\\slash')").base, 'enum');
  assert.equal(parseSqlType('mysql', "set('p','q''r')").base, 'set');
  for (const bad of ['varchar(10)); DROP TABLE x; --', 'int(11) unsigned; DROP', 'evil(1)', "enum('a'", "enum('a') DROP", 'decimal(300,2)', 'datetime(9)', 'enum', 'int(1,2)']) {
    assert.throws(() => parseSqlType('mysql', bad), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity', bad);
  }
});
