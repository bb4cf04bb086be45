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
import type { TableSchema } from '../../src/core/table-schema.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { createTestDb, pgServers, sourceConfig, type TestDb } from '../support/pg-test-db.js';
import { expectedRow, PG_CASES, PG_COLUMNS, PG_TYPE_DDL, pgMatrixTable, type MatrixCase } from '../support/type-matrix.js';

/**
 * Type matrix (test/support/type-matrix.ts): every type of issue 3 with its edge values, read
 * once by the snapshot and once by the stream, on PostgreSQL 15 and 17. Each value must come out
 * exactly as expected, and snapshot and stream must agree value by value.
 */
function insertSql(id: number, c: MatrixCase): string {
  return `INSERT INTO matrix (id, ${PG_COLUMNS.join(', ')}) VALUES (${id}, ${c.sql.join(', ')})`;
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
      assert.equal(PG_CASES.every((c) => c.sql.length === PG_COLUMNS.length && Object.keys(c.expected).length === PG_COLUMNS.length), true);
      await server.start();
      db = await createTestDb(server.url());
      // The role's own TimeZone must not matter: chartlog sets UTC per connection.
      await db.query(`ALTER DATABASE ${db.name} SET TimeZone = 'Asia/Kolkata'`);
      for (const sql of [...PG_TYPE_DDL, pgMatrixTable('matrix')]) await db.query(sql);
      for (const [i, c] of PG_CASES.entries()) await db.query(insertSql(i + 1, c));
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
      for (const [i, c] of PG_CASES.entries()) await db.query(insertSql(101 + i, c));
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
      assert.equal(events.length, PG_CASES.length);
      assert.equal(snapshotBatches.length, 2, 'chunks of 2 rows');
      assert.ok(snapshotBatches.every((b) => b.snapshot && b.position.commit === snapshotBatches[0]!.position.commit));
      events.forEach((e, i) => {
        assert.equal(e.op, 'r');
        assert.equal(e.position.seq, i);
        assert.deepStrictEqual(e.after, expectedRow(i + 1, PG_CASES[i]!));
      });
    });

    it('streams every row exactly, in one batch for the transaction', () => {
      assert.equal(streamBatches.length, 1);
      const events = streamBatches[0]!.events;
      assert.equal(events.length, PG_CASES.length);
      events.forEach((e, i) => {
        assert.equal(e.op, 'c');
        assert.equal(e.position.seq, i);
        assert.deepStrictEqual(e.after, expectedRow(101 + i, PG_CASES[i]!));
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
