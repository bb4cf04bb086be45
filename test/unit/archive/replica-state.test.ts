import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readReplicaStates, replicaStateKey, writeReplicaState, type ReplicaState } from '../../../src/archive/replica-state.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const state = (name: string, over: Partial<ReplicaState> = {}): ReplicaState => ({
  version: 1,
  name,
  source: 'clinic',
  target: { kind: 'postgres', host: 'analytics', port: 5432, database: 'clinic_replica' },
  phi: 'omit',
  status: 'running',
  position: '00000000016b3748.ffffffff',
  commitTime: '2026-12-03T12:00:00.000001Z',
  lagSeconds: 0.4,
  lagTransactions: 2,
  intervalSeconds: 60,
  updatedAt: '2026-12-03T12:00:01.000Z',
  ...over,
});

test('replica states: written under state/replicas/<name>.json, read back by name, replaced in place', async () => {
  const store = new MemoryObjectStore();
  await writeReplicaState(store, state('b'));
  await writeReplicaState(store, state('a', { target: { kind: 'mysql', host: 'db', port: null, database: 'r' } }));
  await writeReplicaState(store, state('b', { status: 'stopped', lagTransactions: 0 }));
  assert.deepEqual(
    (await store.list('clinic/state/replicas/')).objects.map((o) => o.key),
    ['clinic/state/replicas/a.json', 'clinic/state/replicas/b.json'],
  );
  const { states, unreadable } = await readReplicaStates(store, 'clinic');
  assert.deepEqual(unreadable, []);
  assert.deepEqual(states.map((s) => [s.name, s.status, s.target.kind]), [['a', 'running', 'mysql'], ['b', 'stopped', 'postgres']]);
  assert.deepEqual((await readReplicaStates(store, 'other')).states, [], 'another source has none');
});

test('replica states: a damaged or foreign object is reported unreadable, naming the field, not dropped', async () => {
  const store = new MemoryObjectStore();
  await writeReplicaState(store, state('good'));
  await store.put('clinic/state/replicas/junk.json', Buffer.from('{not json'));
  await store.put('clinic/state/replicas/renamed.json', Buffer.from(JSON.stringify(state('other-name'))));
  await store.put('clinic/state/replicas/nolag.json', Buffer.from(JSON.stringify({ ...state('nolag'), lagSeconds: 'x' })));
  const { states, unreadable } = await readReplicaStates(store, 'clinic');
  assert.deepEqual(states.map((s) => s.name), ['good']);
  assert.deepEqual(unreadable.map((u) => [u.key.split('/').pop(), u.reason]), [
    ['junk.json', 'not JSON'],
    ['nolag.json', 'field lagSeconds is missing or invalid'],
    ['renamed.json', 'field name (it must match the object name) is missing or invalid'],
  ]);
});

test('replica state names are checked before they become object names', () => {
  assert.equal(replicaStateKey('clinic', 'pg-analytics_1'), 'clinic/state/replicas/pg-analytics_1.json');
  assert.throws(() => replicaStateKey('clinic', '../checkpoint'), /not \[a-z0-9_-\]/);
});
