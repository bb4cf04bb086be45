import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { PostgresConnector, type PostgresSourceSettings } from '../../../../connectors/postgres/postgres-connector.js';
import type { ChartlogError } from '../../../../src/core/errors.js';
import { createLogger } from '../../../../src/core/logger.js';
import type { ReconnectPolicy } from '../../../../src/core/retry.js';

// Nothing listens on port 1: every connection attempt is refused at once, a retriable failure.
function refused(reconnect: ReconnectPolicy): { connector: PostgresConnector; warnings: () => number } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const settings: PostgresSourceSettings = {
    name: 'clinic',
    url: 'postgres://cdc@127.0.0.1:1/app',
    tls: { mode: 'disable' },
    postgres: { heartbeatIntervalMs: 30_000, slotLagWarnBytes: 1 << 30, spillThresholdBytes: 1 << 23 },
    snapshot: { chunkRows: 10_000 },
    reconnect,
  };
  const connector = new PostgresConnector(settings, { logger: createLogger({ destination, level: 'warn', format: 'json' }) });
  return { connector, warnings: () => lines.filter((l) => l.includes('reconnecting')).length };
}

test('with reconnect.maxAttempts, the stream gives up after that many refused connections, no longer retriable', async () => {
  const { connector, warnings } = refused({ initialDelayMs: 1, maxDelayMs: 2, maxAttempts: 3 });
  let error: ChartlogError | null = null;
  try {
    for await (const _ of connector.stream({ from: null })) assert.fail('nothing to stream');
  } catch (err) {
    error = err as ChartlogError;
  }
  assert.ok(error);
  assert.equal(error.code, 'connection');
  assert.equal(error.retriable, false, 'the pipeline around it stops too');
  assert.match(error.message, /3 attempts in a row/);
  assert.equal(warnings(), 2, 'two waits between three attempts');
  await connector.close();
});

test('by default it keeps reconnecting until stopped', async () => {
  const { connector, warnings } = refused({ initialDelayMs: 1, maxDelayMs: 5 });
  // Stopped once it has reconnected ten times without giving up, or after 30 s: counted, not
  // timed, so a loaded machine (a CI run saw 7 reconnects in 300 ms) cannot fail it.
  const stop = new AbortController();
  const watch = setInterval(() => warnings() >= 10 && stop.abort(), 5);
  const deadline = setTimeout(() => stop.abort(), 30_000);
  try {
    for await (const _ of connector.stream({ from: null, signal: stop.signal })) assert.fail('nothing to stream');
  } finally {
    clearInterval(watch);
    clearTimeout(deadline);
  }
  assert.ok(warnings() >= 10, `${warnings()} reconnects before the stop`);
  await connector.close();
});

test('close() ends a reconnect wait at once', async () => {
  const { connector } = refused({ initialDelayMs: 60_000 });
  const t0 = performance.now();
  const streaming = (async () => {
    for await (const _ of connector.stream({ from: null })) assert.fail('nothing to stream');
  })();
  setTimeout(() => void connector.close(), 100);
  await streaming;
  assert.ok(performance.now() - t0 < 5000);
});
