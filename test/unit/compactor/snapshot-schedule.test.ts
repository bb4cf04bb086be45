import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { listSnapshots } from '../../../src/archive/snapshot-manifest.js';
import { databaseOfUrl, SnapshotSchedule } from '../../../src/compactor/snapshot-schedule.js';
import type { SynthesiseOptions, SynthesisResult } from '../../../src/compactor/snapshot-synthesiser.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { buildArchive } from '../../support/snapshot-archive.js';

const config = parseConfig(
  `sources: [{ name: clinic, type: postgres, url: "postgres://x@127.0.0.1:1/app", snapshot: { everyHours: 6 } }]\nstorage: { url: "file:///nowhere" }\nphi: { keyring: "file:///k.json" }\n`,
  'test.yaml',
  {},
);
const source = config.sources[0]!;

test('a snapshot is synthesised from closed hours once the newest is everyHours old, not before', async () => {
  const a = await buildArchive({ hours: 3 });
  const store = a.rig.store;
  const takenAt = Date.parse((await listSnapshots(store, 'clinic')).at(-1)!.takenAt);
  let now = takenAt + 6 * 3_600_000 - 1;
  const schedule = new SnapshotSchedule({ store, source, everyHours: source.snapshot.everyHours!, now: () => now });
  assert.equal(await schedule.tick(), null, 'not due yet');
  now += 1;
  const r = await schedule.tick();
  assert.equal(r?.status, 'written');
  assert.equal(r.snapshot!.origin, 'synthesised');
  const index = await readArchiveIndex(store, 'clinic');
  assert.equal(r.snapshot!.position, index.hours.at(-1)!.manifest.lastPos, 'closed hours only: the open hour waits');
  // The new snapshot is the newest now: the next is due everyHours after it.
  assert.equal(await schedule.tick(), null);
});

test('a failing synthesis is logged and tried again at the next tick; the loop never throws', async () => {
  const calls: SynthesiseOptions[] = [];
  const synthesise = async (o: SynthesiseOptions): Promise<SynthesisResult> => {
    calls.push(o);
    if (calls.length < 3) throw new ChartlogError('storage', 'store unavailable', { retriable: true });
    return { status: 'up-to-date', snapshot: null, base: null, rows: 0, changes: 0, ms: 0 };
  };
  const a = await buildArchive({ hours: 1 });
  const stop = new AbortController();
  const schedule = new SnapshotSchedule({ store: a.rig.store, source, everyHours: 1, tickMs: 5, now: () => Date.now() + 3_600_000, synthesise });
  const running = schedule.run(stop.signal);
  while (calls.length < 4) await new Promise((r) => setTimeout(r, 5));
  stop.abort();
  await running; // resolves, does not reject
  assert.equal(calls[0]!.upTo, 'closed');
  assert.equal(calls[0]!.connector, 'postgres');
  assert.equal(calls[0]!.db, 'app');
});

test('the envelope db comes from the source URL', () => {
  assert.equal(databaseOfUrl('postgres://u:p@h:5432/clinic%20db'), 'clinic db');
  assert.equal(databaseOfUrl('mysql://u@h:3306'), '');
});
