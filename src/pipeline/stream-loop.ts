import type { ChartlogError } from '../core/errors.js';
import { isRetriable, toChartlogError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { Backoff, gaveUp, sleep, type ReconnectPolicy } from '../core/retry.js';
import type { SourceConnector } from '../core/source-connector.js';
import type { PublishAhead } from './publish-ahead.js';

export interface StreamLoopOptions {
  connector: SourceConnector;
  /** Encodes and publishes what the connector yields, in order. */
  ahead: PublishAhead;
  /** Where the stream starts: the newest position already on its way to the store, or null. */
  from: Position | null;
  /** The source's `reconnect` setting: waits between restarts, and restarts in a row before giving up. */
  policy: ReconnectPolicy | undefined;
  /** Stops reading; the loop then returns (not an error). */
  signal: AbortSignal;
  log: Logger;
  /**
   * Before each (re)start of the stream, e.g. connecting the bus; returns where the stream
   * starts (given where it would). A failure here is handled like a failed stream.
   */
  beforeStart?: (from: Position | null) => Promise<Position | null>;
  /**
   * After a retriable failure: where the stream starts again. The default is the newest
   * position the PublishAhead published (a batch read but not published is read again).
   */
  afterFailure?: (ahead: PublishAhead) => Promise<Position | null>;
  /**
   * Awaited before each batch is handed to the PublishAhead: what must be durable before
   * anything later from the stream can be published (and so acknowledged) — the table resync
   * requests the connector made meanwhile (ResyncQueue.durable). A failure is handled like a
   * failed stream.
   */
  beforePublish?: () => Promise<void>;
  /** The warning logged before each restart (a function: asked after `afterFailure`, so it can say what that decided). */
  restartMessage?: string | ((err: ChartlogError) => string);
  /**
   * Registers the loop's listener for a publishing failure found in the background (a bus that
   * sends on its own, like Kafka's). Without it such a failure would surface only at the next
   * batch, and a source with nothing more to send would wait on it for good: the listener ends
   * the stream now and the loop restarts it like a failed stream.
   */
  watchPublishing?: (onFailure: (err: ChartlogError) => void) => void;
}

export interface StreamLoopResult {
  /** The newest position read and handed to the PublishAhead (or where the stream started). */
  last: Position | null;
  /** The fatal error that stopped the loop, or the last retriable one once the policy gave up. */
  failure: ChartlogError | null;
  /** What failed while publishing the last batches read before the stop, if anything. */
  unpublished: ChartlogError | null;
}

/**
 * Streams a source into a PublishAhead until `signal` aborts or a fatal error: the loop both
 * buses share. Batches at or before the last one handed over are dropped (a reconnect may
 * redeliver). A retriable failure restarts the stream from the `afterFailure` position after
 * the policy's backoff; the count restarts with every batch handed over. Whatever the
 * ending, everything read is published (or its failure returned) before this returns; it
 * never throws.
 */
export async function runStreamLoop(o: StreamLoopOptions): Promise<StreamLoopResult> {
  const { connector, ahead, signal, log } = o;
  const backoff = new Backoff(o.policy);
  let last = o.from;
  let failure: ChartlogError | null = null;
  /** A publishing failure found in the background, and the reading attempt it ends. */
  let interrupted: ChartlogError | null = null;
  let attempt: AbortController | null = null;
  o.watchPublishing?.((err) => {
    interrupted ??= err;
    attempt?.abort();
  });
  while (!signal.aborted) {
    attempt = new AbortController();
    const stopAttempt = (): void => attempt?.abort();
    signal.addEventListener('abort', stopAttempt, { once: true });
    try {
      if (o.beforeStart) last = await o.beforeStart(last);
      for await (const batch of connector.stream({ from: last, signal: attempt.signal })) {
        if (interrupted) break;
        // Redelivered after a reconnect: already on its way to the store.
        if (last && Position.compare(batch.position, last) <= 0) continue;
        if (o.beforePublish) await o.beforePublish();
        await ahead.push(batch, last);
        last = batch.position;
        backoff.reset();
      }
      if (interrupted) throw interrupted;
      await ahead.drain();
      break;
    } catch (err) {
      const e = interrupted ?? toChartlogError(err);
      interrupted = null;
      if (signal.aborted) break;
      if (!isRetriable(e)) {
        failure = e;
        break;
      }
      last = o.afterFailure ? await o.afterFailure(ahead) : await ahead.recover();
      const delay = backoff.next();
      if (delay === null) {
        failure = gaveUp(e, backoff.attempts, e.hint ?? 'the source stream kept failing (sources[].reconnect.maxAttempts); see the warnings logged before this error');
        break;
      }
      log.warn(
        { err: e, attempt: backoff.attempts, delayMs: delay, from: last ? Position.format(last) : null },
        (typeof o.restartMessage === 'function' ? o.restartMessage(e) : o.restartMessage) ?? 'source stream failed; restarting from the last published position',
      );
      await sleep(delay, signal);
    } finally {
      signal.removeEventListener('abort', stopAttempt);
    }
  }
  // What was read before the stop is published before the caller closes the bus.
  const unpublished = await ahead.drain().then(
    () => null,
    (err: unknown) => toChartlogError(err),
  );
  return { last, failure, unpublished };
}
