import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { columnCodec, OID, parseArrayLiteral, type PgTypeInfo, type TypeLookup } from '../../../../connectors/postgres/type-parsers.js';

const none: TypeLookup = { get: () => undefined };
const parse = (oid: number, text: string, typmod = -1, types: TypeLookup = none) => columnCodec(oid, typmod, types).parse(text);

function lookup(...infos: PgTypeInfo[]): TypeLookup {
  const m = new Map(infos.map((i) => [i.oid, i]));
  return { get: (o) => m.get(o) };
}
const base = { schema: 'public', typtype: 'b', category: 'U', elementOid: 0, baseOid: 0, baseTypmod: -1, delimiter: ',' };

describe('type parsers: scalars', () => {
  it('integers: 16/32 bit as numbers, 64 bit as bigint at both limits', () => {
    assert.equal(parse(OID.int2, '-32768'), -32768);
    assert.equal(parse(OID.int4, '2147483647'), 2147483647);
    assert.equal(parse(OID.int8, '9223372036854775807'), 9223372036854775807n);
    assert.equal(parse(OID.int8, '-9223372036854775808'), -9223372036854775808n);
    assert.throws(() => parse(OID.int4, '1.5'), /integer/);
  });

  it('floats keep NaN, ±Infinity and -0', () => {
    assert.ok(Number.isNaN(parse(OID.float8, 'NaN') as number));
    assert.equal(parse(OID.float8, 'Infinity'), Infinity);
    assert.equal(parse(OID.float4, '-Infinity'), -Infinity);
    assert.ok(Object.is(parse(OID.float8, '-0'), -0));
    assert.equal(parse(OID.float8, '5e-324'), 5e-324);
    assert.equal(parse(OID.float4, '3.4028235e+38'), 3.4028235e38);
    assert.throws(() => parse(OID.float8, 'abc'), /float/);
  });

  it('numeric stays exact text, with its precision and scale (negative scale since PG 15)', () => {
    assert.equal(parse(OID.numeric, '12345678901234567890.000000000000000000001'), '12345678901234567890.000000000000000000001');
    assert.equal(parse(OID.numeric, 'NaN'), 'NaN');
    assert.equal(parse(OID.numeric, '-Infinity'), '-Infinity');
    assert.deepStrictEqual(columnCodec(OID.numeric, ((12 << 16) | 2) + 4, none).type, { kind: 'decimal', precision: 12, scale: 2 });
    assert.deepStrictEqual(columnCodec(OID.numeric, ((5 << 16) | (-3 & 0x7ff)) + 4, none).type, { kind: 'decimal', precision: 5, scale: -3 });
    assert.deepStrictEqual(columnCodec(OID.numeric, -1, none).type, { kind: 'decimal' });
  });

  it('bytea from hex and from escape output; text types unchanged', () => {
    assert.deepStrictEqual(parse(OID.bytea, '\\x00ff10'), Uint8Array.from([0, 255, 16]));
    assert.deepStrictEqual(parse(OID.bytea, '\\x'), new Uint8Array(0));
    assert.deepStrictEqual(parse(OID.bytea, 'a\\\\b\\000\\377'), Uint8Array.from([97, 92, 98, 0, 255]));
    assert.equal(parse(OID.bpchar, 'ab   ', 9), 'ab   ');
    assert.deepStrictEqual(columnCodec(OID.varchar, 14, none).type, { kind: 'string', length: 10 });
    assert.equal(parse(OID.bool, 't'), true);
    assert.equal(parse(OID.bool, 'f'), false);
    assert.equal(parse(OID.uuid, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
  });

  it('timestamptz must be UTC; other time types pass through', () => {
    assert.equal(parse(OID.timestamptz, '2024-06-01 10:00:00.123456+00'), '2024-06-01 10:00:00.123456+00');
    assert.equal(parse(OID.timestamptz, 'infinity'), 'infinity');
    assert.equal(parse(OID.timestamptz, '0044-03-15 12:00:00+00 BC'), '0044-03-15 12:00:00+00 BC');
    assert.throws(() => parse(OID.timestamptz, '2024-06-01 15:30:00+05:30'), /timestamptz/);
    assert.equal(parse(OID.timetz, '12:34:56.789012+05:30'), '12:34:56.789012+05:30');
    assert.equal(parse(OID.interval, '-00:00:00.000001'), '-00:00:00.000001');
  });

  it('errors never carry the value', () => {
    try {
      parse(OID.int4, 'CANARY-SSN-123-45-6789');
      assert.fail('should throw');
    } catch (err) {
      assert.ok(!String((err as Error).message).includes('CANARY'));
    }
  });
});

describe('type parsers: arrays, enums, domains, unknown types', () => {
  const text = (t: string) => t;
  it('parses quoting, escapes, NULL versus "NULL", empty strings and braces', () => {
    assert.deepStrictEqual(
      parseArrayLiteral('{"a,b","quo\\"ted","back\\\\slash",NULL,"NULL","",  " sp ","{brace}"}', ',', text),
      ['a,b', 'quo"ted', 'back\\slash', null, 'NULL', '', ' sp ', '{brace}'],
    );
    assert.deepStrictEqual(parseArrayLiteral('{}', ',', text), []);
  });

  it('parses nested dimensions and drops a lower-bound prefix', () => {
    const int = (t: string) => Number(t);
    assert.deepStrictEqual(parseArrayLiteral('{{1,2},{3,NULL}}', ',', int), [[1, 2], [3, null]]);
    assert.deepStrictEqual(parseArrayLiteral('[0:1]={7,8}', ',', int), [7, 8]);
    assert.deepStrictEqual(parseArrayLiteral('{(1,2);(3,4)}', ';', text), ['(1,2)', '(3,4)']);
    assert.throws(() => parseArrayLiteral('{1,2', ',', int), /array/);
  });

  it('numeric[] keeps every digit (pg would make floats of them)', () => {
    const types = lookup({ ...base, oid: 1231, name: '_numeric', category: 'A', elementOid: OID.numeric });
    assert.deepStrictEqual(parse(1231, '{1.10,NULL,123456789012345678901234567890.5,NaN}', -1, types), ['1.10', null, '123456789012345678901234567890.5', 'NaN']);
    assert.deepStrictEqual(columnCodec(1231, -1, types).type, { kind: 'array', element: { kind: 'decimal' } });
  });

  it('enums carry labels, domains resolve to their base type with its modifier', () => {
    const types = lookup(
      { ...base, oid: 90001, name: 'mood', typtype: 'e', category: 'E', enumLabels: ['sad', 'happy, very'] },
      { ...base, oid: 90002, name: '_mood', category: 'A', elementOid: 90001 },
      { ...base, oid: 90003, name: 'code', typtype: 'd', baseOid: OID.varchar, baseTypmod: 24 },
      { ...base, oid: 90004, name: 'posint', typtype: 'd', baseOid: OID.int4 },
    );
    assert.deepStrictEqual(columnCodec(90001, -1, types).type, { kind: 'enum', values: ['sad', 'happy, very'] });
    assert.deepStrictEqual(parse(90002, '{sad,"happy, very"}', -1, types), ['sad', 'happy, very']);
    assert.deepStrictEqual(columnCodec(90003, -1, types).type, { kind: 'string', length: 20 });
    assert.equal(parse(90004, '5', -1, types), 5);
  });

  it('unknown types travel as text and name themselves for the warning', () => {
    const types = lookup({ ...base, oid: 600, schema: 'pg_catalog', name: 'point', category: 'G', elementOid: OID.float8 });
    const codec = columnCodec(600, -1, types);
    assert.deepStrictEqual(codec.type, { kind: 'text' });
    assert.equal(codec.unknownType, 'pg_catalog.point');
    assert.equal(codec.parse('(1,2)'), '(1,2)');
    assert.equal(columnCodec(OID.inet, -1, none).unknownType, undefined, 'inet is known');
  });
});
