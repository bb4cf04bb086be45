import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { logLines } from './pausable-writer.js';

/**
 * Shared steps of the tests that stop `chartlog run`, change the source, and start it again
 * (postgres-stopped-columns, postgres-rewrite-kept, mysql-stopped-columns).
 */

/** The tables the run's log says an automatic resync finished for. */
export function resyncedTables(runLog: string): Set<string> {
  return new Set(logLines(runLog, 'automatic table resync finished').flatMap((l) => l.tables as string[]));
}

/** Waits (clock time, generous: the machine is slow) until automatic resyncs of `tables` finished. */
export async function waitResynced(runLog: string, tables: readonly string[]): Promise<void> {
  for (let i = 0; !tables.every((t) => resyncedTables(runLog).has(t)); i++) {
    assert.ok(i < 1200, `automatic resyncs of ${tables.join(', ')} finished (got ${[...resyncedTables(runLog)].join(', ')}); see ${runLog}`);
    await sleep(100);
  }
}

/**
 * A concurrent writer: one INSERT into `table (id, x)` after another, ids from `from + 1`, until
 * `stopped()`; resolves to the number of rows it committed.
 */
export async function insertWriter(exec: (sql: string) => Promise<void>, table: string, from: number, stopped: () => boolean, pauseMs = 10): Promise<number> {
  let n = from;
  while (!stopped()) {
    n++;
    await exec(`INSERT INTO ${table} VALUES (${n}, ${n})`);
    await sleep(pauseMs);
  }
  return n - from;
}
