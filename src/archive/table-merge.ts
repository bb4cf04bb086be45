import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import type { ChangeEvent } from '../core/change-event.js';
import { ChartlogError } from '../core/errors.js';
import { carryForward } from '../phi/row-seal.js';
import { hasRowKey, identityColumns, qualifiedName, UNCHANGED, type CellValue, type Row, type TableSchema } from '../core/table-schema.js';
import { readSpill, SpillWriter, type SpillKey } from './spill-file.js';
import { cellKey } from './table-state.js';

/**
 * What the changes after a base snapshot do to one key of a table, collapsed: the key ends with
 * max(c − drop, 0) + keep copies, c being the copies it had before (in the base snapshot, or in
 * an earlier spilled segment). A primary-key row put is drop = ∞, keep = 1; a delete of a row
 * not seen yet is drop = 1. Tables without a primary key are keyed by the whole row and keep
 * counts, as TableState keeps several identical rows.
 */
interface Entry {
  drop: number;
  keep: number;
  /** The image of the kept copies; may hold UNCHANGED cells still to be filled from `from`. */
  row: Row | null;
  /**
   * The key whose earlier image fills the UNCHANGED cells of `row`: the image that key had when
   * segment `fromSeg` began (the base snapshot's for segment 0). Another key than the entry's own
   * after an update that changed the key.
   */
  from: string | null;
  fromSeg?: number;
  /** Base copies of this key met so far (the first `drop` are dropped). */
  seen?: number;
  /** The base image of this key, when `from` is this key. */
  base?: Row;
}

/** Rows of the base snapshot as decoded, with the table version they were written with. */
export interface BaseBatch {
  schema: TableSchema;
  rows: Row[];
}

/**
 * The keys of base rows a base pass must see (BasePass.held): exact keys, and the bits of a
 * sealed KeyFilter (null: none). Plain data, so COPY threads are sent it as it is.
 */
export interface HeldKeys {
  readonly keys: readonly string[];
  readonly bits: Uint32Array | null;
}

/** Whether HeldKeys hold a key ("maybe" for about 1 in 32 others when it has bits); null: holds none. */
export function heldTest(h: HeldKeys): ((key: string) => boolean) | null {
  const keys = new Set(h.keys);
  const bits = h.bits;
  if (bits) return keys.size === 0 ? (k) => filterHas(bits, k) : (k) => keys.has(k) || filterHas(bits, k);
  return keys.size === 0 ? null : (k) => keys.has(k);
}

/** One pass of the base snapshot past a table's collapsed changes (TableMerge.openBase). */
export interface BasePass {
  /** Keys of base rows `add` must see: a base row whose key it does not hold is in the table as it is. */
  held(): HeldKeys;
  /** Base rows (in any order; rows not held may come too): gives back those in the table as they are. */
  add(batch: BaseBatch): Promise<Row[]>;
  /** The rest of the table once every base row was added or passed by: changed and new rows. Read once. */
  rest(): AsyncGenerator<Row[]>;
}

/** A previous image taken by an update: known, or "whatever the key held before" (`from`). */
type Previous = { row: Row | null; from: string | null } | null;

export interface TableMergeOptions {
  /** Bytes of collapsed changes held in memory before they spill to disk (an estimate). */
  budgetBytes: number;
  /** A directory private to this restore; spill files go there. */
  dir: string;
  key: SpillKey;
  /** Encoded bytes of the changes to come, to size the spill partitions. */
  expectedBytes: number;
}

let mergesMade = 0;

/** Spill files of one table hash-partition their keys into this many files at most. */
const MAX_PARTITIONS = 256;

/**
 * The streaming replay of one table (docs/architecture.md §5): the changes after the base
 * snapshot are applied to a map of collapsed entries per key (`apply`, in position order), never
 * to the whole table; then `merge` streams the base snapshot past them and yields the table at
 * the moment, row by row. When the entries outgrow the memory budget they spill, hash-partitioned
 * by key, to files sealed with the restore's spill key (spill-file.ts): the base snapshot is then
 * partitioned the same way and each partition merged on its own, so memory holds one partition.
 * The result equals TableState's (same keys, truncates, unchanged values, key changes, key-less
 * counts), which test/unit/archive/table-merge.test.ts checks on random histories.
 */
export class TableMerge {
  private map = new Map<string, Entry>();
  private bytes = 0;
  /** A truncate was applied: the base snapshot no longer counts. */
  private baseDropped = false;
  /** Spilled segments, oldest first: per segment, a file per partition. */
  private segments: string[][] = [];
  private partitions = 0;
  /**
   * Keys whose image at the start of a segment fills unchanged values of a row under another key
   * (an update that changed the key): key → segment indexes.
   */
  private readonly crossWants = new Map<string, Set<number>>();
  private files = 0;
  /**
   * Every key written to a segment: a base row whose key is not among them passes the merge as
   * it is, so only the base rows a change may touch are partitioned to disk (not the whole table).
   */
  private readonly spilledKeys = new KeyFilter();
  /** Spill files of the base rows a change may touch, open while a base pass adds them (closed by `discard` after a failure). */
  private baseWriters: SpillWriter[] = [];
  /** Names this merge's spill files apart from other tables' in the same directory. */
  private readonly id = mergesMade++;
  /** How much was spilled (for the summary and tests). */
  spilledEntries = 0;
  spilledBytes = 0;
  /** Base rows written to the spill files (those a change may touch). */
  spilledBaseRows = 0;

  constructor(
    private readonly table: string,
    private readonly o: TableMergeOptions,
  ) {}

  /** Bytes the collapsed changes take in memory (an estimate). */
  get memoryBytes(): number {
    return this.bytes;
  }

  /** Spills what is in memory now (several tables share one budget). */
  async spillNow(): Promise<void> {
    await this.spill();
  }

  /** The last change applied dropped the table (op x): a restore does not create it. */
  dropped = false;

  /** Whether the base snapshot still counts (no truncate since): a base pass reads it. */
  get readsBase(): boolean {
    return !this.baseDropped;
  }

  /** Whether segments wait on disk now. */
  get spilled(): boolean {
    return this.segments.length > 0;
  }

  /** Whether anything was ever spilled (for the summary). */
  get everSpilled(): boolean {
    return this.spilledEntries > 0;
  }

  /** Applies one change (not a snapshot read of the base), in position order. */
  async apply(event: ChangeEvent): Promise<void> {
    const s = event.schema;
    this.dropped = event.op === 'x';
    switch (event.op) {
      case 't':
      case 'x':
        // A drop ends the table: nothing before it survives (a table created again starts empty).
        await this.truncate();
        return;
      case 'c':
      case 'r':
        this.put(s, this.required(event.after, event), null);
        break;
      case 'u': {
        const after = this.required(event.after, event);
        const keyed = hasRowKey(s);
        let prev = this.take(keyOf(s, event.before ?? after), keyed);
        // Key-less rows are keyed by their whole image: the before image is the row taken.
        if (!keyed && prev && prev.row === null && event.before) prev = { row: event.before, from: null };
        const filled = this.fill(after, prev, event);
        const key = keyOf(s, filled.row);
        if (filled.from !== null && filled.from !== key) {
          const segs = this.crossWants.get(filled.from) ?? new Set<number>();
          segs.add(this.segments.length);
          this.crossWants.set(filled.from, segs);
        }
        this.putAt(key, s, filled.row, filled.from);
        break;
      }
      case 'd':
        this.take(keyOf(s, this.required(event.before, event)), hasRowKey(s));
        break;
    }
    if (this.bytes > this.o.budgetBytes) await this.spill();
  }

  private put(s: TableSchema, row: Row, from: string | null): void {
    this.putAt(keyOf(s, row), s, row, from);
  }

  private putAt(key: string, s: TableSchema, row: Row, from: string | null): void {
    const e = this.map.get(key);
    const keyed = hasRowKey(s);
    if (keyed || !e) {
      if (!e) this.bytes += ENTRY_BYTES + key.length * 2;
      else this.bytes -= rowBytes(e.row);
      this.map.set(key, keyed ? { drop: Infinity, keep: 1, row, from } : { drop: 0, keep: 1, row, from });
    } else {
      this.bytes -= rowBytes(e.row);
      e.keep++;
      e.row = row;
      e.from = from;
    }
    this.bytes += rowBytes(row);
  }

  /** Removes one copy of the key, returning the image it had (TableState.take). */
  private take(key: string, keyed: boolean): Previous {
    const e = this.map.get(key);
    if (e) {
      if (e.keep > 0) {
        const prev = { row: e.row, from: e.from };
        if (--e.keep === 0) {
          this.bytes -= rowBytes(e.row);
          e.row = null;
          e.from = null;
        }
        return prev;
      }
      // A primary key has one row at most: once taken, nothing is left of it.
      if (e.drop === Infinity || this.nothingBefore() || (keyed && e.drop >= 1)) return null;
      e.drop++;
      return { row: null, from: key };
    }
    if (this.nothingBefore()) return null;
    this.map.set(key, { drop: 1, keep: 0, row: null, from: null });
    this.bytes += ENTRY_BYTES + key.length * 2;
    return { row: null, from: key };
  }

  /** No row can precede this segment: the base was truncated away and nothing spilled since. */
  private nothingBefore(): boolean {
    return this.baseDropped && this.segments.length === 0;
  }

  private fill(after: Row, prev: Previous, event: ChangeEvent): { row: Row; from: string | null } {
    if (!hasUnchanged(after)) return { row: after, from: null };
    if (!prev) throw noEarlierImage(event.schema, firstUnchanged(after));
    if (prev.row === null) return { row: after, from: prev.from };
    const filled = fillFrom(after, prev.row, event.schema);
    return { row: filled, from: hasUnchanged(filled) ? prev.from : null };
  }

  private async truncate(): Promise<void> {
    this.map.clear();
    this.bytes = 0;
    this.baseDropped = true;
    this.crossWants.clear();
    for (const seg of this.segments) for (const f of seg) await rm(f, { force: true });
    this.segments = [];
  }

  /** Writes the entries in memory as one more segment, a file per key partition. */
  private async spill(): Promise<void> {
    if (this.map.size === 0) return;
    if (this.partitions === 0) {
      this.partitions = Math.max(2, Math.min(MAX_PARTITIONS, Math.ceil((4 * this.o.expectedBytes) / this.o.budgetBytes)));
    }
    const writers = this.partitionWriters();
    for (const [key, e] of this.map) {
      await writers[partitionOf(key, this.partitions)]!.add(encodeEntry(key, e));
      this.spilledKeys.add(key);
      this.spilledEntries++;
    }
    for (const w of writers) {
      await w.close();
      this.spilledBytes += w.bytes;
    }
    this.segments.push(writers.map((w) => w.path));
    this.map.clear();
    this.bytes = 0;
  }

  /**
   * A writer per partition. Each gathers a chunk before sealing it: chunks of the changes' share
   * split between the partitions (at 1 MiB each, 256 partitions held 256 MiB of pending base rows).
   */
  private partitionWriters(): SpillWriter[] {
    const chunkBytes = Math.max(MIN_CHUNK_BYTES, Math.min(MAX_CHUNK_BYTES, Math.floor(this.o.budgetBytes / this.partitions)));
    return Array.from({ length: this.partitions }, () => new SpillWriter(this.nextFile(), this.o.key, chunkBytes));
  }

  private nextFile(): string {
    return join(this.o.dir, `merge-${this.id}-${String(this.files++).padStart(6, '0')}.spill`);
  }

  /**
   * The table at the moment: the base snapshot's rows (decoded, in any order) merged with the
   * collapsed changes. Base rows come first, changed and new rows after them.
   */
  async *merge(base: () => AsyncIterable<BaseBatch>, schema: TableSchema): AsyncGenerator<Row[]> {
    const pass = await this.openBase(schema);
    let done = false;
    try {
      if (this.readsBase) {
        for await (const batch of base()) {
          const out = await pass.add(batch);
          if (out.length > 0) yield out;
        }
      }
      yield* pass.rest();
      done = true;
    } finally {
      // Stopped part way (the reader returned, or failed): no file handle is left open.
      if (!done) await this.abandonBase();
    }
  }

  /**
   * Starts the one pass of the base snapshot past the collapsed changes (`merge`, or a reader of
   * base snapshot blocks: restore's COPY text path). Base rows whose keys `held` does not hold are
   * in the table as they are and need not be added; the others go through `add`, then `rest`
   * gives the changed and new rows. When the changes spilled, the base rows a change may touch
   * (by the KeyFilter of every key spilled) are partitioned to disk as the changes are and each
   * partition merged on its own, so memory holds one partition, never the table.
   */
  async openBase(schema: TableSchema): Promise<BasePass> {
    const captured = new Map<string, Row>();
    const deferred: Entry[] = [];
    const images = new Map<string, Entry | null>();
    const wants = this.crossWants;
    if (!this.spilled) {
      const map = this.map;
      return {
        held: () => ({ keys: [...map.keys(), ...wants.keys()], bits: null }),
        add: async (batch) => this.passBase(map, batch, captured),
        rest: () => this.restInMemory(map, deferred, images, captured, schema),
      };
    }
    await this.spill();
    // Base images other rows wait for are kept aside (captured) as the base passes.
    const touched = this.spilledKeys.seal();
    const writers = this.baseDropped ? null : this.partitionWriters();
    if (writers) this.baseWriters = writers;
    return {
      held: () => ({ keys: [...wants.keys()], bits: touched }),
      add: async (batch) => {
        const out: Row[] = [];
        for (const row of batch.rows) {
          const key = keyOf(batch.schema, row);
          if (wants.has(key)) captured.set(key, row);
          if (!filterHas(touched, key)) out.push(row);
          else {
            await writers![partitionOf(key, this.partitions)]!.add(serialize([key, ...encodeRow(row)]));
            this.spilledBaseRows++;
          }
        }
        return out;
      },
      rest: () => this.restSpilled(writers, deferred, images, captured, schema),
    };
  }

  private async *restInMemory(map: Map<string, Entry>, deferred: Entry[], images: Map<string, Entry | null>, captured: Map<string, Row>, schema: TableSchema): AsyncGenerator<Row[]> {
    yield* this.entryRows(map, deferred);
    map.clear();
    yield* this.deferredRows(deferred, images, captured, schema);
  }

  /** Each partition: its segments composed, its spilled base rows past them, then its entries' rows. */
  private async *restSpilled(writers: SpillWriter[] | null, deferred: Entry[], images: Map<string, Entry | null>, captured: Map<string, Row>, schema: TableSchema): AsyncGenerator<Row[]> {
    let baseFiles: string[] | null = null;
    if (writers) {
      for (const w of writers) {
        await w.close();
        this.spilledBytes += w.bytes;
      }
      this.baseWriters = [];
      baseFiles = writers.map((w) => w.path);
    }
    for (let p = 0; p < this.partitions; p++) {
      const map = new Map<string, Entry>();
      const wanted = [...this.crossWants].filter(([k]) => partitionOf(k, this.partitions) === p);
      for (let j = 0; j < this.segments.length; j++) {
        // What a wanted key holds as segment j begins, for the rows of other keys that need it.
        for (const [k, segs] of wanted) {
          if (!segs.has(j)) continue;
          const e = map.get(k);
          images.set(`${j}\u0000${k}`, e ? { ...e } : null);
        }
        const file = this.segments[j]![p]!;
        for await (const records of readSpill(file, this.o.key)) {
          for (const r of records) {
            const [key, later] = decodeEntry(r, j);
            const earlier = map.get(key);
            map.set(key, earlier ? compose(earlier, later, key, this.table) : later);
          }
        }
        await rm(file, { force: true });
      }
      const file = baseFiles?.[p];
      if (file) {
        for await (const pairs of spilledBase(file, this.o.key)) {
          const out = this.passBase(map, pairs, null);
          if (out.length > 0) yield out;
        }
        await rm(file, { force: true });
      }
      yield* this.entryRows(map, deferred);
    }
    this.segments = [];
    yield* this.deferredRows(deferred, images, captured, schema);
  }

  /** Rows whose unchanged values come from another key, once every base row and segment was seen. */
  private *deferredRows(deferred: Entry[], images: Map<string, Entry | null>, captured: Map<string, Row>, schema: TableSchema): Generator<Row[]> {
    const out: Row[] = [];
    for (const e of deferred) {
      const source = this.imageOf(e.from!, e.fromSeg ?? 0, images, captured, 0);
      const row = this.resolve(e.row!, source, schema);
      for (let i = 0; i < e.keep; i++) out.push(row);
    }
    if (out.length > 0) yield out;
  }

  /** The image key `k` had when segment `seg` began (undefined: none), its own unchanged values filled. */
  private imageOf(k: string, seg: number, images: Map<string, Entry | null>, captured: Map<string, Row>, depth: number): Row | undefined {
    const e = images.get(`${seg}\u0000${k}`) ?? null;
    if (!e) return this.baseDropped ? undefined : captured.get(k);
    if (e.keep === 0 || !e.row) return undefined;
    if (e.from === null || depth > 1000) return e.row;
    const source = e.from === k ? captured.get(k) : this.imageOf(e.from, e.fromSeg ?? 0, images, captured, depth + 1);
    return source ? fillFrom(e.row, source, null) : e.row;
  }

  /**
   * Base rows past a partition's entries: those in the table now (no entry, or copies past those
   * dropped). The base snapshot's rows come with their version (base images other keys want are
   * captured); a spilled base partition's with their keys.
   */
  private passBase(map: Map<string, Entry>, batch: BaseBatch | [string, Row][], captured: Map<string, Row> | null): Row[] {
    const out: Row[] = [];
    const wants = this.crossWants;
    const keyed = Array.isArray(batch);
    const items = keyed ? batch : batch.rows;
    for (const item of items) {
      let key: string;
      let row: Row;
      if (keyed) [key, row] = item as [string, Row];
      else {
        row = item as Row;
        key = keyOf((batch as BaseBatch).schema, row);
        if (captured && wants.has(key)) captured.set(key, row);
      }
      const e = map.get(key);
      if (!e) {
        out.push(row);
        continue;
      }
      e.seen = (e.seen ?? 0) + 1;
      if (e.seen > e.drop) out.push(row);
      if (e.from === key && e.base === undefined) e.base = row;
    }
    return out;
  }

  /** A partition's entries' rows, after its base rows (those needing another key's image: deferred). */
  private *entryRows(map: Map<string, Entry>, deferred: Entry[]): Generator<Row[]> {
    let out: Row[] = [];
    for (const [key, e] of map) {
      if (e.keep === 0) continue;
      if (e.from !== null && e.from !== key) {
        deferred.push(e);
        continue;
      }
      const row = e.from === null ? e.row! : this.resolve(e.row!, e.base, this.schemaFor(e));
      for (let i = 0; i < e.keep; i++) out.push(row);
      if (out.length >= 1024) {
        yield out;
        out = [];
      }
    }
    if (out.length > 0) yield out;
  }

  private schemaFor(_e: Entry): TableSchema | null {
    return null;
  }

  private resolve(row: Row, source: Row | undefined, schema: TableSchema | null): Row {
    if (!source) throw noEarlierImage(schema, firstUnchanged(row), this.table);
    const filled = fillFrom(row, source, schema, this.table);
    if (hasUnchanged(filled)) throw noEarlierImage(schema, firstUnchanged(filled), this.table);
    return filled;
  }

  private required(row: Row | null, event: ChangeEvent): Row {
    if (!row) {
      throw new ChartlogError('integrity', `${qualifiedName(event.schema)}: a '${event.op}' change has no row image`, {
        hint: 'the archive is damaged or the table lacks a primary key and REPLICA IDENTITY FULL',
      });
    }
    return row;
  }

  private async abandonBase(): Promise<void> {
    for (const w of this.baseWriters.splice(0)) await w.abandon();
  }

  /** Removes whatever is left on disk (after a failure). */
  async discard(): Promise<void> {
    this.map.clear();
    await this.abandonBase();
    for (const seg of this.segments) for (const f of seg) await rm(f, { force: true });
    this.segments = [];
  }
}

/** Composes a later segment's entry for a key onto the earlier one's. */
function compose(e1: Entry, e2: Entry, key: string, table: string): Entry {
  let row2 = e2.row;
  let from2 = e2.from;
  let fromSeg2 = e2.fromSeg;
  if (e2.keep > 0 && from2 === key) {
    // e2's unchanged values come from what the key held before e2's segment: e1's copies, or the base.
    if (e1.keep > 0) {
      const filled = fillFrom(row2!, e1.row!, null);
      row2 = filled;
      from2 = hasUnchanged(filled) ? e1.from : null;
      fromSeg2 = e1.fromSeg;
    } else if (e1.drop === Infinity) {
      throw new ChartlogError('integrity', `${table}.${firstUnchanged(row2!)}: an unchanged value has no earlier image to come from`, {
        hint: 'restore from a snapshot that holds the row, or set REPLICA IDENTITY FULL on the table',
      });
    }
  }
  const kept = e1.keep >= e2.drop;
  const drop = kept ? e1.drop : e1.drop + e2.drop - e1.keep;
  const keep = kept ? e1.keep - e2.drop + e2.keep : e2.keep;
  if (e2.keep > 0) return { drop, keep, row: row2, from: from2, ...(fromSeg2 === undefined ? {} : { fromSeg: fromSeg2 }) };
  return keep > 0 ? { ...e1, drop, keep } : { drop, keep, row: null, from: null };
}

/** TableState's key: the values of the identifying columns (`identityColumns`). */
export function keyOf(s: TableSchema, row: Row): string {
  const cols = identityColumns(s);
  let k = '';
  for (let i = 0; i < cols.length; i++) k += (i === 0 ? '' : '\u0001') + cellKey(row[cols[i]!]);
  return k;
}

function hasUnchanged(row: Row): boolean {
  for (const k in row) if (row[k] === UNCHANGED) return true;
  return false;
}

function firstUnchanged(row: Row): string {
  for (const k in row) if (row[k] === UNCHANGED) return k;
  return '?';
}

/** `row` with its unchanged values taken from `previous` (which may itself hold some still). */
function fillFrom(row: Row, previous: Row, schema: TableSchema | null, table?: string): Row {
  const out: Record<string, CellValue> = {};
  for (const k of Object.keys(row)) {
    const v = row[k]!;
    if (v !== UNCHANGED) {
      define(out, k, v);
      continue;
    }
    // A row seal reference would lose its seal (it stays in the earlier image): carry the seal.
    const p = Object.hasOwn(previous, k) ? carryForward(previous, k) : undefined;
    if (p === undefined) throw noEarlierImage(schema, k, table);
    define(out, k, p);
  }
  return out;
}

function define(row: Record<string, CellValue>, name: string, value: CellValue): void {
  if (name === '__proto__') Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
  else row[name] = value;
}

function noEarlierImage(schema: TableSchema | null, column: string, table?: string): ChartlogError {
  return new ChartlogError('integrity', `${schema ? qualifiedName(schema) : (table ?? 'a table')}.${column}: an unchanged value has no earlier image to come from`, {
    hint: 'restore from a snapshot that holds the row, or set REPLICA IDENTITY FULL on the table',
  });
}

/** Bytes an entry costs in memory beside its row (Map slot, object, numbers): a rough figure. */
const ENTRY_BYTES = 160;

function rowBytes(row: Row | null): number {
  if (!row) return 0;
  let n = 64;
  for (const k in row) {
    const v = row[k];
    n += 24;
    if (typeof v === 'string') n += 16 + v.length * 2;
    else if (v instanceof Uint8Array) n += 96 + v.byteLength;
    else if (Array.isArray(v)) n += 32 + 24 * v.length;
  }
  return n;
}

/** Plaintext bytes per sealed chunk of a partition's spill file (partitionWriters). */
const MIN_CHUNK_BYTES = 16 * 1024;
const MAX_CHUNK_BYTES = 1024 * 1024;

/** FNV-1a of the key. */
function hashOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The key's partition. */
function partitionOf(key: string, partitions: number): number {
  return hashOf(key) % partitions;
}

/**
 * A set of keys that may answer "maybe" for a key never added, never "no" for one added: the
 * keys' hashes (4 bytes a key) while they are added, then one bit array of about 32 bits a key
 * (`seal`), where about 1 in 32 other keys hits a set bit. A false "maybe" only sends a base row
 * the slower way through the spill files; it changes no result.
 */
export class KeyFilter {
  private hashes = new Uint32Array(1024);
  private count = 0;

  add(key: string): void {
    if (this.count === this.hashes.length) {
      const grown = new Uint32Array(2 * this.hashes.length);
      grown.set(this.hashes);
      this.hashes = grown;
    }
    this.hashes[this.count++] = hashOf(key);
  }

  /** The keys added so far, as a bit array to ask (`filterHas`). */
  seal(): Uint32Array {
    let bits = 1024;
    while (bits < 32 * this.count && bits < 2 ** 31) bits *= 2;
    // Shared memory: COPY threads are sent the bits without a copy each (BasePass.held).
    const words = new Uint32Array(new SharedArrayBuffer(bits / 8));
    const mask = bits - 1;
    for (let i = 0; i < this.count; i++) {
      const b = filterSpot(this.hashes[i]!, mask);
      words[b >>> 5]! |= 1 << (b & 31);
    }
    return words;
  }
}

/** Whether a sealed KeyFilter's bits may hold the key (never false for a key added). */
export function filterHas(words: Uint32Array, key: string): boolean {
  const b = filterSpot(hashOf(key), words.length * 32 - 1);
  return (words[b >>> 5]! & (1 << (b & 31))) !== 0;
}

/** A key's bit: its hash mixed again (murmur3's finaliser: the partition is the same hash modulo the partitions). */
function filterSpot(h: number, mask: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) & mask;
}

/** A row as v8 can serialize it: UNCHANGED (a symbol) is listed apart. */
function encodeRow(row: Row | null): [Record<string, CellValue> | null, string[]] {
  if (!row) return [null, []];
  if (!hasUnchanged(row)) return [row as Record<string, CellValue>, []];
  const plain: Record<string, CellValue> = {};
  const unchanged: string[] = [];
  for (const k of Object.keys(row)) {
    if (row[k] === UNCHANGED) unchanged.push(k);
    else define(plain, k, row[k]!);
  }
  return [plain, unchanged];
}

function decodeRow(plain: Record<string, CellValue> | null, unchanged: string[]): Row | null {
  if (!plain) return null;
  for (const k of unchanged) define(plain, k, UNCHANGED);
  return plain;
}

function encodeEntry(key: string, e: Entry): Buffer {
  return serialize([key, e.drop, e.keep, e.from, ...encodeRow(e.row)]);
}

/** An entry read back from segment `seg`: a key it takes an image from is that key's as `seg` began. */
function decodeEntry(bytes: Buffer, seg: number): [string, Entry] {
  const [key, drop, keep, from, plain, unchanged] = deserialize(bytes) as [string, number, number, string | null, Record<string, CellValue> | null, string[]];
  return [key, { drop, keep, from, fromSeg: seg, row: decodeRow(plain, unchanged) }];
}

async function* spilledBase(file: string, key: SpillKey): AsyncGenerator<[string, Row][]> {
  for await (const records of readSpill(file, key)) {
    yield records.map((r) => {
      const [k, plain, unchanged] = deserialize(r) as [string, Record<string, CellValue>, string[]];
      return [k, decodeRow(plain, unchanged)!];
    });
  }
}
