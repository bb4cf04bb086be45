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
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 300);
  for await (const _ of connector.stream({ from: null, signal: stop.signal })) assert.fail('nothing to stream');
  assert.ok(warnings() >= 10, `${warnings()} reconnects in 300 ms`);
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
