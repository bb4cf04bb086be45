import { ChartlogError } from '../core/errors.js';
import { qualifiedName, type TableSchema } from '../core/table-schema.js';

/** The slice of `phi` configuration (src/config/schema.ts) the policy reads. */
export interface PhiPolicyConfig {
  readonly columns: Readonly<Record<string, readonly string[]>>;
  readonly strict: readonly string[];
  readonly publicColumns: Readonly<Record<string, readonly string[]>>;
}

/**
 * Which columns of a table version are PHI and get sealed. Strict tables fail closed: a column
 * classified neither as PHI (`phi.columns`) nor as reviewed non-PHI (`phi.publicColumns`) stops
 * the table with a 'phi_policy' error naming the column and the configuration line to add.
 * On other tables unclassified columns pass as non-PHI.
 */
export class ColumnPolicy {
  private readonly phi: ReadonlyMap<string, ReadonlySet<string>>;
  private readonly publicColumns: ReadonlyMap<string, ReadonlySet<string>>;
  private readonly strict: ReadonlySet<string>;

  constructor(config: PhiPolicyConfig) {
    this.phi = new Map(Object.entries(config.columns).map(([t, cols]) => [t, new Set(cols)]));
    this.publicColumns = new Map(Object.entries(config.publicColumns).map(([t, cols]) => [t, new Set(cols)]));
    this.strict = new Set(config.strict);
  }

  isStrict(table: { schema: string; table: string }): boolean {
    return this.strict.has(qualifiedName(table));
  }

  /** The columns of `table` to seal. Throws ChartlogError('phi_policy') on a strict table's unclassified column. */
  sealedColumns(table: TableSchema): ReadonlySet<string> {
    const name = qualifiedName(table);
    const phi = this.phi.get(name) ?? new Set<string>();
    const sealed = new Set(table.columns.filter((c) => phi.has(c.name)).map((c) => c.name));
    if (this.strict.has(name)) {
      const reviewed = this.publicColumns.get(name) ?? new Set<string>();
      const unclassified = table.columns.filter((c) => !phi.has(c.name) && !reviewed.has(c.name)).map((c) => c.name);
      if (unclassified.length > 0) throw unclassifiedError(name, unclassified, [...phi], [...reviewed]);
    }
    return sealed;
  }
}

function yamlList(items: readonly string[]): string {
  return `[${items.map((i) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(i) ? i : JSON.stringify(i))).join(', ')}]`;
}

function unclassifiedError(table: string, columns: string[], phi: string[], reviewed: string[]): ChartlogError {
  const list = columns.map((c) => `"${c}"`).join(', ');
  const plural = columns.length > 1;
  return new ChartlogError(
    'phi_policy',
    `table ${table} is strict and column${plural ? 's' : ''} ${list} ${plural ? 'are' : 'is'} not classified; its changes are held back until ${plural ? 'they are' : 'it is'}`,
    {
      hint:
        `if ${plural ? 'they hold' : 'it holds'} PHI, set under phi.columns the line \`${table}: ${yamlList([...phi, ...columns])}\`; ` +
        `if not, set under phi.publicColumns the line \`${table}: ${yamlList([...reviewed, ...columns])}\`; then restart`,
    },
  );
}
