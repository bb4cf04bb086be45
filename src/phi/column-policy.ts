import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { qualifiedName, type TableSchema } from '../core/table-schema.js';
import { matchedName, NameIndex, type NameMatch, type PhiNamesConfig } from './phi-names.js';

/** What happens to a column classified neither as PHI nor as reviewed public (`phi.unclassified`). */
export type UnclassifiedMode = 'seal' | 'clear';

/**
 * The slice of `phi` configuration (src/config/schema.ts) the policy reads. `unclassified`
 * absent means 'seal': clear must be chosen explicitly, here as in the configuration.
 */
export type PhiPolicyConfig = PhiNamesConfig & { readonly unclassified?: UnclassifiedMode };

/** A column the policy met unclassified (once per policy): names only, never a value. */
export interface UnclassifiedColumn {
  readonly table: string;
  readonly column: string;
  /** 'sealed' under `phi.unclassified: seal`; 'clear' under `clear`; 'key' for a key column left in clear. */
  readonly handling: 'sealed' | 'clear' | 'key';
}

export interface ColumnPolicyOptions {
  /**
   * Told once per table and column the first time a version with it unclassified is compiled.
   * Default: a warning log line naming table and column.
   */
  readonly onUnclassified?: (c: UnclassifiedColumn) => void;
}

/**
 * Which columns of a table version are PHI and get sealed. A column is *classified* when it is
 * named in `phi.columns` (PHI: sealed) or `phi.publicColumns` (reviewed, not PHI: clear).
 * Unclassified columns fail closed without stopping the backup: under `phi.unclassified: seal`
 * (the default) they are sealed like PHI, except key columns (the table version's primary key:
 * PostgreSQL's replica identity), which stay in clear so rows can be keyed and sealed values
 * bound to their row. Under `clear` (chosen explicitly) they pass in clear. Strict tables
 * (`phi.strict`) refuse instead: an unclassified column, key or not, stops the table with a
 * 'phi_policy' error naming the column and the configuration line to add.
 * Each unclassified column is reported once per policy (`onUnclassified`), by name only.
 *
 * Names are matched by the one rule of phi-names.ts: exactly, or else case-insensitively when
 * only one name matches, so `SSN` seals the column `ssn`. The policy sees one table version at
 * a time, so for tables it applies the rule from the table's side: the configured name equal to
 * the table's name, else the single configured name equal to it case-insensitively. Columns are
 * matched from the configuration's side against the version's columns. A configured PHI column
 * that matches several columns differing only in case fails closed ('phi_policy'). The start-time
 * check (`checkPhiNames`) has already refused names that match nothing or are ambiguous.
 *
 * Runs once per table version, not per row: the configured names are indexed here.
 */
export class ColumnPolicy {
  private readonly phi: ConfiguredLists;
  private readonly publicColumns: ConfiguredLists;
  private readonly strict: NameIndex;
  readonly unclassified: UnclassifiedMode;
  private readonly onUnclassified: (c: UnclassifiedColumn) => void;
  /** "table\0column" already reported. */
  private readonly reported = new Set<string>();

  constructor(config: PhiPolicyConfig, options: ColumnPolicyOptions = {}) {
    this.phi = new ConfiguredLists('columns', config.columns);
    this.publicColumns = new ConfiguredLists('publicColumns', config.publicColumns);
    this.strict = new NameIndex(config.strict);
    this.unclassified = config.unclassified ?? 'seal';
    this.onUnclassified = options.onUnclassified ?? logUnclassified;
  }

  isStrict(table: { schema: string; table: string }): boolean {
    // Several strict names equal to the table case-insensitively: each says strict.
    return this.strict.match(qualifiedName(table)).kind !== 'none';
  }

  /** The columns of `table` to seal. Throws ChartlogError('phi_policy') on a strict table's unclassified column. */
  sealedColumns(table: TableSchema): ReadonlySet<string> {
    const name = qualifiedName(table);
    const phi = this.phi.of(name);
    const reviewed = this.publicColumns.of(name);
    const columns = new NameIndex(table.columns.map((c) => c.name));
    const sealed = new Set<string>();
    for (const c of phi?.columns ?? []) {
      const m = columns.match(c);
      if (m.kind === 'ambiguous') throw ambiguousColumnError(name, phi!.key, c, m);
      const col = matchedName(m);
      if (col !== null) sealed.add(col);
    }
    const classified = new Set(sealed);
    for (const c of reviewed?.columns ?? []) {
      const col = matchedName(columns.match(c));
      if (col !== null) classified.add(col);
    }
    const unclassified = table.columns.filter((c) => !classified.has(c.name)).map((c) => c.name);
    if (unclassified.length === 0) return sealed;
    if (this.isStrict(table)) {
      throw unclassifiedError(name, unclassified, phi ?? { key: name, columns: [] }, reviewed ?? { key: name, columns: [] });
    }
    const keys = new Set(table.primaryKey);
    for (const column of unclassified) {
      const handling = keys.has(column) ? 'key' : this.unclassified === 'seal' ? 'sealed' : 'clear';
      if (handling === 'sealed') sealed.add(column);
      const id = `${name}\u0000${column}`;
      if (!this.reported.has(id)) {
        this.reported.add(id);
        this.onUnclassified({ table: name, column, handling });
      }
    }
    return sealed;
  }
}

/** The default report: one warning line per column, names only. */
function logUnclassified(c: UnclassifiedColumn): void {
  const what =
    c.handling === 'sealed'
      ? 'sealed like PHI (phi.unclassified: seal)'
      : c.handling === 'key'
        ? 'left in clear: it is a key column, needed to key the rows'
        : 'stored in clear (phi.unclassified: clear)';
  logger().warn(
    { phiTable: c.table, phiColumn: c.column, handling: c.handling },
    `column ${c.table}.${c.column} is not classified in phi.columns or phi.publicColumns: ${what}; classify it (chartlog phi classify proposes a classification)`,
  );
}

interface ConfiguredEntry {
  /** The table name as written in the configuration. */
  readonly key: string;
  readonly columns: readonly string[];
}

/** One of `phi.columns` / `phi.publicColumns`, indexed by table name. */
class ConfiguredLists {
  private readonly keys: NameIndex;
  private readonly entries: ReadonlyMap<string, readonly string[]>;

  constructor(
    private readonly list: string,
    config: Readonly<Record<string, readonly string[]>>,
  ) {
    this.entries = new Map(Object.entries(config));
    this.keys = new NameIndex(this.entries.keys());
  }

  /** The entry naming `table`, or null. Several entries equal to it only case-insensitively: fails closed. */
  of(table: string): ConfiguredEntry | null {
    const m = this.keys.match(table);
    if (m.kind === 'ambiguous') {
      throw new ChartlogError('phi_policy', `table ${table} is named by several entries of phi.${this.list} that differ only in case (${m.candidates.map((k) => JSON.stringify(k)).join(', ')}); its changes are held back`, {
        hint: `merge them into one entry under phi.${this.list}, then restart`,
      });
    }
    const key = matchedName(m);
    return key === null ? null : { key, columns: this.entries.get(key)! };
  }
}

function ambiguousColumnError(table: string, key: string, configured: string, m: Extract<NameMatch, { kind: 'ambiguous' }>): ChartlogError {
  return new ChartlogError(
    'phi_policy',
    `phi.columns.${JSON.stringify(key)} names column ${JSON.stringify(configured)}, and table ${table} has several columns that differ from it only in case (${m.candidates.map((c) => JSON.stringify(c)).join(', ')}); its changes are held back`,
    { hint: `write the exact name of each PHI column under phi.columns.${JSON.stringify(key)}, then restart` },
  );
}

function yamlList(items: readonly string[]): string {
  return `[${items.map((i) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(i) ? i : JSON.stringify(i))).join(', ')}]`;
}

function unclassifiedError(table: string, columns: string[], phi: ConfiguredEntry, reviewed: ConfiguredEntry): ChartlogError {
  const list = columns.map((c) => `"${c}"`).join(', ');
  const plural = columns.length > 1;
  return new ChartlogError(
    'phi_policy',
    `table ${table} is strict and column${plural ? 's' : ''} ${list} ${plural ? 'are' : 'is'} not classified; its changes are held back until ${plural ? 'they are' : 'it is'}`,
    {
      hint:
        `if ${plural ? 'they hold' : 'it holds'} PHI, set under phi.columns the line \`${phi.key}: ${yamlList([...phi.columns, ...columns])}\`; ` +
        `if not, set under phi.publicColumns the line \`${reviewed.key}: ${yamlList([...reviewed.columns, ...columns])}\`; then restart`,
    },
  );
}
