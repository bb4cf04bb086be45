import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecordMapper, classify, toRecord } from '../../../../connectors/mysql/binlog-reader.js';
import { RowsEventConverter } from '../../../../connectors/mysql/rows-event-converter.js';
import { mysqlGtidOf } from '../../../../connectors/mysql/binlog-position.js';
import { sourceError } from '../../../../connectors/mysql/connection-settings.js';

describe('binlog errors', () => {
  it('names a server-id clash, whatever mysql2 calls it, and does not retry it', () => {
    const err = Object.assign(new Error("A slave with the same server_uuid/server_id is already connected; the first event '.' at 4"), { code: 'ER_INVALID_MFA_PLUGIN_SPECIFIED', errno: 4052 });
    const e = classify(err, 1234);
    assert.equal(e.code, 'source_setup');
    assert.equal(e.retriable, false);
    assert.match(e.message, /server id 1234/);
    assert.match(e.hint ?? '', /source\.mysql\.serverId/);
  });

  it('a purged binlog is fatal with the fix; a lost connection is retriable', () => {
    const purged = classify(Object.assign(new Error('Could not find GTID state requested by slave in any binlog files'), { errno: 1236 }), 1);
    assert.equal(purged.retriable, false);
    assert.match(purged.hint ?? '', /chartlog snapshot --from-source/);
    const lost = classify(Object.assign(new Error('Connection lost: The server closed the connection.'), { code: 'PROTOCOL_CONNECTION_LOST', fatal: true }), 1);
    assert.equal(lost.code, 'connection');
    assert.equal(lost.retriable, true);
  });

  it('driver errors keep the server message, not the statement or its parameters', () => {
    const e = sourceError(Object.assign(new Error('Table definition has changed, please retry transaction'), { errno: 1412, sql: "SELECT … WHERE id > 'CANARY-SSN-123-45-6789'" }));
    assert.equal(e.retriable, true);
    assert.doesNotMatch(JSON.stringify({ m: e.message, h: e.hint }), /CANARY/);
    assert.equal(sourceError(Object.assign(new Error('Access denied'), { errno: 1045 })).code, 'auth');
    assert.equal(sourceError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })).retriable, true);
    assert.equal(sourceError(Object.assign(new Error('syntax'), { errno: 1064 })).retriable, false);
  });
});

describe('zongji events → records', () => {
  const ev = (name: string, fields: Record<string, unknown>) => ({ getEventName: () => name, timestamp: 1_700_000_000_000, ...fields });

  it('maps GTID, table map, rows, XID and statements; drops BEGIN and heartbeats', () => {
    assert.deepEqual(toRecord(ev('mariadbgtid', { domainId: 0, serverId: 3, seqNo: '18446744073709551615', standalone: true })), {
      type: 'gtid', commit: '00000000-ffffffffffffffff-00000003', txId: '0-3-18446744073709551615', lane: '0', standalone: true, timestampMs: 1_700_000_000_000,
    });
    const tableMap = { 5: { columnSchemas: [{ COLUMN_NAME: 'id', COLUMN_TYPE: 'int' }, { COLUMN_NAME: 'e', COLUMN_TYPE: "enum('a,b')", ENUM_VALUES: ['a,b'] }] } };
    assert.deepEqual(toRecord(ev('tablemap', { tableId: 5, schemaName: 'db', tableName: 't', tableMap })), {
      type: 'tablemap', tableId: 5, schema: 'db', table: 't', columns: [{ name: 'id', columnType: 'int' }, { name: 'e', columnType: "enum('a,b')", values: ['a,b'] }],
    });
    assert.deepEqual(toRecord(ev('updaterows', { tableId: 5, rows: [{ before: {}, after: {} }] })), { type: 'rows', op: 'u', tableId: 5, rows: [{ before: {}, after: {} }] });
    assert.deepEqual(toRecord(ev('xid', {})), { type: 'commit', timestampMs: 1_700_000_000_000 });
    assert.equal(toRecord(ev('query', { query: 'BEGIN', schema: 'db' })), null);
    assert.deepEqual(toRecord(ev('query', { query: 'TRUNCATE t', schema: 'db' })), { type: 'statement', schema: 'db', query: 'TRUNCATE t', timestampMs: 1_700_000_000_000 });
    assert.equal(toRecord(ev('heartbeat', {})), null);
  });
});

describe('MySQL events → records → batches', () => {
  const ev = (name: string, fields: Record<string, unknown>) => ({ getEventName: () => name, timestamp: 1_700_000_000_000, ...fields });
  const uuid = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
  const tableMap = { 1: { columnSchemas: [{ COLUMN_NAME: 'id', COLUMN_TYPE: 'int' }] } };

  it('numbers transactions after the resume set and tells DDL from transactions by BEGIN', () => {
    const m = new RecordMapper(41n);
    const c = new RowsEventConverter({ source: 's', from: null, tables: new Map(), captures: () => true });
    const feed = (events: ReturnType<typeof ev>[]) => events.map((e) => m.toRecord(e)).filter((r) => r !== null).map((r) => c.push(r)).filter((b) => b !== null);
    const [tx] = feed([
      ev('gtid', { sid: uuid, gno: 7 }), ev('query', { query: 'BEGIN', schema: 'db' }),
      ev('tablemap', { tableId: 1, schemaName: 'db', tableName: 't', tableMap }), ev('writerows', { tableId: 1, rows: [{ id: 1 }] }), ev('xid', {}),
    ]);
    assert.equal(tx!.txId, `${uuid}:7`);
    assert.deepEqual(mysqlGtidOf(tx!.position.commit), { ordinal: 42n, gno: 7n, uuid });
    assert.deepStrictEqual(tx!.events[0]!.after, { id: 1 });
    // DDL: GTID then the statement, no BEGIN, no XID.
    const ddl = feed([ev('gtid', { sid: uuid, gno: 8 }), ev('query', { query: 'TRUNCATE t', schema: 'db' })]);
    assert.equal(ddl.length, 0, 'no captured version known: nothing to emit, but the group closed');
    const [next] = feed([
      ev('gtid', { sid: uuid, gno: 9 }), ev('query', { query: 'BEGIN', schema: 'db' }),
      ev('tablemap', { tableId: 1, schemaName: 'db', tableName: 't', tableMap }), ev('writerows', { tableId: 1, rows: [{ id: 2 }] }), ev('xid', {}),
    ]);
    assert.equal(mysqlGtidOf(next!.position.commit)!.ordinal, 44n);
    assert.ok(next!.position.commit > tx!.position.commit);
  });
});
