import { ChartlogError } from '../core/errors.js';
import { identityColumns, type CellValue, type Row, type TableSchema } from '../core/table-schema.js';

/**
 * Columns added to a table that already had rows (ADD COLUMN … DEFAULT): the source writes no
 * row image for the rows it had, so their stored images lack the column. What they read in it is
 * recorded with the table version that has the column (core/table-schema.ts MissingValue), and
 * restore fills it here, for the rows whose image predates the column. Pure: no I/O.
 */

/** What a restore fills per column of the final version, from the versions applied, oldest first. */
export interface MissingPlan {
  /** Column → the constant that rows whose image lacks it read. */
  readonly fill: ReadonlyMap<string, CellValue>;
  /** Column → why rows that predate it cannot be restored (refused before anything is written). */
  readonly refuse: ReadonlyMap<string, string>;
  /**
   * Column of the final version → its earlier names, most recent first (RENAME COLUMN, on either
   * engine: `renamedFrom`): a row that lacks the column and holds one of them is a row stored
   * before the rename, and its value moves to the column (before `fill` applies).
   */
  readonly renames: ReadonlyMap<string, readonly string[]>;
}

/**
 * `versions`: every table version whose rows a restore applies (base snapshot parts, then the
 * changes), oldest first, the final one last. A column's missing value is the one recorded by the
 * latest version that records it; a version that brings the column back without one (dropped and
 * added again) resets it to NULL. A column whose missing value is `unknown` is refused when an
 * earlier version applied lacks it (rows from then may lack it); when every version applied has
 * it — the table was re-read after the DDL — nothing predates it and nothing is refused.
 *
 * A renamed column (`renamedFrom`, the one encoding of RENAME COLUMN on both engines; archives
 * written with MariaDB's older `missing.from` read as `renamedFrom` too, codec/avro-schema.ts)
 * reads the old column of older images, and takes over what that column's own older rows read
 * (its constant, or its refusal). Earlier names accumulate across the versions applied, so
 * renames chain (a → b → c) even when each version lists only the last one.
 */
export function missingPlan(versions: readonly TableSchema[]): MissingPlan {
  const fill = new Map<string, CellValue>();
  const unknown = new Map<string, string>();
  const lacked = new Set<string>();
  const earlier = new Map<string, readonly string[]>();
  let previous: ReadonlySet<string> | null = null;
  for (const v of versions) {
    const names = new Set(v.columns.map((c) => c.name));
    // What the old columns meant, before this version's renames and drops change it.
    const priorFill = new Map(fill);
    const priorUnknown = new Map(unknown);
    const priorLacked = new Set(lacked);
    const priorEarlier = new Map(earlier);
    for (const c of v.columns) {
      const isNew = previous !== null && !previous.has(c.name);
      const listed = c.renamedFrom ?? [];
      // Renamed by this version: new here, and one of its earlier names was a column before.
      const old = isNew ? listed.find((n) => previous!.has(n)) : undefined;
      if (old !== undefined) {
        earlier.set(c.name, distinct([...listed, ...(priorEarlier.get(old) ?? [])]));
        fill.delete(c.name);
        unknown.delete(c.name);
        if (priorFill.has(old)) fill.set(c.name, priorFill.get(old)!);
        if (priorUnknown.has(old) && priorLacked.has(old)) unknown.set(c.name, priorUnknown.get(old)!);
        // Rows older than the old column lack the new one's value as they lacked the old one's.
        if (priorLacked.has(old)) lacked.add(c.name);
        else lacked.delete(c.name);
      } else {
        if (listed.length > 0) earlier.set(c.name, distinct([...listed, ...(earlier.get(c.name) ?? [])]));
        if (isNew) {
          lacked.add(c.name);
          fill.delete(c.name);
          unknown.delete(c.name);
          if (listed.length === 0) earlier.delete(c.name);
        }
      }
      if (c.missing && 'unknown' in c.missing) {
        unknown.set(c.name, c.missing.unknown);
        fill.delete(c.name);
      } else if (c.missing) {
        fill.set(c.name, c.missing.value);
        unknown.delete(c.name);
      }
    }
    // A dropped column's rows keep no value of it: what it meant no longer applies.
    if (previous) for (const n of previous) if (!names.has(n)) { fill.delete(n); unknown.delete(n); lacked.add(n); }
    previous = names;
  }
  const final = versions.at(-1);
  const finalNames = new Set(final?.columns.map((c) => c.name) ?? []);
  const refuse = new Map<string, string>();
  for (const [name, why] of unknown) if (finalNames.has(name) && lacked.has(name)) refuse.set(name, why);
  for (const name of [...fill.keys()]) if (!finalNames.has(name)) fill.delete(name);
  const renames = new Map<string, readonly string[]>();
  for (const c of final?.columns ?? []) {
    const former = earlier.get(c.name);
    if (former && former.length > 0) renames.set(c.name, former);
  }
  // Rows carry no version: "lacks the column" tells a row stored before the rename only when the
  // column's name was never another column's. Names swapped (a→b while b→a) cannot be told
  // apart, nor can a renamed key column be matched (rows are merged by key before this): refused.
  const formerOfOthers = new Set<string>();
  for (const [, former] of renames) for (const n of former) formerOfOthers.add(n);
  const keys = new Set(final ? identityColumns(final) : []);
  for (const [name, former] of renames) {
    // Every version applied already has the rename (the table was re-read since): no row predates it.
    const predates = versions.some((ver) => !ver.columns.some((c) => c.name === name && c.renamedFrom?.[0] === former[0]));
    if (!predates) continue;
    if (formerOfOthers.has(name)) refuse.set(name, `column ${name} was renamed while another column took its old name: rows stored before cannot be told apart`);
    else if (keys.has(name)) refuse.set(name, `column ${name} identifies rows and was renamed: rows stored before hold the key under its old name`);
  }
  return { fill, refuse, renames };
}

function distinct(names: readonly string[]): readonly string[] {
  return [...new Set(names)];
}

/** Refuses (exit 2, nothing written) a restore that would have to invent older rows' values. */
export function refuseUnknownMissing(table: string, plan: MissingPlan): void {
  const [column, why] = [...plan.refuse][0] ?? [];
  if (column === undefined) return;
  throw new ChartlogError('usage', `${table}.${column}: rows written before the column was added read values chartlog could not capture (${why}); a restore past that DDL would have to guess them`, {
    hint: `re-read the table from the source with \`chartlog resync --config F --source S --tables ${table}\`, then restore again; restoring to a moment before the DDL works as it is`,
  });
}

/**
 * Rows with renamed columns' values moved to their names and each column they lack filled from
 * the plan (a new object per row that changes).
 */
export function fillMissing(row: Row, plan: MissingPlan): Row {
  let out: Record<string, CellValue> | null = null;
  // Renames: the value moves and the old name goes, so a later column that takes the old name is
  // not filled from it.
  for (const [name, former] of plan.renames) {
    if (name in row) continue;
    const from = former.find((n) => n in (out ?? row));
    if (from === undefined) continue;
    out ??= { ...row };
    out[name] = out[from]!;
    delete out[from];
  }
  for (const [name, value] of plan.fill) {
    if (name in (out ?? row)) continue;
    out ??= { ...row };
    out[name] = value;
  }
  return (out as Row | null) ?? row;
}

/** The rows of a replay, with the plan's values filled in. */
export async function* fillingMissing(rows: AsyncIterable<Row[]>, plan: MissingPlan): AsyncGenerator<Row[]> {
  if (plan.fill.size === 0 && plan.renames.size === 0) {
    yield* rows;
    return;
  }
  for await (const batch of rows) yield batch.map((r) => fillMissing(r, plan));
}
