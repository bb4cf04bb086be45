import type { CellValue, ColumnSchema, MissingValue, TableSchema } from '../../src/core/table-schema.js';
import { freezeTableSchema } from '../../src/core/table-schema.js';
import { fractionDigits } from './column-type.js';

/**
 * What rows older than a column read in it, on MySQL/MariaDB (core/table-schema.ts
 * MissingValue). An ADD COLUMN (instant, or a copy the binlog shows only as its statement)
 * writes no row events for the rows the table had: each of them reads the column's default as it
 * was at the ALTER. INFORMATION_SCHEMA is read when the statement is, which on a backlog may be
 * after later DDL; so a default is trusted only when it is a constant literal that the ALTER
 * statement itself spells after DEFAULT. Anything else (an expression such as
 * current_timestamp(), a NOT NULL column without default — the server fills an implicit value —
 * a type whose default text chartlog does not map) is `unknown`: restore refuses to guess, and
 * the table must be re-read (`chartlog resync`).
 *
 * `defaults`: column → INFORMATION_SCHEMA.COLUMNS.COLUMN_DEFAULT (MariaDB ≥ 10.2.7 form: string
 * literals quoted, NULL as the text NULL, SQL null when there is no default at all).
 */
export function withMissingValues(
  previous: TableSchema,
  next: TableSchema,
  defaults: ReadonlyMap<string, string | null>,
  statement: string,
  renamed: ReadonlyMap<string, string> = new Map(),
): TableSchema {
  const before = new Map(previous.columns.map((c) => [c.name, c]));
  let changed = false;
  const columns: ColumnSchema[] = next.columns.map((c) => {
    const known = before.get(c.name);
    const from = renamed.get(c.name);
    if (known) {
      // Kept: what its older rows read and its earlier names (later versions keep a rename).
      if (!known.missing && !known.renamedFrom) return c;
      changed = true;
      return { ...c, ...(known.missing ? { missing: known.missing } : {}), ...(known.renamedFrom ? { renamedFrom: known.renamedFrom } : {}) };
    }
    if (from !== undefined) {
      const r = renamedColumn(previous, next, from, c.name);
      changed = true;
      return { ...c, ...r };
    }
    const missing = missingOfAdded(c, defaults.has(c.name) ? defaults.get(c.name)! : undefined, statement);
    if (!missing) return c;
    changed = true;
    return { ...c, missing };
  });
  return changed ? freezeTableSchema({ ...next, columns }) : next;
}

/**
 * A column renamed by the statement (RENAME COLUMN, CHANGE): rows written before it hold its
 * value under the old name. Recorded as on PostgreSQL — the one encoding of a rename —
 * `renamedFrom` (the old name first, then the old column's own earlier names), and the column
 * keeps what the old column's older rows read (`missing`). Only when the rename can be followed
 * by names alone: the old name gone from the new version, the new one absent from the old (a swap
 * of two names is not), and neither a key column (rows are matched by their key). Otherwise
 * `missing: unknown`: re-read.
 */
export function renamedColumn(previous: TableSchema, next: TableSchema, from: string, to: string): Pick<ColumnSchema, 'missing' | 'renamedFrom'> {
  const old = previous.columns.find((c) => c.name === from);
  const kept = next.columns.some((c) => c.name === from);
  if (!old || kept) return { missing: { unknown: `column ${to} was renamed from ${from} in a way chartlog cannot follow by names (a swap or a reused name)` } };
  if (previous.primaryKey.includes(from) || next.primaryKey.includes(to)) return { missing: { unknown: `key column ${from} was renamed to ${to}: rows are matched by their key` } };
  return { renamedFrom: [from, ...(old.renamedFrom ?? []).filter((n) => n !== from)], ...(old.missing ? { missing: old.missing } : {}) };
}

/** The missing value of one column added by `statement`; undefined when older rows read NULL. */
export function missingOfAdded(c: ColumnSchema, columnDefault: string | null | undefined, statement: string): MissingValue | undefined {
  if (columnDefault === undefined) return { unknown: `column ${c.name}: its default could not be read from INFORMATION_SCHEMA` };
  if (columnDefault === null) {
    // No DEFAULT at all: nullable columns give NULL; NOT NULL ones an implicit value (0, '', …).
    return c.nullable ? undefined : { unknown: `column ${c.name} is NOT NULL without a default: the server gives older rows an implicit value` };
  }
  if (columnDefault.toUpperCase() === 'NULL') return undefined;
  const literal = literalText(columnDefault);
  if (literal === null) return { unknown: `column ${c.name}: its default ${shorten(columnDefault)} is an expression, not a constant` };
  if (!statementSays(statement, columnDefault, literal)) {
    return { unknown: `column ${c.name}: the ALTER statement does not spell the default the catalogue shows now (it may have changed since)` };
  }
  const value = cellOf(c, literal.text, literal.quoted);
  if (value === undefined) return { unknown: `column ${c.name}: a default of type ${c.sourceType} is not one chartlog maps from its text` };
  return { value };
}

/** A quoted string literal ('…', '' for a quote) or a bare number; null for anything else. */
function literalText(d: string): { text: string; quoted: boolean } | null {
  const q = /^'((?:[^'\\]|'')*)'$/s.exec(d);
  if (q) return { text: q[1]!.replace(/''/g, "'"), quoted: true };
  if (/^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/.test(d)) return { text: d, quoted: false };
  return null;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The statement has `DEFAULT <the literal>` (or, for a number, `DEFAULT '<number>'`). */
function statementSays(statement: string, columnDefault: string, literal: { text: string; quoted: boolean }): boolean {
  const spellings = [columnDefault];
  if (!literal.quoted) spellings.push(`'${columnDefault}'`);
  return spellings.some((s) => new RegExp(`\\bDEFAULT\\s*(?:\\(\\s*)?${escapeRegExp(s)}(?![\\w.'])`, 'i').test(statement));
}

function shorten(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** The value model's form of a default's text, for the kinds where it is exact; undefined otherwise. */
function cellOf(c: ColumnSchema, text: string, quoted: boolean): CellValue | undefined {
  const t = c.type;
  switch (t.kind) {
    case 'int':
      if (!/^[-+]?\d+$/.test(text)) return undefined;
      return t.bits === 64 ? BigInt(text) : Number(text);
    case 'year':
      return /^\d{1,4}$/.test(text) ? Number(text) : undefined;
    case 'float':
      return /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/.test(text) ? Number(text) : undefined;
    case 'decimal': {
      const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
      return m && (m[3]?.length ?? 0) === (t.scale ?? 0) ? text : undefined;
    }
    case 'string':
    case 'enum':
    case 'json':
      return quoted && !text.includes('\\') ? text : undefined;
    case 'set':
      return quoted && !text.includes('\\') ? (text === '' ? [] : text.split(',')) : undefined;
    case 'date':
      return /^\d{4}-\d{2}-\d{2}$/.test(text) ? text : undefined;
    case 'timestamp':
    case 'time': {
      const m = t.kind === 'time' ? /^-?\d{2,3}:\d{2}:\d{2}(?:\.(\d+))?$/.exec(text) : /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.(\d+))?$/.exec(text);
      return m && (m[1]?.length ?? 0) === fractionDigits(c.sourceType) ? text : undefined;
    }
    default:
      return undefined;
  }
}

/** COLUMN_DEFAULT of every column of one table (SQL null: no default). */
export async function loadColumnDefaults(
  conn: { query(sql: string, values?: unknown[]): Promise<[unknown, unknown]> },
  schema: string,
  table: string,
): Promise<Map<string, string | null>> {
  const [rows] = await conn.query(
    'SELECT COLUMN_NAME AS name, COLUMN_DEFAULT AS def FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
    [schema, table],
  );
  return new Map((rows as { name: string; def: string | null }[]).map((r) => [r.name, r.def]));
}
