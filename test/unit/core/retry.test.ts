import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backoff, BACKOFF_JITTER, gaveUp, sleep, withRetry } from '../../../src/core/retry.js';
import { ChartlogError } from '../../../src/core/errors.js';

/** The delays of `n` failures in a row. */
const delays = (b: Backoff, n: number): (number | null)[] => Array.from({ length: n }, () => b.next());

describe('Backoff', () => {
  it('doubles from initialDelayMs up to maxDelayMs, then stays at the cap', () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, random: () => 0 });
    assert.deepEqual(delays(b, 7), [100, 200, 400, 800, 1000, 1000, 1000]);
    assert.equal(b.attempts, 7);
  });

  it('keeps every delay within [¾·d, d] of its step, never above the cap', () => {
    for (const r of [0, 0.5, 0.999999]) {
      const b = new Backoff({ initialDelayMs: 400, maxDelayMs: 3000, random: () => r });
      const got = delays(b, 6);
      const ceilings = [400, 800, 1600, 3000, 3000, 3000];
      got.forEach((d, i) => {
        assert.ok(d !== null && d <= ceilings[i]! && d >= Math.floor(ceilings[i]! * (1 - BACKOFF_JITTER)), `delay ${d} of step ${i + 1} with random ${r}`);
      });
    }
    assert.deepEqual(delays(new Backoff({ initialDelayMs: 400, maxDelayMs: 3000, random: () => 0.5 }), 4), [350, 700, 1400, 2625]);
  });

  it('jitters with Math.random by default: delays differ, and stay in bounds', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const d = new Backoff({ initialDelayMs: 10_000, maxDelayMs: 10_000 }).next()!;
      assert.ok(d >= 7500 && d <= 10_000, `delay ${d}`);
      seen.add(d);
    }
    assert.ok(seen.size > 10, 'jitter spreads the delays');
  });

  it('reset() starts again from initialDelayMs and restarts the attempt count', () => {
    const b = new Backoff({ initialDelayMs: 50, maxDelayMs: 10_000, maxAttempts: 3, random: () => 0 });
    assert.deepEqual(delays(b, 2), [50, 100]);
    b.reset();
    assert.equal(b.attempts, 0);
    assert.deepEqual(delays(b, 2), [50, 100], 'a success gives the next outage the full number of attempts');
  });

  it('with maxAttempts, gives up once that many attempts failed in a row', () => {
    const b = new Backoff({ initialDelayMs: 10, maxAttempts: 3, random: () => 0 });
    assert.deepEqual(delays(b, 3), [10, 20, null], 'attempt 3 failed: no fourth');
    assert.ok(b.exhausted);
    assert.equal(new Backoff({ maxAttempts: 1 }).next(), null, 'maxAttempts 1: no retry');
  });

  it('never gives up by default, and the delay stays finite and capped far out', () => {
    const b = new Backoff({ random: () => 0 });
    const got = delays(b, 2000);
    assert.equal(got[0], 250);
    assert.ok(got.every((d) => d !== null && d <= 30_000));
    assert.equal(got.at(-1), 30_000);
    assert.equal(b.exhausted, false);
  });

  it('refuses a policy that makes no sense', () => {
    assert.throws(() => new Backoff({ maxAttempts: 0 }));
    assert.throws(() => new Backoff({ initialDelayMs: -1 }));
  });
});

describe('gaveUp', () => {
  it('keeps the code and message of the last failure, but is no longer retriable', () => {
    const last = new ChartlogError('connection', 'connection refused', { retriable: true, hint: 'start the server' });
    const e = gaveUp(last, 5);
    assert.equal(e.code, 'connection');
    assert.equal(e.retriable, false);
    assert.match(e.message, /connection refused.*5 attempts/);
    assert.equal(e.hint, 'start the server');
    assert.equal(e.cause, last);
  });
});

describe('sleep', () => {
  it('waits about the time asked', async () => {
    const t0 = performance.now();
    await sleep(60);
    assert.ok(performance.now() - t0 >= 55);
  });

  it('resolves early, without throwing, when its signal aborts', async () => {
    const stop = new AbortController();
    const t0 = performance.now();
    setTimeout(() => stop.abort(), 20);
    await sleep(10_000, stop.signal);
    assert.ok(performance.now() - t0 < 1000, 'stopped waiting at the abort');
  });

  it('resolves at once when its signal has already aborted', async () => {
    const t0 = performance.now();
    await sleep(10_000, AbortSignal.abort());
    assert.ok(performance.now() - t0 < 100);
  });

  it('leaves no listener on a long-lived signal', async () => {
    const stop = new AbortController();
    let added = 0;
    let removed = 0;
    const signal = stop.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...a: Parameters<typeof add>) => (added++, add(...a))) as typeof add;
    signal.removeEventListener = ((...a: Parameters<typeof remove>) => (removed++, remove(...a))) as typeof remove;
    await sleep(1, signal);
    await sleep(1, signal);
    assert.equal(added, 2);
    assert.equal(removed, 2);
  });
});

describe('withRetry', () => {
  const flaky = (failures: number, err: () => unknown) => {
    let calls = 0;
    const fn = async () => {
      calls++;
      if (calls <= failures) throw err();
      return 'ok';
    };
    return { fn, calls: () => calls };
  };
  const retriable = () => new ChartlogError('storage', 'unavailable', { retriable: true });

  it('retries retriable failures with growing delays until it succeeds', async () => {
    const f = flaky(3, retriable);
    const waits: number[] = [];
    assert.equal(await withRetry(f.fn, { initialDelayMs: 5, maxDelayMs: 100, onRetry: (_e, _n, d) => waits.push(d) }), 'ok');
    assert.equal(f.calls(), 4);
    assert.equal(waits.length, 3);
    assert.ok(waits[0]! <= 5 && waits[1]! <= 10 && waits[2]! <= 20 && waits[2]! >= 15);
  });

  it('throws a fatal failure at once', async () => {
    const f = flaky(1, () => new ChartlogError('integrity', 'bad checksum'));
    await assert.rejects(withRetry(f.fn, { initialDelayMs: 1 }), /bad checksum/);
    assert.equal(f.calls(), 1);
  });

  it('stops after maxAttempts attempts with the last error', async () => {
    const f = flaky(10, retriable);
    await assert.rejects(withRetry(f.fn, { initialDelayMs: 1, maxAttempts: 3 }), (e: ChartlogError) => e.retriable && /unavailable/.test(e.message));
    assert.equal(f.calls(), 3);
  });

  it('retries what retryIf accepts', async () => {
    const f = flaky(2, () => new ChartlogError('integrity', 'changed under us'));
    assert.equal(await withRetry(f.fn, { initialDelayMs: 1, retryIf: (e) => e.code === 'integrity' }), 'ok');
    assert.equal(f.calls(), 3);
  });

  it('stops waiting when its signal aborts, with the last error', async () => {
    const stop = new AbortController();
    const f = flaky(100, retriable);
    const t0 = performance.now();
    setTimeout(() => stop.abort(), 30);
    await assert.rejects(withRetry(f.fn, { initialDelayMs: 10_000, signal: stop.signal }), /unavailable/);
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(f.calls(), 2, 'one attempt after the wait was cut short, none after');
  });
});
