import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRole, parseRole } from '../../../src/cli/run-command.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { writeCheckpoint } from '../../../src/archive/checkpoint.js';
import { CheckpointAcknowledger } from '../../../src/pipeline/kafka-pipeline.js';
import type { SourceConnector } from '../../../src/core/source-connector.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { Lease } from '../../../src/archive/lease.js';
import { compactorLeaseKey } from '../../../src/archive/layout.js';

const usage = (flag: RegExp) => (err: unknown) => err instanceof ChartlogError && err.exitCode === 2 && flag.test(err.message);

test('--role: the three roles parse; anything else is exit 2 naming --role', () => {
  assert.equal(parseRole('all'), 'all');
  assert.equal(parseRole('capture'), 'capture');
  assert.equal(parseRole('compact'), 'compact');
  assert.throws(() => parseRole('compactor'), usage(/--role "compactor"/));
  assert.throws(() => parseRole(''), usage(/--role/));
});

test('--role capture|compact need the Kafka bus; --take-over-slot is refused with --role compact', () => {
  assert.doesNotThrow(() => checkRole('all', 'embedded', true));
  assert.doesNotThrow(() => checkRole('capture', 'kafka', true));
  assert.doesNotThrow(() => checkRole('compact', 'kafka', false));
  assert.throws(() => checkRole('capture', 'embedded', false), usage(/--role capture needs the Kafka bus/));
  assert.throws(() => checkRole('compact', 'embedded', false), usage(/--role compact needs the Kafka bus/));
  assert.throws(() => checkRole('compact', 'kafka', true), usage(/--take-over-slot with --role compact/));
  assert.throws(() => checkRole('all', 'kafka', false, true), usage(/--role all with bus\.kafka\.scaleOut: true/));
  assert.doesNotThrow(() => checkRole('compact', 'kafka', false, true));
  assert.doesNotThrow(() => checkRole('capture', 'kafka', false, true));
});

const p = (n: number) => Position.of(n.toString(16).padStart(16, '0'));

function fakeConnector(acks: string[]): SourceConnector {
  return { acknowledge: async (pos: Position) => void acks.push(Position.format(pos)) } as unknown as SourceConnector;
}

test('--role capture acknowledges the source by the checkpoint only: nothing before one exists, never past Kafka, never backwards', async () => {
  const store = new MemoryObjectStore();
  const acks: string[] = [];
  let kafka: Position | null = p(50);
  const acker = new CheckpointAcknowledger({ connector: fakeConnector(acks), store, source: { name: 'clinic' } as never }, () => kafka, 5);
  // No checkpoint: Kafka holds up to 50, yet nothing is acknowledged (the planted case for "only by checkpoint").
  assert.equal(await acker.until(p(50), 30), false);
  assert.deepEqual(acks, []);
  await writeCheckpoint(store, { source: 'clinic', position: p(20), commitTsUs: 1n, snapshotId: null, archiveId: undefined });
  assert.equal(await acker.until(p(50), 30), false);
  assert.deepEqual(acks, [Position.format(p(20))]);
  // A checkpoint ahead of what Kafka acknowledged to this process (an earlier run's): capped.
  kafka = p(30);
  await writeCheckpoint(store, { source: 'clinic', position: p(40), commitTsUs: 1n, snapshotId: null, archiveId: undefined });
  assert.equal(await acker.until(p(30), 1000), true);
  assert.deepEqual(acks, [Position.format(p(20)), Position.format(p(30))]);
  // Never backwards.
  await writeCheckpoint(store, { source: 'clinic', position: p(10), commitTsUs: 1n, snapshotId: null, archiveId: undefined });
  kafka = p(60);
  await acker.stop();
  assert.deepEqual(acks, [Position.format(p(20)), Position.format(p(30))]);
  assert.equal(Position.format(acker.acknowledged!), Position.format(p(30)));
});

test('the compactor lease is its own object: held beside the writer lease, and a second compact process waits on it', async () => {
  const store = new MemoryObjectStore();
  const writer = new Lease({ store, source: 'clinic', ttlMs: 60_000 });
  const compactA = new Lease({ store, source: 'clinic', ttlMs: 60_000, key: compactorLeaseKey('clinic') });
  const compactB = new Lease({ store, source: 'clinic', ttlMs: 60_000, key: compactorLeaseKey('clinic') });
  try {
    assert.deepEqual(await writer.tryAcquire(), { acquired: true });
    assert.deepEqual(await compactA.tryAcquire(), { acquired: true });
    assert.ok(await store.getVersioned('clinic/state/compactor-lease.json'), 'the compactor lease is stored under its own key');
    const second = await compactB.tryAcquire();
    assert.equal(second.acquired, false, 'a second compact process does not get the lease while the first holds it');
    await compactA.release();
    assert.deepEqual(await compactB.tryAcquire(), { acquired: true });
  } finally {
    await writer.release();
    await compactA.release();
    await compactB.release();
  }
});
