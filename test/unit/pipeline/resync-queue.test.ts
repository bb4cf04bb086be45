import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { ResyncQueue } from '../../../src/pipeline/resync-queue.js';

test('requests made while a resync runs are merged into the next one; none is lost', async () => {
  const runs: string[][] = [];
  let release!: () => void;
  const first = new Promise<void>((r) => (release = r));
  const q = new ResyncQueue({
    run: async (tables) => {
      runs.push([...tables]);
      if (runs.length === 1) await first;
    },
  });
  q.request({ tables: ['public.a'], reason: 'rewrite' });
  q.request({ tables: ['public.b'], reason: 'rewrite' });
  q.request({ tables: ['public.c', 'public.b'], reason: 'rewrite' });
  release();
  await q.idle();
  assert.deepEqual(runs, [['public.a'], ['public.b', 'public.c']]);
});

test('a retriable failure is tried again; a fatal one is given up', async () => {
  let calls = 0;
  const q = new ResyncQueue({
    run: async () => {
      calls++;
      if (calls === 1) throw new ChartlogError('connection', 'connection lost', { retriable: true });
    },
    retry: { initialDelayMs: 1, maxDelayMs: 2, maxAttempts: 3 },
  });
  q.request({ tables: ['public.a'], reason: 'rewrite' });
  await q.idle();
  assert.equal(calls, 2, 'tried again after the retriable failure');

  let fatalCalls = 0;
  const f = new ResyncQueue({
    run: async () => {
      fatalCalls++;
      throw new ChartlogError('config', 'no such table');
    },
    retry: { initialDelayMs: 1, maxDelayMs: 2, maxAttempts: 3 },
  });
  f.request({ tables: ['public.x'], reason: 'rewrite' });
  await f.idle();
  assert.equal(fatalCalls, 1, 'not retried');
});

test('stop() aborts the running resync, starts nothing queued, and then refuses new requests', async () => {
  const runs: string[][] = [];
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const q = new ResyncQueue({
    run: async (tables, signal) => {
      runs.push([...tables]);
      started();
      // A resync that only ends when it is aborted (a long table read).
      await new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    },
  });
  q.request({ tables: ['db.a'], reason: 'rewrite' });
  await running;
  q.request({ tables: ['db.b'], reason: 'rewrite' });
  assert.deepEqual(q.tables, ['db.a', 'db.b'], 'one running, one queued');
  await q.stop();
  assert.deepEqual(runs, [['db.a']], 'the queued one never started');
  q.request({ tables: ['db.c'], reason: 'rewrite' });
  await q.idle();
  assert.deepEqual(runs, [['db.a']], 'nothing runs after stop');
});
