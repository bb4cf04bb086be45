import { ChartlogError } from '../core/errors.js';
import type { CellValue, ColumnSchema, TableSchema } from '../core/table-schema.js';

/**
 * How a replica table follows its source table's new version (pure): the DDL steps that make the
 * target's columns the version's columns, on either target engine. A column the version carries
 * under a new name (`renamedFrom`, the one encoding of RENAME COLUMN: docs/formats.md) whose
 * earlier name the target still has is renamed — its values stay, as at the source; a target
 * column the version no longer has is dropped (DROP COLUMN at the source); any other new column
 * is added (nullable: rows before it hold NULL in the replica, as the archive has them).
 * Renames come first, so a new column that takes a renamed column's old name is added after it.
 */
export type ShapeStep = { kind: 'rename'; from: string; column: string } | { kind: 'drop'; column: string } | { kind: 'add'; column: string };

export function shapeSteps(targetColumns: ReadonlySet<string>, version: TableSchema): ShapeStep[] {
  const wanted = new Set(version.columns.map((c) => c.name));
  const have = new Set(targetColumns);
  const renames: ShapeStep[] = [];
  const adds: ShapeStep[] = [];
  for (const c of version.columns) {
    if (have.has(c.name)) continue;
    const from = c.renamedFrom?.find((n) => have.has(n));
    if (from !== undefined) {
      renames.push({ kind: 'rename', from, column: c.name });
      have.delete(from);
      have.add(c.name);
    } else {
      adds.push({ kind: 'add', column: c.name });
    }
  }
  const drops: ShapeStep[] = [...have].filter((n) => !wanted.has(n)).map((column) => ({ kind: 'drop', column }));
  return [...renames, ...drops, ...adds];
}

/** Whether the target's columns (as far as known) are exactly the version's: no DDL needed. */
export function sameColumns(targetColumns: { has(name: string): boolean; readonly size: number } | undefined, version: TableSchema): boolean {
  return targetColumns !== undefined && targetColumns.size === version.columns.length && version.columns.every((c) => targetColumns.has(c.name));
}

/**
 * What the rows a replica already holds read in a column added at the source (pure): the
 * version's `missing` constant (ADD COLUMN … DEFAULT on a table with rows: the source wrote no
 * row images for them), else NULL. When the source gave them values chartlog could not capture
 * (`missing.unknown`: a volatile default, a rewrite) the replica stops rather than hold NULLs the
 * source does not have.
 */
export function olderRowsValue(table: string, c: ColumnSchema): CellValue {
  if (!c.missing) return null;
  if ('unknown' in c.missing) throw new UnknownOlderRowsError(table, c.name, c.missing.unknown);
  return c.missing.value;
}

/**
 * olderRowsValue's refusal, naming its table: the replicator waits on it for the table's new
 * base (a PostgreSQL rewrite is found by a catalog reading up to postgres.catalogCheckIntervalMs
 * after the change that brings the new column is durable, so the replica can meet the column
 * before the archive records the table's unproven window) and stops only when none comes.
 */
export class UnknownOlderRowsError extends ChartlogError {
  constructor(
    readonly table: string,
    column: string,
    why: string,
  ) {
    super('integrity', `${table}.${column}: the rows written before this column was added read values chartlog could not capture (${why}); the replica cannot add the column with them`, {
      hint: `re-read the table (\`chartlog resync --tables ${table}\`; chartlog run does so by itself with sources[].resync.automatic), and the replica rebuilds it from the new base; nothing of this transaction was applied`,
    });
  }
}
