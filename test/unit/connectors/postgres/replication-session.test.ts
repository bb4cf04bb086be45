import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplicationSession, type SessionItem } from '../../../../connectors/postgres/replication-session.js';
import { createLogger } from '../../../../src/core/logger.js';

// No connection is made: messages are queued the way a received XLogData message is.
function session(): { s: ReplicationSession; arrive: (byte: number) => void } {
  const s = unconnected(16);
  const internals = s as unknown as { arrive(bytes: Uint8Array): void };
  const arrive = (byte: number): void => internals.arrive(Uint8Array.of(byte));
  return { s, arrive };
}

/** A session that never connects, with a queue bound of `queueBytes`. */
function unconnected(queueBytes: number): ReplicationSession {
  return new ReplicationSession({
    clientConfig: { host: '127.0.0.1', port: 1 },
    slot: 'unused',
    publication: 'unused',
    statusLsn: () => 0n,
    statusIntervalMs: 10_000,
    idleTimeoutMs: 60_000,
    queueBytes,
    log: createLogger({ level: 'silent', format: 'json' }),
  });
}

function bytesOf(item: SessionItem | null): number[] | null {
  return item?.kind === 'data' ? [...item.bytes] : null;
}

test('a wait for the next message that loses a race (a wake, an abort) takes no message: the next poll gets it', async () => {
  const { s, arrive } = session();
  const ready = s.ready();
  assert.equal(await Promise.race([ready.then(() => 'ready'), Promise.resolve('wake')]), 'wake');
  arrive(0x42); // a BEGIN arriving just after the wake won
  await ready;
  assert.deepEqual(bytesOf(s.poll()), [0x42], 'the message is still queued');
  assert.equal(s.poll(), null);
});

test('negative control: racing next() instead loses the message that arrives after the race is lost', async () => {
  const { s, arrive } = session();
  const next = s.next();
  assert.equal(await Promise.race([next.then(() => 'next'), Promise.resolve('wake')]), 'wake');
  arrive(0x42);
  assert.deepEqual(bytesOf(await next), [0x42], 'the abandoned next() took it');
  assert.equal(s.poll(), null, 'nothing is left for the caller: the old stream loop lost a BEGIN this way');
});

test('the queue is bounded by bytes: the socket pauses once queueBytes are queued and resumes at half; order is kept across the compaction of taken items', () => {
  const s = unconnected(100 * 1000);
  const calls: string[] = [];
  const internals = s as unknown as { socket: { pause(): void; resume(): void }; arrive(bytes: Uint8Array): void };
  internals.socket = { pause: () => calls.push('pause'), resume: () => calls.push('resume') };
  // 10,000 messages of 10 bytes: 99,990 bytes queued is below the bound, the 10,000th reaches it.
  for (let i = 0; i < 9_999; i++) internals.arrive(new Uint8Array(10).fill(i % 256));
  assert.deepEqual(calls, [], 'below the byte bound: not paused (a bound of 1024 messages paused here)');
  internals.arrive(new Uint8Array(10).fill(9_999 % 256));
  assert.deepEqual(calls, ['pause']);
  // Taking 4,999 leaves 50,010 bytes: still above half; the 5,000th take reaches half and resumes.
  for (let i = 0; i < 4_999; i++) assert.equal((s.poll() as { bytes: Uint8Array }).bytes[0], i % 256);
  assert.deepEqual(calls, ['pause']);
  assert.equal((s.poll() as { bytes: Uint8Array }).bytes[0], 4_999 % 256);
  assert.deepEqual(calls, ['pause', 'resume']);
  // The rest, in arrival order, past the points where taken items are dropped from the array.
  for (let i = 5_000; i < 10_000; i++) assert.equal((s.poll() as { bytes: Uint8Array }).bytes[0], i % 256, `message ${i}`);
  assert.equal(s.poll(), null);
});

test('messages packed across slabs come out whole and in order, views taken earlier keep their bytes, and the end comes after the last message', () => {
  const s = unconnected(64 * 1024 * 1024);
  const internals = s as unknown as { arrive(bytes: Uint8Array, start?: number): void; finish(err: null): void };
  // 3,000 messages of 1,000 bytes (about 3 MiB: three slabs), each filled with its number, and
  // one larger than a slab; given behind a 25-byte header as XLogData is.
  const sizes = [...Array.from({ length: 3_000 }, () => 1_000), 2 * 1024 * 1024];
  sizes.forEach((n, i) => internals.arrive(new Uint8Array(25 + n).fill(i % 251), 25));
  internals.finish(null);
  const taken: Uint8Array[] = [];
  for (let i = 0; i < sizes.length; i++) {
    const item = s.poll();
    assert.equal(item?.kind, 'data', `message ${i}`);
    taken.push((item as { bytes: Uint8Array }).bytes);
  }
  taken.forEach((b, i) => {
    assert.equal(b.length, sizes[i], `message ${i} length`);
    assert.ok(b.every((x) => x === i % 251), `message ${i} bytes (read after every later message was taken)`);
  });
  assert.deepEqual(s.poll(), { kind: 'end', error: null });
});

test('a reader that caught up with a full slab gets the message that had to start the next slab (no stall at a slab boundary)', () => {
  const s = unconnected(64 * 1024 * 1024);
  const internals = s as unknown as { arrive(bytes: Uint8Array, start?: number): void };
  // 1,000 messages of 1,000 bytes (+4 bytes of length each) nearly fill the first 1 MiB slab;
  // each is taken as it comes, so the reader is caught up when the slab has no room left.
  for (let i = 0; i < 1_045; i++) {
    internals.arrive(new Uint8Array(1_000).fill(i % 251));
    assert.equal(bytesOf(s.poll())?.length, 1_000, `message ${i}`);
    assert.equal(s.poll(), null, 'caught up');
  }
  // This one no longer fits the first slab: it opens the second, and must be handed out.
  internals.arrive(new Uint8Array(1_000).fill(7));
  const next = s.poll();
  assert.deepEqual(bytesOf(next)?.slice(0, 3), [7, 7, 7], 'the message in the new slab is taken');
});

/** A primary keepalive ('k'): walEnd, sendTime, reply requested. */
function keepalive(walEnd: bigint, replyRequested: boolean): Buffer {
  const b = Buffer.alloc(18);
  b[0] = 0x6b;
  b.writeBigUInt64BE(walEnd, 1);
  b[17] = replyRequested ? 1 : 0;
  return b;
}

test('keepalives: answered when the server asks or the position to report is new (at most every 100 ms); unchanged ones that ask nothing are not', async () => {
  let report = 100n;
  const asked: bigint[] = [];
  const s = new ReplicationSession({
    clientConfig: { host: '127.0.0.1', port: 1 },
    slot: 'unused',
    publication: 'unused',
    statusLsn: (server) => {
      asked.push(server);
      return report;
    },
    statusIntervalMs: 10_000,
    idleTimeoutMs: 60_000,
    queueBytes: 1024,
    log: createLogger({ level: 'silent', format: 'json' }),
  });
  const sent: { lsn: bigint; ping: boolean }[] = [];
  const internals = s as unknown as { connection: { sendCopyFromChunk(b: Buffer): void }; copyData(chunk: Buffer): void };
  internals.connection = { sendCopyFromChunk: (b: Buffer) => sent.push({ lsn: b.readBigUInt64BE(1), ping: b[33] === 1 }) };
  internals.copyData(keepalive(500n, false));
  assert.deepEqual(sent.map((x) => x.lsn), [100n], 'the first one: a position never reported');
  for (let i = 0; i < 1000; i++) internals.copyData(keepalive(500n + BigInt(i), false));
  assert.deepEqual(sent.map((x) => x.lsn), [100n], 'a thousand more with nothing new and nothing asked: no answer (each was a socket write)');
  assert.equal(asked.length, 1001, 'the policy is still asked every time (it decides catalog readings)');
  internals.copyData(keepalive(2000n, true));
  assert.deepEqual(sent.map((x) => x.lsn), [100n, 100n], 'asked for a reply: answered at once, even unchanged');
  report = 200n;
  internals.copyData(keepalive(2001n, false));
  assert.equal(sent.length, 2, 'a new position within 100 ms of the last answer waits');
  await new Promise((r) => setTimeout(r, 120));
  internals.copyData(keepalive(2002n, false));
  assert.deepEqual(sent.map((x) => x.lsn), [100n, 100n, 200n], 'a new position after 100 ms is answered');
  s.report(false);
  assert.equal(sent.length, 4, 'report() (an acknowledgement) always sends');
});
