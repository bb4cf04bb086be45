import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplicationSession, type SessionItem } from '../../../../connectors/postgres/replication-session.js';
import { createLogger } from '../../../../src/core/logger.js';

// No connection is made: messages are queued the way the service's 'data' handler queues them.
function session(): { s: ReplicationSession; arrive: (byte: number) => void } {
  const s = new ReplicationSession({
    clientConfig: { host: '127.0.0.1', port: 1 },
    slot: 'unused',
    publication: 'unused',
    statusLsn: () => 0n,
    statusIntervalMs: 10_000,
    idleTimeoutMs: 60_000,
    queueCapacity: 16,
    log: createLogger({ level: 'silent', format: 'json' }),
  });
  const internals = s as unknown as { queue: SessionItem[]; wakeConsumer: (() => void) | null };
  const arrive = (byte: number): void => {
    internals.queue.push({ kind: 'data', bytes: Uint8Array.of(byte) });
    internals.wakeConsumer?.();
  };
  return { s, arrive };
}

test('a wait for the next message that loses a race (a wake, an abort) takes no message: the next poll gets it', async () => {
  const { s, arrive } = session();
  const ready = s.ready();
  assert.equal(await Promise.race([ready.then(() => 'ready'), Promise.resolve('wake')]), 'wake');
  arrive(0x42); // a BEGIN arriving just after the wake won
  await ready;
  assert.deepEqual(s.poll(), { kind: 'data', bytes: Uint8Array.of(0x42) }, 'the message is still queued');
  assert.equal(s.poll(), null);
});

test('negative control: racing next() instead loses the message that arrives after the race is lost', async () => {
  const { s, arrive } = session();
  const next = s.next();
  assert.equal(await Promise.race([next.then(() => 'next'), Promise.resolve('wake')]), 'wake');
  arrive(0x42);
  assert.deepEqual(await next, { kind: 'data', bytes: Uint8Array.of(0x42) }, 'the abandoned next() took it');
  assert.equal(s.poll(), null, 'nothing is left for the caller: the old stream loop lost a BEGIN this way');
});
