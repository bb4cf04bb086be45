import { freezeTableSchema, type TableSchema } from '../../src/core/table-schema.js';

/**
 * RENAME COLUMN on PostgreSQL. A relation message gives column names only; the catalog gives
 * each name's `attnum`, which a rename keeps. A column of the new message whose attnum the
 * connector knew under another name — a name of the previous version that the message no
 * longer has — is that column renamed. Pure: the attnums are read by the caller.
 *
 * Returns the previous version as it reads after the renames: each renamed column under its new
 * name with its earlier names (most recent first) in `renamedFrom`, everything else as it was
 * (a column keeps what rows older than it read, type-catalog.ts missingOf). Unchanged when
 * nothing was renamed. `priorAttnums`: name → attnum, as known when the previous version was
 * described (names of dropped columns may stay in it); `attnumsNow`: the catalog now.
 */
export function renamedPrevious(
  previous: TableSchema,
  columnsNow: readonly string[],
  priorAttnums: ReadonlyMap<string, number>,
  attnumsNow: ReadonlyMap<string, number>,
): TableSchema {
  const now = new Set(columnsNow);
  const before = new Set(previous.columns.map((c) => c.name));
  const byAttnum = new Map<number, string>();
  for (const [name, attnum] of priorAttnums) if (before.has(name) && !now.has(name)) byAttnum.set(attnum, name);
  const renames = new Map<string, string>(); // old → new
  for (const name of columnsNow) {
    if (before.has(name)) continue;
    const attnum = attnumsNow.get(name);
    const old = attnum === undefined ? undefined : byAttnum.get(attnum);
    if (old !== undefined) renames.set(old, name);
  }
  if (renames.size === 0) return previous;
  const rename = (n: string): string => renames.get(n) ?? n;
  return freezeTableSchema({
    ...previous,
    columns: previous.columns.map((c) => {
      const to = renames.get(c.name);
      return to === undefined ? { ...c } : { ...c, name: to, renamedFrom: [c.name, ...(c.renamedFrom ?? [])] };
    }),
    primaryKey: previous.primaryKey.map(rename),
    ...(previous.replicaIdentity ? { replicaIdentity: previous.replicaIdentity.map(rename) } : {}),
  });
}

/** `described` with each column's `renamedFrom` taken from the (renamed) previous version. */
export function withRenames(described: TableSchema, previous: TableSchema | undefined): TableSchema {
  if (!previous || !previous.columns.some((c) => c.renamedFrom)) return described;
  const from = new Map(previous.columns.map((c) => [c.name, c.renamedFrom]));
  if (!described.columns.some((c) => from.get(c.name))) return described;
  return freezeTableSchema({
    ...described,
    columns: described.columns.map((c) => {
      const r = from.get(c.name);
      return r ? { ...c, renamedFrom: r } : { ...c };
    }),
  });
}

/**
 * Column changes made while chartlog was stopped (catalog-memory.ts, format 2). `version`: the
 * table as the catalog has it at start; `saved`: the columns (name → attnum) of the version last
 * handed to the archive; `now`: the catalog's name → attnum. Returns the version the archive
 * last had, as near as the catalog can give it, for the first relation message to be compared
 * with as the running stream compares with its previous one: each column under its saved name
 * (its attnum kept: a rename, found by renamedPrevious), a column with an attnum the saved version
 * lacks left out (added since: what older rows read is decided as for any added column), and the
 * names whose attnum changed (`replaced`: dropped and added again under the same name, so older
 * rows hold the old column's values under the new column's name, which no rename explains).
 */
export function versionBeforeStop(
  version: TableSchema,
  saved: ReadonlyMap<string, number>,
  now: ReadonlyMap<string, number>,
): { previous: TableSchema; replaced: string[] } {
  const savedName = new Map([...saved].map(([name, attnum]) => [attnum, name]));
  const replaced = replacedColumns(saved, now);
  const back = new Map<string, string>(); // name now → saved name
  for (const c of version.columns) {
    const attnum = now.get(c.name);
    const old = attnum === undefined ? undefined : savedName.get(attnum);
    if (old !== undefined) back.set(c.name, old);
  }
  const keys = (names: readonly string[]): string[] => names.filter((n) => back.has(n)).map((n) => back.get(n)!);
  const previous = freezeTableSchema({
    ...version,
    columns: version.columns.filter((c) => back.has(c.name)).map((c) => ({ ...c, name: back.get(c.name)! })),
    primaryKey: keys(version.primaryKey),
    ...(version.replicaIdentity ? { replicaIdentity: keys(version.replicaIdentity) } : {}),
  });
  return { previous, replaced };
}

/**
 * Names of `known` (name → attnum) that the catalog `now` has at another attnum: each dropped (or
 * renamed away) and added again under its name, so rows older than the new column hold another
 * column's values under it. renamedPrevious does not follow a name taken again: the table is
 * re-read.
 */
export function replacedColumns(known: ReadonlyMap<string, number>, now: ReadonlyMap<string, number>): string[] {
  return [...known].filter(([name, attnum]) => now.has(name) && now.get(name) !== attnum).map(([name]) => name);
}
