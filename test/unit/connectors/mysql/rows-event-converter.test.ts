import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mariadbPosition } from '../../../../connectors/mysql/binlog-position.js';
import { type BinlogRecord, RowsEventConverter, isSchemaStatement, mariadbGtidRecord, truncatedTable, xaKeyOfQuery } from '../../../../connectors/mysql/rows-event-converter.js';
import { columnTypeOf } from '../../../../connectors/mysql/column-type.js';
import type { ChartlogError } from '../../../../src/core/errors.js';
import { COMMIT_SEQ, type Position } from '../../../../src/core/position.js';
import { type TableSchema, freezeTableSchema } from '../../../../src/core/table-schema.js';

const col = (name: string, sourceType: string, nullable = true) => ({ name, sourceType, type: columnTypeOf(sourceType), nullable });
const PATIENTS: TableSchema = freezeTableSchema({
  schema: 'clinic', table: 'patients',
  columns: [col('id', 'int(11)', false), col('ssn', 'varchar(20)'), col('ext', 'uuid'), col('born', 'year(4)')],
  primaryKey: ['id'],
});
const tablemapOf = (tableId: number, columns: [string, string][], table = 'patients'): BinlogRecord => ({
  type: 'tablemap', tableId, schema: 'clinic', table, columns: columns.map(([name, columnType]) => ({ name, columnType })),
});
const CURRENT_MAP = tablemapOf(7, [['id', 'int'], ['ssn', 'varchar(20)'], ['ext', 'binary(16)'], ['born', 'year']]);
const gtid = (seq: number, standalone = false, domain = 0): BinlogRecord => mariadbGtidRecord({ domain, server: 1, seq: BigInt(seq) }, standalone, 1_700_000_000_000);
const commit: BinlogRecord = { type: 'commit', timestampMs: 1_700_000_001_000 };
const uuid = Buffer.from('123e4567e89b12d3a456426614174000', 'hex');

function converter(from: Position | null = null): RowsEventConverter {
  return new RowsEventConverter({
    source: 'clinic-db', from, tables: new Map([['clinic.patients', PATIENTS]]),
    captures: (schema, table) => schema === 'clinic' && table !== 'audit',
  });
}

function run(c: RowsEventConverter, records: BinlogRecord[]) {
  return records.map((r) => c.push(r)).filter((b) => b !== null);
}

describe('RowsEventConverter', () => {
  it('makes one batch per transaction, events in binlog order with their seq', () => {
    const c = converter();
    const batches = run(c, [
      gtid(5), CURRENT_MAP,
      { type: 'rows', op: 'c', tableId: 7, rows: [{ id: 1, ssn: 'CANARY-SSN-123-45-6789', ext: uuid, born: 1900 }, { id: 2, ssn: null, ext: null, born: 1999 }] },
      { type: 'rows', op: 'u', tableId: 7, rows: [{ before: { id: 2, ssn: null, ext: null, born: 1999 }, after: { id: 2, ssn: 'x', ext: null, born: 1999 } }] },
      { type: 'rows', op: 'd', tableId: 7, rows: [{ id: 1, ssn: 'CANARY-SSN-123-45-6789', ext: uuid, born: 1900 }] },
      commit,
    ]);
    assert.equal(batches.length, 1);
    const b = batches[0]!;
    assert.equal(b.txId, '0-1-5');
    assert.deepEqual(b.position, mariadbPosition({ domain: 0, server: 1, seq: 5n }));
    assert.equal(b.commitTsUs, 1_700_000_001_000_000n);
    assert.equal(b.snapshot, false);
    assert.deepEqual(b.events.map((e) => [e.op, e.position.seq]), [['c', 0], ['c', 1], ['u', 2], ['d', 3]]);
    assert.deepStrictEqual(b.events[0]!.after, { id: 1, ssn: 'CANARY-SSN-123-45-6789', ext: '123e4567-e89b-12d3-a456-426614174000', born: 0 });
    assert.deepStrictEqual(b.events[2]!.before, { id: 2, ssn: null, ext: null, born: 1999 });
    assert.equal(b.events[0]!.schema, PATIENTS, 'the tracked version when the table map matches it');
  });

  it('decodes rows written before an ALTER with the table map\'s columns, borrowing unchanged details', () => {
    const c = converter();
    const old = tablemapOf(8, [['id', 'int'], ['name', 'varchar(10)'], ['ext', 'binary(16)']]);
    const [b] = run(c, [gtid(6), old, { type: 'rows', op: 'c', tableId: 8, rows: [{ id: 3, name: 'n', ext: uuid }] }, commit]);
    const e = b!.events[0]!;
    assert.deepStrictEqual(e.after, { id: 3, name: 'n', ext: '123e4567-e89b-12d3-a456-426614174000' });
    assert.deepEqual(e.schema.columns.map((x) => `${x.name}:${x.type.kind}`), ['id:int', 'name:string', 'ext:uuid']);
    assert.deepEqual(e.schema.primaryKey, ['id']);
    assert.notEqual(e.schema, PATIENTS);
    // The same table map again yields the same version object (one schema per version).
    const [b2] = run(c, [gtid(7), tablemapOf(9, [['id', 'int'], ['name', 'varchar(10)'], ['ext', 'binary(16)']]), { type: 'rows', op: 'c', tableId: 9, rows: [{ id: 4, name: 'm', ext: null }] }, commit]);
    assert.equal(b2!.events[0]!.schema, e.schema);
  });

  it('DDL is a batch of its own with the new versions; TRUNCATE is an op t event', () => {
    const c = converter();
    const altered = freezeTableSchema({ ...PATIENTS, columns: [...PATIENTS.columns, col('note', 'text')] });
    const [ddl] = run(c, [gtid(8, true), {
      type: 'statement', schema: 'clinic', query: 'ALTER TABLE patients ADD note TEXT', timestampMs: 1_700_000_002_000,
      refreshed: new Map([['clinic.patients', altered]]),
    }]);
    assert.equal(ddl!.events.length, 0);
    assert.deepEqual(ddl!.schemaChanges, [altered]);
    assert.equal(c.tables.get('clinic.patients'), altered);
    const [t] = run(c, [gtid(9, true), { type: 'statement', schema: 'clinic', query: 'TRUNCATE TABLE `patients`', timestampMs: 1_700_000_003_000, refreshed: new Map([['clinic.patients', altered]]) }]);
    assert.deepEqual(t!.events.map((e) => [e.op, e.before, e.after, e.schema]), [['t', null, null, altered]]);
    assert.equal(t!.schemaChanges, undefined);
    // A statement that changes no captured table makes no batch.
    assert.deepEqual(run(c, [gtid(10, true), { type: 'statement', schema: 'clinic', query: 'CREATE USER x', timestampMs: 0 }]), []);
  });

  it('drops transactions at or before `from`, resumes exactly after it', () => {
    const c = converter(mariadbPosition({ domain: 0, server: 1, seq: 11n }));
    const batches = run(c, [
      gtid(11), CURRENT_MAP, { type: 'rows', op: 'c', tableId: 7, rows: [{ id: 1, ssn: null, ext: null, born: null }] }, commit,
      gtid(12), CURRENT_MAP, { type: 'rows', op: 'c', tableId: 7, rows: [{ id: 2, ssn: null, ext: null, born: null }] }, commit,
    ]);
    assert.deepEqual(batches.map((b) => b.txId), ['0-1-12']);
    assert.equal(c.resumeFrom?.commit, mariadbPosition({ domain: 0, server: 1, seq: 12n }).commit);
    assert.equal(c.resumeFrom?.seq, COMMIT_SEQ);
  });

  it('ignores tables it does not capture and transactions without captured rows', () => {
    const c = converter();
    const batches = run(c, [gtid(13), tablemapOf(20, [['id', 'int']], 'audit'), { type: 'rows', op: 'c', tableId: 20, rows: [{ id: 1 }] }, commit]);
    assert.deepEqual(batches, []);
    assert.equal(c.resumeFrom?.commit, mariadbPosition({ domain: 0, server: 1, seq: 13n }).commit, 'still advances the resume point');
  });

  it('stops at a second GTID domain rather than order across domains', () => {
    const c = converter(mariadbPosition({ domain: 0, server: 1, seq: 3n }));
    assert.throws(() => c.push(gtid(1, false, 1)), (err: ChartlogError) => err.code === 'source_setup' && /domains 0 and 1/.test(err.message));
  });

  it('stops, without retrying, at a group that never ends', () => {
    const c = converter();
    c.push(gtid(20));
    c.push(CURRENT_MAP);
    assert.throws(() => c.push(gtid(21)), (err: ChartlogError) => err.code === 'decode' && !err.retriable && /ended without a commit/.test(err.message));
  });

  it('XA: prepared rows are emitted at XA COMMIT under its position, dropped at XA ROLLBACK', () => {
    const c = converter();
    const xaGtid = (seq: number, key: string, completed: boolean): BinlogRecord => ({ ...mariadbGtidRecord({ domain: 0, server: 1, seq: BigInt(seq) }, completed, 0), xa: { key, completed } } as BinlogRecord);
    const row = (id: number): BinlogRecord => ({ type: 'rows', op: 'c', tableId: 7, rows: [{ id, ssn: null, ext: null, born: null }] });
    const out = run(c, [
      xaGtid(30, 'k1', false), CURRENT_MAP, row(1), { type: 'xaprepare', key: 'k1', onePhase: false, timestampMs: 0 },
      xaGtid(31, 'k2', false), CURRENT_MAP, row(2), { type: 'xaprepare', key: 'k2', onePhase: false, timestampMs: 0 },
      gtid(32), CURRENT_MAP, row(3), commit,
      xaGtid(33, 'k2', true), { type: 'statement', schema: 'clinic', query: "XA ROLLBACK 'b'", timestampMs: 0 },
      xaGtid(34, 'k1', true), { type: 'statement', schema: 'clinic', query: "XA COMMIT 'a'", timestampMs: 5000 },
      xaGtid(35, 'k3', false), CURRENT_MAP, row(4), { type: 'xaprepare', key: 'k3', onePhase: true, timestampMs: 6000 },
    ]);
    assert.deepEqual(out.map((b) => [b.txId, b.events.map((e) => [e.after!.id, e.position.commit === b.position.commit, e.position.seq])]), [
      ['0-1-32', [[3, true, 0]]],
      ['0-1-34', [[1, true, 0]]],
      ['0-1-35', [[4, true, 0]]],
    ]);
    assert.equal(out[1]!.commitTsUs, 5_000_000n);
  });

  it('XA as MySQL logs it: XA START/END inside the group, the XA id in the COMMIT text', () => {
    const c = converter();
    const my = (n: number): BinlogRecord => ({ type: 'gtid', commit: `00000000-${n.toString(16).padStart(16, '0')}-00000001`, txId: `u:${n}`, lane: '0', standalone: true, timestampMs: 0 });
    const key = xaKeyOfQuery("XA COMMIT X'61',X'',1");
    assert.equal(key, '1.61.');
    const out = run(c, [
      my(40), { type: 'statement', schema: 'clinic', query: "XA START X'61',X'',1", timestampMs: 0 }, CURRENT_MAP,
      { type: 'rows', op: 'c', tableId: 7, rows: [{ id: 9, ssn: null, ext: null, born: null }] },
      { type: 'statement', schema: 'clinic', query: "XA END X'61',X'',1", timestampMs: 0 },
      { type: 'xaprepare', key: key!, onePhase: false, timestampMs: 0 },
      my(41), { type: 'statement', schema: 'clinic', query: "XA COMMIT X'61',X'',1", timestampMs: 0 },
    ]);
    assert.deepEqual(out.map((b) => [b.txId, b.events.map((e) => e.after!.id)]), [['u:41', [9]]]);
    assert.throws(() => run(converter(), [my(50), { type: 'statement', schema: 'clinic', query: "XA COMMIT X'62',X'',1", timestampMs: 0 }]), /prepared before the stream's start position/);
  });

  it('treats a row event without its table map as a (retriable) decode error', () => {
    const c = converter();
    c.push(gtid(14));
    assert.throws(() => c.push({ type: 'rows', op: 'c', tableId: 99, rows: [] }), (err: ChartlogError) => err.code === 'decode' && err.retriable);
    c.abandonTransaction();
    assert.equal(c.inTransaction, false);
  });
});

describe('statement helpers', () => {
  it('finds the table a TRUNCATE names', () => {
    assert.deepEqual(truncatedTable('TRUNCATE TABLE `patients`', 'clinic'), { schema: 'clinic', table: 'patients' });
    assert.deepEqual(truncatedTable('truncate other.`we``ird`', 'clinic'), { schema: 'other', table: 'we`ird' });
    assert.deepEqual(truncatedTable('/* c */ TRUNCATE t1', 'db'), { schema: 'db', table: 't1' });
    assert.equal(truncatedTable('ALTER TABLE t TRUNCATE PARTITION p0', 'db'), null);
    assert.equal(truncatedTable("INSERT INTO t VALUES ('TRUNCATE x')", 'db'), null);
  });

  it('knows which statements may change a table', () => {
    assert.ok(isSchemaStatement('ALTER TABLE t ADD c INT'));
    assert.ok(isSchemaStatement('  rename table a to b'));
    assert.ok(!isSchemaStatement('COMMIT'));
    assert.ok(!isSchemaStatement('SAVEPOINT s'));
  });
  describe('large transactions: events taken out while read (the connector spills them)', () => {
    const row = (id: number): BinlogRecord => ({ type: 'rows', op: 'c', tableId: 7, rows: [{ id, ssn: null, ext: null, born: null }] });
    const xaGtid = (seq: number, key: string, completed: boolean): BinlogRecord => ({ ...mariadbGtidRecord({ domain: 0, server: 1, seq: BigInt(seq) }, completed, 0), xa: { key, completed } } as BinlogRecord);

    it('taken events keep their positions; the completion says how many came first', () => {
      const c = converter();
      c.push(gtid(40));
      c.push(CURRENT_MAP);
      c.push(row(1));
      c.push(row(2));
      assert.equal(c.collected, 2);
      const taken = c.takeEvents();
      assert.deepEqual(taken.map((e) => [e.after!.id, e.position.seq]), [[1, 0], [2, 1]]);
      assert.equal(c.collected, 0);
      c.push(row(3));
      const done = c.pushRecord(commit)!;
      assert.deepEqual(done.batch.events.map((e) => [e.after!.id, e.position.seq]), [[3, 2]]);
      assert.deepEqual(done.taken, { group: taken[0]!.position.commit, count: 2, renumber: false, skipThrough: -1 });
      assert.equal(done.batch.position.seq, COMMIT_SEQ);
    });

    it('a `from` inside a transaction (a durable piece) reads it again and drops the events up to it', () => {
      const inside = mariadbPosition({ domain: 0, server: 1, seq: 41n }, 1);
      const c = converter(inside);
      const out = run(c, [gtid(40), CURRENT_MAP, row(9), commit, gtid(41), CURRENT_MAP, row(1), row(2), row(3), commit, gtid(42), CURRENT_MAP, row(4), commit]);
      assert.deepEqual(out.map((b) => [b.txId, b.events.map((e) => [e.after!.id, e.position.seq])]), [
        ['0-1-41', [[3, 2]]],
        ['0-1-42', [[4, 0]]],
      ]);
      // Control: from the whole transaction, nothing of it comes again.
      const whole = run(converter(mariadbPosition({ domain: 0, server: 1, seq: 41n })), [gtid(41), CURRENT_MAP, row(1), commit]);
      assert.deepEqual(whole, []);
    });

    it('XA: rows taken from the PREPARE group are renumbered under the XA COMMIT; a rollback gives its group up', () => {
      const c = converter();
      run(c, [xaGtid(50, 'k1', false), CURRENT_MAP, row(1), row(2)]);
      const prepareGroup = c.openGroup!;
      assert.equal(c.takeEvents().length, 2);
      run(c, [row(3), { type: 'xaprepare', key: 'k1', onePhase: false, timestampMs: 0 }]);
      assert.equal(c.preparedCount, 1);
      run(c, [xaGtid(51, 'k2', false), CURRENT_MAP, row(7)]);
      const rolledBackGroup = c.openGroup!;
      c.takeEvents();
      run(c, [{ type: 'xaprepare', key: 'k2', onePhase: false, timestampMs: 0 }, xaGtid(52, 'k2', true)]);
      assert.equal(c.pushRecord({ type: 'statement', schema: 'clinic', query: "XA ROLLBACK 'b'", timestampMs: 0 }), null);
      assert.deepEqual(c.takeDropped(), [rolledBackGroup], 'the rolled-back group\'s spill may go');
      c.push(xaGtid(53, 'k1', true));
      const done = c.pushRecord({ type: 'statement', schema: 'clinic', query: "XA COMMIT 'a'", timestampMs: 5000 })!;
      assert.equal(c.preparedCount, 0);
      assert.equal(done.batch.txId, '0-1-53');
      assert.deepEqual(done.batch.events.map((e) => [e.after!.id, e.position.commit === done.batch.position.commit, e.position.seq]), [[3, true, 2]]);
      assert.deepEqual(done.taken, { group: prepareGroup, count: 2, renumber: true, skipThrough: -1 });
    });

    it('abandoning a transaction whose events were taken gives its group up', () => {
      const c = converter();
      run(c, [gtid(60), CURRENT_MAP, row(1)]);
      const group = c.openGroup!;
      c.takeEvents();
      c.abandonTransaction();
      assert.deepEqual(c.takeDropped(), [group]);
      assert.deepEqual(c.takeDropped(), []);
    });
  });
});

describe('RENAME TABLE', () => {
  const K: TableSchema = freezeTableSchema({ ...PATIENTS, table: 'k' });
  const K2: TableSchema = freezeTableSchema({ ...PATIENTS, table: 'k2' });
  // As the connector gives it: a tracked table the catalogue no longer has is null.
  const make = (): RowsEventConverter =>
    new RowsEventConverter({ source: 'clinic-db', from: null, tables: new Map([['clinic.k', K], ['clinic.patients', PATIENTS]]), captures: () => true });

  it('ends the old name (op x, its last version) and makes the new name current', () => {
    const c = make();
    c.push(gtid(40, true));
    const b = c.push({ type: 'statement', schema: 'clinic', query: 'RENAME TABLE k TO k2', timestampMs: 0, refreshed: new Map<string, TableSchema | null>([['clinic.k2', K2], ['clinic.patients', PATIENTS], ['clinic.k', null]]) })!;
    assert.deepEqual(b.events.map((e) => [e.op, e.schema.table]), [['x', 'k']]);
    assert.deepEqual(b.schemaChanges?.map((s) => s.table), ['k2']);
    assert.equal(c.tables.has('clinic.k'), false);
  });

  it('a table gone from a catalogue read late (a later RENAME) stays tracked until its own statement ends it', () => {
    const c = make();
    c.push(gtid(41, true));
    // The ALTER of patients is read after the source already ran RENAME TABLE k TO k2.
    c.push({ type: 'statement', schema: 'clinic', query: 'ALTER TABLE patients ADD INDEX i (born)', timestampMs: 0, refreshed: new Map<string, TableSchema | null>([['clinic.k2', K2], ['clinic.patients', PATIENTS], ['clinic.k', null]]) });
    assert.equal(c.tables.has('clinic.k'), true, 'k is still tracked');
    c.push(gtid(42, true));
    const b = c.push({ type: 'statement', schema: 'clinic', query: 'RENAME TABLE k TO k2', timestampMs: 0, refreshed: new Map<string, TableSchema | null>([['clinic.k2', K2], ['clinic.patients', PATIENTS], ['clinic.k', null]]) })!;
    assert.deepEqual(b.events.map((e) => [e.op, e.schema.table]), [['x', 'k']], 'the rename still ends k');
  });
});
