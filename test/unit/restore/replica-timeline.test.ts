import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReplicaState } from '../../../src/archive/replica-state.js';
import { buildReplicaTimeline, renderReplicaTimeline } from '../../../src/restore/replica-timeline.js';

const NOW = Date.parse('2026-12-03T12:30:00Z');
const state = (name: string, updatedAt: string, over: Partial<ReplicaState> = {}): ReplicaState => ({
  version: 1,
  name,
  source: 'clinic',
  target: { kind: 'postgres', host: 'analytics', port: 5432, database: 'clinic_replica' },
  phi: 'omit',
  status: 'running',
  position: '00000000016b3748.ffffffff',
  commitTime: '2026-12-03T12:00:00.000001Z',
  lagSeconds: 1.2,
  lagTransactions: 3,
  intervalSeconds: 60,
  updatedAt,
  ...over,
});

test('replica timeline: a running replica not updated past the limit is stale; a fresh one is not', () => {
  const t = buildReplicaTimeline(
    [
      state('fresh', '2026-12-03T12:29:30Z'),
      state('old', '2026-12-03T12:10:00Z'),
      // Its own interval is 10 min: 8 min without a write is not stale for it (3 intervals), 31 min is.
      state('slow', '2026-12-03T12:22:00Z', { intervalSeconds: 600 }),
      state('slower', '2026-12-03T11:59:00Z', { intervalSeconds: 600 }),
      // A stopped replica is not stale: it said it stopped.
      state('done', '2026-12-03T10:00:00Z', { status: 'stopped' }),
    ],
    [],
    NOW,
    300,
  );
  assert.deepEqual(t.replicas.map((r) => [r.name, r.stale, r.ageSeconds]), [
    ['fresh', false, 30],
    ['old', true, 1200],
    ['slow', false, 480],
    ['slower', true, 1860],
    ['done', false, 9000],
  ]);
  const text = renderReplicaTimeline(t);
  assert.match(text, /^ {2}replicas \(5\)$/m);
  assert.match(text, /^ {4}fresh +running at 00000000016b3748\.ffffffff \(commit 2026-12-03T12:00:00\.000001Z\) {2}lag 1\.2 s, 3 tx {2}phi omit {2}postgres analytics:5432\/clinic_replica/m);
  assert.match(text, /^ {4}old +STALE /m);
  assert.match(text, /not updated for 20 min: its replicator is not running or cannot write to the store/);
  assert.doesNotMatch(text, /^ {4}fresh +STALE/m);
});

test('replica timeline: a failed replica shows why; unreadable state objects are listed', () => {
  const t = buildReplicaTimeline([state('gap', '2026-12-03T12:29:59Z', { status: 'failed', reason: 'the archive has a gap before transaction 00000000016b3750.ffffffff' })], [{ key: 'clinic/state/replicas/x.json', reason: 'not JSON' }], NOW, 300);
  assert.equal(t.replicas[0]!.stale, false);
  const text = renderReplicaTimeline(t);
  assert.match(text, /gap +failed /);
  assert.match(text, /stopped by an error: the archive has a gap before transaction 00000000016b3750\.ffffffff/);
  assert.match(text, /unreadable replica state clinic\/state\/replicas\/x\.json: not JSON/);
});
