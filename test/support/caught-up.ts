import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import type { TestDatabase } from './restore-engines.js';

/**
 * Makes `lastWrite` (a test's last change to a PostgreSQL source `db`) and waits until the
 * source's checkpoint in `store` has passed it: every change the test made before is durable in
 * the archive once this returns. Exact, by WAL position: the server's position is read before
 * `lastWrite`, whose commit lies after it. (A commit time "within a second of now", what these
 * tests waited for before, let a restore run before the last changes were durable on a loaded
 * machine.)
 */
export async function waitUntilDurable(store: ObjectStore, source: string, db: TestDatabase, lastWrite: () => Promise<void>, timeoutMs = 120_000): Promise<void> {
  const lsn = String((await db.capture('(SELECT pg_current_wal_lsn()::text AS lsn, 1 AS id) q'))[0]!.lsn);
  const [hi, lo] = lsn.split('/').map((x) => BigInt(`0x${x}`)) as [bigint, bigint];
  const before = (hi << 32n) | lo;
  await lastWrite();
  for (const deadline = Date.now() + timeoutMs; ; await sleep(100)) {
    const cp = await readCheckpoint(store, source);
    if (cp && BigInt(`0x${cp.position.commit}`) > before) return;
    assert.ok(Date.now() < deadline, `the checkpoint did not pass ${lsn} within ${timeoutMs / 1000} s: ${cp ? cp.position.commit : 'none'}`);
  }
}
