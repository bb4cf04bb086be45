import { createHash } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { withRetry } from '../core/retry.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { Readable } from 'node:stream';
import { BLOCK_RECORDS, containerBlock, containerHeader, readAvroContainer } from '../archive/avro-container.js';
import { FLUSH_PARTS, hourPath, manifestKey, partsPrefix, rangeOfKey, segmentKey, TRANSACTIONS_TABLE, type HourKey } from '../archive/layout.js';
import { flushPartSection, readFlushPartToc } from '../archive/flush-part.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import { encodeManifest, listManifestHours, readManifest, sha256Hex, type HourManifest, type ManifestObject } from '../archive/manifest.js';
import type { EnvelopeReader, RecordSplitter } from '../archive/envelope-reader.js';
import { decodeTransaction, transactionSchemaJson } from '../archive/transaction-log.js';
import { NO_FENCE, type WriterFence } from '../archive/lease.js';
import { mergeByPosition, RecordsOutOfOrder, type OrderedSource } from '../archive/position-merge.js';
import { SegmentSpools, type SegmentSpool } from './segment-spool.js';

interface Rec {
  position: Position;
  commitTsUs: bigint;
  fingerprint: string;
  body: Buffer;
}

/** What of a part to read: a per-table part whole, or one section of a flush part. */
interface PartRef {
  key: string;
  /** The section of a flush part (absent: a per-table part, written before flush parts). */
  section?: number;
  /** The lowest position it holds, as its name or table of contents says. */
  first: Position;
}

/** A segment built (compressed, in memory or spooled to disk), with its manifest entry. */
interface BuiltSegment {
  body: () => Uint8Array | Readable;
  object: ManifestObject;
}

export interface HourCloserOptions {
  /**
   * Bytes of built (compressed) segments a table-hour may hold in memory until they are written;
   * past it they wait in files (default 64 MiB).
   */
  memoryBudgetBytes?: number;
  /** Where those files go (a private directory is made there; default the system's temporary directory). */
  spillDir?: string;
  /** Compressed bytes after which a segment ends and the next begins (default SEGMENT_BYTES; small in tests). */
  segmentBytes?: number;
}

/** The default of HourCloserOptions.memoryBudgetBytes. */
export const HOUR_CLOSER_MEMORY_BUDGET_BYTES = 64 * 2 ** 20;

/**
 * Compressed bytes after which a table-hour's segment ends and the next begins (at a block
 * boundary): every reader holds the object it reads whole, so this bounds their memory whatever
 * the hour's size (a 2.5M-change hour of the benchmark table made one 317 MiB segment).
 */
export const SEGMENT_BYTES = 16 * 2 ** 20;

const transactionSplitter: RecordSplitter = (data, offset) => {
  const { record, end } = decodeTransaction(data, offset);
  return { position: Position.parse(record.pos), commitTsUs: BigInt(record.commitTsUs), end };
};

/**
 * Closes an hour: merges its parts into hourly segments (one per table and schema version, and a
 * new one past SEGMENT_BYTES compressed; deduplicated by position, in position order), writes the hour's manifest with the previous
 * manifest's hash, then deletes the parts. Every step is idempotent, so a crash anywhere is
 * repaired by closing the same hour again.
 *
 * Fenced (docs/architecture.md §1): the writer lease is checked in the store before the hour is
 * read, before its manifest is written and before parts are deleted, and by the process's own
 * clock before every segment write and every delete. A part is deleted only when every record
 * in it is in the hour's segments: the parts this closing merged, or — when the hour was closed
 * before — parts whose records the closed hour's segments hold. A part written after the hour
 * closed (by a writer whose lease had expired) is left in place and reported.
 */
export class HourCloser {
  private last: { hour: HourKey; sha256: string } | null | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly source: string,
    private readonly envelopes: EnvelopeReader,
    private readonly signal?: AbortSignal,
    private readonly fence: WriterFence = NO_FENCE,
    /** Authenticates the manifests (archive MACs); absent only in tests of the format. */
    private readonly signer?: ArchiveSigner,
    private readonly options: HourCloserOptions = {},
  ) {}

  /** Segments that waited on disk during the last `close` (for tests and the log). */
  spilledSegments = 0;

  /** The newest closed hour (from the store on first use). */
  async lastClosed(): Promise<{ hour: HourKey; sha256: string } | null> {
    if (this.last === undefined) {
      const hours = await listManifestHours(this.store, this.source);
      const newest = hours[hours.length - 1];
      this.last = newest ? { hour: newest, sha256: (await readManifest(this.store, this.source, newest)).sha256 } : null;
    }
    return this.last;
  }

  /** Hours that still have parts, oldest first (after a crash, some may already be closed). */
  async hoursWithParts(): Promise<HourKey[]> {
    const hours = new Set<HourKey>();
    for await (const o of this.store.listAll(`${this.source}/parts/`)) {
      const m = o.key.slice(`${this.source}/parts/`.length).match(/^(\d{4}-\d{2}-\d{2})\/(\d{2})\//);
      if (m) hours.add(`${m[1]}T${m[2]}`);
    }
    return [...hours].sort();
  }

  async close(hour: HourKey): Promise<HourManifest | null> {
    await this.fence.check();
    const prefix = partsPrefix(this.source, hour);
    const parts: string[] = [];
    for await (const o of this.store.listAll(prefix)) parts.push(o.key);
    const previous = await this.lastClosed();
    const already = await this.store.head(manifestKey(this.source, hour));
    if (already) {
      // Closed before a crash that left parts behind: only the clean-up is missing — for the
      // parts that closing merged. A part written after it (by a writer whose lease had
      // expired) holds records the segments may lack: it stays.
      const { merged, extra } = await this.partsHeldBySegments(hour, parts);
      if (extra.length > 0) {
        logger().error(
          { source: this.source, hour, parts: extra.length, first: extra[0] },
          'parts of a closed hour hold changes its segments lack; they are kept (run `chartlog verify`)',
        );
      }
      await this.deleteAll(merged, new Set(merged));
      return null;
    }
    if (previous && previous.hour >= hour) {
      throw new ChartlogError('internal', `hour ${hour} is not after the last closed hour ${previous.hour}`);
    }

    // Flush parts are split by table here: each section joins its table's segments.
    const byTable = await this.partsByTable(hour, parts);

    const objects: ManifestObject[] = [];
    const merged = new Set<string>();
    let transactions = 0;
    let events = 0;
    const spools = new SegmentSpools(this.options.memoryBudgetBytes ?? HOUR_CLOSER_MEMORY_BUDGET_BYTES, this.options.spillDir);
    try {
      for (const [table, keys] of [...byTable].sort(([a], [b]) => (a < b ? -1 : 1))) {
        let built: { segments: BuiltSegment[]; records: number };
        try {
          built = await this.buildSegments(hour, table, this.streamRecords(table, keys), spools);
        } catch (err) {
          if (!(err instanceof RecordsOutOfOrder)) throw err;
          // A part from a reordered delivery: nothing was written yet. Each part is read once for
          // its lowest position, then merged again from those: a part at a time, as above.
          spools.released();
          built = await this.buildSegments(hour, table, this.streamRecords(table, await this.trueFirsts(table, keys)), spools);
        }
        for (const k of keys) merged.add(k.key);
        if (table === TRANSACTIONS_TABLE) transactions += built.records;
        else events += built.records;
        for (const seg of built.segments) {
          await this.write(seg.object.key, seg.body, seg.object.sha256);
          objects.push(seg.object);
        }
        spools.released();
      }
    } finally {
      this.spilledSegments = spools.spilled;
      await spools.close();
    }

    // A flush part is merged once all its sections are, which the loop above did (or threw).
    for (const key of parts) if (isFlushPart(prefix, key)) merged.add(key);

    const positions = objects.filter((o) => o.table === TRANSACTIONS_TABLE);
    const manifest: HourManifest = {
      version: 1,
      source: this.source,
      hour,
      sealedAt: new Date().toISOString(),
      previous,
      transactions,
      events,
      firstPos: positions[0]?.firstPos ?? null,
      lastPos: positions[positions.length - 1]?.lastPos ?? null,
      objects,
    };
    const key = manifestKey(this.source, hour);
    const bytes = encodeManifest(this.signer ? await this.signer.sign(key, manifest) : manifest);
    await this.fence.check();
    await this.write(key, bytes);
    this.last = { hour, sha256: sha256Hex(bytes) };
    await this.deleteAll(parts, merged);
    logger().info({ source: this.source, hour, objects: objects.length, transactions, events }, 'hour closed');
    return manifest;
  }

  /**
   * The hour's parts per table: a per-table part under its table's folder, and each section of a
   * flush part under the table its table of contents names (read from the part's header).
   */
  private async partsByTable(hour: HourKey, parts: readonly string[]): Promise<Map<string, PartRef[]>> {
    const prefix = partsPrefix(this.source, hour);
    const byTable = new Map<string, PartRef[]>();
    const add = (table: string, ref: PartRef) => byTable.set(table, [...(byTable.get(table) ?? []), ref]);
    for (const key of parts) {
      if (isFlushPart(prefix, key)) {
        (await readFlushPartToc(this.store, key)).forEach((s, section) => add(s.table, { key, section, first: s.first }));
      } else {
        // A part whose name has no range (none is written so) is opened first.
        add(key.slice(prefix.length).split('/')[0]!, { key, first: rangeOfKey(key)?.first ?? Position.of('0', 0) });
      }
    }
    return byTable;
  }

  /**
   * The records of a table's parts in one position order, each position once, streamed: a part
   * is read (and sorted: it holds one flush, in delivery order) when the merge reaches it.
   */
  private streamRecords(table: string, refs: PartRef[]): AsyncGenerator<Rec[]> {
    const sources = refs.map((ref): OrderedSource<Rec> => ({ first: ref.first, open: () => this.partRecords(table, ref) }));
    return mergeByPosition(sources, (r) => r.position, `hour closing of ${this.source} ${table}`);
  }

  /** The parts with the lowest position each holds (read from it, not from its name). */
  private async trueFirsts(table: string, refs: readonly PartRef[]): Promise<PartRef[]> {
    const out: PartRef[] = [];
    for (const ref of refs) {
      const first = (await this.readRecords(table, [ref]))[0]?.position;
      if (first) out.push({ ...ref, first });
    }
    return out;
  }

  /** One part's records, checked, sorted and once each (a part holds one flush: small). */
  private async *partRecords(table: string, ref: PartRef): AsyncGenerator<Rec[]> {
    yield await this.readRecords(table, [ref]);
  }

  private async readRecords(table: string, refs: readonly PartRef[]): Promise<Rec[]> {
    const seen = new Map<string, Rec>();
    for (const { key, section } of refs) {
      const object = await this.store.get(key);
      const expected = rangeOfKey(key)?.sha256;
      if (expected && !sha256Hex(object).startsWith(expected)) {
        throw new ChartlogError('integrity', `part ${key} does not match the sha256 in its name; refusing to close its hour`, {
          hint: 'the object was damaged in the store; run `chartlog verify` and restore it from a copy before hour closing continues',
        });
      }
      const bytes = section === undefined ? object : flushPartSection(object, key, section).container;
      const { header, blocks } = readAvroContainer(bytes, key);
      const fingerprint = header.metadata['chartlog.fingerprint'];
      if (!fingerprint) throw new ChartlogError('integrity', `${key} has no chartlog.fingerprint metadata`);
      const split = table === TRANSACTIONS_TABLE ? transactionSplitter : await this.envelopes.splitterFor(this.source, fingerprint);
      for (const block of blocks) {
        let offset = 0;
        for (let i = 0; i < block.count; i++) {
          const r = split(block.data, offset);
          const id = Position.format(r.position);
          // At-least-once delivery: the same position can sit in two parts; keep one.
          if (!seen.has(id)) seen.set(id, { position: r.position, commitTsUs: r.commitTsUs, fingerprint, body: block.data.subarray(offset, r.end) });
          offset = r.end;
        }
        if (offset !== block.data.length) throw new ChartlogError('integrity', `${key}: a block has ${block.data.length - offset} bytes after its last record`);
      }
    }
    return [...seen.values()].sort((a, b) => Position.compare(a.position, b.position));
  }

  /**
   * The table-hour's segments (one per run of a table version), built as the records stream:
   * compressed a block at a time, so memory holds one block of records, not the decompressed
   * hour, and the compressed segments up to the spools' budget (past it they wait on disk).
   * Written by the caller once the stream ended well.
   */
  private async buildSegments(hour: HourKey, table: string, batches: AsyncIterable<Rec[]>, spools: SegmentSpools): Promise<{ segments: BuiltSegment[]; records: number }> {
    const segments: BuiltSegment[] = [];
    let records = 0;
    let run: { w: SegmentSpool; fingerprint: string; first: Rec; last: Rec; min: bigint; max: bigint; count: number; block: Buffer[]; bytes: number } | null = null;
    const addBlock = async (): Promise<void> => {
      const frame = await containerBlock(run!.block);
      run!.bytes += frame.length;
      await run!.w.add(frame);
      run!.block = [];
    };
    const finish = async (): Promise<void> => {
      if (!run) return;
      if (run.block.length > 0) await addBlock();
      const key = segmentKey(this.source, hour, table, run.first.position, run.last.position);
      const built = await run.w.finish(createHash('sha256').update(key).digest().subarray(0, 16));
      segments.push({
        body: built.body,
        object: {
          key,
          table,
          fingerprint: run.fingerprint,
          sha256: built.sha256,
          bytes: built.bytes,
          records: run.count,
          firstPos: Position.format(run.first.position),
          lastPos: Position.format(run.last.position),
          minCommitTsUs: run.min.toString(),
          maxCommitTsUs: run.max.toString(),
        },
      });
      run = null;
    };
    for await (const batch of batches) {
      for (const r of batch) {
        // A new segment per table version, and past SEGMENT_BYTES: readers (restore, synthesis,
        // verify) hold one whole object while they read it, so a busy hour must not make one
        // object of it (issue 15: nothing may grow with the table or the hour).
        if (run && (run.fingerprint !== r.fingerprint || run.bytes >= (this.options.segmentBytes ?? SEGMENT_BYTES))) await finish();
        if (!run) {
          const schema: string = table === TRANSACTIONS_TABLE ? transactionSchemaJson : await this.envelopes.schemaJson(this.source, r.fingerprint);
          const w = spools.spool(containerHeader(schema, { metadata: { 'chartlog.table': table, 'chartlog.fingerprint': r.fingerprint, 'chartlog.hour': hourPath(hour) } }));
          run = { w, fingerprint: r.fingerprint, first: r, last: r, min: r.commitTsUs, max: r.commitTsUs, count: 0, block: [], bytes: 0 };
        }
        run.last = r;
        if (r.commitTsUs < run.min) run.min = r.commitTsUs;
        if (r.commitTsUs > run.max) run.max = r.commitTsUs;
        run.count++;
        records++;
        run.block.push(r.body);
        // Blocks of at most BLOCK_RECORDS records keep a reader's memory small.
        if (run.block.length >= BLOCK_RECORDS) await addBlock();
      }
    }
    await finish();
    return { segments, records };
  }

  /**
   * Which of a closed hour's parts hold only records its segments hold (by position, per
   * table), and which hold more.
   */
  private async partsHeldBySegments(hour: HourKey, parts: string[]): Promise<{ merged: string[]; extra: string[] }> {
    const manifest = await readManifest(this.store, this.source, hour);
    const stored = new Map<string, Set<string>>();
    const held = new Map<string, boolean>();
    for (const [table, refs] of await this.partsByTable(hour, parts)) {
      let positions = stored.get(table);
      if (!positions) {
        const segments = manifest.manifest.objects.filter((o) => o.table === table).map((o): PartRef => ({ key: o.key, first: Position.parse(o.firstPos) }));
        positions = new Set((await this.readRecords(table, segments)).map((r) => Position.format(r.position)));
        stored.set(table, positions);
      }
      for (const ref of refs) {
        const records = await this.readRecords(table, [ref]);
        // A flush part is held only when every one of its sections is.
        held.set(ref.key, (held.get(ref.key) ?? true) && records.every((r) => positions.has(Position.format(r.position))));
      }
    }
    return { merged: parts.filter((k) => held.get(k) ?? isFlushPart(partsPrefix(this.source, hour), k)), extra: parts.filter((k) => held.get(k) === false) };
  }

  /** Writes an object once: `body` a buffer, or (a segment, maybe on disk) a fresh body per attempt with its sha256. */
  private async write(key: string, body: Uint8Array | (() => Uint8Array | Readable), sha256?: string): Promise<void> {
    const created = await withRetry(async () => {
      this.fence.assertHeld();
      return this.store.putIfAbsent(key, typeof body === 'function' ? body() : body, { retain: true });
    }, {
      signal: this.signal,
      onRetry: (err, attempt, delayMs) => logger().warn({ err, object: key, attempt, delayMs }, 'object store write failed; retrying'),
    });
    if (!created) {
      // Left by a closing that crashed before its manifest: it must be the same bytes.
      const want = sha256 ?? sha256Hex(body as Uint8Array);
      const hash = createHash('sha256');
      for await (const chunk of await this.store.getStream(key)) hash.update(chunk as Buffer);
      if (hash.digest('hex') !== want) {
        throw new ChartlogError('integrity', `${key} exists with different content; refusing to overwrite it`, {
          hint: 'run `chartlog verify` and inspect the object before continuing',
        });
      }
    }
  }

  /** Deletes parts, each of which must be one this closer found in the hour's segments. */
  private async deleteAll(keys: string[], merged: ReadonlySet<string>): Promise<void> {
    const unmerged = keys.filter((k) => !merged.has(k));
    if (unmerged.length > 0) {
      throw new ChartlogError('internal', `hour closing was about to delete ${unmerged.length} part(s) it did not merge, e.g. ${unmerged[0]}; nothing was deleted`);
    }
    if (keys.length === 0) return;
    await this.fence.check();
    for (const key of keys) {
      await withRetry(
        async () => {
          this.fence.assertHeld();
          await this.store.delete(key);
        },
        { signal: this.signal },
      );
    }
  }
}

/** A flush part of the hour whose parts are under `prefix` (rather than a per-table part). */
function isFlushPart(prefix: string, key: string): boolean {
  return key.startsWith(`${prefix}${FLUSH_PARTS}/`);
}
