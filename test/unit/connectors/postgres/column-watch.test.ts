import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ColumnWatch, columnReadings, type ColumnReading } from '../../../../connectors/postgres/column-watch.js';

const nums = (o: Record<string, number>) => new Map(Object.entries(o));
const reading = (attnums: Record<string, number>, labels: Record<string, [number, string]> = {}, oid = 16384): ColumnReading => ({
  oid,
  attnums: nums(attnums),
  labels: new Map(Object.entries(labels)),
});
const stamp = (n: number) => ({ streamLsn: BigInt(n), timeUs: BigInt(n * 1000) });

test('a name at a new attnum is a replaced column, reported once, with the last reading that showed it as known', () => {
  const w = new ColumnWatch();
  const known = nums({ id: 1, note: 2 });
  assert.deepEqual(w.observe([reading({ id: 1, note: 2 })], () => known, stamp(1)), [], 'unchanged');
  const v = w.observe([reading({ id: 1, note: 3 })], () => known, stamp(2));
  assert.deepEqual(v, [{ oid: 16384, replaced: ['note'], relabelled: [], since: stamp(1) }]);
  // The same replacement seen again (a later reading, a relation message) is not reported twice.
  assert.deepEqual(w.observe([reading({ id: 1, note: 3 })], () => known, stamp(3)), []);
  // Replaced again: a new attnum, a new report.
  assert.deepEqual(w.observe([reading({ id: 1, note: 4 })], () => known, stamp(4)).map((x) => [x.replaced, x.since]), [[['note'], stamp(3)]]);
  // A column added or dropped, or a rename (the name gone): not a replacement.
  assert.deepEqual(w.observe([reading({ id: 1, memo: 2, flag: 5 })], () => known, stamp(5)), []);
  // No version known for the table: nothing to compare.
  assert.deepEqual(new ColumnWatch().observe([reading({ id: 1, note: 9 })], () => undefined, stamp(1)), []);
});

test('an enum label OID under a new label is a renamed value; a new label OID (ADD VALUE) is not', () => {
  const w = new ColumnWatch();
  const known = () => nums({ id: 1, m: 2 });
  const labels = { '900': [800, 'sad'], '901': [800, 'ok'] } as Record<string, [number, string]>;
  assert.deepEqual(w.observe([reading({ id: 1, m: 2 }, labels)], known, stamp(1)), [], 'the first reading is the baseline');
  assert.deepEqual(w.observe([reading({ id: 1, m: 2 }, { ...labels, '902': [800, 'happy'] })], known, stamp(2)), [], 'ADD VALUE');
  const v = w.observe([reading({ id: 1, m: 2 }, { '900': [800, 'sad'], '901': [800, 'fine'], '902': [800, 'happy'] })], known, stamp(3));
  assert.deepEqual(v, [{ oid: 16384, replaced: [], relabelled: [{ typeOid: 800, from: 'ok', to: 'fine' }], since: stamp(2) }]);
  // Forgotten (the table dropped): the next reading is a baseline again.
  w.forget(16384);
  assert.deepEqual(w.observe([reading({ id: 1, m: 2 }, { '901': [800, 'other'] })], known, stamp(4)), []);
});

test('labels recorded by the last run (catalog record format 3): a value renamed while stopped is found at the first reading, its window from the record', () => {
  const w = new ColumnWatch();
  const known = () => nums({ id: 1, m: 2 });
  const recorded = new Map<string, readonly [number, string]>([['900', [800, 'sad']], ['901', [800, 'ok']]]);
  w.recall(16384, recorded, stamp(7));
  assert.deepEqual(w.labelsOf(16384), recorded);
  const v = w.observe([reading({ id: 1, m: 2 }, { '900': [800, 'sad'], '901': [800, 'fine'] })], known, stamp(9));
  assert.deepEqual(v, [{ oid: 16384, replaced: [], relabelled: [{ typeOid: 800, from: 'ok', to: 'fine' }], since: stamp(7) }]);
  assert.deepEqual([...w.labelsOf(16384)!], [['900', [800, 'sad']], ['901', [800, 'fine']]], 'what the next record keeps');
  // Nothing recalled (a record of format 2): the first reading is the baseline, nothing found.
  assert.deepEqual(new ColumnWatch().observe([reading({ id: 1, m: 2 }, { '901': [800, 'fine'] })], known, stamp(9)), []);
});

test('columnReadings: the rows as the server returns them, per table', () => {
  const rows = [
    { attrelid: '10', attname: 'id', attnum: '1', labels: null, ts_us: '1700000000000000', lsn: '0/16B3748' },
    { attrelid: '10', attname: 'm', attnum: '2', labels: '{ "900" : ["800", "sad"], "901" : ["800", "ok"] }', ts_us: '1700000000000000', lsn: '0/16B3748' },
    { attrelid: '11', attname: 'id', attnum: '1', labels: null, ts_us: '1700000000000000', lsn: '0/16B3748' },
  ];
  const r = columnReadings(rows)!;
  assert.equal(r.timeUs, 1700000000000000n);
  assert.equal(r.atLsn, '0/16B3748');
  assert.deepEqual(r.readings.map((x) => [x.oid, [...x.attnums], [...x.labels]]), [
    [10, [['id', 1], ['m', 2]], [['900', [800, 'sad']], ['901', [800, 'ok']]]],
    [11, [['id', 1]], []],
  ]);
  assert.equal(columnReadings([]), null);
});
