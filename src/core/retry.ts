import { ChartlogError, isRetriable, toChartlogError } from './errors.js';

/**
 * How a loop that (re)connects or retries waits between attempts: the one policy of chartlog
 * (`sources[].reconnect` in the configuration, and the fixed policies of the object store,
 * compactor and CLI retries).
 */
export interface ReconnectPolicy {
  /** The delay after the first failure; it doubles with each failure in a row. */
  readonly initialDelayMs?: number;
  /** The longest delay. */
  readonly maxDelayMs?: number;
  /**
   * Attempts in a row, the first included, before giving up (default: never — a backup must
   * wait out an outage). 1 means: no retry.
   */
  readonly maxAttempts?: number;
}

export interface BackoffOptions extends ReconnectPolicy {
  /** A number in [0, 1) (default Math.random); tests pass a fixed one. */
  readonly random?: () => number;
}

/** The share of a delay that jitter may take off: delays fall in [¾·d, d]. */
export const BACKOFF_JITTER = 0.25;

/**
 * Exponential backoff with jitter and a cap, counting failed attempts in a row.
 *
 * After the n-th failure in a row, `next()` gives a delay drawn from [¾·d, d], where
 * d = min(maxDelayMs, initialDelayMs · 2^(n−1)): the cap is a hard bound, and jitter still
 * spreads the waits of many clients once they all reach it. `reset()` after a success starts
 * again from initialDelayMs. With `maxAttempts`, `next()` returns null once that many attempts
 * have failed in a row: the caller gives up (see `gaveUp`).
 *
 *   const backoff = new Backoff({ initialDelayMs: 250, maxDelayMs: 30_000 });
 *   for (;;) {
 *     try { await connect(); backoff.reset(); … }
 *     catch (err) { const delay = backoff.next(); if (delay === null) throw gaveUp(err, backoff.attempts); await sleep(delay, signal); }
 *   }
 */
export class Backoff {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly maxAttempts: number;
  private readonly random: () => number;
  private failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialDelayMs = options.initialDelayMs ?? 250;
    this.maxDelayMs = Math.max(this.initialDelayMs, options.maxDelayMs ?? 30_000);
    this.maxAttempts = options.maxAttempts ?? Infinity;
    this.random = options.random ?? Math.random;
    if (!(this.initialDelayMs >= 0) || !(this.maxAttempts >= 1)) {
      throw new ChartlogError('internal', `invalid backoff: initialDelayMs ${this.initialDelayMs}, maxAttempts ${this.maxAttempts}`);
    }
  }

  /** Failed attempts in a row so far (since construction or the last `reset()`). */
  get attempts(): number {
    return this.failures;
  }

  /** True once `maxAttempts` attempts have failed in a row. */
  get exhausted(): boolean {
    return this.failures >= this.maxAttempts;
  }

  /**
   * Records a failed attempt and returns how long to wait before the next one, in whole
   * milliseconds; null when the attempt limit is reached (nothing is to be tried again).
   */
  next(): number | null {
    this.failures++;
    if (this.exhausted) return null;
    // 2^30 already passes any sane cap; the exponent stops there so the product stays finite.
    const ceiling = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** Math.min(this.failures - 1, 30));
    return Math.round(ceiling * (1 - BACKOFF_JITTER * this.random()));
  }

  /** After a success: the next failure waits initialDelayMs again, and the attempt count restarts. */
  reset(): void {
    this.failures = 0;
  }
}

/**
 * The error to stop with once a Backoff gave up: the last failure, no longer retriable, so an
 * outer retry loop (the pipeline around a connector) stops too instead of starting over.
 */
export function gaveUp(err: unknown, attempts: number, hint?: string): ChartlogError {
  const e = toChartlogError(err);
  return new ChartlogError(e.code, `${e.message} (gave up after ${attempts} attempts in a row)`, {
    hint: hint ?? e.hint,
    cause: e,
  });
}

/**
 * Waits `ms` milliseconds. When `signal` aborts (or has aborted) it resolves at once, without
 * throwing: every caller checks its signal after waiting anyway, and a stop must not look like
 * a failure. The timer keeps the process alive while it runs, like any pending retry.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

export interface RetryOptions extends ReconnectPolicy {
  signal?: AbortSignal;
  /** Which failures are worth another attempt (default: retriable ChartlogErrors). */
  retryIf?: (err: ChartlogError) => boolean;
  /** Called before each wait, e.g. to log "object store unavailable, retrying". */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it succeeds or fails with a fatal error, waiting with a Backoff (200 ms
 * doubling up to 10 s by default) between attempts. Retriable ChartlogErrors are retried
 * (or what `retryIf` accepts); anything else is thrown at once (guessing wrong could loop
 * forever on a bug or hide a configuration mistake). After `maxAttempts` attempts, or once
 * `signal` aborts, the last error is thrown as it is.
 */
export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const backoff = new Backoff({
    initialDelayMs: options.initialDelayMs ?? 200,
    maxDelayMs: options.maxDelayMs ?? 10_000,
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
  });
  const retryIf = options.retryIf ?? isRetriable;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const e = toChartlogError(err);
      if (!retryIf(e) || options.signal?.aborted) throw e;
      const delay = backoff.next();
      if (delay === null) throw e;
      options.onRetry?.(err, backoff.attempts, delay);
      await sleep(delay, options.signal);
    }
  }
}
