import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { singleObjectHeader } from '../codec/single-object.js';
import { openAvroContainer, readAvroContainer } from './avro-container.js';
import type { BlockSealFinder, EnvelopeReader, RecordSplitter } from './envelope-reader.js';
import { BlockOrder } from '../phi/block-seal.js';
import { TRANSACTIONS_TABLE } from './layout.js';
import { flushPartSection } from './flush-part.js';
import { sha256Hex } from './manifest.js';
import { decodeTransaction, type TransactionRecord } from './transaction-log.js';
import type { SnapshotManifest } from './snapshot-manifest.js';
import type { ArchiveIndex } from './archive-index.js';
import { mergeByPosition, RecordsOutOfOrder, type OrderedSource } from './position-merge.js';

/** One stored change record, still encoded: its position, commit time and Avro message. */
export interface StoredRecord {
  position: Position;
  commitTsUs: bigint;
  fingerprint: string;
  /** Avro single-object message (C3 01, fingerprint, body), ready for the codec's decode. */
  message: Uint8Array;
}

/** What `foldTransactions` feeds the log to: `push` takes each record (false: read no further). */
export interface TransactionFold<T> {
  push(t: TransactionRecord): boolean;
  result(): T;
}

/** An object to read, with the hash its manifest recorded or the hash prefix its part name carries. */
interface Source {
  key: string;
  sha256?: string;
  firstPos: Position;
  lastPos: Position;
  /** Stored bytes, when known. */
  bytes?: number;
  /** A closed hour's segment: written in position order, each position once (the hour closer sorts). */
  segment: boolean;
  /** The section of a flush part to read (absent: the whole object is one container). */
  section?: number;
}

/**
 * Reads a source's change records back from the store, per table, in position order and
 * once each (records repeated by at-least-once delivery are dropped by position). Objects
 * listed in a manifest are checked against its sha256 before use: a damaged object is refused
 * with an error naming it, never read as other data.
 */
export class ArchiveReader {
  /**
   * `shared`: objects fetched (and checked) once for every read of this reader, kept until it is
   * dropped — for a caller that reads several tables and the transaction log from the same few new
   * objects (a replica's poll), so each is fetched and hashed once, not once per table.
   */
  constructor(
    private readonly store: ObjectStore,
    private readonly index: ArchiveIndex,
    private readonly envelopes: EnvelopeReader,
    private readonly shared?: Map<string, Promise<Uint8Array>>,
  ) {}

  /**
   * Records of `table` after position `after` (exclusive; null for all), in position order and
   * once each, a batch at a time: the objects are merged as they are read (mergeByPosition), one
   * container block of each overlapping object in memory, so memory does not grow with the
   * table's history. An object whose records cannot be placed in order (RecordsOutOfOrder) makes
   * the caller fall back to `tableRecords`.
   */
  tableRecordBatches(table: string, after: Position | null): AsyncGenerator<StoredRecord[]> {
    const sources: OrderedSource<StoredRecord>[] = this.objectsOf(table, after).map((src) => ({
      first: src.firstPos,
      open: () => this.recordsOf(src, after),
    }));
    return mergeByPosition(sources, (r) => r.position, `${this.index.source} ${table}`);
  }

  /** Stored bytes of the objects `tableRecordBatches` reads (what the listing and manifests say; an estimate). */
  storedBytes(table: string, after: Position | null): number {
    return this.objectsOf(table, after).reduce((n, s) => n + (s.bytes ?? 0), 0);
  }

  /** One object's records after `after`, a container block at a time; a part's sorted first (parts are small). */
  private async *recordsOf(src: Source, after: Position | null): AsyncGenerator<StoredRecord[]> {
    const bytes = containerOf(await this.fetch(src), src);
    const { header, blocks } = openAvroContainer(bytes, src.key);
    const fingerprint = header.metadata['chartlog.fingerprint'];
    if (!fingerprint) throw new ChartlogError('integrity', `${src.key} has no chartlog.fingerprint metadata`, { hint: 'run `chartlog verify`' });
    const split = await this.envelopes.splitterFor(this.index.source, fingerprint);
    const prefix = singleObjectHeader(BigInt(`0x${fingerprint}`));
    const held: StoredRecord[] = [];
    for (const block of blocks) {
      const batch = blockRecords(block.data, split, prefix, fingerprint, after);
      if (src.segment) yield batch;
      else for (const r of batch) held.push(r);
    }
    // A part holds one flush in the order it was delivered: sorted here, duplicates left to the merge.
    if (!src.segment) yield held.sort((a, b) => Position.compare(a.position, b.position));
  }

  /** Records of `table` after position `after` (exclusive; null for all), all at once. */
  async tableRecords(table: string, after: Position | null): Promise<StoredRecord[]> {
    const records = new Map<string, StoredRecord>();
    for (const src of this.objectsOf(table, after)) {
      const bytes = containerOf(await this.fetch(src), src);
      const { header, blocks } = readAvroContainer(bytes, src.key);
      const fingerprint = header.metadata['chartlog.fingerprint'];
      if (!fingerprint) throw new ChartlogError('integrity', `${src.key} has no chartlog.fingerprint metadata`, { hint: 'run `chartlog verify`' });
      const split = await this.envelopes.splitterFor(this.index.source, fingerprint);
      const prefix = singleObjectHeader(BigInt(`0x${fingerprint}`));
      for (const block of blocks) {
        for (let offset = 0; offset < block.data.length; ) {
          const r = split(block.data, offset);
          if (!after || Position.compare(r.position, after) > 0) {
            const id = Position.format(r.position);
            if (!records.has(id)) {
              records.set(id, { position: r.position, commitTsUs: r.commitTsUs, fingerprint, message: Buffer.concat([prefix, block.data.subarray(offset, r.end)]) });
            }
          }
          offset = r.end;
        }
      }
    }
    return [...records.values()].sort((a, b) => Position.compare(a.position, b.position));
  }

  /** The transaction log after `after`, in position order, once each. */
  async transactions(after: Position | null): Promise<TransactionRecord[]> {
    const out = new Map<string, TransactionRecord>();
    for (const src of this.objectsOf(TRANSACTIONS_TABLE, after)) {
      const { blocks } = readAvroContainer(containerOf(await this.fetch(src), src), src.key);
      for (const block of blocks) {
        for (let offset = 0; offset < block.data.length; ) {
          const { record, end } = decodeTransaction(block.data, offset);
          if (!after || Position.compare(Position.parse(record.pos), after) > 0) out.set(record.pos, record);
          offset = end;
        }
      }
    }
    return [...out.values()].sort((a, b) => Position.compare(Position.parse(a.pos), Position.parse(b.pos)));
  }

  /**
   * The transaction log after `after`, in position order and once each, a batch at a time (the
   * objects merged as they are read, like `tableRecordBatches`): memory holds a block of each
   * overlapping object, not the log. RecordsOutOfOrder (a part from a reordered delivery) makes
   * the caller fall back to `transactions`.
   */
  transactionBatches(after: Position | null): AsyncGenerator<TransactionRecord[]> {
    const sources: OrderedSource<TransactionRecord>[] = this.objectsOf(TRANSACTIONS_TABLE, after).map((src) => ({
      first: src.firstPos,
      open: () => this.transactionsOf(src, after),
    }));
    return mergeByPosition(sources, (t) => Position.parse(t.pos), `${this.index.source} transaction log`);
  }

  /**
   * Reads the transaction log after `after` into a fold, record by record in position order, as
   * it streams (`transactionBatches`): memory holds the fold's state and a block of the log, not
   * the log. Reading stops as soon as `push` returns false. An object out of order (a reordered
   * delivery) makes it start again on a fresh fold over the log read whole (`transactions`).
   */
  async foldTransactions<T>(after: Position | null, start: () => TransactionFold<T>): Promise<T> {
    let fold = start();
    try {
      reading: for await (const batch of this.transactionBatches(after)) for (const t of batch) if (!fold.push(t)) break reading;
    } catch (err) {
      if (!(err instanceof RecordsOutOfOrder)) throw err;
      fold = start();
      for (const t of await this.transactions(after)) if (!fold.push(t)) break;
    }
    return fold.result();
  }

  /** One transaction-log object's records after `after`, a container block at a time; a part's sorted first. */
  private async *transactionsOf(src: Source, after: Position | null): AsyncGenerator<TransactionRecord[]> {
    const { blocks } = openAvroContainer(containerOf(await this.fetch(src), src), src.key);
    const held: TransactionRecord[] = [];
    for (const block of blocks) {
      const batch: TransactionRecord[] = [];
      for (let offset = 0; offset < block.data.length; ) {
        const { record, end } = decodeTransaction(block.data, offset);
        if (!after || Position.compare(Position.parse(record.pos), after) > 0) batch.push(record);
        offset = end;
      }
      if (src.segment) yield batch;
      else for (const t of batch) held.push(t);
    }
    if (!src.segment) yield held.sort((a, b) => Position.compare(Position.parse(a.pos), Position.parse(b.pos)));
  }

  /** Rows of a table in a base snapshot, as stored records. */
  async snapshotRecords(snapshot: SnapshotManifest, table: string): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for await (const batch of this.snapshotRecordBatches(snapshot, table)) for (const r of batch) out.push(r);
    return out;
  }

  /**
   * Rows of a table in a base snapshot, one container block at a time, so a restore of
   * millions of rows never holds every encoded record beside the rows it builds from them.
   */
  async *snapshotRecordBatches(snapshot: SnapshotManifest, table: string): AsyncGenerator<StoredRecord[]> {
    const t = snapshot.tables[table];
    if (!t) return;
    const order = new BlockOrder(`${this.index.source} ${table}`);
    for (const part of t.parts) {
      const pos = Position.parse(snapshot.position);
      const bytes = await this.fetch({ key: part.key, sha256: part.sha256, firstPos: pos, lastPos: pos, segment: false });
      const { blocks } = openAvroContainer(bytes, part.key); // inflated block by block
      const split = await this.envelopes.splitterFor(this.index.source, part.fingerprint);
      const prefix = singleObjectHeader(BigInt(`0x${part.fingerprint}`));
      const sealOf = await this.blockSealFinder(part.fingerprint);
      let i = 0;
      for (const block of blocks) {
        order.meet(sealOf(block.data), part.key, i++);
        yield blockRecords(block.data, split, prefix, part.fingerprint, null);
      }
    }
  }

  /**
   * The same rows as `snapshotRecordBatches`, as the container blocks that hold them (inflated
   * one at a time) with their table version: for a reader that decodes records where they lie.
   */
  async *snapshotBlocks(snapshot: SnapshotManifest, table: string): AsyncGenerator<{ fingerprint: string; count: number; data: Buffer }> {
    const t = snapshot.tables[table];
    if (!t) return;
    const order = new BlockOrder(`${this.index.source} ${table}`);
    for (const part of t.parts) {
      const pos = Position.parse(snapshot.position);
      const bytes = await this.fetch({ key: part.key, sha256: part.sha256, firstPos: pos, lastPos: pos, segment: false });
      const sealOf = await this.blockSealFinder(part.fingerprint);
      let i = 0;
      // Each block inflates on the thread pool while the one before it is decoded.
      for await (const block of openAvroContainer(bytes, part.key).blocksAhead()) {
        order.meet(sealOf(block.data), part.key, i++);
        yield { fingerprint: part.fingerprint, count: block.count, data: block.data };
      }
    }
  }

  /**
   * Finds the block seal of a base snapshot's container block (docs/formats.md, format 5: its
   * ordinal is checked here, in order, on every path that reads a base — restore, its COPY
   * threads, replicate, synthesis, --keep-sealed — before any of the block's rows is used).
   */
  private blockSealFinder(fingerprint: string): Promise<BlockSealFinder> {
    return this.envelopes.blockSealFinder?.(this.index.source, fingerprint) ?? Promise.resolve(NO_BLOCK_SEALS);
  }

  private objectsOf(table: string, after: Position | null): Source[] {
    const out: Source[] = [];
    for (const h of this.index.hours) {
      for (const o of h.manifest.objects) {
        if (o.table === table) out.push({ key: o.key, sha256: o.sha256, firstPos: Position.parse(o.firstPos), lastPos: Position.parse(o.lastPos), bytes: o.bytes, segment: true });
      }
    }
    for (const p of this.index.openParts) {
      // A flush part: the sections of this table (a table whose version changed in the flush has several).
      p.sections?.forEach((s, i) => {
        if (s.table === table) out.push({ key: p.key, sha256: p.sha256, firstPos: s.first, lastPos: s.last, bytes: s.bytes, segment: false, section: i });
      });
      if (!p.sections && p.table === table) out.push({ key: p.key, sha256: p.sha256, firstPos: p.first, lastPos: p.last, ...(p.bytes === undefined ? {} : { bytes: p.bytes }), segment: false });
    }
    return after ? out.filter((s) => Position.compare(s.lastPos, after) > 0) : out;
  }

  private fetch(src: Source): Promise<Uint8Array> {
    if (!this.shared) return this.fetchChecked(src);
    let held = this.shared.get(src.key);
    if (!held) {
      held = this.fetchChecked(src);
      this.shared.set(src.key, held);
      held.catch(() => this.shared!.delete(src.key));
    }
    return held;
  }

  private async fetchChecked(src: Source): Promise<Uint8Array> {
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(src.key);
    } catch (err) {
      if (err instanceof ChartlogError && err.code === 'not_found') {
        throw new ChartlogError('integrity', `${src.key} is listed in the archive but missing from the store`, { hint: 'run `chartlog verify`' });
      }
      throw err;
    }
    if (src.sha256 && !sha256Hex(bytes).startsWith(src.sha256)) {
      throw new ChartlogError('integrity', `${src.key} does not match the sha256 recorded for it; refusing to use it`, {
        hint: 'run `chartlog verify` to list every damaged object, and restore them from a copy of the archive',
      });
    }
    return bytes;
  }
}

/**
 * The records of one container block after `after` (null: all), each as a single-object message.
 * The messages are views of one buffer per block, not a buffer each: a restore reads millions
 * of records, and an allocation and a copy apiece were a visible share of its time and garbage.
 */
function blockRecords(data: Buffer, split: RecordSplitter, prefix: Uint8Array, fingerprint: string, after: Position | null): StoredRecord[] {
  const out: StoredRecord[] = [];
  const bounds: number[] = [];
  let bytes = 0;
  for (let offset = 0; offset < data.length; ) {
    const r = split(data, offset);
    if (!after || Position.compare(r.position, after) > 0) {
      out.push({ position: r.position, commitTsUs: r.commitTsUs, fingerprint, message: NO_BYTES });
      bounds.push(offset, r.end);
      bytes += prefix.length + r.end - offset;
    }
    offset = r.end;
  }
  const all = Buffer.allocUnsafeSlow(bytes);
  let at = 0;
  for (let i = 0; i < out.length; i++) {
    const start = at;
    all.set(prefix, at);
    at += prefix.length;
    all.set(data.subarray(bounds[2 * i]!, bounds[2 * i + 1]!), at);
    at += bounds[2 * i + 1]! - bounds[2 * i]!;
    out[i]!.message = all.subarray(start, at);
  }
  return out;
}

const NO_BYTES = new Uint8Array(0);
const NO_BLOCK_SEALS: BlockSealFinder = () => null;

/** The container to read of an object: the object itself, or the section of a flush part the source names. */
function containerOf(bytes: Uint8Array, src: Source): Uint8Array {
  return src.section === undefined ? bytes : flushPartSection(bytes, src.key, src.section).container;
}

/** For reading the transaction log alone (it holds no table records): a reader that refuses table records. */
export const NO_ENVELOPES: EnvelopeReader = {
  schemaJson: () => Promise.reject(new ChartlogError('internal', 'this reader reads the transaction log only')),
  splitterFor: () => Promise.reject(new ChartlogError('internal', 'this reader reads the transaction log only')),
};
