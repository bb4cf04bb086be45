import type { ChangeEvent } from '../core/change-event.js';
import { ChartlogError } from '../core/errors.js';
import { carryForward } from '../phi/row-seal.js';
import { hasRowKey, identityColumns, qualifiedName, UNCHANGED, type CellValue, type Row, type TableSchema } from '../core/table-schema.js';

/**
 * A table's rows as changes are replayed onto it (docs/architecture.md §5): by the columns that
 * identify a row (`identityColumns`: the replica identity index, the primary key, or for tables
 * without either the whole before-image, several identical rows kept as a count). Unchanged
 * values (PostgreSQL TOAST) are filled from the row's previous image. Pure: no I/O.
 */
export class TableState {
  private readonly rows = new Map<string, Row[]>();
  schema: TableSchema;
  /** The last change applied dropped the table (op x): it does not exist at this moment. */
  dropped = false;

  constructor(schema: TableSchema) {
    this.schema = schema;
  }

  get size(): number {
    let n = 0;
    for (const list of this.rows.values()) n += list.length;
    return n;
  }

  /** Every row, ordered by key for stable output. */
  *allRows(): Iterable<Row> {
    for (const k of [...this.rows.keys()].sort()) yield* this.rows.get(k)!;
  }

  /**
   * Every row in the order they were last put, for targets where order means nothing (a
   * database table): no sort of every key and lookup of each (≈ 2 s for a million rows).
   */
  *unorderedRows(): Iterable<Row> {
    for (const list of this.rows.values()) yield* list;
  }

  apply(event: ChangeEvent): void {
    // Rows decode with the table version they were written with; keep the newest for output.
    this.schema = event.schema;
    this.dropped = event.op === 'x';
    switch (event.op) {
      case 'c':
      case 'r':
        this.put(this.required(event.after, event));
        return;
      case 'u': {
        const after = this.required(event.after, event);
        const previous = this.take(this.keyOf(event.before ?? after));
        this.put(fillUnchanged(after, previous, event));
        return;
      }
      case 'd':
        this.take(this.keyOf(this.required(event.before, event)));
        return;
      case 't':
      case 'x':
        this.rows.clear();
        return;
    }
  }

  private put(row: Row): void {
    const key = this.keyOf(row);
    if (hasRowKey(this.schema)) this.rows.set(key, [row]);
    else this.rows.set(key, [...(this.rows.get(key) ?? []), row]);
  }

  /** Removes and returns the row with this key (one of them, for key-less tables). */
  private take(key: string): Row | undefined {
    const list = this.rows.get(key);
    if (!list || list.length === 0) return undefined;
    const row = list.pop();
    if (list.length === 0) this.rows.delete(key);
    return row;
  }

  private keyOf(row: Row): string {
    return identityColumns(this.schema).map((c) => cellKey(row[c])).join('\u0001');
  }

  private required(row: Row | null, event: ChangeEvent): Row {
    if (!row) {
      throw new ChartlogError('integrity', `${qualifiedName(event.schema)}: a '${event.op}' change has no row image`, {
        hint: 'the archive is damaged or the table lacks a primary key and REPLICA IDENTITY FULL',
      });
    }
    return row;
  }
}

function fillUnchanged(after: Row, previous: Row | undefined, event: ChangeEvent): Row {
  if (!Object.values(after).some((v) => v === UNCHANGED)) return after;
  const out: Record<string, CellValue> = { ...after };
  for (const [k, v] of Object.entries(after)) {
    if (v !== UNCHANGED) continue;
    if (!previous || previous[k] === undefined || previous[k] === UNCHANGED) {
      throw new ChartlogError('integrity', `${qualifiedName(event.schema)}.${k}: an unchanged value has no earlier image to come from`, {
        hint: 'restore from a snapshot that holds the row, or set REPLICA IDENTITY FULL on the table',
      });
    }
    // A row seal reference would lose its seal (it stays in the earlier image): carry the seal.
    out[k] = carryForward(previous, k)!;
  }
  return out;
}

/** A value's identity as a map key: type-tagged so 1, 1n and '1' stay apart. */
export function cellKey(v: CellValue | undefined): string {
  if (v === undefined) return 'u';
  if (v === null) return 'n';
  if (v === UNCHANGED) return '~';
  if (typeof v === 'bigint') return `i${v}`;
  if (typeof v === 'number') return Object.is(v, -0) ? 'f-0' : `f${v}`;
  if (typeof v === 'string') return `s${v}`;
  if (typeof v === 'boolean') return v ? 'T' : 'F';
  if (v instanceof Uint8Array) return `b${Buffer.from(v).toString('hex')}`;
  return `a[${(v as readonly CellValue[]).map(cellKey).join(',')}]`;
}
