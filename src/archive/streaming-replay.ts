import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { Row, TableSchema } from '../core/table-schema.js';
import type { AvroCodec, DecodedChange } from '../codec/avro-codec.js';
import type { SnapshotManifest } from './snapshot-manifest.js';
import { ArchiveReader, type StoredRecord } from './archive-reader.js';
import { readArchiveIndex, tablesOf } from './archive-index.js';
import { chooseSnapshot, chooseTableBase, cutPosition, type ReplayOptions } from './replay.js';
import { SpillKey } from './spill-file.js';
import { keyOf, TableMerge, type BaseBatch } from './table-merge.js';
import { sortByKey } from './key-sort.js';

export interface StreamingReplayOptions extends Pick<ReplayOptions, 'store' | 'source' | 'codec' | 'schemas' | 'envelopes' | 'to' | 'tables' | 'open' | 'index'> {
  /** Bytes of collapsed changes (all tables together) and of rows being sorted, held in memory before spilling. */
  memoryBudgetBytes: number;
  /** Where this restore's private spill directory is made (default: the system's temporary directory). */
  spillDir?: string;
}

/** One table of a streaming replay: its shape at the moment, and its rows on demand. */
export interface StreamedTable {
  name: string;
  /** The table version it ends on (the last record applied, base snapshot included). */
  schema: TableSchema;
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
}

export interface StreamingReplay {
  snapshot: SnapshotManifest;
  tables: Map<string, StreamedTable>;
  position: Position;
  commitTsUs: bigint;
  changes: number;
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
  const cut = await cutPosition(reader, snapshotPos, o.to);
  const dir = await mkdtemp(join(o.spillDir ?? tmpdir(), 'chartlog-restore-spill-'));
  const key = new SpillKey();
  const tables = new Map<string, StreamedTable>();
  const merges: TableMerge[] = [];
  let position = snapshotPos;
  let commitTsUs = BigInt(snapshot.commitTsUs);
  let changes = 0;
  const sealedOf = async (fingerprint: string): Promise<ReadonlySet<string>> => (await o.schemas.resolve(BigInt(`0x${fingerprint}`))).version.sealed;
  try {
    for (const name of names) {
      // A table re-snapshotted (`chartlog resync`) before the cut starts from that newer base.
      const tableBase = chooseTableBase(index, name, snapshot, cut);
      const entry = tableBase.tables[name];
      const records: (StoredRecord | null)[] = await reader.tableRecords(name, Position.parse(tableBase.position));
      let within = 0;
      let bytes = 0;
      for (const r of records) {
        if (cut && Position.compare(Position.commitOf(r!.position), cut) > 0) break; // position order: nothing later is within
        within++;
        bytes += r!.message.byteLength;
        if (Position.compare(r!.position, position) > 0) {
          position = Position.commitOf(r!.position);
          commitTsUs = r!.commitTsUs;
        }
      }
      const parts = entry?.parts ?? [];
      const lastFingerprint = within > 0 ? records[within - 1]!.fingerprint : parts.at(-1)?.fingerprint;
      const fingerprint = lastFingerprint ?? entry?.fingerprint ?? records[0]?.fingerprint;
      if (!fingerprint) continue; // created after the moment asked for
      const schema = (await o.schemas.resolve(BigInt(`0x${fingerprint}`))).version.table;
      const applied = new Set<string>(parts.map((p) => p.fingerprint));
      for (let i = 0; i < within; i++) applied.add(records[i]!.fingerprint);
      const everPhiColumns = new Set<string>();
      for (const f of applied) for (const c of await sealedOf(f)) everPhiColumns.add(c);
      const phiColumns = lastFingerprint ? new Set(await sealedOf(lastFingerprint)) : null;

      const merge = new TableMerge(name, { budgetBytes: o.memoryBudgetBytes, dir, key, expectedBytes: bytes });
      merges.push(merge);
      const groups = (async function* (): AsyncGenerator<StoredRecord[]> {
        for (let i = 0; i < within; i += CHANGES_PER_DECODE) {
          const end = Math.min(within, i + CHANGES_PER_DECODE);
          const group = records.slice(i, end) as StoredRecord[];
          records.fill(null, i, end); // encoded records are let go as they are decoded
          yield group;
        }
      })();
      for await (const decoded of decodeAhead(groups, o.codec, o.open)) for (const d of decoded) await merge.apply(d.event);
      records.length = 0;
      changes += within;
      // One budget for all tables' collapsed changes: past it, this table's go to disk.
      if (merges.reduce((n, m) => n + m.memoryBytes, 0) > o.memoryBudgetBytes) await merge.spillNow();

      let read = false;
      const base = (): AsyncIterable<BaseBatch> => baseBatches(reader, tableBase, name, o.codec, o.open);
      tables.set(name, {
        name,
        schema,
        phiColumns,
        everPhiColumns,
        estimatedRows: (entry?.rows ?? 0) + within,
        changes: within,
        spilled: () => merge.everSpilled,
        rows(order) {
          if (read) throw new ChartlogError('internal', `${name}: rows read twice`);
          read = true;
          const merged = refusingDamage(merge.merge(base, schema), o.source);
          if (order === 'any') return merged;
          return sortByKey(merged, (row) => keyOf(schema, row), { budgetBytes: o.memoryBudgetBytes, dir, key, prefix: String(tables.size) });
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
    close: async () => {
      for (const m of merges) await m.discard();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Rows of the base snapshot, decoded (PHI opened when asked) a block ahead of their use. */
async function* baseBatches(reader: ArchiveReader, snapshot: SnapshotManifest, name: string, codec: AvroCodec, open: boolean): AsyncGenerator<BaseBatch> {
  let schema: TableSchema | null = null;
  let rows: Row[] = [];
  for await (const decoded of decodeAhead(reader.snapshotRecordBatches(snapshot, name), codec, open)) {
    for (const d of decoded) {
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
