import type { TableSchema } from '../core/table-schema.js';

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
