import type { SampledRow } from '../core/source-connector.js';
import { qualifiedName, type TableSchema, type ValueKind } from '../core/table-schema.js';
import { countValueDetections, detectColumnName, PHI_DETECTORS, valueVerdict, type DetectorCounts, type PhiDetector } from './phi-detectors.js';

/**
 * `chartlog phi classify` without I/O: given a table version and a few sampled rows, which
 * columns look like PHI (by name or by values, phi-detectors.ts), rendered as YAML to paste under
 * `phi:`. A finding holds names and counts only; the sampled values are read here and dropped.
 */

/** What the classification proposes for a column. */
export type Proposal = 'phi' | 'public' | 'key-flagged';

export interface ColumnFinding {
  readonly column: string;
  /** A key column (primary key / replica identity): stays in clear unless classified as PHI. */
  readonly key: boolean;
  /** Detectors the column's name triggers. */
  readonly byName: readonly PhiDetector[];
  /** Non-empty sampled values looked at (0 for kinds whose values are not searched). */
  readonly sampled: number;
  /** How many sampled values each value detector matched. */
  readonly counts: DetectorCounts;
  /** Value detectors matched by enough of the sample (valueVerdict). */
  readonly byValue: readonly PhiDetector[];
  /**
   * phi: looks like PHI; public: nothing matched; key-flagged: a key column that looks like PHI,
   * left to a person (sealing a key column has costs; leaving it clear keeps the PHI in clear).
   */
  readonly proposal: Proposal;
}

export interface TableFinding {
  /** "schema.table". */
  readonly table: string;
  readonly sampledRows: number;
  readonly columns: readonly ColumnFinding[];
}

/** Kinds whose values can spell an identifier or prose; others are judged by name only. */
const TEXT_KINDS: ReadonlySet<ValueKind> = new Set<ValueKind>(['string', 'text', 'json', 'enum']);

/** Classifies one table from its catalog entry and sampled rows (held only for this call). */
export function classifyTable(table: TableSchema, rows: readonly SampledRow[]): TableFinding {
  const name = qualifiedName(table);
  const keys = new Set(table.primaryKey);
  const columns = table.columns.map((c): ColumnFinding => {
    const byName = detectColumnName(c.name, name);
    const { sampled, counts } = TEXT_KINDS.has(c.type.kind) ? countValueDetections(rows.map((r) => r[c.name] ?? null)) : { sampled: 0, counts: {} };
    const byValue = valueVerdict(sampled, counts);
    const looksPhi = byName.length > 0 || byValue.length > 0;
    const key = keys.has(c.name);
    return { column: c.name, key, byName, sampled, counts, byValue, proposal: !looksPhi ? 'public' : key ? 'key-flagged' : 'phi' };
  });
  return { table: name, sampledRows: rows.length, columns };
}

/** Per detector, how many columns it marked (by name or values) across the findings. */
export function detectorTotals(tables: readonly TableFinding[]): Partial<Record<PhiDetector, number>> {
  const out: Partial<Record<PhiDetector, number>> = {};
  for (const t of tables) {
    for (const c of t.columns) {
      for (const d of new Set([...c.byName, ...c.byValue])) out[d] = (out[d] ?? 0) + 1;
    }
  }
  return out;
}

const YAML_RESERVED = /^(true|false|yes|no|on|off|y|n|null|~)$/i;

/** A name as a YAML scalar: plain when it is safe, double-quoted (JSON) otherwise. */
export function yamlName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.$]*$/.test(name) && !YAML_RESERVED.test(name) ? name : JSON.stringify(name);
}

/** Why a column looks like PHI, for a YAML comment: detectors and counts, never a value. */
function why(c: ColumnFinding): string {
  const parts: string[] = [];
  for (const d of PHI_DETECTORS) {
    const inName = c.byName.includes(d);
    const n = c.counts[d] ?? 0;
    if (!inName && n === 0) continue;
    const bits = [inName ? 'name' : '', n > 0 ? `values ${n}/${c.sampled}` : ''].filter((b) => b !== '');
    parts.push(`${d} (${bits.join(', ')})`);
  }
  return parts.join('; ');
}

export interface ClassifyHeader {
  /** Source names and types, e.g. "clinic (postgres)". */
  readonly sources: readonly string[];
  readonly sample: number;
}

/**
 * The proposal as YAML for `phi.columns` and `phi.publicColumns`, with a comment per column
 * saying which detectors matched and how many sampled values did: names and counts only.
 * Key columns that look like PHI are flagged in comments and listed in neither.
 */
export function renderClassificationYaml(tables: readonly TableFinding[], header: ClassifyHeader): string {
  const lines: string[] = [];
  const totals = detectorTotals(tables);
  const rows = tables.reduce((n, t) => n + t.sampledRows, 0);
  lines.push(`# chartlog phi classify: ${header.sources.join(', ')}; ${tables.length} table${tables.length === 1 ? '' : 's'}, ${rows} sampled row${rows === 1 ? '' : 's'} (at most ${header.sample} per table).`);
  lines.push('# A proposal to review, then paste under `phi:`. Sampled values were kept in memory only: this');
  lines.push('# shows column names and counts of matches, never a value.');
  lines.push(`# Columns per detector: ${PHI_DETECTORS.map((d) => `${d} ${totals[d] ?? 0}`).join(', ')}.`);
  const flagged = tables.flatMap((t) => t.columns.filter((c) => c.proposal === 'key-flagged').map((c) => `${t.table}.${c.column}`));
  if (flagged.length > 0) {
    lines.push(`# FLAGGED: key column${flagged.length > 1 ? 's' : ''} that look${flagged.length > 1 ? '' : 's'} like PHI: ${flagged.join(', ')} (see the comments under columns).`);
  }
  lines.push('columns:');
  for (const t of tables) {
    const phi = t.columns.filter((c) => c.proposal === 'phi');
    const keyFlagged = t.columns.filter((c) => c.proposal === 'key-flagged');
    lines.push(`  ${yamlName(t.table)}:${phi.length === 0 ? ' []' : ''}`);
    for (const c of phi) lines.push(`    - ${yamlName(c.column)}  # ${why(c)}`);
    for (const c of keyFlagged) {
      lines.push(`    # - ${yamlName(c.column)}  # FLAGGED key column: ${why(c)}. A key stays in clear unless listed here;`);
      lines.push('    #   sealing it costs Kafka partition keys and snapshot synthesis without the keyring. Decide, then uncomment or leave.');
    }
  }
  lines.push('publicColumns:');
  for (const t of tables) {
    const pub = t.columns.filter((c) => c.proposal === 'public');
    lines.push(`  ${yamlName(t.table)}: [${pub.map((c) => yamlName(c.column)).join(', ')}]`);
  }
  return `${lines.join('\n')}\n`;
}

/** The findings for `--json`: names, detectors and counts. */
export function classificationJson(tables: readonly TableFinding[], header: ClassifyHeader): unknown {
  return {
    sources: header.sources,
    sample: header.sample,
    detectors: detectorTotals(tables),
    columns: Object.fromEntries(tables.map((t) => [t.table, t.columns.filter((c) => c.proposal === 'phi').map((c) => c.column)])),
    publicColumns: Object.fromEntries(tables.map((t) => [t.table, t.columns.filter((c) => c.proposal === 'public').map((c) => c.column)])),
    flaggedKeys: tables.flatMap((t) => t.columns.filter((c) => c.proposal === 'key-flagged').map((c) => ({ table: t.table, column: c.column }))),
    tables: tables.map((t) => ({
      table: t.table,
      sampledRows: t.sampledRows,
      columns: t.columns.map((c) => ({ column: c.column, key: c.key, proposal: c.proposal, byName: c.byName, byValue: c.byValue, sampled: c.sampled, counts: c.counts })),
    })),
  };
}
