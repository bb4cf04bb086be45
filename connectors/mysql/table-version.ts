import type { ColumnSchema, ColumnType, TableSchema } from '../../src/core/table-schema.js';
import { freezeTableSchema, sameTableVersion } from '../../src/core/table-schema.js';
import { columnTypeOf, fractionDigits } from './column-type.js';

/**
 * Which table version decodes a row.
 *
 * The binlog's own table map (binlog_row_metadata=FULL) names every column and its type as they
 * were when the row was WRITTEN; INFORMATION_SCHEMA only knows the table as it is NOW. Replaying a
 * backlog across an ALTER with today's column list would put values under the wrong names, so
 * the table map is the authority on names and order. INFORMATION_SCHEMA adds what the binlog
 * cannot say: MariaDB's UUID/INET types travel as BINARY, its JSON as LONGTEXT, and the binlog
 * carries no nullability. `versionFor` therefore uses the tracked (INFORMATION_SCHEMA) version
 * when it matches the table map column for column, and otherwise builds a version from the table
 * map, borrowing each column's details from the tracked version when that column is unchanged.
 */
export interface TablemapColumn {
  readonly name: string;
  /** The type in COLUMN_TYPE form as zongji rebuilds it from the table map ('binary(16)'). */
  readonly columnType: string;
  /** ENUM/SET labels exactly as the table map carries them (no quoting to undo). */
  readonly values?: readonly string[];
}

/** The value-model type of a table-map column. */
export function tablemapType(m: TablemapColumn): ColumnType {
  const t = columnTypeOf(m.columnType);
  return m.values && (t.kind === 'enum' || t.kind === 'set') ? { ...t, values: [...m.values] } : t;
}

export function versionFor(
  tracked: TableSchema | undefined,
  schema: string,
  table: string,
  columns: readonly TablemapColumn[],
): TableSchema {
  if (tracked && tracked.columns.length === columns.length && tracked.columns.every((c, i) => sameColumn(c, columns[i]!))) {
    return tracked;
  }
  const byName = new Map((tracked?.columns ?? []).map((c) => [c.name, c]));
  const out: ColumnSchema[] = columns.map((m) => {
    const known = byName.get(m.name);
    if (known && sameColumn(known, m)) return known;
    return { name: m.name, sourceType: m.columnType, type: tablemapType(m), nullable: true };
  });
  const names = new Set(out.map((c) => c.name));
  const primaryKey = tracked && tracked.primaryKey.every((k) => names.has(k)) ? [...tracked.primaryKey] : [];
  return freezeTableSchema({ schema, table, columns: out, primaryKey });
}

/** The table-map column could be this tracked column (same name, same binlog-visible type). */
export function sameColumn(known: ColumnSchema, m: TablemapColumn): boolean {
  if (known.name !== m.name) return false;
  const seen = tablemapType(m);
  return compatible(known, seen, m.columnType);
}

function compatible(known: ColumnSchema, seen: ColumnType, seenSource: string): boolean {
  const k = known.type;
  switch (k.kind) {
    case 'uuid':
      return seen.kind === 'bytes' && seen.length === 16;
    case 'json':
      return seen.kind === 'string' || seen.kind === 'json';
    case 'text':
      return seen.kind === 'bytes' || seen.kind === 'text' || seen.kind === 'string';
    case 'int':
      return seen.kind === 'int' && seen.bits === k.bits && Boolean(seen.unsigned) === Boolean(k.unsigned);
    case 'float':
      return seen.kind === 'float' && seen.bits === k.bits;
    case 'decimal':
      return seen.kind === 'decimal' && seen.precision === k.precision && seen.scale === k.scale;
    case 'bit':
      return seen.kind === 'bit' && seen.length === k.length;
    case 'enum':
    case 'set':
      return seen.kind === k.kind && sameList(seen.values ?? [], k.values ?? []);
    case 'time':
    case 'timestamp':
    case 'timestamptz':
      return seen.kind === k.kind && fractionDigits(seenSource) === fractionDigits(known.sourceType);
    case 'bytes':
      // BINARY(n) keeps its width in the map; BLOB sizes only as a length-prefix width.
      return seen.kind === 'bytes' && (k.length === undefined || seen.length === undefined || seen.length === k.length);
    default:
      // string: the map gives lengths in bytes/charset width, not the declared characters.
      return seen.kind === k.kind;
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Structural equality of two versions (used to tell whether a DDL changed a table). */
export function sameTableSchema(a: TableSchema, b: TableSchema): boolean {
  return sameTableVersion(a, b);
}
