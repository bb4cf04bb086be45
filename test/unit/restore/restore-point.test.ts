import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { parseRestorePoint } from '../../../src/restore/restore-point.js';
import { formatUs } from '../../../src/archive/layout.js';

const usOf = (text: string): string => {
  const p = parseRestorePoint(text);
  assert.equal(p.kind, 'time');
  return formatUs((p as { us: bigint }).us);
};

test('times with zones become microseconds since the epoch, exactly', () => {
  assert.equal(usOf('2026-11-24T06:40:12.123456Z'), '2026-11-24T06:40:12.123456Z');
  assert.equal(usOf('2026-11-24 07:40:12.5+01:00'), '2026-11-24T06:40:12.500000Z');
  assert.equal(usOf('2026-11-24T01:10:12-0530'), '2026-11-24T06:40:12.000000Z');
  assert.equal(usOf('2026-11-24T06:40Z'), '2026-11-24T06:40:00.000000Z');
  assert.equal(usOf('2026-11-24T16:40:00.000001+10'), '2026-11-24T06:40:00.000001Z');
  assert.equal(usOf('1969-12-31T23:59:59.999999Z'), '1969-12-31T23:59:59.999999Z');
  assert.deepEqual(parseRestorePoint('1970-01-01T00:00:00.000001Z'), { kind: 'time', us: 1n });
});

test('latest and positions', () => {
  assert.deepEqual(parseRestorePoint('latest'), { kind: 'latest' });
  assert.deepEqual(parseRestorePoint('LATEST'), { kind: 'latest' });
  const p = parseRestorePoint('0000000001a2b3c4.ffffffff');
  assert.equal(p.kind, 'position');
  assert.ok(Position.equals((p as { position: Position }).position, Position.of('0000000001a2b3c4')));
  const m = parseRestorePoint('00000001-0000000000000abc.00000002');
  assert.deepEqual((m as { position: Position }).position, Position.of('00000001-0000000000000abc', 2));
});

test('bad --to values are usage errors that say why', () => {
  const cases: [string, RegExp][] = [
    ['2026-11-24T06:40:12', /needs its zone/],
    ['2026-11-24', /needs its zone/],
    ['2026-11-24T06:40:12.1234567Z', /at most 6 fraction digits/],
    ['2026-02-30T00:00:00Z', /no such date/],
    ['2026-11-24T24:00:00Z', /no such date/],
    ['yesterday', /not a time, position/],
    ['0000000001a2b3c4.fff', /not a time, position/],
    ['2026-11-24T06:40:12+25:00', /invalid zone/],
  ];
  for (const [text, why] of cases) {
    assert.throws(() => parseRestorePoint(text), (err: unknown) => err instanceof ChartlogError && err.exitCode === 2 && why.test(err.message), text);
  }
});
