import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { Row, TableSchema } from '../core/table-schema.js';
import { fillingMissing, missingPlan, refuseUnknownMissing } from './missing-columns.js';
import type { AvroCodec, BlockRows, DecodedChange } from '../codec/avro-codec.js';
import { AvroReader } from '../codec/avro-binary.js';
import type { SnapshotManifest } from './snapshot-manifest.js';
import { ArchiveReader, type StoredRecord } from './archive-reader.js';
import { readArchiveIndex, tablesOf } from './archive-index.js';
import { refuseUnproven } from './unproven-tables.js';
import { tableExistedAt, unprovenStart } from './table-starts.js';
import { chooseSnapshot, chooseTableBase, restoreCut, type ReplayOptions, type RestoreCut } from './replay.js';
import { SpillKey } from './spill-file.js';
import { keyOf, TableMerge, type BaseBatch, type HeldKeys } from './table-merge.js';
import { sortByKey } from './key-sort.js';
import { RecordsOutOfOrder } from './position-merge.js';
import type { RegisteredSchema } from '../codec/schema-store.js';
import type { DataKeySource } from '../phi/opening-keys.js';
import type { DataKey } from '../phi/sealer.js';

/**
 * How a memory budget is shared (restore and snapshot synthesis alike): a quarter for the
 * collapsed changes of all tables together (TableMerge), a quarter for the rows being sorted
 * (sortByKey; split between the sorts running at once). The estimates both fill count live
 * objects: a TableMerge entry's estimate was 0.66× (PHI opened) to 1.1× (sealed) the heap it
 * takes at 1M entries, measured; the other half is for what no estimate counts — the garbage
 * V8 keeps between collections (heapTotal reached 2× heapUsed while changes collapsed), memory
 * outside the heap, blocks being decoded.
 */
export function memoryShares(budgetBytes: number, sortsAtOnce = 1): { changes: number; sort: number } {
  const quarter = Math.max(1, Math.floor(budgetBytes / 4));
  return { changes: quarter, sort: Math.max(1, Math.floor(quarter / Math.max(1, sortsAtOnce))) };
}

export interface StreamingReplayOptions extends Pick<ReplayOptions, 'store' | 'source' | 'codec' | 'schemas' | 'envelopes' | 'to' | 'tables' | 'open' | 'index' | 'beforeApply'> {
  /**
   * The whole memory budget (`restore.memoryBudgetMiB`): the collapsed changes of all tables
   * together get one share of it, the rows being sorted another (memoryShares).
   */
  memoryBudgetBytes: number;
  /** Key-order sorts that may run at once (tables written in parallel): they split the sort share. Default 1. */
  sortsAtOnce?: number;
  /** Where this restore's private spill directory is made (default: the system's temporary directory). */
  spillDir?: string;
  /**
   * Rows as they were written (snapshot synthesis, which re-encodes each row with its own table
   * version): rows older than a column added are not filled to the final version, and nothing is
   * refused for what such a fill could not know.
   */
  asWritten?: boolean;
  /** The data keys, for readers of TableBlocks that open PHI themselves. */
  keys?: DataKeySource;
}

/** One table of a streaming replay: its shape at the moment, and its rows on demand. */
export interface StreamedTable {
  name: string;
  /** The table version it ends on (the last record applied, base snapshot included). */
  schema: TableSchema;
  /**
   * The fingerprint of the version it ends on, as applied: the last change's, else the base
   * snapshot's; null when only a change past the moment names the table.
   */
  fingerprint: string | null;
  /** That version's PHI columns, and those of every version applied; absent: no record applied. */
  phiColumns: ReadonlySet<string> | null;
  everPhiColumns: ReadonlySet<string>;
  /** Rows in the base snapshot plus changes applied (for progress only: not the result's count). */
  estimatedRows: number;
  /** Changes applied. */
  changes: number;
  /** Whether the collapsed changes spilled to disk. */
  spilled: () => boolean;
  /**
   * The table at the moment, in batches: 'any' order (base rows first), or 'key' order as
   * TableState.allRows gives. Can be read once.
   */
  rows(order: 'any' | 'key'): AsyncIterable<Row[]>;
  /**
   * The table as its base snapshot's container blocks, for a reader that decodes, opens and
   * writes them itself (restore's COPY threads), plus the rest of it; null when it must be read
   * as rows (`rows`): a truncate, a base version not read directly,
   * columns to fill, or a table version a block names that the merge would see differently.
   * Read once, instead of `rows` (in 'any' order).
   */
  blocks(): Promise<TableBlocks | null>;
}

/** A table's base snapshot as container blocks, and what the merge needs back from them (StreamedTable.blocks). */
export interface TableBlocks {
  /** The source's name: bound into the AAD of sealed values. */
  source: string;
  /** Whether PHI is opened (then `dataKey` gives the keys the values name). */
  open: boolean;
  /** Inflated container blocks of the base parts, in order; each holds `count` records of version `fingerprint`. */
  blocks: AsyncIterable<{ fingerprint: string; count: number; data: Buffer }>;
  /** The stored schema of a block's table version. */
  registered(fingerprint: string): Promise<RegisteredSchema>;
  /** The unwrapped data key a sealed value names ('auth' without the keyring). */
  dataKey(idHex: string): Promise<DataKey>;
  /**
   * Keys (table-merge.ts keyOf, of the opened row) of base rows the reader must hand to `hold`
   * rather than write (a key filter may hold a few others too): every other base row is in the
   * table as it is.
   */
  held: HeldKeys;
  /** Base rows whose keys are held, as they are read (in block order): gives back those to write now as they are. */
  hold(rows: BaseBatch): Promise<Row[]>;
  /** The rest of the table, once every block was read: the held base rows merged with the changes. */
  rest(): AsyncIterable<Row[]>;
}

export interface StreamingReplay {
  snapshot: SnapshotManifest;
  tables: Map<string, StreamedTable>;
  position: Position;
  commitTsUs: bigint;
  changes: number;
  /** Where the replay was cut: the last whole transaction, and what stopped it there. */
  cut: RestoreCut;
  /** Removes the spill directory. */
  close(): Promise<void>;
}

/** Changes decoded (and their PHI opened) per request. */
const CHANGES_PER_DECODE = 2048;

/**
 * The streaming form of `replayArchive` (docs/architecture.md §5), for restore. Preparing reads
 * every table's changes after the snapshot up to the cut and collapses them per key (TableMerge,
 * spilled to sealed files past the memory budget), so the moment, the tables' final versions and
 * their PHI columns are known before any row leaves the process (the audit record is written
 * first). Each table's rows are then produced on demand by streaming its base snapshot, one
 * container block at a time, past the collapsed changes: memory holds the changes' collapsed
 * entries (bounded) and a few blocks, never the table.
 */
export async function prepareStreamingReplay(o: StreamingReplayOptions): Promise<StreamingReplay> {
  const index = o.index ?? (await readArchiveIndex(o.store, o.source));
  const snapshot = chooseSnapshot(index, o.to);
  const reader = new ArchiveReader(o.store, index, o.envelopes);
  const snapshotPos = Position.parse(snapshot.position);
  const names = o.tables ?? tablesOf(index);
  const cutResult = await restoreCut(reader, snapshotPos, o.to);
  const cut = cutResult.position;
  // Before anything is written or spilled: a moment inside an unproven window is refused.
  refuseUnproven(index.unproven ?? [], names, cut, o.to.kind === 'time' ? o.to.us : null);
  const dir = await mkdtemp(join(o.spillDir ?? tmpdir(), 'chartlog-restore-spill-'));
  const key = new SpillKey();
  const tables = new Map<string, StreamedTable>();
  const merges: TableMerge[] = [];
  let position = snapshotPos;
  let commitTsUs = BigInt(snapshot.commitTsUs);
  let changes = 0;
  const shares = memoryShares(o.memoryBudgetBytes, o.sortsAtOnce);
  const sealedOf = async (fingerprint: string): Promise<ReadonlySet<string>> => (await o.schemas.resolve(BigInt(`0x${fingerprint}`))).version.sealed;
  try {
    for (const name of names) {
      // A table re-snapshotted (`chartlog resync`) before the cut starts from that newer base.
      const tableBase = chooseTableBase(index, name, snapshot, cut);
      const entry = tableBase.tables[name];
      const basePos = Position.parse(tableBase.position);
      const expectedBytes = STORED_TO_DECODED * reader.storedBytes(name, basePos);
      let merge = new TableMerge(name, { budgetBytes: shares.changes, dir, key, expectedBytes });
      let c: Collapsed;
      try {
        c = await collapse(reader.tableRecordBatches(name, basePos), cut, merge, o);
      } catch (err) {
        if (!(err instanceof RecordsOutOfOrder)) throw err;
        // An object the merge cannot place in order (a reordered delivery): this table read whole.
        await merge.discard();
        merge = new TableMerge(name, { budgetBytes: shares.changes, dir, key, expectedBytes });
        c = await collapse(whole(reader, name, basePos), cut, merge, o);
      }
      merges.push(merge);
      const within = c.within;
      if (c.last && Position.compare(c.last.position, position) > 0) {
        position = Position.commitOf(c.last.position);
        commitTsUs = c.last.commitTsUs;
      }
      const parts = entry?.parts ?? [];
      const lastFingerprint = c.last?.fingerprint ?? parts.at(-1)?.fingerprint;
      if (!lastFingerprint && !entry?.fingerprint && cut) {
        // Neither the base nor a change within the cut holds the table: it existed empty, or
        // did not exist yet. Its start record tells (table-starts.ts); without one it is created.
        const existed = tableExistedAt(index.tableStarts ?? [], name, { cut, timeUs: o.to.kind === 'time' ? o.to.us : null, ...(o.to.kind === 'time' && o.to.resolutionUs ? { resolutionUs: o.to.resolutionUs } : {}) });
        if (existed === 'unproven') throw unprovenStart(index.tableStarts ?? [], name);
        if (existed === 'absent') {
          await merge.discard();
          merges.pop();
          continue;
        }
      }
      const fingerprint = lastFingerprint ?? entry?.fingerprint ?? c.beyond;
      if (!fingerprint) continue; // created after the moment asked for
      const schema = (await o.schemas.resolve(BigInt(`0x${fingerprint}`))).version.table;
      const applied = new Set<string>([...parts.map((p) => p.fingerprint), ...c.fingerprints]);
      const everPhiColumns = new Set<string>();
      for (const f of applied) for (const col of await sealedOf(f)) everPhiColumns.add(col);
      // Rows older than a column added since read what its version recorded (missing-columns.ts);
      // what cannot be known is refused here, before any row is written.
      const appliedVersions: TableSchema[] = [];
      for (const f of applied) appliedVersions.push((await o.schemas.resolve(BigInt(`0x${f}`))).version.table);
      if (appliedVersions.at(-1) !== schema) appliedVersions.push(schema);
      const missing = missingPlan(appliedVersions);
      if (!o.asWritten) refuseUnknownMissing(name, missing);
      const phiColumns = lastFingerprint ? new Set(await sealedOf(lastFingerprint)) : null;
      changes += within;
      if (merge.dropped) continue; // dropped at this moment: not created (its changes still count)
      // One budget for all tables' collapsed changes: past it, this table's go to disk.
      if (merges.reduce((n, m) => n + m.memoryBytes, 0) > shares.changes) await merge.spillNow();

      let read = false;
      const base = (): AsyncIterable<BaseBatch> => baseBatches(reader, tableBase, name, o.codec, o.open, o.beforeApply);
      tables.set(name, {
        name,
        schema,
        fingerprint: lastFingerprint ?? entry?.fingerprint ?? null,
        phiColumns,
        everPhiColumns,
        estimatedRows: (entry?.rows ?? 0) + within,
        changes: within,
        spilled: () => merge.everSpilled,
        rows(order) {
          if (read) throw new ChartlogError('internal', `${name}: rows read twice`);
          read = true;
          const damageChecked = refusingDamage(merge.merge(base, schema), o.source);
          const merged = o.asWritten ? damageChecked : fillingMissing(damageChecked, missing);
          if (order === 'any') return merged;
          return sortByKey(merged, (row) => keyOf(schema, row), { budgetBytes: shares.sort, dir, key, prefix: String(tables.size) });
        },
        async blocks() {
          if (read) throw new ChartlogError('internal', `${name}: rows read twice`);
          const keys = o.keys;
          if (o.asWritten || o.beforeApply || !merge.readsBase || missing.fill.size > 0 || missing.renames.size > 0 || (o.open && !keys)) return null;
          if (!(await blockReaders(tableBase, name, o.codec))) return null;
          read = true;
          // Spilled changes too: the base rows a change may touch are held (a key filter), the others written as they are.
          const pass = await merge.openBase(schema);
          return {
            source: o.source,
            open: o.open,
            blocks: reader.snapshotBlocks(tableBase, name),
            registered: (fingerprint) => o.schemas.resolve(BigInt(`0x${fingerprint}`)),
            dataKey: (idHex) => keys!.get(idHex),
            held: pass.held(),
            hold: (rows) => pass.add(rows),
            rest: () => refusingDamage(pass.rest(), o.source),
          };
        },
      });
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    snapshot,
    tables,
    position,
    commitTsUs,
    changes,
    cut: cutResult,
    close: async () => {
      for (const m of merges) await m.discard();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** What collapsing a table's changes saw: how many were within the moment, the last one, the versions applied. */
interface Collapsed {
  within: number;
  last: StoredRecord | null;
  fingerprints: Set<string>;
  /** The version of the first change past the moment, when none was within (a table created after it). */
  beyond: string | undefined;
}

/**
 * Applies a table's changes after the snapshot, up to the cut, to its merge as they stream from
 * the archive: decoded a group at a time (PHI opened a group ahead), never all held at once.
 */
async function collapse(batches: AsyncIterable<StoredRecord[]>, cut: Position | null, merge: TableMerge, o: StreamingReplayOptions): Promise<Collapsed> {
  const c: Collapsed = { within: 0, last: null, fingerprints: new Set(), beyond: undefined };
  const groups = (async function* (): AsyncGenerator<StoredRecord[]> {
    let group: StoredRecord[] = [];
    reading: for await (const batch of batches) {
      for (const r of batch) {
        if (cut && Position.compare(Position.commitOf(r.position), cut) > 0) {
          if (c.within === 0) c.beyond = r.fingerprint;
          break reading; // position order: nothing later is within
        }
        c.within++;
        c.last = r;
        c.fingerprints.add(r.fingerprint);
        group.push(r);
        if (group.length >= CHANGES_PER_DECODE) {
          yield group;
          group = [];
        }
      }
    }
    if (group.length > 0) yield group;
  })();
  for await (const decoded of decodeAhead(groups, o.codec, o.open)) {
    for (const d of decoded) {
      const looking = o.beforeApply?.(d);
      if (looking) await looking;
      await merge.apply(d.event);
    }
  }
  if (c.last) c.last = { ...c.last, message: new Uint8Array(0) }; // its position, time and version are kept, not its bytes
  return c;
}

/** The whole-table read, as batches (the fallback when objects cannot be merged in order). */
async function* whole(reader: ArchiveReader, name: string, after: Position): AsyncGenerator<StoredRecord[]> {
  const records = await reader.tableRecords(name, after);
  for (let i = 0; i < records.length; i += CHANGES_PER_DECODE) yield records.slice(i, i + CHANGES_PER_DECODE);
}

/** Decoded rows take about this many times the bytes their objects take in the store (deflated Avro). */
const STORED_TO_DECODED = 4;

/** Rows of the base snapshot, decoded (PHI opened when asked) a block ahead of their use. */
async function* baseBatches(
  reader: ArchiveReader,
  snapshot: SnapshotManifest,
  name: string,
  codec: AvroCodec,
  open: boolean,
  beforeApply?: StreamingReplayOptions['beforeApply'],
): AsyncGenerator<BaseBatch> {
  if (!beforeApply) {
    const readers = await blockReaders(snapshot, name, codec);
    if (readers) {
      yield* baseBlockBatches(reader, snapshot, name, readers, open);
      return;
    }
  }
  let schema: TableSchema | null = null;
  let rows: Row[] = [];
  for await (const decoded of decodeAhead(inGroups(reader.snapshotRecordBatches(snapshot, name), BASE_ROWS_PER_DECODE), codec, open)) {
    for (const d of decoded) {
      const looking = beforeApply?.(d);
      if (looking) await looking;
      if (d.event.schema !== schema) {
        if (rows.length > 0) yield { schema: schema!, rows };
        schema = d.event.schema;
        rows = [];
      }
      if (d.event.after) rows.push(d.event.after);
    }
    if (rows.length > 0) yield { schema: schema!, rows };
    rows = [];
  }
}

/**
 * Readers of the table's base parts that decode container blocks where they lie (BlockRows), one
 * per table version; null when a part's version is not read directly (written by another codec
 * version): then its records are split and decoded as messages.
 */
async function blockReaders(snapshot: SnapshotManifest, name: string, codec: AvroCodec): Promise<Map<string, BlockRows> | null> {
  const readers = new Map<string, BlockRows>();
  for (const part of snapshot.tables[name]?.parts ?? []) {
    if (readers.has(part.fingerprint)) continue;
    const rows = await codec.blockRows(part.fingerprint);
    if (!rows) return null;
    readers.set(part.fingerprint, rows);
  }
  return readers;
}

/**
 * Rows of the base snapshot read block by block where they lie, BASE_ROWS_PER_DECODE at a time,
 * each group's PHI opened (on the crypto thread) while the group before is used: the rows
 * `baseBatches` gives from split messages, without the copy, the second parse and the envelope
 * objects per record (docs/architecture.md §5, restore's read path).
 */
async function* baseBlockBatches(reader: ArchiveReader, snapshot: SnapshotManifest, name: string, readers: Map<string, BlockRows>, open: boolean): AsyncGenerator<BaseBatch> {
  // Each group as a holder of its promise: an async generator awaits a promise it yields.
  const groups = (async function* (): AsyncGenerator<{ batch: Promise<BaseBatch> }> {
    for await (const block of reader.snapshotBlocks(snapshot, name)) {
      const rows = readers.get(block.fingerprint)!;
      const r = new AvroReader(block.data, 0);
      let records = 0;
      while (r.pos < r.end) {
        const group = rows.read(r, BASE_ROWS_PER_DECODE, open);
        records += group.count;
        const batch = group.rows.then((got) => ({ schema: rows.table, rows: got }));
        batch.catch(() => undefined); // awaited after the previous group: not an unhandled rejection meanwhile
        yield { batch };
      }
      if (records !== block.count) {
        throw new ChartlogError('integrity', `a base snapshot block of ${name} holds ${records} records where its header says ${block.count}`, {
          hint: 'the object is damaged; run `chartlog verify`',
        });
      }
    }
  })();
  let pending: Promise<BaseBatch> | null = null;
  for await (const { batch: started } of groups) {
    if (pending) {
      const batch = await pending;
      if (batch.rows.length > 0) yield batch;
    }
    pending = started;
  }
  if (pending) {
    const batch = await pending;
    if (batch.rows.length > 0) yield batch;
  }
}

/**
 * Base rows decoded (and opened) per request. A container block holds up to 4096 records; rows
 * decoded a whole block ahead outlived V8's young generation and were promoted, so the old
 * generation grew and its collections took a large share of a restore's time.
 */
const BASE_ROWS_PER_DECODE = 512;

/** The records of each batch in groups of at most `size` (views of the batch, in order). */
async function* inGroups(batches: AsyncIterable<StoredRecord[]>, size: number): AsyncGenerator<StoredRecord[]> {
  for await (const batch of batches) {
    if (batch.length <= size) yield batch;
    else for (let i = 0; i < batch.length; i += size) yield batch.slice(i, i + size);
  }
}

/**
 * Decodes each group while the one before is used: the PHI of a group is opened on the codec's
 * crypto thread (when it has one) while this thread decodes and merges.
 */
async function* decodeAhead(groups: AsyncIterable<StoredRecord[]>, codec: AvroCodec, open: boolean): AsyncGenerator<DecodedChange[]> {
  let pending: Promise<DecodedChange[]> | null = null;
  for await (const group of groups) {
    const next = codec.decodeMany(
      group.map((r) => r.message),
      { open },
    );
    next.catch(() => undefined); // awaited after the previous group: not an unhandled rejection meanwhile
    if (pending) yield await pending;
    pending = next;
  }
  if (pending) yield await pending;
}

/** A damaged object can break a decoder in ways it does not name: still a refusal, never a bug. */
async function* refusingDamage(rows: AsyncIterable<Row[]>, source: string): AsyncGenerator<Row[]> {
  try {
    yield* rows;
  } catch (err) {
    if (err instanceof ChartlogError) throw err;
    throw new ChartlogError('integrity', `reading the archive of ${source} failed: ${(err as Error).message}; an object may be damaged`, {
      cause: err,
      hint: 'run `chartlog verify`, and restore damaged objects from a copy of the archive',
    });
  }
}
