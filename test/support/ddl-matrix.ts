import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { formatUs } from '../../src/archive/layout.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { runChartlog } from './chartlog-process.js';
import { diffCaptures, type Captured, type TestDatabase } from './restore-engines.js';

/**
 * The DDL matrix of issue 14 (test/integration/ddl-matrix-*.test.ts): DDL cases one after
 * another under one `chartlog run` and a concurrent client (pgbench, sysbench), each between two moments — just
 * before the DDL and just after it — at which the source is captured with the writer paused
 * (every table the source has then, tables present or absent included). Restores to those
 * moments are later compared with the captures value by value.
 */

export interface Moment {
  readonly label: string;
  readonly us: bigint;
  readonly iso: string;
  /** Every table the source had at the moment (sorted) and its rows. */
  readonly tables: ReadonlyMap<string, Captured>;
}

export interface DdlCase {
  readonly name: string;
  readonly before: Moment;
  readonly after: Moment;
}

export interface MatrixOptions {
  readonly source: TestDatabase;
  /** The concurrent client (a ClientLoad: pgbench, sysbench), paused around each moment. */
  readonly writer: { pause(): Promise<void>; resume(): void; activity(): Promise<string> };
  /** The tables the source has now that a restore should give (names as the target spells them). */
  readonly tablesNow: () => Promise<string[]>;
  /**
   * Commit times in whole seconds (MariaDB binlog): a moment is taken only once a new second has
   * begun since the last commit, so every commit before it is stamped with an earlier second and
   * counts, and every later one is stamped at or after the moment's second and does not.
   */
  readonly secondResolution: boolean;
}

export class DdlMatrix {
  readonly cases: DdlCase[] = [];

  constructor(private readonly o: MatrixOptions) {}

  /**
   * Pauses the writer (if not yet), waits for quiet and captures the source. Taken again when
   * one of the writer's statements ran meanwhile (sent just before SIGSTOP, it waited in the
   * socket while the sessions looked idle, then committed after the moment's time but before
   * the capture: a ddl-matrix-mariadb run at load 30–40 saw sbtest1 differ by one row so).
   */
  async moment(label: string): Promise<Moment> {
    await this.o.writer.pause();
    for (let attempt = 1; ; attempt++) {
      const mark = await this.o.writer.activity();
      if (this.o.secondResolution) await sleep(1000 - (Date.now() % 1000) + 50);
      else await sleep(30);
      const us = BigInt(Date.now()) * 1000n;
      const tables = new Map<string, Captured>();
      for (const t of (await this.o.tablesNow()).sort()) tables.set(t, await this.o.source.capture(t));
      await sleep(this.o.secondResolution ? 50 : 10);
      if ((await this.o.writer.activity()) === mark) return { label, us, iso: formatUs(us), tables };
      // The client is stopped: what it had sent has run by now (quiet again), so this converges.
      assert.ok(attempt < 20, `the writer's sessions kept running statements while stopped (${label})`);
      await this.o.writer.pause();
    }
  }

  /**
   * One case: the moment before, `ddl` (which also makes the table's next row change, when it
   * still exists: the new version reaches the stream with it), then — writer running again —
   * `settle` (an automatic resync, a catalog check), then the moment after.
   */
  async run(name: string, ddl: () => Promise<void>, settle?: () => Promise<void>): Promise<void> {
    const before = await this.moment(`before ${name}`);
    // A DDL that asks for a resync starts an unproven window (restore refuses moments inside it):
    // on MariaDB at the DDL's whole second, on PostgreSQL at the last catalog reading that still
    // showed the old table. Leave the moment before clear of both: the next second, and several
    // catalog check intervals (the matrix sets 200 ms).
    if (settle) await sleep(this.o.secondResolution ? 1000 - (Date.now() % 1000) + 100 : 1500);
    await ddl();
    if (settle) {
      this.o.writer.resume();
      await settle();
      // The window ends with the first change stored after the resync's base: let the writer commit.
      await sleep(this.o.secondResolution ? 1100 : 500);
    }
    const after = await this.moment(`after ${name}`);
    this.o.writer.resume();
    this.cases.push({ name, before, after });
  }

  get(name: string): DdlCase {
    const c = this.cases.find((x) => x.name === name);
    assert.ok(c, `case ${name} ran`);
    return c;
  }
}

/** Waits (up to `ms`) until the run log has a line for which `match` holds. */
export async function waitForLog(logFile: string, what: string, match: (line: Record<string, unknown>) => boolean, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.startsWith('{'));
    if (lines.some((l) => match(JSON.parse(l) as Record<string, unknown>))) return;
    assert.ok(Date.now() < deadline, `${what} within ${ms / 1000} s; see ${logFile}`);
    await sleep(100);
  }
}

/** Waits until the archive's checkpoint is past `us` (so every moment is restorable). */
export async function checkpointPast(store: ObjectStore, source: string, us: bigint): Promise<void> {
  for (let i = 0; ; i++) {
    const cp = await readCheckpoint(store, source);
    if (cp && cp.commitTsUs > us) return;
    assert.ok(i < 1200, 'the checkpoint passed the last moment');
    await sleep(100);
  }
}

/**
 * Restores every table to the moment into a fresh database and compares it with the capture:
 * the same tables, and every row value by value.
 */
export async function restoreEquals(
  m: Moment,
  restoreArgs: readonly string[],
  newTarget: () => Promise<TestDatabase>,
  where: (t: string) => string = (t) => t,
): Promise<void> {
  const target = await newTarget();
  const r = await runChartlog([...restoreArgs, '--to', m.iso, '--target', target.url]);
  assert.equal(r.code, 0, `${m.label}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
  assert.deepEqual(await target.tables(), [...m.tables.keys()], `${m.label}: the tables present`);
  for (const [t, rows] of m.tables) {
    const diff = diffCaptures(await target.capture(where(t)), rows, `${m.label}: ${t}`);
    assert.equal(diff, null, diff ?? '');
  }
}
