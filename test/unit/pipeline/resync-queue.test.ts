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

test('a request with its window is recorded before durable() resolves; a record that cannot be written holds it (retriable)', async () => {
  const { Position } = await import('../../../src/core/position.js');
  const window = { from: Position.of('00000000000000aa', 0), fromCommitTsUs: 1n, seenAt: Position.of('00000000000000ab') };
  const recorded: string[] = [];
  let release!: () => void;
  const slow = new Promise<void>((r) => (release = r));
  const q = new ResyncQueue({
    run: async () => undefined,
    record: async (r) => {
      await slow;
      recorded.push(...r.tables);
    },
  });
  await q.durable(); // nothing asked yet
  q.request({ tables: ['public.a'], reason: 'rewrite', window });
  q.request({ tables: ['public.b'], reason: 'rewrite' }); // no window: nothing to record
  let done = false;
  const d = q.durable().then(() => (done = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(done, false, 'durable() waits for the record (the stream publishes nothing later meanwhile)');
  release();
  await d;
  assert.deepEqual(recorded, ['public.a']);
  await q.idle();

  let attempts = 0;
  let failing = true;
  const f = new ResyncQueue({
    run: async () => undefined,
    record: async () => {
      attempts++;
      if (failing) throw new ChartlogError('storage', 'store down', { retriable: true });
    },
  });
  f.request({ tables: ['public.c'], reason: 'rewrite', window });
  await assert.rejects(f.durable(), (e: ChartlogError) => e.retriable && /public\.c must be re-read/.test(e.message));
  assert.ok(attempts >= 2, 'retried before giving up');
  failing = false;
  await f.durable(); // the next attempt (the stream's restart) records it
  await assert.doesNotReject(f.durable());
  await f.stop();
});

test('resume() runs recorded requests again without recording them again', async () => {
  const runs: string[][] = [];
  let records = 0;
  const q = new ResyncQueue({ run: async (t) => void runs.push([...t]), record: async () => void records++ });
  q.resume([]);
  q.resume(['public.a', 'public.b']);
  await q.idle();
  assert.deepEqual(runs, [['public.a', 'public.b']]);
  assert.equal(records, 0);
});
