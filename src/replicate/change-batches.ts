import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { UNCHANGED, hasRowKey, identityColumns, type CellValue, type Row } from '../core/table-schema.js';
import type { ReplicaChange } from './replica-target.js';

/**
 * A run of consecutive changes of one source transaction that a target applies as ONE statement:
 * - `insert`: inserts (c, r) of one table with the same columns;
 * - `update`: updates of one keyed table setting the same columns, each found by its key;
 * - `delete`: deletes of one keyed table, each found by its key;
 * - `single`: one change applied alone (TRUNCATE, a dropped table, an update or delete of a table
 *   without a key, found by its whole before-image).
 * Applying the batches in order equals applying the changes one by one: a batch never holds two
 * changes of the same row (a change whose old or new key an earlier change of the batch touched
 * starts a new batch), so the order inside a statement cannot matter.
 */
export type ChangeBatch =
  | { kind: 'insert'; table: string; columns: readonly string[]; changes: readonly ReplicaChange[] }
  | { kind: 'update'; table: string; key: readonly string[]; columns: readonly string[]; changes: readonly ReplicaChange[] }
  | { kind: 'delete'; table: string; key: readonly string[]; changes: readonly ReplicaChange[] }
  | { kind: 'single'; table: string; changes: readonly [ReplicaChange] };

/** Rows per batch at most: keeps one statement's text and plan small. */
export const BATCH_ROWS = 1000;

/**
 * What batching needs of a table version, worked out once per schema object (every change of a
 * version shares it) rather than per change: replicas batch tens of thousands of rows a second.
 */
interface VersionFacts {
  keyed: boolean;
  key: readonly string[];
  names: readonly string[];
  /** The version's key and columns as text: a batch never spans two shapes. */
  shape: string;
}
const versions = new WeakMap<object, VersionFacts>();
function factsOf(schema: ReplicaChange['schema']): VersionFacts {
  let f = versions.get(schema);
  if (f === undefined) {
    const keyed = hasRowKey(schema);
    const key = keyed ? identityColumns(schema) : [];
    f = { keyed, key, names: schema.columns.map((c) => c.name), shape: JSON.stringify([key, schema.columns.map((c) => [c.name, c.type])]) };
    versions.set(schema, f);
  }
  return f;
}

/** A PHI column set as text, cached per set object (changes of one record version share it). */
const phiTexts = new WeakMap<object, string>();
function phiText(phi: ReadonlySet<string>): string {
  let t = phiTexts.get(phi);
  if (t === undefined) {
    t = [...phi].join('\u0001');
    phiTexts.set(phi, t);
  }
  return t;
}

/** The columns a row image carries: `names` itself (the same array) when it carries every one. */
function present(row: Row, names: readonly string[]): readonly string[] {
  for (const c of names) if (row[c] === undefined || row[c] === UNCHANGED) return names.filter((n) => row[n] !== undefined && row[n] !== UNCHANGED);
  return names;
}
const usable = (row: Row | null, c: string) => row !== null && row[c] !== undefined && row[c] !== UNCHANGED;

/**
 * The key image that finds a changed row (pure): the before-image when it carries the whole key
 * (an update of the key does), else the after-image. Throws when neither does.
 */
export function keyImage(ch: ReplicaChange, key: readonly string[]): Row {
  const image = key.every((k) => usable(ch.before, k)) ? ch.before! : ch.after;
  if (!image || !key.every((k) => usable(image, k))) throw new ChartlogError('integrity', `${ch.table}: a change at ${Position.format(ch.position)} carries no key`, { hint: 'run `chartlog verify`' });
  return image;
}

/**
 * A key's values as one value to compare keys by (pure; not SQL): a one-column key of a number or
 * bigint is itself (a Set tells 5, 5n and '5' apart, and every key of a batch is of one table
 * version), anything else one string — no string built per change for the common integer key.
 */
function keyText(row: Row, key: readonly string[]): unknown {
  if (key.length === 1) {
    const v = row[key[0]!];
    if (typeof v === 'number' || typeof v === 'bigint') return v;
  }
  return key.map((k) => cellText(row[k])).join('\u0000');
}

function cellText(v: CellValue | undefined): string {
  if (v === undefined || v === null || v === UNCHANGED) return '\u0001';
  if (v instanceof Uint8Array) return `b${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (Array.isArray(v)) return `[${(v as CellValue[]).map(cellText).join(',')}]`;
  return `${typeof v}:${String(v)}`;
}

/**
 * The changes of one transaction cut into batches, in order (pure). `maxKeyedRows` caps update and
 * delete batches apart (a target whose joins by key plan badly past some size: PostgreSQL).
 */
export function batchChanges(changes: readonly ReplicaChange[], maxRows = BATCH_ROWS, maxKeyedRows = maxRows): ChangeBatch[] {
  const out: ChangeBatch[] = [];
  /** The open batch and what a change must share to join it (compared part by part: no text built per change). */
  let open: { batch: ChangeBatch & { changes: ReplicaChange[] }; shape: string; columns: string; phi: string; touched: Set<unknown> } | null = null;
  // Consecutive changes nearly always share their table version and PHI set (the same objects):
  // their facts are looked up once per run of them, not once per change.
  let lastSchema: ReplicaChange['schema'] | null = null;
  let facts: VersionFacts | null = null;
  let lastPhi: ReadonlySet<string> | null = null;
  let phi = '';
  for (const ch of changes) {
    if (ch.schema !== lastSchema) facts = factsOf((lastSchema = ch.schema));
    const { keyed, key, names, shape } = facts!;
    let kind: ChangeBatch['kind'];
    let columns: readonly string[] = [];
    let keys: unknown[] = [];
    if (ch.op === 'c' || ch.op === 'r') {
      kind = 'insert';
      columns = present(ch.after!, names);
      if (keyed) keys = [keyText(ch.after!, key)];
    } else if ((ch.op === 'u' || ch.op === 'd') && keyed) {
      kind = ch.op === 'u' ? 'update' : 'delete';
      const old = keyText(keyImage(ch, key), key);
      keys = [old];
      if (ch.op === 'u') {
        columns = present(ch.after!, names);
        const fresh = key.every((k) => usable(ch.after, k)) ? keyText(ch.after!, key) : old;
        if (fresh !== old) keys.push(fresh);
      }
    } else kind = 'single';
    // The columns are named only when some are missing (`*`: all of the version's).
    const cols = columns === names ? '*' : columns.join('\u0001');
    if (ch.phiColumns !== lastPhi) phi = phiText((lastPhi = ch.phiColumns));
    const fits =
      open !== null &&
      kind !== 'single' &&
      open.batch.kind === kind &&
      open.batch.table === ch.table &&
      open.shape === shape &&
      open.columns === cols &&
      open.phi === phi &&
      open.batch.changes.length < (kind === 'insert' ? maxRows : Math.min(maxRows, maxKeyedRows)) &&
      keys.every((k) => !open!.touched.has(k));
    if (fits) {
      open!.batch.changes.push(ch);
      for (const k of keys) open!.touched.add(k);
      continue;
    }
    const batch =
      kind === 'insert' ? { kind, table: ch.table, columns, changes: [ch] }
      : kind === 'update' ? { kind, table: ch.table, key, columns, changes: [ch] }
      : kind === 'delete' ? { kind, table: ch.table, key, changes: [ch] }
      : { kind, table: ch.table, changes: [ch] as [ReplicaChange] };
    out.push(batch);
    open = kind === 'single' ? null : { batch: batch as ChangeBatch & { changes: ReplicaChange[] }, shape, columns: cols, phi, touched: new Set(keys) };
  }
  return out;
}
