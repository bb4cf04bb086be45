import { ChartlogError } from '../core/errors.js';
import { qualifiedName, type TableSchema } from '../core/table-schema.js';

/**
 * How a name written in the configuration meets a name of the database's catalog: the one rule
 * for table names ("schema.table") and column names, whatever the engine
 * (docs/architecture.md §3).
 *
 * - A configured name matches a catalog name that is exactly equal to it.
 * - Otherwise it matches the single catalog name equal to it case-insensitively: PostgreSQL
 *   folds unquoted identifiers to lower case (`SSN` in SQL is the column `ssn`), and MySQL and
 *   MariaDB compare column names case-insensitively.
 * - Two or more case-insensitive candidates and no exact one: no match, and the result says it
 *   is ambiguous (PostgreSQL's quoted identifiers can differ only in case).
 */
export type NameMatch =
  | { readonly kind: 'exact'; readonly name: string }
  | { readonly kind: 'folded'; readonly name: string }
  | { readonly kind: 'ambiguous'; readonly candidates: readonly string[] }
  | { readonly kind: 'none' };

/** The case-insensitive form names are compared in. */
export function foldName(name: string): string {
  return name.toLowerCase();
}

/** A set of names prepared once, so that matching a configured name costs two map lookups. */
export class NameIndex {
  readonly names: readonly string[];
  private readonly exact: ReadonlySet<string>;
  private readonly folded: ReadonlyMap<string, readonly string[]>;

  constructor(names: Iterable<string>) {
    this.names = [...new Set(names)];
    this.exact = new Set(this.names);
    const folded = new Map<string, string[]>();
    for (const n of this.names) {
      const f = foldName(n);
      const list = folded.get(f);
      if (list) list.push(n);
      else folded.set(f, [n]);
    }
    this.folded = folded;
  }

  /** The rule above: which of these names `configured` means. */
  match(configured: string): NameMatch {
    if (this.exact.has(configured)) return { kind: 'exact', name: configured };
    const candidates = this.folded.get(foldName(configured));
    if (!candidates) return { kind: 'none' };
    if (candidates.length === 1) return { kind: 'folded', name: candidates[0]! };
    return { kind: 'ambiguous', candidates };
  }

  /** The names other than `name` itself that equal it case-insensitively. */
  caseVariantsOf(name: string): readonly string[] {
    return (this.folded.get(foldName(name)) ?? []).filter((n) => n !== name);
  }
}

/** The name of a match, or null when it matched nothing or too much. */
export function matchedName(m: NameMatch): string | null {
  return m.kind === 'exact' || m.kind === 'folded' ? m.name : null;
}

/** Levenshtein distance (insertions, deletions, substitutions), two rows of memory. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let cur = new Array<number>(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/**
 * The candidate closest to `name` by edit distance, case ignored (ties: the first in order),
 * or null when there is none close enough to be a plausible misspelling: at most half the
 * name's length, and at least 2 edits allowed.
 */
export function closestName(name: string, candidates: Iterable<string>): string | null {
  const want = foldName(name);
  const limit = Math.max(2, Math.floor(want.length / 2));
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(want, foldName(c));
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : null;
}

// ---------------------------------------------------------------------------------------------
// The start-time check

/** The slice of `phi` configuration (src/config/schema.ts) the check reads. */
export interface PhiNamesConfig {
  readonly columns: Readonly<Record<string, readonly string[]>>;
  readonly strict: readonly string[];
  readonly publicColumns: Readonly<Record<string, readonly string[]>>;
}

/** A configured source as far as the check needs it. */
export interface PhiNamesSource {
  readonly name: string;
  /** `sources[].tables`; absent: the source captures every table its user can read. */
  readonly tables?: readonly string[] | undefined;
}

export interface PhiNameCheck {
  readonly phi: PhiNamesConfig;
  /** The source being checked. */
  readonly source: PhiNamesSource;
  /** The tables it captures, as its catalog has them now (`SourceConnector.tables()`). */
  readonly captured: readonly TableSchema[];
  /** Every other configured source (none when the configuration has one). */
  readonly others?: readonly PhiNamesSource[];
  /** The captured tables of other sources, by source name, for those `sourcesToConsult` named. */
  readonly othersCaptured?: ReadonlyMap<string, readonly TableSchema[]>;
}

/** One configured table name: where it is in the configuration, and its columns there. */
interface ConfiguredTable {
  /** 'columns' | 'publicColumns' | 'strict'. */
  readonly list: 'columns' | 'publicColumns' | 'strict';
  /** The configuration path of the name, e.g. `phi.columns."public.patients"` or `phi.strict[0]`. */
  readonly path: string;
  readonly name: string;
  /** Column names (phi.columns and phi.publicColumns; none for phi.strict). */
  readonly columns: readonly string[];
}

function configuredTables(phi: PhiNamesConfig): ConfiguredTable[] {
  const out: ConfiguredTable[] = [];
  for (const [name, columns] of Object.entries(phi.columns)) out.push({ list: 'columns', path: `phi.columns.${JSON.stringify(name)}`, name, columns });
  for (const [name, columns] of Object.entries(phi.publicColumns)) out.push({ list: 'publicColumns', path: `phi.publicColumns.${JSON.stringify(name)}`, name, columns });
  phi.strict.forEach((name, i) => out.push({ list: 'strict', path: `phi.strict[${i}]`, name, columns: [] }));
  return out;
}

/** A path and the value written there, as shown in messages: `phi.strict[0] = "public.patinets"`. */
function at(t: ConfiguredTable): string {
  return t.list === 'strict' ? `${t.path} = ${JSON.stringify(t.name)}` : t.path;
}

/**
 * Which table names no source is known to hold without reading another source's catalog: names
 * that this source does not capture, that no source lists in `sources[].tables`, while other
 * sources capture every table. Returns those other sources' names (the caller reads their
 * catalogs and passes them as `othersCaptured`); empty in every other case.
 */
export function sourcesToConsult(check: Omit<PhiNameCheck, 'othersCaptured'>): string[] {
  const others = check.others ?? [];
  const everything = others.filter((s) => s.tables === undefined);
  if (everything.length === 0) return [];
  const here = new NameIndex(check.captured.map(qualifiedName));
  for (const t of configuredTables(check.phi)) {
    if (here.match(t.name).kind !== 'none') continue;
    if (listedBy(t.name, [check.source, ...others]).length > 0) continue;
    return everything.map((s) => s.name);
  }
  return [];
}

/** The sources whose `sources[].tables` list names `table` (by the rule). */
function listedBy(table: string, sources: readonly PhiNamesSource[]): PhiNamesSource[] {
  return sources.filter((s) => s.tables !== undefined && matchedName(new NameIndex(s.tables).match(table)) !== null);
}

interface Problem {
  readonly what: string;
  readonly fix: string;
}

export interface PhiNameCheckResult {
  /**
   * Column names of strict tables that match no column yet, accepted because every column the
   * table has is classified (see checkPhiNames); one line each, for a warning.
   */
  readonly pending: readonly string[];
}

/**
 * Every table and column named in `phi.columns`, `phi.publicColumns` and `phi.strict` must be one
 * the source captures: a PHI name that matches nothing seals nothing, and a misspelt or
 * wrongly-cased name would let the column reach the archive in clear. Throws one
 * ChartlogError('config') (exit 2) listing every problem, each with its configuration path,
 * and a hint with the closest existing name. Names are identifiers, never row values.
 *
 * Several sources. `phi.*` is global, keyed by "schema.table", and says nothing of which source
 * a table belongs to; only `sources[].tables` does. So, for a configured table name:
 * - found in this source's captured tables: its configured columns must all exist in it (a PHI
 *   column configured for a table must exist wherever that table is captured);
 * - not found here, and the configuration has one source, or this source lists it in
 *   `sources[].tables`: an error (misspelt, or not captured);
 * - not found here but another source lists it: that source checks it when it starts;
 * - listed by no source, while other sources capture every table: it must be in at least one of
 *   their catalogs (`sourcesToConsult` names them, the caller reads them), or it is an error;
 * - listed by no source and no other source captures every table: an error.
 * Hence a name that no configured source captures always stops the start, with one source or
 * several, and a source never waits on a check of another.
 *
 * One exception, for columns of strict tables (`phi.strict`): a column name that matches no
 * column is accepted, and returned in `pending`, when every column the table has is classified
 * (in `phi.columns` or `phi.publicColumns`). A misspelling there would have left the real column
 * unclassified, and a strict table stops on an unclassified column anyway, so such a name
 * cannot let PHI through; it is how a column is classified before the migration that adds it.
 * When the strict table has an unclassified column, or the name is a PHI name close to a column
 * classified as not PHI (in `phi.publicColumns`: the misspelling of a column wrongly reviewed),
 * the unmatched name is an error like any other.
 */
export function checkPhiNames(check: PhiNameCheck): PhiNameCheckResult {
  const { phi, source, captured } = check;
  const others = check.others ?? [];
  const problems: Problem[] = [];
  const pending: string[] = [];
  const tables = new Map(captured.map((t) => [qualifiedName(t), t]));
  const here = new NameIndex(tables.keys());
  const configured = configuredTables(phi);
  const exactNames = new Map<string, Set<string>>(); // list → names written exactly as a captured table
  const resolvedBy = new Map<string, ConfiguredTable[]>(); // list + captured table → configured names meaning it
  const resolved: { t: ConfiguredTable; table: TableSchema; name: string }[] = [];

  for (const t of configured) {
    const m = here.match(t.name);
    if (m.kind === 'ambiguous') {
      problems.push({
        what: `${at(t)}: source ${source.name} captures several tables that differ from "${t.name}" only in case (${quoteAll(m.candidates)}) and none named exactly so`,
        fix: `${t.path}: write the exact name of the table meant, one entry per table (${quoteAll(m.candidates)})`,
      });
      continue;
    }
    if (m.kind === 'none') {
      const p = missingTable(t, check, here, others);
      if (p) problems.push(p);
      continue;
    }
    const key = `${t.list}\u0000${m.name}`;
    resolvedBy.set(key, [...(resolvedBy.get(key) ?? []), t]);
    if (m.kind === 'exact') {
      const set = exactNames.get(t.list) ?? new Set<string>();
      set.add(m.name);
      exactNames.set(t.list, set);
    }
    resolved.push({ t, table: tables.get(m.name)!, name: m.name });
  }

  // Strict tables and the columns of each that the configuration classifies now.
  const strict = new Set(resolved.filter((r) => r.t.list === 'strict').map((r) => r.name));
  const indexes = new Map<string, NameIndex>();
  const indexOf = (r: { table: TableSchema; name: string }): NameIndex => {
    let idx = indexes.get(r.name);
    if (!idx) {
      idx = new NameIndex(r.table.columns.map((c) => c.name));
      indexes.set(r.name, idx);
    }
    return idx;
  };
  const classified = new Map<string, Set<string>>();
  for (const r of resolved) {
    const set = classified.get(r.name) ?? new Set<string>();
    for (const c of r.t.columns) {
      const col = matchedName(indexOf(r).match(c));
      if (col !== null) set.add(col);
    }
    classified.set(r.name, set);
  }
  const unclassifiedOf = (r: { table: TableSchema; name: string }): string[] =>
    r.table.columns.map((c) => c.name).filter((c) => !classified.get(r.name)?.has(c));
  const sealed = new Map<string, Set<string>>();
  for (const r of resolved) {
    if (r.t.list !== 'columns') continue;
    const set = sealed.get(r.name) ?? new Set<string>();
    for (const c of r.t.columns) {
      const col = matchedName(indexOf(r).match(c));
      if (col !== null) set.add(col);
    }
    sealed.set(r.name, set);
  }

  for (const r of resolved) {
    const { t, name } = r;
    const columns = indexOf(r);
    t.columns.forEach((c, i) => {
      const path = `${t.path}[${i}]`;
      const cm = columns.match(c);
      if (cm.kind === 'none') {
        const unclassified = strict.has(name) ? unclassifiedOf(r) : [];
        // A PHI name close to a column classified as not PHI: the misspelling of a column
        // wrongly listed in phi.publicColumns, which would pass in clear.
        const reviewedNear =
          t.list === 'columns' ? closestName(c, columns.names.filter((col) => !sealed.get(name)?.has(col))) : null;
        if (strict.has(name) && unclassified.length === 0 && reviewedNear === null) {
          // A strict table whose every column is classified: a misspelling would have left the
          // real column unclassified, so this names a column still to come (classified before
          // the migration that adds it, so the table does not stop) and cannot let PHI through.
          pending.push(`${path} = ${JSON.stringify(c)}: strict table ${name} has no column ${JSON.stringify(c)} yet; the name applies once it exists`);
          return;
        }
        const near = closestName(c, unclassified) ?? reviewedNear ?? closestName(c, columns.names);
        const note =
          unclassified.length > 0
            ? ` (and ${unclassified.length > 1 ? 'columns' : 'column'} ${quoteAll(unclassified)} of this strict table ${unclassified.length > 1 ? 'are' : 'is'} not classified)`
            : strict.has(name) && reviewedNear !== null
              ? ` (column ${JSON.stringify(reviewedNear)}, close to it, is classified as not PHI)`
              : '';
        problems.push({
          what: `${path} = ${JSON.stringify(c)}: table ${name} of source ${source.name} has no column ${JSON.stringify(c)}${note}`,
          fix: near
            ? `${path}: did you mean ${JSON.stringify(near)}? (the closest column of ${name})`
            : `${path}: no column of ${name} is close to it; its columns are ${listNames(columns.names)}`,
        });
      } else if (cm.kind === 'ambiguous') {
        problems.push({
          what: `${path} = ${JSON.stringify(c)}: table ${name} has several columns that differ from it only in case (${quoteAll(cm.candidates)}) and none named exactly so`,
          fix: `${path}: write the exact name of each column meant (${quoteAll(cm.candidates)})`,
        });
      }
    });
  }

  // Two spellings of one table in one list: which one's columns would apply?
  for (const names of resolvedBy.values()) {
    const spellings = [...new Set(names.map((n) => n.name))];
    if (spellings.length < 2) continue;
    const table = matchedName(here.match(names[0]!.name)) ?? names[0]!.name;
    problems.push({
      what: `${names.map(at).join(' and ')} name the same table ${table}`,
      fix: `merge them into one entry ${table}`,
    });
  }

  // A publicColumns name written exactly as one table also equals other captured tables
  // case-insensitively. The rule gives it to the exact one only, but ColumnPolicy sees one table
  // at a time and would take it for the others too, classifying their columns of those names as
  // reviewed (docs/architecture.md §3): each needs an entry of its own.
  for (const t of configured) {
    if (t.list !== 'publicColumns') continue;
    const m = here.match(t.name);
    if (m.kind !== 'exact') continue;
    const unnamed = here.caseVariantsOf(m.name).filter((v) => !exactNames.get(t.list)?.has(v));
    if (unnamed.length === 0) continue;
    problems.push({
      what: `${at(t)} names table ${m.name}, and source ${source.name} also captures ${unnamed.join(', ')}, which differ${unnamed.length > 1 ? '' : 's'} from it only in case`,
      fix: `give ${unnamed.join(', ')} ${unnamed.length > 1 ? 'entries' : 'an entry'} of ${unnamed.length > 1 ? 'their' : 'its'} own under phi.publicColumns (an empty list if none of its columns is reviewed)`,
    });
  }

  if (problems.length === 0) return { pending };
  const lines = problems.map((p) => `  - ${p.what}`).join('\n');
  throw new ChartlogError(
    'config',
    `the PHI configuration does not match the tables source ${source.name} captures (${problems.length} problem${problems.length === 1 ? '' : 's'}; a PHI name that matches nothing seals nothing, so nothing is read or written until it is fixed):\n${lines}`,
    { hint: problems.map((p) => p.fix).join('\n  fix: ') },
  );
}

/** A configured table name this source does not capture: a problem, or null when another source holds it. */
function missingTable(t: ConfiguredTable, check: PhiNameCheck, here: NameIndex, others: readonly PhiNamesSource[]): Problem | null {
  const { source } = check;
  const listedHere = listedBy(t.name, [source]).length > 0;
  let searched = `source ${source.name}`;
  let candidates: string[] = [...here.names];
  if (others.length > 0 && !listedHere) {
    if (listedBy(t.name, others).length > 0) return null; // that source checks it when it starts
    const everything = others.filter((s) => s.tables === undefined);
    for (const s of everything) {
      const theirs = check.othersCaptured?.get(s.name);
      if (!theirs) continue;
      const names = theirs.map(qualifiedName);
      if (matchedName(new NameIndex(names).match(t.name)) !== null) return null;
      candidates = [...candidates, ...names];
    }
    searched = `any configured source (${[source, ...others].map((s) => s.name).join(', ')})`;
  }
  const near = closestName(t.name, candidates);
  const what = listedHere
    ? `${at(t)}: source ${source.name} lists ${t.name} in sources[].tables, but captures no table of that name`
    : `${at(t)}: no table ${t.name} is captured by ${searched}`;
  const spelling = near ? `did you mean ${JSON.stringify(near)}?` : `no captured table is close to it (${listNames(candidates)}).`;
  const capture = listedHere ? 'Check that the table exists and the source user can read it' : 'If it is spelt right, add it to sources[].tables of the source that holds it';
  return { what, fix: `${t.path}: ${spelling} ${capture}` };
}

function quoteAll(names: readonly string[]): string {
  return names.map((n) => JSON.stringify(n)).join(', ');
}

/** Names for a hint, at most 20. */
function listNames(names: readonly string[]): string {
  if (names.length === 0) return 'none';
  const shown = names.slice(0, 20).join(', ');
  return names.length > 20 ? `${shown}, … (${names.length} in all)` : shown;
}
