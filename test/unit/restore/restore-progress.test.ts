import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonProgress, terminalProgress } from '../../../src/cli/restore-progress-reporters.js';
import { formatBytes, formatDuration, formatProgressLine, groupDigits, ProgressTracker, progressRecord } from '../../../src/restore/restore-progress.js';

test('numbers, bytes and durations read as people write them', () => {
  assert.equal(groupDigits(0), '0');
  assert.equal(groupDigits(999), '999');
  assert.equal(groupDigits(1234567), '1,234,567');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(45.25 * 2 ** 20), '45.3 MiB');
  assert.equal(formatBytes(3 * 2 ** 30), '3.0 GiB');
  assert.equal(formatDuration(9.6), '10 s');
  assert.equal(formatDuration(185), '3 min 05 s');
  assert.equal(formatDuration(7620), '2 h 07 min');
});

test('a table being written: rate from its own start, time left from its estimated size', () => {
  const tracker = new ProgressTracker();
  tracker.started('public.patients', 200_000, 1_000);
  tracker.advance('public.patients', 50_000, 10 * 2 ** 20);
  tracker.advance('public.patients', 30_000, 6 * 2 ** 20);
  const r = progressRecord(tracker.tables.get('public.patients')!, 11_000);
  assert.deepEqual(r, {
    progress: 'restore',
    table: 'public.patients',
    state: 'writing',
    rows: 80_000,
    estimatedRows: 200_000,
    bytes: 16 * 2 ** 20,
    seconds: 10,
    rowsPerSecond: 8_000,
    secondsLeft: 15,
  });
  assert.equal(formatProgressLine(r, 18), 'public.patients     80,000 / 200,000 rows  40%  16.0 MiB  8,000 rows/s  15 s left');
});

test('time left is unknown without a size, or once rows pass the estimate; zero when done', () => {
  const tracker = new ProgressTracker();
  tracker.started('a.unknown', 0, 0);
  tracker.advance('a.unknown', 10, 100);
  const unknown = progressRecord(tracker.tables.get('a.unknown')!, 1_000);
  assert.equal(unknown.estimatedRows, null);
  assert.equal(unknown.secondsLeft, null);
  assert.equal(formatProgressLine(unknown), 'a.unknown  10 rows  100 B  10 rows/s');
  tracker.started('a.over', 5, 0);
  tracker.advance('a.over', 7, 70);
  assert.equal(progressRecord(tracker.tables.get('a.over')!, 1_000).secondsLeft, null);
  // Nothing written yet, no time passed: no rate, no division by zero.
  tracker.started('a.fresh', 100, 5_000);
  const fresh = progressRecord(tracker.tables.get('a.fresh')!, 5_000);
  assert.equal(fresh.rowsPerSecond, 0);
  assert.equal(fresh.secondsLeft, null);
  tracker.done('a.over', 6, 3_000);
  const done = progressRecord(tracker.tables.get('a.over')!, 60_000);
  assert.deepEqual([done.state, done.rows, done.seconds, done.rowsPerSecond, done.secondsLeft], ['done', 6, 3, 2, 0]);
  assert.equal(formatProgressLine(done), 'a.over  6 / 5 rows  70 B  2 rows/s  done in 3 s');
});

test('--json reporter: a parseable line per table when done, and for tables still writing at each interval', async () => {
  const lines: string[] = [];
  let clock = 0;
  const p = jsonProgress({ write: (t: string) => lines.push(t) }, 20, () => clock);
  p.tableStarted('public.a', 10);
  p.tableStarted('public.b', 0);
  p.advance('public.a', 4, 40);
  clock = 1_000;
  p.tableDone('public.a', 10);
  await new Promise((r) => setTimeout(r, 80));
  p.stop();
  const records = lines.map((l) => {
    assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), 'one JSON object per line');
    return JSON.parse(l) as { table: string; state: string; rows: number };
  });
  assert.deepEqual(records[0], { progress: 'restore', table: 'public.a', state: 'done', rows: 10, estimatedRows: 10, bytes: 40, seconds: 1, rowsPerSecond: 10, secondsLeft: 0 });
  assert.ok(records.slice(1).length >= 1 && records.slice(1).every((r) => r.table === 'public.b' && r.state === 'writing'), 'only the table still writing repeats');
  const after = lines.length;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(lines.length, after, 'nothing after stop');
});

test('terminal reporter: tables being written redrawn in place, a done table keeps its last line', () => {
  let text = '';
  let clock = 0;
  const p = terminalProgress({ write: (t: string) => (text += t) }, 1_000_000, () => clock);
  p.tableStarted('public.a', 10);
  p.tableStarted('public.b', 0);
  clock = 2_000;
  p.advance('public.a', 10, 2048);
  p.tableDone('public.a', 10);
  p.advance('public.b', 3, 30);
  p.stop();
  assert.equal(text, 'public.a  10 / 10 rows  2.0 KiB  5 rows/s  done in 2 s\npublic.b  3 rows  30 B  2 rows/s\n');
  text = '';
  p.stop(); // drawn again: the live line of public.b is overwritten, not repeated below
  assert.equal(text, '\x1b[1A\r\x1b[Jpublic.b  3 rows  30 B  2 rows/s\n');
});
