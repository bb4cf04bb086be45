import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresConnector } from '../../connectors/postgres/postgres-connector.js';
import { AvroCodec } from '../../src/codec/avro-codec.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import type { ChangeBatch } from '../../src/core/change-event.js';
import { createLogger } from '../../src/core/logger.js';
import type { CellValue, Row, TableSchema } from '../../src/core/table-schema.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { createTestDb, pgServers, sourceConfig, type TestDb } from '../support/pg-test-db.js';

/**
 * Type matrix: every type of issue 3 with its edge values, read once by the snapshot and once
 * by the stream, on PostgreSQL 15 and 17. Each value must come out exactly as expected, and
 * snapshot and stream must agree value by value.
 */
const DDL = [
  `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy, very', 'quo"te')`,
  `CREATE DOMAIN posint AS int4 CHECK (VALUE > 0)`,
  `CREATE DOMAIN short_code AS varchar(20)`,
  `CREATE TABLE matrix (
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
   )`,
];

const COLUMNS = ['i2', 'i4', 'i8', 'num', 'num_ps', 'f4', 'f8', 'b', 't', 'vc', 'ch', 'by', 'd', 'tm', 'ttz', 'ts', 'tstz', 'iv', 'u', 'js', 'jb', 'na', 'ta', 'md', 'lb', 'ea', 'e', 'ip', 'cn', 'mac', 'dom', 'dom_t', 'bits', 'rng', 'pt'];

interface Case {
  readonly sql: readonly string[];
  readonly expected: Record<string, CellValue>;
}

const bytes = (...b: number[]) => Uint8Array.from(b);

const CASES: Case[] = [
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
      t: `CANARY-SSN-123-45-6789 quote's "dq" \\ back ✓ 日本 😀`, vc: 'abcdefghij', ch: 'ab   ', by: bytes(0, 255, 16),
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
      f4: -0, f8: -0, b: false, t: '', vc: '', ch: '     ', by: bytes(),
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

function insertSql(id: number, c: Case): string {
  return `INSERT INTO matrix (id, ${COLUMNS.join(', ')}) VALUES (${id}, ${c.sql.join(', ')})`;
}

function expectedRow(id: number, c: Case): Row {
  return { id, ...c.expected };
}

for (const server of pgServers()) {
  describe(`PostgreSQL type matrix on ${server.label}`, () => {
    let db: TestDb;
    let connector: PostgresConnector;
    const logLines: string[] = [];
    const snapshotBatches: ChangeBatch[] = [];
    const streamBatches: ChangeBatch[] = [];

    const GLOBAL_OIDS = [20, 114, 700, 701, 1082, 1114, 1184, 1231, 1700, 3802];
    const globalParsers = GLOBAL_OIDS.map((oid) => pg.types.getTypeParser(oid));

    before(async () => {
      assert.equal(CASES.every((c) => c.sql.length === COLUMNS.length && Object.keys(c.expected).length === COLUMNS.length), true);
      await server.start();
      db = await createTestDb(server.url());
      // The role's own TimeZone must not matter: chartlog sets UTC per connection.
      await db.query(`ALTER DATABASE ${db.name} SET TimeZone = 'Asia/Kolkata'`);
      for (const sql of DDL) await db.query(sql);
      for (const [i, c] of CASES.entries()) await db.query(insertSql(i + 1, c));
      const destination = new Writable({
        write(chunk: Buffer, _enc, cb) {
          logLines.push(chunk.toString('utf8'));
          cb();
        },
      });
      connector = new PostgresConnector(sourceConfig(db.url, { tables: ['public.matrix'] }), {
        logger: createLogger({ destination, level: 'debug', format: 'json' }),
      });
      for await (const b of connector.snapshot({ chunkRows: 2 })) snapshotBatches.push(b);
      const snapshotPosition = snapshotBatches[0]!.position;
      await db.query('BEGIN');
      for (const [i, c] of CASES.entries()) await db.query(insertSql(101 + i, c));
      await db.query('COMMIT');
      for await (const b of connector.stream({ from: snapshotPosition })) {
        streamBatches.push(b);
        await connector.acknowledge(b.position);
        break;
      }
    });

    after(async () => {
      await connector?.close();
      await db?.drop();
      await server.stop();
    });

    it('reads every row of the snapshot exactly, in key-ordered chunks at one position', () => {
      const events = snapshotBatches.flatMap((b) => b.events);
      assert.equal(events.length, CASES.length);
      assert.equal(snapshotBatches.length, 2, 'chunks of 2 rows');
      assert.ok(snapshotBatches.every((b) => b.snapshot && b.position.commit === snapshotBatches[0]!.position.commit));
      events.forEach((e, i) => {
        assert.equal(e.op, 'r');
        assert.equal(e.position.seq, i);
        assert.deepStrictEqual(e.after, expectedRow(i + 1, CASES[i]!));
      });
    });

    it('streams every row exactly, in one batch for the transaction', () => {
      assert.equal(streamBatches.length, 1);
      const events = streamBatches[0]!.events;
      assert.equal(events.length, CASES.length);
      events.forEach((e, i) => {
        assert.equal(e.op, 'c');
        assert.equal(e.position.seq, i);
        assert.deepStrictEqual(e.after, expectedRow(101 + i, CASES[i]!));
      });
      assert.ok(streamBatches[0]!.position.commit > snapshotBatches[0]!.position.commit);
    });

    it('gives snapshot and stream identical values and identical table schemas', () => {
      const snap = snapshotBatches.flatMap((b) => b.events);
      const strm = streamBatches[0]!.events;
      snap.forEach((e, i) => {
        assert.deepStrictEqual({ ...strm[i]!.after, id: 0 }, { ...e.after, id: 0 });
      });
      assert.deepStrictEqual(strm[0]!.schema, snap[0]!.schema);
    });

    it('describes the table exactly: source types, kinds, key, nullability, enum labels', () => {
      const schema: TableSchema = snapshotBatches[0]!.events[0]!.schema;
      const col = (n: string) => schema.columns.find((c) => c.name === n)!;
      assert.deepStrictEqual(schema.primaryKey, ['id']);
      assert.equal(col('id').nullable, false);
      assert.equal(col('i8').nullable, true);
      assert.equal(col('num_ps').sourceType, 'numeric(12,2)');
      assert.deepStrictEqual(col('num_ps').type, { kind: 'decimal', precision: 12, scale: 2 });
      assert.deepStrictEqual(col('num').type, { kind: 'decimal' });
      assert.deepStrictEqual(col('i8').type, { kind: 'int', bits: 64 });
      assert.deepStrictEqual(col('f4').type, { kind: 'float', bits: 32 });
      assert.equal(col('vc').sourceType, 'character varying(10)');
      assert.deepStrictEqual(col('ch').type, { kind: 'string', length: 5 });
      assert.equal(col('tstz').sourceType, 'timestamp(6) with time zone');
      assert.deepStrictEqual(col('e').type, { kind: 'enum', values: ['sad', 'ok', 'happy, very', 'quo"te'] });
      assert.deepStrictEqual(col('ea').type, { kind: 'array', element: { kind: 'enum', values: ['sad', 'ok', 'happy, very', 'quo"te'] } });
      assert.deepStrictEqual(col('na').type, { kind: 'array', element: { kind: 'decimal' } });
      assert.equal(col('dom').sourceType, 'posint');
      assert.deepStrictEqual(col('dom').type, { kind: 'int', bits: 32 });
      assert.deepStrictEqual(col('dom_t').type, { kind: 'string', length: 20 });
      assert.deepStrictEqual(col('ip').type, { kind: 'text' });
      assert.deepStrictEqual(col('bits').type, { kind: 'bit', length: 4 });
      assert.deepStrictEqual(col('pt').type, { kind: 'text' });
    });

    it('gives back every event exactly through the Avro codec, multi-dimensional arrays included', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'chartlog-types-codec-'));
      try {
        const store = new FsObjectStore(dir);
        const log = createLogger({ level: 'silent', format: 'json', destination: process.stderr });
        const schemas = () => new SchemaStore({ source: 'clinic', store, log });
        const writer = new AvroCodec({ source: 'clinic', connector: 'postgres', schemas: schemas() });
        const reader = new AvroCodec({ source: 'clinic', connector: 'postgres', schemas: schemas() });
        for (const batch of [...snapshotBatches, ...streamBatches]) {
          const messages = await writer.encodeBatch(batch);
          for (const [i, m] of messages.entries()) assert.deepStrictEqual((await reader.decode(m.value)).event, batch.events[i]);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("leaves pg's global type parsers alone (other code in the process uses pg)", () => {
      GLOBAL_OIDS.forEach((oid, i) => assert.equal(pg.types.getTypeParser(oid), globalParsers[i], `parser of OID ${oid}`));
    });

    it('warns once about the unknown type, by name, and never logs a value', () => {
      const warnings = logLines.filter((l) => l.includes('not one chartlog knows'));
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /pg_catalog\.point/);
      assert.ok(!logLines.some((l) => l.includes('CANARY-SSN')), 'no row value in the log');
    });
  });
}
