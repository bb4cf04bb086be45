import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Compactor } from '../../../src/compactor/compactor.js';
import { manifestKey } from '../../../src/archive/layout.js';
import { writeCheckpoint } from '../../../src/archive/checkpoint.js';
import { snapshotManifestKey } from '../../../src/archive/snapshot-manifest.js';
import { Position } from '../../../src/core/position.js';
import { ArchiveReader, NO_ENVELOPES } from '../../../src/archive/archive-reader.js';
import { readArchiveIndex, tablesOf } from '../../../src/archive/archive-index.js';
import { buildTimeline, renderTimeline } from '../../../src/restore/timeline.js';
import { formatUs } from '../../../src/archive/layout.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { batch, envelopes, HOUR_US, T0 } from '../../support/fake-envelopes.js';

async function archiveOfHours(hours: number): Promise<MemoryObjectStore> {
  const store = new MemoryObjectStore();
  // The stream counts as quiet once no batch came for flushIntervalMs, and a quiet stream closes
  // its last hour too (it is in the past): at 10 ms a loaded machine closed hour 08 between the
  // last add and closeFinishedHours. Here the hours close only as the stream passes them.
  const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 600_000, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null }, async () => {});
  await c.start();
  let prev: Position | null = null;
  for (let h = 0; h <= hours; h++) {
    const b = batch(h + 1, T0 + BigInt(h) * HOUR_US + 7n, [['public.patients', '00000000000000a1']], prev);
    prev = b.position;
    c.add(b);
    await c.flush();
    await c.closeFinishedHours();
  }
  const snapshot = { version: 1, source: 'clinic', id: 'x', position: '0000000000000000.ffffffff', commitTsUs: T0.toString(), takenAt: 'now', origin: 'source', tables: { 'public.patients': { fingerprint: 'a', rows: 3, parts: [] } } };
  await store.put(snapshotManifestKey('clinic', '0000000000000000.ffffffff'), Buffer.from(JSON.stringify(snapshot)));
  return store;
}

test('the timeline shows the restorable range, sealed and open hours from the store alone', async () => {
  const store = await archiveOfHours(3);
  const t = buildTimeline(await readArchiveIndex(store, 'clinic'));
  assert.deepEqual(t.closedHours.map((h) => h.hour), ['2026-11-24T05', '2026-11-24T06', '2026-11-24T07']);
  // One flush of the open hour: one flush part (its table records and its transaction log together).
  assert.deepEqual(t.openHours, [{ hour: '2026-11-24T08', parts: 1 }]);
  assert.equal(t.restorable?.from, '2026-11-24T05:00:00.000000Z');
  assert.equal(t.restorable?.to, formatUs(T0 + 3n * HOUR_US + 7n));
  assert.deepEqual(t.gaps, []);
  assert.equal(t.snapshots[0]?.rows, 3);
  assert.deepEqual(tablesOf(await readArchiveIndex(store, 'clinic')), ['public.patients']);
  assert.match(renderTimeline(t), /gaps: none/);
});

test('a missing hour breaks the manifest chain and shows as a gap', async () => {
  const store = await archiveOfHours(3);
  store.objects.delete(manifestKey('clinic', '2026-11-24T06'));
  const t = buildTimeline(await readArchiveIndex(store, 'clinic'));
  assert.deepEqual(t.gaps, [{ hour: '2026-11-24T07', expectedPrevious: '2026-11-24T05', found: '2026-11-24T06' }]);
});

test('without a checkpoint nothing is restorable', async () => {
  const store = new MemoryObjectStore();
  assert.equal(buildTimeline(await readArchiveIndex(store, 'clinic')).restorable, null);
  await writeCheckpoint(store, { source: 'clinic', position: { commit: '01', seq: 0 }, commitTsUs: 1n, snapshotId: null });
  assert.equal(buildTimeline(await readArchiveIndex(store, 'clinic')).restorable, null, 'no base snapshot yet');
});

test('microsecond times keep all six digits', () => {
  assert.equal(formatUs(1_700_000_000_123_456n), '2023-11-14T22:13:20.123456Z');
  assert.equal(formatUs('-1'), '1969-12-31T23:59:59.999999Z');
});

test('the timeline says when commit times are whole seconds and shows the stretches where commit times are not monotonic (read from the stored transaction log)', async () => {
  const store = new MemoryObjectStore();
  const c = new Compactor(store, 'clinic', envelopes, { flushIntervalMs: 10, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null }, async () => {});
  await c.start();
  let prev: Position | null = null;
  // The third transaction's clock was set back 5 s.
  for (const [n, us] of [[1, T0 + 10_000_000n], [2, T0 + 20_000_000n], [3, T0 + 15_000_000n], [4, T0 + 21_000_000n]] as const) {
    const b = batch(n, us, [['public.patients', '00000000000000a1']], prev);
    prev = b.position;
    c.add(b);
  }
  await c.flush();
  const index = await readArchiveIndex(store, 'clinic');
  const transactions = await new ArchiveReader(store, index, NO_ENVELOPES).transactions(null);
  const t = buildTimeline(index, { resolutionUs: 1_000_000n, transactions });
  assert.equal(t.commitTimeResolution, 'seconds');
  assert.deepEqual(t.backwardSteps, [{ position: Position.format(batch(3, 0n, [], null).position), commitTime: formatUs(T0 + 15_000_000n), newestBefore: formatUs(T0 + 20_000_000n) }]);
  const p = (n: number): string => Position.format(batch(n, 0n, [], null).position);
  assert.deepEqual(t.nonMonotonic, [{ fromPosition: p(2), from: formatUs(T0 + 20_000_000n), toPosition: p(3), to: formatUs(T0 + 15_000_000n), earliest: formatUs(T0 + 15_000_000n), latest: formatUs(T0 + 20_000_000n), steps: 1 }]);
  const text = renderTimeline(t);
  assert.match(text, /commit times: whole seconds/);
  assert.match(text, /commit times not monotonic \(1 stretches\)/);
  assert.ok(text.includes(`positions ${p(2)} (stamped ${formatUs(T0 + 20_000_000n)}) → ${p(3)}`));
  // Negative control: a log whose clock only moves forward notes nothing, and microsecond sources say so.
  const forward = buildTimeline(index, { resolutionUs: 1n, transactions: transactions.filter((r) => r.commitTsUs !== Number(T0 + 15_000_000n)) });
  assert.deepEqual(forward.backwardSteps, []);
  assert.deepEqual(forward.nonMonotonic, []);
  assert.doesNotMatch(renderTimeline(forward), /not monotonic/);
  assert.match(renderTimeline(forward), /commit times: microseconds/);
});
