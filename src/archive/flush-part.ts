import avro from 'avsc';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { containerHeader, encodeLong, openAvroContainer } from './avro-container.js';
import { FLUSH_PARTS } from './layout.js';

/**
 * Flush parts (docs/formats.md, "Flush parts"): one object per flush and hour holding every
 * table's records and the transaction log of that flush, so a source costs one PUT per flush
 * whatever the number of tables it changed.
 *
 * The object is an Avro container file (codec `null`) whose records are *sections*: a table (or
 * `~transactions`), a writer-schema fingerprint and a complete Avro container holding that
 * table's records under its own writer schema — the very bytes a per-table part held. One
 * section per block. Its metadata carries the table of contents (`chartlog.sections`), so a
 * reader learns which tables a part holds, and their position ranges, from its first bytes.
 *
 * Why containers inside a container rather than one container whose records carry their table:
 * each table's records stay decodable with their own writer schema by any Avro tool (cut a
 * section out: it is a standard container), the per-table reading code is the same for the old
 * per-table parts (one section) and the new ones, and hour closing copies section records into
 * segments without decoding them.
 */

/** The `chartlog.format` of flush parts this version writes and reads. */
export const FLUSH_PART_FORMAT = '1';

const sectionSchema = {
  type: 'record',
  name: 'FlushSection',
  namespace: 'io.chartlog',
  fields: [
    { name: 'table', type: 'string' },
    { name: 'fingerprint', type: 'string' },
    { name: 'container', type: 'bytes' },
  ],
} as const;
const sectionSchemaJson = JSON.stringify(sectionSchema);
const sectionType = avro.Type.forSchema(sectionSchema as unknown as avro.Schema);

/** One section as the table of contents lists it. */
export interface PartSection {
  readonly table: string;
  readonly fingerprint: string;
  readonly records: number;
  /** Bytes of the section's container (a restore sizes its spill partitions by it). */
  readonly bytes: number;
  /** The lowest and highest position of its records. */
  readonly first: Position;
  readonly last: Position;
}

export interface SectionBody extends PartSection {
  /**
   * A complete Avro container of the section's records, under its own writer schema: whole, or
   * as the pieces whose concatenation it is (AvroContainerWriter.toChunks), copied only into the part.
   */
  readonly container: Buffer | readonly Buffer[];
}

/**
 * Encodes a flush part: the sections in the order given, one block each. The bytes are those of
 * an AvroContainerWriter (codec null) given one `sectionType` record per block, assembled here
 * so that each section's container is copied once, into the part, rather than once per layer
 * (container, record, block, file): a large transaction's parts were four copies of garbage
 * each (benchmarks/memory.bench.ts). test/unit/archive/flush-part.test.ts pins the equality.
 */
export async function encodeFlushPart(sections: readonly SectionBody[], sync: Buffer): Promise<Buffer> {
  const toc = sections.map((s) => ({ table: s.table, fingerprint: s.fingerprint, records: s.records, bytes: s.bytes, first: Position.format(s.first), last: Position.format(s.last) }));
  // The sections are compressed containers already: the outer file adds no second deflate.
  const pieces: Buffer[] = [
    containerHeader(sectionSchemaJson, { codec: 'null', metadata: { 'chartlog.table': FLUSH_PARTS, 'chartlog.format': FLUSH_PART_FORMAT, 'chartlog.sections': JSON.stringify(toc) } }),
    sync,
  ];
  for (const s of sections) {
    const container = Buffer.isBuffer(s.container) ? [s.container] : (s.container as readonly Buffer[]);
    let containerBytes = 0;
    for (const c of container) containerBytes += c.length;
    // The record: table and fingerprint (Avro strings), then the container (Avro bytes).
    const head = Buffer.concat([avroString(s.table), avroString(s.fingerprint), encodeLong(containerBytes)]);
    // The block: one record, its byte size, the record, the sync marker.
    pieces.push(encodeLong(1), encodeLong(head.length + containerBytes), head, ...container, sync);
  }
  return Buffer.concat(pieces);
}

function avroString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([encodeLong(b.length), b]);
}

/** The table of contents of a flush part, from its header (the object's first bytes suffice). */
export function flushPartToc(bytes: Uint8Array, key: string): PartSection[] {
  const { header } = openAvroContainer(bytes, key);
  const m = header.metadata;
  if (m['chartlog.format'] !== FLUSH_PART_FORMAT || m['chartlog.table'] !== FLUSH_PARTS) {
    throw new ChartlogError('integrity', `${key} is not a flush part of format ${FLUSH_PART_FORMAT} (chartlog.format ${JSON.stringify(m['chartlog.format'] ?? null)})`, {
      hint: 'a newer chartlog wrote it, or it was damaged: run `chartlog verify`',
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(m['chartlog.sections'] ?? '');
  } catch {
    raw = null;
  }
  const bad = (why: string) => new ChartlogError('integrity', `${key}: its table of contents (chartlog.sections) ${why}`, { hint: 'run `chartlog verify`' });
  if (!Array.isArray(raw)) throw bad('is not a JSON list');
  return raw.map((e: unknown, i): PartSection => {
    const s = e as Record<string, unknown>;
    if (typeof s !== 'object' || s === null || typeof s.table !== 'string' || typeof s.fingerprint !== 'string' || typeof s.first !== 'string' || typeof s.last !== 'string') {
      throw bad(`entry ${i} lacks table, fingerprint, first or last`);
    }
    if (!Number.isSafeInteger(s.records) || (s.records as number) < 0 || !Number.isSafeInteger(s.bytes) || (s.bytes as number) < 0) throw bad(`entry ${i} has no record or byte count`);
    let first: Position;
    let last: Position;
    try {
      first = Position.parse(s.first);
      last = Position.parse(s.last);
    } catch {
      throw bad(`entry ${i} names a position that does not parse`);
    }
    return { table: s.table, fingerprint: s.fingerprint, records: s.records as number, bytes: s.bytes as number, first, last };
  });
}

/** The bytes read first for a table of contents; a part whose header is longer is read whole. */
const HEAD_BYTES = 64 * 1024;

/** A stored flush part's table of contents, read with a range request for its header. */
export async function readFlushPartToc(store: ObjectStore, key: string): Promise<PartSection[]> {
  const head = await store.getRange(key, 0, HEAD_BYTES);
  try {
    return flushPartToc(head, key);
  } catch (err) {
    if (head.byteLength < HEAD_BYTES) throw err; // the whole object was read: it is damaged
    return flushPartToc(await store.get(key), key); // a header longer than the range (many tables)
  }
}

/**
 * The container of section `index` of a flush part, checked against the table of contents: the
 * section's table and fingerprint must be the ones its entry names.
 */
export function flushPartSection(bytes: Uint8Array, key: string, index: number): { table: string; fingerprint: string; container: Buffer } {
  const toc = flushPartToc(bytes, key);
  const want = toc[index];
  if (!want) throw new ChartlogError('internal', `${key} has no section ${index}`);
  let i = 0;
  for (const block of openAvroContainer(bytes, key).blocks) {
    if (i++ < index) continue;
    if (block.count !== 1) throw new ChartlogError('integrity', `${key}: a block holds ${block.count} sections, not one`, { hint: 'run `chartlog verify`' });
    let s: { table: string; fingerprint: string; container: Buffer };
    try {
      const { value, offset } = sectionType.decode(block.data, 0);
      if (offset !== block.data.length) throw new Error('bytes after the section');
      s = value as typeof s;
    } catch (err) {
      throw new ChartlogError('integrity', `${key}: section ${index} does not decode`, { cause: err, hint: 'run `chartlog verify`' });
    }
    if (s.table !== want.table || s.fingerprint !== want.fingerprint) {
      throw new ChartlogError('integrity', `${key}: section ${index} holds ${s.table} (${s.fingerprint}), its table of contents says ${want.table} (${want.fingerprint})`, { hint: 'run `chartlog verify`' });
    }
    return s;
  }
  throw new ChartlogError('integrity', `${key} has ${i} sections, its table of contents lists ${toc.length}`, { hint: 'run `chartlog verify`' });
}
