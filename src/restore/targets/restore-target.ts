import type { ColumnSchema, Row, TableSchema } from '../../core/table-schema.js';
import type { TableBlocks } from '../../archive/streaming-replay.js';

/** The engine that produced the archive: same-engine restores are exact, others best effort. */
export type SourceEngine = 'postgres' | 'mysql';

/** One table to write: its shape at the moment restored to, and which columns stay sealed. */
export interface TablePlan {
  /** "schema.table" as in the archive. */
  readonly name: string;
  readonly table: TableSchema;
  /** Columns whose values are sealed PHI bytes (`--keep-sealed`); empty when PHI was opened. */
  readonly sealed: ReadonlySet<string>;
  readonly sourceEngine: SourceEngine;
}

/**
 * Where restored tables go: a database or a directory of files.
 *
 * Contract, in call order:
 * - `check` connects (or looks at the directory) and refuses, with a usage error and nothing
 *   written, a target that cannot take the tables: unreachable, or any of them already there.
 * - `prepare` makes what the tables need beside themselves (PostgreSQL schemas and enum types).
 * - `writeTable` creates one table and fills it, all or nothing; calls for different tables may
 *   run at the same time. `progress` is told how many rows were just written, and how many
 *   bytes they took on their way to the target (COPY text, SQL, file bytes) when known.
 * - `finish` makes the whole restore visible (files: the directory appears at once);
 *   `abort` removes whatever this restore created, after a failure.
 */
export interface RestoreTarget {
  /** Where, for messages and the audit log: never a password. */
  readonly description: string;
  /**
   * 'key' (the default): rows arrive ordered by primary key, so files of two restores compare
   * line by line. 'any': the target does not care (a database table), which saves sorting.
   */
  readonly rowOrder?: 'key' | 'any';
  check(tables: readonly { schema: string; table: string }[]): Promise<void>;
  prepare(plans: readonly TablePlan[]): Promise<void>;
  writeTable(plan: TablePlan, rows: RowSource, progress: (rows: number, bytes?: number) => void): Promise<number>;
  /**
   * `writeTable` of a table given as its base snapshot's blocks (StreamedTable.blocks), which the
   * target decodes, opens and writes itself (PostgreSQL: block by block into COPY text, on its COPY
   * threads when `threaded` and it has any, else on the calling thread). Targets without it get rows.
   */
  writeBlocks?(plan: TablePlan, blocks: TableBlocks, progress: (rows: number, bytes?: number) => void, threaded?: boolean): Promise<number>;
  /** `meta` describes the restore (files keep it as restore.json); no row values. */
  finish(meta: Record<string, unknown>): Promise<void>;
  abort(): Promise<void>;
  close(): Promise<void>;
}

/** A table's rows: in batches as a streaming restore produces them, or any iterable of rows. */
export type RowSource = AsyncIterable<readonly Row[]> | Iterable<Row>;

/** The rows of a RowSource one by one, as they come (batches are not gathered). */
export async function* eachRow(rows: RowSource): AsyncGenerator<Row> {
  if (Symbol.asyncIterator in rows) {
    for await (const batch of rows) yield* batch;
  } else yield* rows;
}

/** The rows of a RowSource in batches (an iterable of rows is cut into batches of 1024). */
export async function* eachBatch(rows: RowSource): AsyncGenerator<readonly Row[]> {
  if (Symbol.asyncIterator in rows) {
    yield* rows;
    return;
  }
  let batch: Row[] = [];
  for (const row of rows) {
    batch.push(row);
    if (batch.length === 1024) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

/** The columns to write for a plan, in table order. */
export function columnsOf(plan: TablePlan): readonly ColumnSchema[] {
  return plan.table.columns;
}

/**
 * A database error message with every quoted part blanked: servers quote the offending value
 * ("invalid input syntax for type integer: "…"", "Incorrect … value: '…'"), which may be PHI.
 */
export function scrubMessage(message: string): string {
  return message.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.|'')*'/g, (q) => `${q[0]}…${q[0]}`);
}
