import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { SnapshotManifest } from '../../../src/archive/snapshot-manifest.js';
import {
  insideWindow,
  pendingTables,
  readPendingUnproven,
  readUnprovenRecords,
  refuseUnproven,
  unprovenKey,
  unprovenRecord,
  unprovenWindows,
  writeUnprovenRecord,
} from '../../../src/archive/unproven-tables.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const pos = (n: number, seq?: number): Position => Position.of(n.toString(16).padStart(16, '0'), seq);
const base = (id: string, n: number, tables: string[], origin: SnapshotManifest['origin'] = 'resync'): SnapshotManifest =>
  ({ id, position: Position.format(pos(n)), commitTsUs: String(n * 1000), origin, tables: Object.fromEntries(tables.map((t) => [t, { rows: 1, parts: [] }])) }) as unknown as SnapshotManifest;

// A DDL of public.t that may have committed from position 100 (time 100 000 µs) on, seen by 120.
const record = unprovenRecord({ table: 'public.t', from: pos(100, 0), fromCommitTsUs: 100_000n, seenAt: pos(120, 0), reason: 'rewritten without row events', now: new Date(0) });

describe('unproven windows: from the DDL until a base read from the source at or after it was seen', () => {
  it('a cut before the DDL is outside, one at or after it inside until the closing base, and outside from that base on', () => {
    const [w] = unprovenWindows([record], [base('r1', 150, ['public.t'])]);
    assert.equal(w!.closedBy?.id, 'r1');
    assert.equal(insideWindow(w!, pos(99), null), false, 'before the DDL');
    assert.equal(insideWindow(w!, pos(100), null), true, 'the DDL itself');
    assert.equal(insideWindow(w!, pos(149), null), true, 'just before the new base');
    assert.equal(insideWindow(w!, pos(150), null), false, 'at the new base: restore starts the table from it');
    assert.equal(insideWindow(w!, pos(900), null), false, 'long after');
  });

  it('a time at or after the DDL is inside even when the cut is before it (the DDL has no transaction of its own)', () => {
    const [w] = unprovenWindows([record], []);
    assert.equal(insideWindow(w!, pos(50), 99_999n), false);
    assert.equal(insideWindow(w!, pos(50), 100_000n), true);
    assert.equal(w!.closedBy, null, 'no base: pending');
  });

  it('only a base from the source holding the table, at or after seenAt, closes it', () => {
    const bases = [
      base('early', 110, ['public.t']), // after from, before the rewrite was seen: may hold old rows
      base('other', 130, ['public.u']), // another table
      base('synth', 140, ['public.t'], 'synthesised'), // built from the archive's own (old) values
    ];
    const [w] = unprovenWindows([record], bases);
    assert.equal(w!.closedBy, null);
    assert.deepEqual(pendingTables([w!]), ['public.t']);
    const [closed] = unprovenWindows([record], [...bases, base('full', 160, ['public.t', 'public.u'], 'source')]);
    assert.equal(closed!.closedBy?.id, 'full');
    assert.deepEqual(pendingTables([closed!]), []);
  });

  it('refuses a restore inside, naming the table, the window and the fix (exit 2); other tables and moments pass', () => {
    const windows = unprovenWindows([record], [base('r1', 150, ['public.t'])]);
    let err: unknown = null;
    try {
      refuseUnproven(windows, ['public.t', 'public.u'], pos(120), null);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ChartlogError, 'refused');
    assert.equal(err.exitCode, 2);
    assert.match(err.message, /public\.t: unproven from 1970-01-01T00:00:00\.100000Z \(position 0000000000000064\.00000000\) until 1970-01-01T00:00:00\.150000Z \(new base r1/);
    assert.match(err.hint ?? '', /before 1970-01-01T00:00:00\.100000Z/);
    assert.match(err.hint ?? '', /0000000000000096\.ffffffff/);
    assert.doesNotThrow(() => refuseUnproven(windows, ['public.u'], pos(120), null), 'another table');
    assert.doesNotThrow(() => refuseUnproven(windows, ['public.t'], pos(99), 99_000n), 'before');
    assert.doesNotThrow(() => refuseUnproven(windows, ['public.t'], pos(150), 151_000n), 'after');
    const pending = unprovenWindows([record], []);
    assert.throws(() => refuseUnproven(pending, ['public.t'], pos(900), null), /until a resync of the table stores its new base \(pending\)/);
    assert.throws(() => refuseUnproven(pending, ['public.t'], pos(900), null), (e: ChartlogError) => /chartlog resync --tables public\.t/.test(e.hint ?? ''));
  });

  it('records are stored once under their table and position, read back in order, and pending ones found from the stored bases', async () => {
    const store = new MemoryObjectStore();
    const later = unprovenRecord({ table: 'public.u', from: pos(300, 0), fromCommitTsUs: 300_000n, seenAt: pos(300), reason: 'MODIFY' });
    await writeUnprovenRecord(store, 'clinic', later);
    await writeUnprovenRecord(store, 'clinic', record);
    await writeUnprovenRecord(store, 'clinic', record); // a retried write is harmless
    assert.ok(await store.head(unprovenKey('clinic', 'public.t', pos(100, 0))));
    assert.deepEqual((await readUnprovenRecords(store, 'clinic')).map((r) => r.table), ['public.t', 'public.u']);
    assert.deepEqual(await readPendingUnproven(store, 'clinic'), ['public.t', 'public.u']);
    const closing = base('r1', 150, ['public.t']);
    await store.put(`clinic/table-snapshots/${closing.id}/manifest.json`, Buffer.from(JSON.stringify(closing)));
    assert.deepEqual(await readPendingUnproven(store, 'clinic'), ['public.u'], 'the resync base closed public.t');
    assert.deepEqual(await readPendingUnproven(store, 'other'), []);
  });

  it('an unreadable record stops the reader rather than skip a window', async () => {
    const store = new MemoryObjectStore();
    await store.put('clinic/unproven/public.t/0000000000000064.00000000.json', Buffer.from('{"format":1,'));
    await assert.rejects(readUnprovenRecords(store, 'clinic'), (e: ChartlogError) => e.code === 'integrity' && /unproven-table record/.test(e.message));
  });
});
