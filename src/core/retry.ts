import { setTimeout as sleep } from 'node:timers/promises';
import { isRetriable, toChartlogError } from './errors.js';

export interface RetryOptions {
  /** First delay; doubles each attempt up to maxDelayMs, with ±25 % jitter. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many attempts (default: never — durability paths wait out an outage). */
  maxAttempts?: number;
  signal?: AbortSignal;
  /** Called before each wait, e.g. to log "object store unavailable, retrying". */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it succeeds or fails with a fatal error. Retriable ChartlogErrors are retried
 * with exponential backoff; anything else is thrown at once (guessing wrong could loop forever
 * on a bug or hide a configuration mistake).
 */
export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const initial = options.initialDelayMs ?? 200;
  const max = options.maxDelayMs ?? 10_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isRetriable(err) || (options.maxAttempts !== undefined && attempt >= options.maxAttempts)) throw toChartlogError(err);
      if (options.signal?.aborted) throw toChartlogError(err);
      const base = Math.min(max, initial * 2 ** (attempt - 1));
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      options.onRetry?.(err, attempt, delay);
      await sleep(delay, undefined, options.signal ? { signal: options.signal } : undefined).catch(() => undefined);
    }
  }
}
