import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { SourceConnector, StreamOptions } from '../../../src/core/source-connector.js';
import { PublishAhead } from '../../../src/pipeline/publish-ahead.js';
import { runStreamLoop } from '../../../src/pipeline/stream-loop.js';

const log = createLogger({ level: 'silent', format: 'json' });
const pos = (n: number) => Position.of(n.toString(16).padStart(16, '0'), COMMIT_SEQ);
const txn = (n: number): ChangeBatch => ({ source: 'clinic', txId: String(n), position: pos(n), commitTsUs: BigInt(n), snapshot: false, events: [] });
const num = (p: Position | null) => (p ? Number.parseInt(p.commit, 16) : null);

/** A connector whose each stream() runs one step of a script: yield these transactions, then fail (or end). */
class ScriptedConnector implements SourceConnector {
  readonly name = 'clinic';
  readonly capabilities = { beforeImage: 'full', truncate: true, snapshot: false, unchangedValues: false } as const;
  readonly starts: (number | null)[] = [];
  constructor(private readonly script: { yields: number[]; then: ChartlogError | 'end' }[]) {}
  async check() {}
  async tables() {
    return [];
  }
  async sample() {
    return [];
  }
  async *snapshot(): AsyncIterable<ChangeBatch> {}
  async *stream(options: StreamOptions): AsyncIterable<ChangeBatch> {
    this.starts.push(num(options.from));
    const step = this.script[this.starts.length - 1] ?? { yields: [], then: lost() };
    for (const n of step.yields) yield txn(n);
    if (step.then !== 'end') throw step.then;
  }
  async acknowledge() {}
  async close() {}
}

const lost = () => new ChartlogError('connection', 'connection lost', { retriable: true });

function publisher() {
  const published: number[] = [];
  const ahead = new PublishAhead(null, 'clinic', async () => [], async (b) => {
    published.push(num(b.position)!);
  });
  return { ahead, published };
}

test('a retriable failure restarts the stream from the last published position; redelivered batches are dropped', async () => {
  const connector = new ScriptedConnector([
    { yields: [1, 2, 3], then: lost() },
    { yields: [2, 3, 4, 5], then: 'end' },
  ]);
  const { ahead, published } = publisher();
  const r = await runStreamLoop({ connector, ahead, from: null, policy: { initialDelayMs: 1 }, signal: new AbortController().signal, log });
  assert.deepEqual(connector.starts, [null, 3]);
  assert.deepEqual(published, [1, 2, 3, 4, 5], 'each once, in order');
  assert.equal(num(r.last), 5);
  assert.equal(r.failure, null);
  assert.equal(r.unpublished, null);
});

test('with maxAttempts, it gives up after that many failures in a row, with an error that is no longer retriable', async () => {
  const connector = new ScriptedConnector([]);
  const { ahead } = publisher();
  const r = await runStreamLoop({ connector, ahead, from: pos(7), policy: { initialDelayMs: 1, maxAttempts: 3 }, signal: new AbortController().signal, log });
  assert.equal(connector.starts.length, 3);
  assert.ok(r.failure);
  assert.equal(r.failure.code, 'connection');
  assert.equal(r.failure.retriable, false);
  assert.match(r.failure.message, /connection lost.*3 attempts/);
});

test('a batch handed over resets the count: only failures in a row count', async () => {
  const connector = new ScriptedConnector([
    { yields: [], then: lost() },
    { yields: [1], then: lost() },
    { yields: [], then: lost() },
    { yields: [2], then: 'end' },
  ]);
  const { ahead, published } = publisher();
  // Three failures in all, never three in a row.
  const r = await runStreamLoop({ connector, ahead, from: null, policy: { initialDelayMs: 1, maxAttempts: 3 }, signal: new AbortController().signal, log });
  assert.equal(r.failure, null);
  assert.deepEqual(published, [1, 2]);
});

test('a fatal error stops at once', async () => {
  const connector = new ScriptedConnector([{ yields: [1], then: new ChartlogError('source_setup', 'slot is gone') }]);
  const { ahead, published } = publisher();
  const r = await runStreamLoop({ connector, ahead, from: null, policy: { initialDelayMs: 1 }, signal: new AbortController().signal, log });
  assert.equal(connector.starts.length, 1);
  assert.equal(r.failure?.message, 'slot is gone');
  assert.deepEqual(published, [1], 'what was read before the failure is still published');
});

test('beforeStart runs before each start and may move it; afterFailure says where to start again', async () => {
  const connector = new ScriptedConnector([
    { yields: [11, 12], then: lost() },
    { yields: [13], then: 'end' },
  ]);
  const { ahead } = publisher();
  const before: (number | null)[] = [];
  const r = await runStreamLoop({
    connector,
    ahead,
    from: pos(5),
    policy: { initialDelayMs: 1 },
    signal: new AbortController().signal,
    log,
    beforeStart: async (from) => {
      before.push(num(from));
      return before.length === 1 ? pos(10) : from;
    },
    afterFailure: async (queue) => {
      await queue.recover();
      return pos(11);
    },
  });
  assert.deepEqual(before, [5, 11]);
  assert.deepEqual(connector.starts, [10, 11]);
  assert.equal(num(r.last), 13);
});

test('aborting during a reconnect wait returns at once, without a failure', async () => {
  const connector = new ScriptedConnector([]);
  const { ahead } = publisher();
  const stop = new AbortController();
  const t0 = performance.now();
  setTimeout(() => stop.abort(), 30);
  const r = await runStreamLoop({ connector, ahead, from: null, policy: { initialDelayMs: 60_000 }, signal: stop.signal, log });
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(r.failure, null);
  assert.equal(connector.starts.length, 1);
});

test('a publishing failure found in the background ends a stream that has nothing more to send, and restarts it', async () => {
  // First stream: yields 1 and 2, then waits for the source (idle) until its signal aborts.
  const starts: (number | null)[] = [];
  let notify: ((err: ChartlogError) => void) | null = null;
  const connector = new (class extends ScriptedConnector {
    override async *stream(options: StreamOptions): AsyncIterable<ChangeBatch> {
      starts.push(num(options.from));
      if (starts.length === 1) {
        yield txn(1);
        yield txn(2);
        // The bus fails while sending what it holds; the source has nothing new.
        setTimeout(() => notify?.(new ChartlogError('connection', 'publishing to Kafka failed', { retriable: true })), 10);
        await new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => resolve(), { once: true }));
        return;
      }
      yield txn(2);
      yield txn(3);
    }
  })([]);
  const { ahead, published } = publisher();
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 5000);
  const r = await runStreamLoop({
    connector,
    ahead,
    from: null,
    policy: { initialDelayMs: 1 },
    signal: stop.signal,
    log,
    // The bus acknowledged only 1 before it failed: the stream starts again after it.
    afterFailure: async () => pos(1),
    watchPublishing: (onFailure) => (notify = onFailure),
  });
  clearTimeout(timer);
  assert.equal(stop.signal.aborted, false, 'the loop did not wait for the stop: the failure ended the idle stream');
  assert.deepEqual(starts, [null, 1], 'restarted after what the bus acknowledged');
  assert.equal(num(r.last), 3);
  assert.equal(r.failure, null);
  assert.deepEqual(published.slice(-2), [2, 3]);
});

test('beforePublish holds every later batch until it resolves; its failure restarts the stream from what was published', async () => {
  const connector = new ScriptedConnector([
    { yields: [1, 2, 3], then: 'end' },
    { yields: [2, 3], then: 'end' },
  ]);
  const { ahead, published } = publisher();
  let calls = 0;
  const r = await runStreamLoop({
    connector,
    ahead,
    from: null,
    policy: { initialDelayMs: 1 },
    signal: new AbortController().signal,
    log,
    // As a resync request's record that cannot be written at first: nothing after it is published.
    beforePublish: async () => {
      calls++;
      if (calls === 2) {
        await ahead.drain();
        assert.deepEqual(published, [1], 'batch 2 waits for beforePublish');
        throw new ChartlogError('storage', 'cannot record', { retriable: true });
      }
    },
  });
  assert.deepEqual(connector.starts, [null, 1], 'restarted after the last published batch');
  assert.deepEqual(published, [1, 2, 3]);
  assert.equal(r.failure, null);
});

test('restartMessage as a function: asked after afterFailure, with the error, so the log line says what was decided', async () => {
  const lines: string[] = [];
  const { Writable } = await import('node:stream');
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const captured = createLogger({ level: 'info', format: 'json', destination: sink });
  const connector = new ScriptedConnector([
    { yields: [1, 2], then: new ChartlogError('connection', 'planned re-read', { retriable: true }) },
    { yields: [3], then: lost() },
    { yields: [], then: 'end' },
  ]);
  const { ahead } = publisher();
  let decided = 'none';
  const asked: string[] = [];
  await runStreamLoop({
    connector,
    ahead,
    from: null,
    policy: { initialDelayMs: 1 },
    signal: new AbortController().signal,
    log: captured,
    afterFailure: async (a) => {
      decided = decided === 'none' ? 'reread' : 'failure';
      return decided === 'reread' ? null : await a.recover();
    },
    restartMessage: (err) => {
      asked.push(err.message);
      return decided === 'reread' ? 'reading the source again, as planned' : 'stream failed; restarting';
    },
  });
  assert.deepEqual(asked, ['planned re-read', 'connection lost']);
  const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
  assert.deepEqual(msgs, ['reading the source again, as planned', 'stream failed; restarting']);
  assert.deepEqual(connector.starts, [null, null, 3], 'the re-read started where afterFailure said');
});
