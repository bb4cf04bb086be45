import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyRelation, convertChange, convertInsert, initialConverterState, type ChangeMessage, type ConverterState } from '../../../../connectors/postgres/pgoutput-converter.js';
import { decodePgoutput, type PgMessage } from '../../../../connectors/postgres/pgoutput-decoder.js';
import type { DescribedTable } from '../../../../connectors/postgres/type-catalog.js';
import { columnCodec, OID } from '../../../../connectors/postgres/type-parsers.js';
import { COMMIT_SEQ } from '../../../../src/core/position.js';
import { freezeTableSchema, UNCHANGED } from '../../../../src/core/table-schema.js';
import { msg } from './pgoutput-messages.js';

const none = { get: () => undefined };
function described(cols: [string, number][], key: string[]): DescribedTable {
  const codecs = cols.map(([, oid]) => columnCodec(oid, -1, none));
  return {
    schema: freezeTableSchema({
      schema: 'public', table: 'patients',
      columns: cols.map(([name], i) => ({ name, sourceType: String(cols[i]![1]), type: codecs[i]!.type, nullable: !key.includes(name) })),
      primaryKey: key,
    }),
    codecs,
  };
}

function withRelation(state: ConverterState, bytes: Uint8Array, d: DescribedTable) {
  return applyRelation(state, decodePgoutput(bytes) as Extract<PgMessage, { tag: 'relation' }>, d);
}
const change = (bytes: Uint8Array) => decodePgoutput(bytes) as ChangeMessage;

const relBytes = msg.relation(10, 'public', 'patients', 'd', [[1, 'id', OID.int8, -1], [0, 'ssn', OID.text, -1], [0, 'notes', OID.text, -1]]);
const table = described([['id', OID.int8], ['ssn', OID.text], ['notes', OID.text]], ['id']);

describe('pgoutput converter', () => {
  it('a relation message makes a table version; the same one again is no schema change', () => {
    const first = withRelation(initialConverterState, relBytes, table);
    assert.equal(first.schemaChange, table.schema);
    const again = withRelation(first.state, relBytes, described([['id', OID.int8], ['ssn', OID.text], ['notes', OID.text]], ['id']));
    assert.equal(again.schemaChange, null);
    const altered = described([['id', OID.int8], ['ssn', OID.text], ['notes', OID.text], ['dob', OID.date]], ['id']);
    const ddl = withRelation(again.state, msg.relation(10, 'public', 'patients', 'd', [[1, 'id', 20, -1], [0, 'ssn', 25, -1], [0, 'notes', 25, -1], [0, 'dob', 1082, -1]]), altered);
    assert.equal(ddl.schemaChange, altered.schema);
  });

  it('turns inserts, updates and deletes into events with exact values and positions', () => {
    const { state } = withRelation(initialConverterState, relBytes, table);
    const commit = '00000000000000a0';
    const [ins] = convertChange(state, change(msg.insert(10, ['9223372036854775807', 'CANARY-SSN-123-45-6789', null])), commit, 0);
    assert.deepStrictEqual(ins, {
      op: 'c', schema: table.schema, before: null,
      after: { id: 9223372036854775807n, ssn: 'CANARY-SSN-123-45-6789', notes: null },
      position: { commit, seq: 0 },
    });
    const [upd] = convertChange(state, change(msg.update(10, { kind: 'K', values: ['1', null, null] }, ['2', 'x', 'UNCHANGED-TOAST'])), commit, 1);
    assert.equal(upd!.op, 'u');
    assert.deepStrictEqual(upd!.before, { id: 1n }, 'a key tuple gives only the key columns');
    assert.deepStrictEqual(upd!.after, { id: 2n, ssn: 'x', notes: UNCHANGED }, 'unchanged TOAST is UNCHANGED, not null');
    assert.equal(upd!.position.seq, 1);
    const [plain] = convertChange(state, change(msg.update(10, null, ['2', 'y', null])), commit, 2);
    assert.equal(plain!.before, null);
    assert.equal(plain!.after!.notes, null);
    const [del] = convertChange(state, change(msg.delete(10, 'K', ['2', null, null])), commit, 3);
    assert.deepStrictEqual(del, { op: 'd', schema: table.schema, before: { id: 2n }, after: null, position: { commit, seq: 3 } });
    assert.ok(del!.position.seq < COMMIT_SEQ);
  });

  it('REPLICA IDENTITY FULL: whole old rows, and an unchanged TOAST value is taken from the old row', () => {
    const { state } = withRelation(initialConverterState, msg.relation(10, 'public', 'patients', 'f', [[1, 'id', 20, -1], [1, 'ssn', 25, -1], [1, 'notes', 25, -1]]), table);
    const [upd] = convertChange(state, change(msg.update(10, { kind: 'O', values: ['1', 'a', 'long'] }, ['1', 'b', 'UNCHANGED-TOAST'])), '00000000000000a0', 0);
    assert.deepStrictEqual(upd!.before, { id: 1n, ssn: 'a', notes: 'long' });
    assert.deepStrictEqual(upd!.after, { id: 1n, ssn: 'b', notes: 'long' });
  });

  it('a truncate of two tables is two events with consecutive positions', () => {
    const s1 = withRelation(initialConverterState, relBytes, table).state;
    const other = described([['k', OID.int4]], ['k']);
    const s2 = withRelation(s1, msg.relation(11, 'public', 'visits', 'd', [[1, 'k', 23, -1]]), other).state;
    const events = convertChange(s2, change(msg.truncate([10, 11], 0)), '00000000000000b0', 5);
    assert.deepStrictEqual(events.map((e) => [e.op, e.schema.table, e.position.seq, e.before, e.after]), [
      ['t', 'patients', 5, null, null],
      ['t', 'patients', 6, null, null],
    ]);
    assert.equal(events[1]!.schema, other.schema);
  });

  it('convertInsert (the fast path for inserts) makes the same event as decoding and convertChange', () => {
    const { state } = withRelation(initialConverterState, relBytes, table);
    const commit = '00000000000000a0';
    for (const values of [
      ['9223372036854775807', 'CANARY-SSN-123-45-6789', null],
      ['-1', '', 'Ünïcødé ☃ text'],
      ['0', null, 'UNCHANGED-TOAST'],
    ]) {
      const bytes = msg.insert(10, values);
      assert.deepStrictEqual(convertInsert(state, bytes, commit, 7), convertChange(state, change(bytes), commit, 7)[0], String(values));
    }
    assert.equal(convertInsert(state, msg.insert(10, ['0', null, 'UNCHANGED-TOAST']), commit, 0).after!.notes, UNCHANGED);
    // The same refusals as the general path: a column count the relation does not have, an unknown relation, a binary column.
    assert.throws(() => convertInsert(state, msg.insert(10, ['1', 'x']), commit, 0), /tuple of 2 columns for public\.patients with 3/);
    assert.throws(() => convertInsert(initialConverterState, msg.insert(99, ['1']), commit, 0), /before its relation message/);
    const binary = Uint8Array.from(msg.insert(10, ['1', 'x', 'y']));
    binary[binary.indexOf(0x74)] = 0x62; // the first column's kind 't' → 'b'
    assert.throws(() => convertInsert(state, binary, commit, 0), /unexpected tuple column kind 0x62/);
    assert.throws(() => convertChange(state, change(binary), commit, 0), /unexpected tuple column kind 0x62/);
    assert.throws(() => convertInsert(state, msg.insert(10, ['1', 'x', 'y']).subarray(0, 20), commit, 0), /message ends early/);
  });

  it('a change before its relation message is an error, not a guess', () => {
    assert.throws(() => convertChange(initialConverterState, change(msg.insert(99, ['1'])), '00000000000000a0', 0), /before its relation message/);
  });
});
