import { ChartlogError } from '../../src/core/errors.js';
import { Position } from '../../src/core/position.js';
import type { CatalogReading } from './relfile-reading.js';
import { lsnFromHex, lsnHex, type Lsn } from './lsn.js';
import type { ReadingStamp } from './rewrite-watch.js';

/**
 * What the PostgreSQL connector keeps in the archive about the catalog (src/core/catalog-state.ts),
 * so the first catalog check of a start compares with what the last run knew instead of taking
 * the catalog as it finds it: a table rewritten (its relfilenode), renamed (its name under the
 * same OID), dropped, attached or detached (a root's partition list), or a table come into scope
 * while chartlog was stopped is then seen as if it had happened while it ran. Pure: tested alone.
 *
 * Each table keeps the stamp of the newest reading that showed it so (`seenLsn`, `seenUs`): a
 * change found at the next start committed after it, which is where its unproven window begins.
 * The state is saved when what it holds changes, not its stamps.
 *
 * Format 2 adds, per table, the columns of the version last handed to the archive with their
 * `attnum` (`columns`): a column renamed, added, or dropped and added again under its old name
 * while chartlog was stopped is then told from the catalog at start (a rename keeps its attnum,
 * a new column gets a new one). Format 1 (no column lists) is still read: its tables have no
 * `columns`, and the connector re-reads them (it cannot rule out a column change). A state of
 * another format is refused (a newer chartlog wrote it): guessing what it holds could hide a
 * change.
 *
 * Format 3 adds, per table, the enum labels its columns use (`labels`: label OID → [enum type
 * OID, label]), as the connector last accepted them: a label renamed while chartlog was stopped
 * (`ALTER TYPE … RENAME VALUE`, no row event) keeps its OID under a new label, and the first
 * column check of the next start finds it against these (column-watch.ts). Tables of a format 1
 * or 2 state have no `labels`: a rename while that chartlog was stopped cannot be seen.
 */
export interface CatalogMemory {
  readonly tables: readonly (CatalogReading & { readonly seen: ReadingStamp; readonly columns?: VersionColumns; readonly labels?: EnumLabels })[];
  /** The tables in scope at the last scope check, and that check's stamp (table starts). */
  readonly scope: { readonly names: readonly string[]; readonly streamLsn: Lsn; readonly fromUs: bigint } | null;
}

/** A table version's columns, name → pg_attribute.attnum, in column order. */
export type VersionColumns = ReadonlyMap<string, number>;

/** The enum labels a table's columns use: pg_enum OID → [enum type OID, label]. */
export type EnumLabels = ReadonlyMap<string, readonly [number, string]>;

interface StoredTable {
  oid: number;
  table: string;
  relfilenode: string;
  xmin: string;
  /** pg_attribute rows as attnum:xmin (rewrite-watch.ts), absent where not read. */
  attrs?: string;
  partitions?: string[];
  seenLsn: string;
  seenUs: string;
  /** Format 2: [name, attnum] of each column of the version last handed to the archive. */
  columns?: [string, number][];
  /** Format 3: [label OID, enum type OID, label] of each enum label the table's columns use. */
  labels?: [string, number, string][];
}

interface Stored {
  format: 1 | 2 | 3;
  tables: StoredTable[];
  scope: { names: string[]; streamLsn: string; fromUs: string } | null;
}

/** The JSON stored, and the position it is stored under: the oldest stamp in it. */
export function storeCatalogMemory(m: CatalogMemory): { state: Stored; position: Position } {
  const tables = [...m.tables]
    .sort((a, b) => a.oid - b.oid)
    .map((t) => ({
      oid: t.oid,
      table: t.table,
      relfilenode: t.relfilenode,
      xmin: t.xmin,
      ...(t.attrs !== undefined ? { attrs: t.attrs } : {}),
      ...(t.partitions ? { partitions: [...t.partitions] } : {}),
      seenLsn: lsnHex(t.seen.streamLsn),
      seenUs: t.seen.timeUs.toString(),
      ...(t.columns ? { columns: [...t.columns] } : {}),
      ...(t.labels ? { labels: labelList(t.labels) } : {}),
    }));
  const scope = m.scope ? { names: [...m.scope.names].sort(), streamLsn: lsnHex(m.scope.streamLsn), fromUs: m.scope.fromUs.toString() } : null;
  const lsns = [...m.tables.map((t) => t.seen.streamLsn), ...(m.scope ? [m.scope.streamLsn] : [])];
  const oldest = lsns.reduce((a, b) => (b < a ? b : a), lsns[0] ?? 0n);
  return { state: { format: 3, tables, scope }, position: Position.of(lsnHex(oldest)) };
}

/** What decides whether a new state must be saved: everything but the stamps. */
export function catalogMemoryKey(m: CatalogMemory): string {
  const tables = [...m.tables].sort((a, b) => a.oid - b.oid).map((t) => [t.oid, t.table, t.relfilenode, t.attrs ?? null, t.partitions ?? null, t.columns ? [...t.columns] : null, t.labels ? labelList(t.labels) : null]);
  return JSON.stringify([tables, m.scope ? [...m.scope.names].sort() : null]);
}

export function parseCatalogMemory(state: unknown, where: string): CatalogMemory {
  const bad = (why: string): never => {
    throw new ChartlogError('integrity', `catalog state ${where}: ${why}`, {
      hint: 'it was written by a newer chartlog, or damaged: run the chartlog that wrote it, or restore the object from a copy of the archive',
    });
  };
  const s = state as Partial<Stored> | null;
  if (!s || typeof s !== 'object') return bad('not an object');
  if (s.format !== 1 && s.format !== 2 && s.format !== 3) return bad(`format ${String(s.format)} is not 1, 2 or 3`);
  if (!Array.isArray(s.tables)) return bad('no tables list');
  try {
    return {
      tables: s.tables.map((t) => ({
        oid: Number(t.oid),
        table: String(t.table),
        relfilenode: String(t.relfilenode),
        xmin: String(t.xmin),
        ...(s.format !== 1 && typeof t.attrs === 'string' ? { attrs: t.attrs } : {}),
        ...(t.partitions ? { partitions: t.partitions.map(String) } : {}),
        seen: { streamLsn: lsnFromHex(t.seenLsn), timeUs: BigInt(t.seenUs) },
        ...(s.format !== 1 && t.columns ? { columns: parseColumns(t.columns) } : {}),
        ...(s.format === 3 && t.labels ? { labels: parseLabels(t.labels) } : {}),
      })),
      scope: s.scope ? { names: s.scope.names.map(String), streamLsn: lsnFromHex(s.scope.streamLsn), fromUs: BigInt(s.scope.fromUs) } : null,
    };
  } catch (err) {
    return bad((err as Error).message);
  }
}

function parseColumns(list: unknown): VersionColumns {
  if (!Array.isArray(list)) throw new Error('columns is not a list');
  return new Map(
    list.map((c: unknown) => {
      if (!Array.isArray(c) || typeof c[0] !== 'string' || !Number.isInteger(c[1])) throw new Error('a column is not [name, attnum]');
      return [c[0], c[1] as number] as const;
    }),
  );
}

/** Sorted by label OID: the same labels always store (and key) the same. */
function labelList(labels: EnumLabels): [string, number, string][] {
  return [...labels].map(([oid, [typeOid, label]]): [string, number, string] => [oid, typeOid, label]).sort((a, b) => Number(a[0]) - Number(b[0]));
}

function parseLabels(list: unknown): EnumLabels {
  if (!Array.isArray(list)) throw new Error('labels is not a list');
  return new Map(
    list.map((l: unknown) => {
      if (!Array.isArray(l) || typeof l[0] !== 'string' || !Number.isInteger(l[1]) || typeof l[2] !== 'string') throw new Error('a label is not [label OID, type OID, label]');
      return [l[0], [l[1] as number, l[2]]] as const;
    }),
  );
}
