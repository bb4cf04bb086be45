import type { CellValue, Row } from '../../src/core/table-schema.js';

/**
 * The type matrices of the two connectors: every type of issue 3 with its edge values, as one
 * SQL tuple per case and, written out by hand in the value model of src/core/table-schema.ts,
 * the row each case must read back as — so the connectors are checked against the truth, not
 * only snapshot against stream.
 *
 * One copy for every test that needs the matrix: postgres-types.test.ts and mysql-types.test.ts
 * read each case back value by value; restore-fidelity.test.ts draws its random workload from
 * the same cases (with a variant of its own, derived there). An edge value added here reaches
 * all of them.
 */

export interface MatrixCase {
  /** One SQL literal per column of the matrix, in column order; `id` is not among them. */
  readonly sql: readonly string[];
  /** The row the case reads back as, without `id`, keys in column order. */
  readonly expected: Readonly<Record<string, CellValue>>;
}

/** The row a case reads back as when inserted under `id` (id first, as in the table). */
export function expectedRow(id: number, c: MatrixCase): Row {
  return { id, ...c.expected };
}

const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));

// ---- PostgreSQL ------------------------------------------------------------------------------

/** The types the matrix table uses, created before it. */
export const PG_TYPE_DDL: readonly string[] = [
  `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy, very', 'quo"te')`,
  `CREATE DOMAIN posint AS int4 CHECK (VALUE > 0)`,
  `CREATE DOMAIN short_code AS varchar(20)`,
];

/** The matrix table under `name`: `id` and one column per type of PG_COLUMNS. */
export function pgMatrixTable(name: string): string {
  return `CREATE TABLE ${name} (
  id int4 PRIMARY KEY,
  i2 int2, i4 int4, i8 int8,
  num numeric, num_ps numeric(12,2),
  f4 float4, f8 float8, b bool,
  t text, vc varchar(10), ch char(5), by bytea,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz(6), iv interval,
  u uuid, js json, jb jsonb,
  na numeric[], ta text[], md int4[], lb int4[], ea mood[],
  e mood, ip inet, cn cidr, mac macaddr, dom posint, dom_t short_code,
  bits bit(4), rng int4range, pt point
)`;
}

export const PG_COLUMNS: readonly string[] = ['i2', 'i4', 'i8', 'num', 'num_ps', 'f4', 'f8', 'b', 't', 'vc', 'ch', 'by', 'd', 'tm', 'ttz', 'ts', 'tstz', 'iv', 'u', 'js', 'jb', 'na', 'ta', 'md', 'lb', 'ea', 'e', 'ip', 'cn', 'mac', 'dom', 'dom_t', 'bits', 'rng', 'pt'];

export const PG_CASES: readonly MatrixCase[] = [
  {
    sql: [
      '32767', '2147483647', '9223372036854775807',
      `'12345678901234567890.123456789012345678901234567890'`, `'9999999999.99'`,
      `'3.4028235e+38'`, `'1.7976931348623157e+308'`, 'true',
      `'CANARY-SSN-123-45-6789 quote''s "dq" \\ back ✓ 日本 😀'`, `'abcdefghij'`, `'ab'`, `'\\x00ff10'`,
      `'2024-02-29'`, `'23:59:59.999999'`, `'12:34:56.789012+05:30'`, `'2024-01-01 00:00:00.000001'`,
      `'2024-06-01 12:00:00.123456+02'`, `'1 year 2 mons 3 days 04:05:06.789012'`,
      `'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'`,
      `'{"big": 123456789012345678901234567890, "f": 1.0000000000000001}'`,
      `'{"big": -123456789012345678901234567890}'`,
      `'{1.10,NULL,-Infinity,NaN,123456789012345678901234567890.5}'`,
      `ARRAY['a,b', 'quo"ted', 'back\\slash', NULL, 'NULL', '', ' sp ', '{brace}']`,
      `'{{1,2},{3,4}}'`, `'[0:1]={7,8}'`, `'{sad,"happy, very","quo\\"te"}'`,
      `'happy, very'`, `'192.168.0.1/24'`, `'10.0.0.0/8'`, `'08:00:2b:01:02:03'`, '5', `'X-1'`,
      `B'1010'`, `'[1,10)'`, `'(1.5,2)'`,
    ],
    expected: {
      i2: 32767, i4: 2147483647, i8: 9223372036854775807n,
      num: '12345678901234567890.123456789012345678901234567890', num_ps: '9999999999.99',
      f4: 3.4028235e38, f8: 1.7976931348623157e308, b: true,
      t: `CANARY-SSN-123-45-6789 quote's "dq" \\ back ✓ 日本 😀`, vc: 'abcdefghij', ch: 'ab   ', by: bytes('00ff10'),
      d: '2024-02-29', tm: '23:59:59.999999', ttz: '12:34:56.789012+05:30', ts: '2024-01-01 00:00:00.000001',
      tstz: '2024-06-01 10:00:00.123456+00', iv: '1 year 2 mons 3 days 04:05:06.789012',
      u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      js: '{"big": 123456789012345678901234567890, "f": 1.0000000000000001}',
      jb: '{"big": -123456789012345678901234567890}',
      na: ['1.10', null, '-Infinity', 'NaN', '123456789012345678901234567890.5'],
      ta: ['a,b', 'quo"ted', 'back\\slash', null, 'NULL', '', ' sp ', '{brace}'],
      md: [[1, 2], [3, 4]], lb: [7, 8], ea: ['sad', 'happy, very', 'quo"te'],
      e: 'happy, very', ip: '192.168.0.1/24', cn: '10.0.0.0/8', mac: '08:00:2b:01:02:03', dom: 5, dom_t: 'X-1',
      bits: '1010', rng: '[1,10)', pt: '(1.5,2)',
    },
  },
  {
    sql: [
      '-32768', '-2147483648', '-9223372036854775808', `'NaN'`, `'-12.3'`,
      `'-0'`, `'-0'`, 'false', `''`, `''`, `''`, `'\\x'`,
      `'0044-03-15 BC'`, `'24:00:00'`, `'00:00:00-14'`, `'0044-03-15 12:00:00 BC'`,
      `'0044-03-15 12:00:00+00 BC'`, `'-00:00:00.000001'`,
      `'00000000-0000-0000-0000-000000000000'`, `'[]'`, `'{}'`,
      `'{}'`, `'{}'`, `'{{NULL,NULL}}'`, `'{}'`, `'{}'`,
      `'sad'`, `'::1'`, `'::/0'`, `'ff:ff:ff:ff:ff:ff'`, '2147483647', `''`,
      `B'0000'`, `'empty'`, `'(0,0)'`,
    ],
    expected: {
      i2: -32768, i4: -2147483648, i8: -9223372036854775808n, num: 'NaN', num_ps: '-12.30',
      f4: -0, f8: -0, b: false, t: '', vc: '', ch: '     ', by: bytes(''),
      d: '0044-03-15 BC', tm: '24:00:00', ttz: '00:00:00-14', ts: '0044-03-15 12:00:00 BC',
      tstz: '0044-03-15 12:00:00+00 BC', iv: '-00:00:00.000001',
      u: '00000000-0000-0000-0000-000000000000', js: '[]', jb: '{}',
      na: [], ta: [], md: [[null, null]], lb: [], ea: [],
      e: 'sad', ip: '::1', cn: '::/0', mac: 'ff:ff:ff:ff:ff:ff', dom: 2147483647, dom_t: '',
      bits: '0000', rng: 'empty', pt: '(0,0)',
    },
  },
  {
    sql: [
      '0', '0', '0', `'Infinity'`, '0', `'NaN'`, `'NaN'`, 'NULL', `'NULL'`, 'NULL', 'NULL', 'NULL',
      `'infinity'`, `'00:00:00'`, 'NULL', `'infinity'`, `'infinity'`, `'0'`,
      'NULL', `'null'`, `'null'`, 'NULL', 'NULL', 'NULL', 'NULL', 'NULL',
      'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL',
    ],
    expected: {
      i2: 0, i4: 0, i8: 0n, num: 'Infinity', num_ps: '0.00', f4: NaN, f8: NaN, b: null, t: 'NULL', vc: null, ch: null, by: null,
      d: 'infinity', tm: '00:00:00', ttz: null, ts: 'infinity', tstz: 'infinity', iv: '00:00:00',
      u: null, js: 'null', jb: 'null', na: null, ta: null, md: null, lb: null, ea: null,
      e: null, ip: null, cn: null, mac: null, dom: null, dom_t: null, bits: null, rng: null, pt: null,
    },
  },
  {
    sql: [
      '1', '1', '1', `'-Infinity'`, '0.005', `'Infinity'`, `'-Infinity'`, 'NULL', 'NULL', 'NULL', 'NULL', 'NULL',
      `'-infinity'`, 'NULL', 'NULL', `'-infinity'`, `'-infinity'`, 'NULL',
      'NULL', 'NULL', 'NULL', `'{NULL}'`, `'{NULL}'`, 'NULL', 'NULL', 'NULL',
      'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL', 'NULL',
    ],
    expected: {
      i2: 1, i4: 1, i8: 1n, num: '-Infinity', num_ps: '0.01', f4: Infinity, f8: -Infinity, b: null, t: null, vc: null, ch: null, by: null,
      d: '-infinity', tm: null, ttz: null, ts: '-infinity', tstz: '-infinity', iv: null,
      u: null, js: null, jb: null, na: [null], ta: [null], md: null, lb: null, ea: null,
      e: null, ip: null, cn: null, mac: null, dom: null, dom_t: null, bits: null, rng: null, pt: null,
    },
  },
];

// ---- MariaDB ---------------------------------------------------------------------------------

/** The matrix table under `name`: `id` and one column per type of MARIADB_COLUMNS. */
export function mariadbMatrixTable(name: string): string {
  return `CREATE TABLE ${name} (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
  dt DATE, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), tm0 TIME, tm3 TIME(3), y YEAR,
  v VARCHAR(50), ch CHAR(5), tx TEXT, bn BINARY(4), vb VARBINARY(10), bl BLOB, bt BIT(10), b1 BIT(1), b64 BIT(64),
  e ENUM('a,b','it''s','x','back\\\\slash'), s SET('p','q''r','s'), j JSON, u UUID, ip4 INET4, ip6 INET6
) CHARACTER SET utf8mb4`;
}

export const MARIADB_COLUMNS: readonly string[] = 'ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d,d2,f,db,dt,dtm,dtm0,ts,tm,tm0,tm3,y,v,ch,tx,bn,vb,bl,bt,b1,b64,e,s,j,u,ip4,ip6'.split(',');

/**
 * The session the cases are inserted in: no sql_mode, so that zero dates, '2024-00-15' and the
 * other values a strict mode refuses go in as written; UTC, so that TIMESTAMP values (stored in
 * UTC) are the ones written and read back with +00.
 */
export const MARIADB_SESSION = "SET SESSION sql_mode = '', time_zone = '+00:00'";

export const MARIADB_CASES: readonly MatrixCase[] = [
  {
    sql: [`127`, `255`, `32767`, `65535`, `8388607`, `16777215`, `2147483647`, `4294967295`, `9223372036854775807`, `18446744073709551615`,
      `'99999999999999999999999999999999999.999999999999999999999999999999'`, `'12345678.91'`, `3.4028234e38`, `1.7976931348623157e308`,
      `'9999-12-31'`, `'9999-12-31 23:59:59.999999'`, `'9999-12-31 23:59:59'`, `'2038-01-19 03:14:07.999999'`, `'838:59:59.000000'`, `'838:59:59'`, `'-838:59:58.999'`, `2155`,
      `'héllo 😀 “quotes” \\\\ '''`, `'abc'`, `'tëxt 🎉\\n\\ttab'`, `x'00010000'`, `x'00ff00'`, `x'deadbeef00'`, `b'1010101010'`, `b'1'`, `x'ffffffffffffffff'`,
      `'a,b'`, `'p,q''r,s'`, `'{"big": 12345678901234567890123, "f": 1.10, "s": "😀"}'`, `'123e4567-e89b-12d3-a456-426614174000'`, `'255.255.255.255'`, `'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'`],
    expected: {
      ti: 127, tiu: 255, si: 32767, siu: 65535, mi: 8388607, miu: 16777215, i: 2147483647, iu: 4294967295,
      bi: 9223372036854775807n, biu: 18446744073709551615n,
      d: '99999999999999999999999999999999999.999999999999999999999999999999', d2: '12345678.91',
      f: 3.4028234663852886e38, db: 1.7976931348623157e308,
      dt: '9999-12-31', dtm: '9999-12-31 23:59:59.999999', dtm0: '9999-12-31 23:59:59', ts: '2038-01-19 03:14:07.999999+00',
      tm: '838:59:59.000000', tm0: '838:59:59', tm3: '-838:59:58.999', y: 2155,
      v: "héllo 😀 “quotes” \\ '", ch: 'abc', tx: 'tëxt 🎉\n\ttab', bn: bytes('00010000'), vb: bytes('00ff00'), bl: bytes('deadbeef00'),
      bt: '1010101010', b1: '1', b64: '1'.repeat(64),
      e: 'a,b', s: ['p', "q'r", 's'], j: '{"big": 12345678901234567890123, "f": 1.10, "s": "😀"}', u: '123e4567-e89b-12d3-a456-426614174000',
      ip4: '255.255.255.255', ip6: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    },
  },
  {
    sql: [`-128`, `0`, `-32768`, `0`, `-8388608`, `0`, `-2147483648`, `0`, `-9223372036854775808`, `0`,
      `'-99999999999999999999999999999999999.999999999999999999999999999999'`, `'-0.01'`, `1.1754944e-38`, `-2.2250738585072014e-308`,
      `'1000-01-01'`, `'1000-01-01 00:00:00.000001'`, `'1000-01-01 00:00:00'`, `'1970-01-01 00:00:01.000001'`, `'-838:59:59.000000'`, `'-838:59:59'`, `'-00:00:00.001'`, `1901`,
      `''`, `''`, `''`, `x''`, `x''`, `x''`, `b'0'`, `b'0'`, `0`,
      `'it''s'`, `''`, `'[]'`, `'00000000-0000-0000-0000-000000000000'`, `'0.0.0.0'`, `'::'`],
    expected: {
      ti: -128, tiu: 0, si: -32768, siu: 0, mi: -8388608, miu: 0, i: -2147483648, iu: 0,
      bi: -9223372036854775808n, biu: 0n,
      d: '-99999999999999999999999999999999999.999999999999999999999999999999', d2: '-0.01',
      f: 1.1754943508222875e-38, db: -2.2250738585072014e-308,
      dt: '1000-01-01', dtm: '1000-01-01 00:00:00.000001', dtm0: '1000-01-01 00:00:00', ts: '1970-01-01 00:00:01.000001+00',
      tm: '-838:59:59.000000', tm0: '-838:59:59', tm3: '-00:00:00.001', y: 1901,
      v: '', ch: '', tx: '', bn: bytes('00000000'), vb: bytes(''), bl: bytes(''), bt: '0000000000', b1: '0', b64: '0'.repeat(64),
      e: "it's", s: [], j: '[]', u: '00000000-0000-0000-0000-000000000000', ip4: '0.0.0.0', ip6: '::',
    },
  },
  {
    sql: [`0`, `0`, `0`, `0`, `0`, `0`, `0`, `0`, `9007199254740993`, `9007199254740993`,
      `'0.000000000000000000000000000001'`, `'0.00'`, `0.1`, `0.1`,
      `'0000-00-00'`, `'0000-00-00 00:00:00.000000'`, `'0000-00-00 00:00:00'`, `'0000-00-00 00:00:00.000000'`, `'-00:00:00.500000'`, `'00:00:00'`, `'-12:34:56.789'`, `0`,
      `'x'`, `'a b'`, `'x'`, `x'ff'`, `x'00'`, `x'00'`, `b'0000000001'`, `b'1'`, `x'8000000000000001'`,
      `'back\\\\slash'`, `'s'`, `'{"a": [1, 2.5e300, null, true]}'`, `'ffffffff-ffff-ffff-ffff-ffffffffffff'`, `'10.0.0.1'`, `'::ffff:192.0.2.1'`],
    expected: {
      ti: 0, tiu: 0, si: 0, siu: 0, mi: 0, miu: 0, i: 0, iu: 0, bi: 9007199254740993n, biu: 9007199254740993n,
      d: '0.000000000000000000000000000001', d2: '0.00', f: 0.10000000149011612, db: 0.1,
      dt: '0000-00-00', dtm: '0000-00-00 00:00:00.000000', dtm0: '0000-00-00 00:00:00', ts: '0000-00-00 00:00:00.000000+00',
      tm: '-00:00:00.500000', tm0: '00:00:00', tm3: '-12:34:56.789', y: 0,
      v: 'x', ch: 'a b', tx: 'x', bn: bytes('ff000000'), vb: bytes('00'), bl: bytes('00'), bt: '0000000001', b1: '1',
      b64: `1${'0'.repeat(62)}1`,
      e: 'back\\slash', s: ['s'], j: '{"a": [1, 2.5e300, null, true]}', u: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
      ip4: '10.0.0.1', ip6: '::ffff:192.0.2.1',
    },
  },
  {
    sql: MARIADB_COLUMNS.map(() => 'NULL'),
    expected: Object.fromEntries(MARIADB_COLUMNS.map((c) => [c, null])),
  },
  {
    sql: [`-1`, `1`, `-1`, `1`, `-1`, `1`, `-1`, `1`, `-9007199254740993`, `9223372036854775808`,
      `'-0.000000000000000000000000000001'`, `'99999999.99'`, `-16777217`, `1e-300`,
      `'2024-00-15'`, `'2024-02-29 12:00:00.100000'`, `'2024-02-29 00:00:00'`, `'2024-02-29 23:59:59.000000'`, `'24:00:00.000001'`, `'-00:00:01'`, `'100:00:00.000'`, `1999`,
      `'ÿ'`, `'ab   '`, `''`, `x'00000001'`, `x'0000'`, `x'00'`, `b'1000000000'`, `b'0'`, `x'0000000000000001'`,
      `''`, `'p,s'`, `'"string"'`, `'01234567-89ab-4def-8123-456789abcdef'`, `'192.0.2.10'`, `'2001:db8::1'`],
    expected: {
      ti: -1, tiu: 1, si: -1, siu: 1, mi: -1, miu: 1, i: -1, iu: 1, bi: -9007199254740993n, biu: 9223372036854775808n,
      d: '-0.000000000000000000000000000001', d2: '99999999.99', f: -16777216, db: 1e-300,
      dt: '2024-00-15', dtm: '2024-02-29 12:00:00.100000', dtm0: '2024-02-29 00:00:00', ts: '2024-02-29 23:59:59.000000+00',
      tm: '24:00:00.000001', tm0: '-00:00:01', tm3: '100:00:00.000', y: 1999,
      v: 'ÿ', ch: 'ab', tx: '', bn: bytes('00000001'), vb: bytes('0000'), bl: bytes('00'), bt: '1000000000', b1: '0',
      b64: `${'0'.repeat(63)}1`,
      e: '', s: ['p', 's'], j: '"string"', u: '01234567-89ab-4def-8123-456789abcdef', ip4: '192.0.2.10', ip6: '2001:db8::1',
    },
  },
];
