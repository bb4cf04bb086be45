import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { readTableStarts, tableExistedAt, tableStartRecord, unprovenStart, writeTableStart } from '../../../src/archive/table-starts.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const pos = (n: number, seq?: number): Position => Position.of(n.toString(16).padStart(16, '0'), seq);
const S = 1_000_000n;

describe('table starts: whether a table the cut holds nothing of existed yet', () => {
  it('exact bounds (MariaDB/MySQL: the CREATE\'s own position and whole second): before absent, from it on present, no window', async () => {
    const store = new MemoryObjectStore();
    // CREATE TABLE at position 100, stamped second 10 (it committed somewhere in [10 s, 11 s)).
    await writeTableStart(store, 'clinic', tableStartRecord({ table: 'db.t', from: pos(100, 0), fromCommitTsUs: 10n * S, seenAt: pos(100), seenAtCommitTsUs: 10n * S }));
    const starts = await readTableStarts(store, 'clinic');
    const at = (cut: Position, timeUs: bigint | null) => tableExistedAt(starts, 'db.t', { cut, timeUs, resolutionUs: S });
    assert.equal(at(pos(99), null), 'absent');
    assert.equal(at(pos(100), null), 'exists');
    // A time in the CREATE's own second is not certainly after it: like its transactions, it does not count.
    assert.equal(at(pos(99), 10n * S + 50_000n), 'absent');
    assert.equal(at(pos(99), 11n * S - 1n), 'exists', 'the whole second passed: the CREATE certainly committed');
    assert.equal(tableExistedAt(starts, 'db.other', { cut: pos(1), timeUs: null }), 'unknown', 'no record: restore as before');
  });

  it('catalog bounds (PostgreSQL): a moment between the last reading without the table and the first with it is unproven, and refused', () => {
    const rec = tableStartRecord({ table: 'public.t', from: pos(100, 0), fromCommitTsUs: 100_000n, seenAt: pos(120, 0), seenAtCommitTsUs: 120_000n });
    const starts = [{ table: rec.table, from: Position.parse(rec.from), fromCommitTsUs: 100_000n, seenAt: Position.parse(rec.seenAt), seenAtCommitTsUs: 120_000n }];
    const at = (cut: Position, timeUs: bigint | null) => tableExistedAt(starts, 'public.t', { cut, timeUs });
    assert.equal(at(pos(99), 99_999n), 'absent');
    assert.equal(at(pos(99), 100_000n), 'unproven', 'a time past the last reading without it');
    assert.equal(at(pos(110), null), 'unproven');
    assert.equal(at(pos(120), null), 'exists');
    assert.equal(at(pos(99), 120_000n), 'exists', 'a time at the first reading with it');
    const e = unprovenStart(starts, 'public.t');
    assert.ok(e instanceof ChartlogError && e.code === 'usage' && /public\.t/.test(e.message) && /--tables/.test(e.hint ?? ''));
  });

  it('an unreadable record is refused, not skipped (leaving it out would create a table that did not exist)', async () => {
    const store = new MemoryObjectStore();
    await store.putIfAbsent('clinic/table-starts/db.t/x.json', Buffer.from('{"format":2}'), {});
    await assert.rejects(readTableStarts(store, 'clinic'), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity');
  });
});
