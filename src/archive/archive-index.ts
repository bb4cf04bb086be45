import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectInfo, ObjectStore } from '../storage/object-store.js';
import { readCheckpoint, type Checkpoint } from './checkpoint.js';
import { FLUSH_PARTS, hourOfManifestKey, manifestsPrefix, rangeOfKey, TRANSACTIONS_TABLE, type HourKey } from './layout.js';
import { readFlushPartToc, type PartSection } from './flush-part.js';
import { parseManifest, sha256Hex, type HourManifest } from './manifest.js';
import { snapshotsPrefix, tableSnapshotsPrefix, type SnapshotManifest } from './snapshot-manifest.js';
import { readUnprovenRecords, unprovenWindows, type UnprovenWindow } from './unproven-tables.js';
import { readTableStarts, type TableStartWindow } from './table-starts.js';

/** A part of an hour that is not closed yet: complete (written atomically) but not in a manifest. */
export interface OpenPart {
  key: string;
  hour: HourKey;
  table: string;
  first: Position;
  last: Position;
  /** The sha256 prefix its name carries (parts written before names carried one have none). */
  sha256?: string;
  /** Its stored size, as the listing gave it (a restore sizes its spill partitions by it). */
  bytes?: number;
  /**
   * A flush part's table of contents (`table` is then FLUSH_PARTS): which tables it holds and
   * their position ranges. Absent for per-table parts (written before flush parts).
   */
  sections?: PartSection[];
}

/**
 * What a source's archive holds, read from the store alone: base snapshots, closed hours
 * (manifests with their own hashes), parts of open hours, and the checkpoint. Reading it
 * changes nothing. Readers see only what a manifest or a complete part name lists.
 */
export interface ArchiveIndex {
  source: string;
  snapshots: SnapshotManifest[];
  /** Each snapshot manifest with its object key and the sha256 of its bytes (archive MACs). */
  snapshotObjects: { key: string; sha256: string; manifest: SnapshotManifest }[];
  /**
   * Table-scoped bases (`chartlog resync`, table-snapshots/), in position order: each is the new
   * base of the tables it lists from its position on (chooseTableBase in replay.ts).
   * Optional so indexes built by hand (tests) need not name it.
   */
  tableSnapshots?: SnapshotManifest[];
  tableSnapshotObjects?: { key: string; sha256: string; manifest: SnapshotManifest }[];
  hours: { hour: HourKey; key: string; sha256: string; manifest: HourManifest }[];
  openParts: OpenPart[];
  checkpoint: Checkpoint | null;
  /**
   * Where a table cannot be proven: from a DDL that changed its rows without row events until
   * its new base (unproven-tables.ts). Optional so indexes built by hand (tests) need not name it.
   */
  unproven?: UnprovenWindow[];
  /** When tables started to exist (CREATE TABLE after the stream began: table-starts.ts). Optional like `unproven`. */
  tableStarts?: TableStartWindow[];
  /** Objects found but not readable as what their names say (named for verify). */
  unreadable: { key: string; reason: string }[];
}

/**
 * What one reader of a live archive keeps between reads of its index (a replica polls it twice a
 * second): the table of contents of each flush part, by key (a part is immutable: its name
 * carries its range and a hash prefix), and the bytes of each manifest, snapshot manifest and
 * unproven-table record, by key, size and modification time (the same object, unless rewritten).
 * So a read lists the prefixes and reads only what is new, not the whole hour's parts again.
 * Objects that fail to read are never kept: the next read tries them again.
 */
export class ArchiveIndexCache {
  private readonly tocs = new Map<string, PartSection[]>();
  private readonly bytes = new Map<string, { size: number; modified: number; bytes: Uint8Array }>();
  private listedTocs = new Set<string>();
  private listedBytes = new Set<string>();

  async toc(store: ObjectStore, key: string): Promise<PartSection[]> {
    this.listedTocs.add(key);
    let toc = this.tocs.get(key);
    if (!toc) {
      toc = await readFlushPartToc(store, key);
      this.tocs.set(key, toc);
    }
    return toc;
  }

  async get(store: ObjectStore, o: ObjectInfo): Promise<Uint8Array> {
    this.listedBytes.add(o.key);
    const held = this.bytes.get(o.key);
    const modified = o.lastModified.getTime();
    if (held && held.size === o.size && held.modified === modified) return held.bytes;
    const bytes = await store.get(o.key);
    this.bytes.set(o.key, { size: o.size, modified, bytes });
    return bytes;
  }

  /** Forgets what the last read did not list (parts merged by an hour closing, deleted objects). */
  prune(): void {
    for (const k of this.tocs.keys()) if (!this.listedTocs.has(k)) this.tocs.delete(k);
    for (const k of this.bytes.keys()) if (!this.listedBytes.has(k)) this.bytes.delete(k);
    this.listedTocs = new Set();
    this.listedBytes = new Set();
  }
}

/** Reads without a cache: every object listed is read. */
const uncached = {
  toc: (store: ObjectStore, key: string) => readFlushPartToc(store, key),
  get: (store: ObjectStore, o: ObjectInfo) => store.get(o.key),
  prune: () => undefined,
};

/**
 * `cache`: objects read by an earlier call with the same cache are not read again (a reader that
 * polls a live archive; see ArchiveIndexCache). The result is the same as without it.
 */
export async function readArchiveIndex(store: ObjectStore, source: string, cache?: ArchiveIndexCache): Promise<ArchiveIndex> {
  const objects = cache ?? uncached;
  const index: ArchiveIndex = { source, snapshots: [], snapshotObjects: [], tableSnapshots: [], tableSnapshotObjects: [], hours: [], openParts: [], checkpoint: null, unreadable: [] };
  // The checkpoint first, then parts, then manifests: everything the checkpoint covers was
  // stored before it, and an hour closed meanwhile is seen as its parts or its manifest (a
  // manifest is written before its parts are deleted), so a live archive never looks truncated.
  index.checkpoint = await readCheckpoint(store, source);
  const partsRoot = `${source}/parts/`;
  const flushParts: OpenPart[] = [];
  for await (const o of store.listAll(partsRoot)) {
    const m = o.key.slice(partsRoot.length).match(/^(\d{4}-\d{2}-\d{2})\/(\d{2})\/([^/]+)\//);
    const range = rangeOfKey(o.key);
    if (!m || !range) continue;
    const part: OpenPart = { key: o.key, hour: `${m[1]}T${m[2]}`, table: m[3]!, ...range, bytes: o.size };
    if (part.table === FLUSH_PARTS) flushParts.push(part);
    else index.openParts.push(part);
  }
  // A flush part holds several tables: its table of contents (its header, one range request) says
  // which. One deleted meanwhile was merged by an hour closing, whose manifest is listed below.
  const queue = [...flushParts];
  await Promise.all(Array.from({ length: Math.min(8, queue.length) }, async () => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      try {
        p.sections = await objects.toc(store, p.key);
        index.openParts.push(p);
      } catch (err) {
        if (err instanceof ChartlogError && err.code === 'not_found') continue;
        index.unreadable.push({ key: p.key, reason: err instanceof Error ? err.message : String(err) });
      }
    }
  }));
  index.openParts.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for await (const o of store.listAll(snapshotsPrefix(source))) {
    if (!o.key.endsWith('/manifest.json')) continue;
    try {
      const bytes = await objects.get(store, o);
      const manifest = JSON.parse(Buffer.from(bytes).toString('utf8')) as SnapshotManifest;
      index.snapshots.push(manifest);
      index.snapshotObjects.push({ key: o.key, sha256: sha256Hex(bytes), manifest });
    } catch (err) {
      index.unreadable.push({ key: o.key, reason: (err as Error).message });
    }
  }
  index.snapshots.sort((a, b) => Position.compare(Position.parse(a.position), Position.parse(b.position)));
  for await (const o of store.listAll(tableSnapshotsPrefix(source))) {
    if (!o.key.endsWith('/manifest.json')) continue;
    try {
      const bytes = await objects.get(store, o);
      const manifest = JSON.parse(Buffer.from(bytes).toString('utf8')) as SnapshotManifest;
      if (manifest.scope !== 'tables') throw new Error('not a table-scoped snapshot manifest (scope is not "tables")');
      index.tableSnapshots!.push(manifest);
      index.tableSnapshotObjects!.push({ key: o.key, sha256: sha256Hex(bytes), manifest });
    } catch (err) {
      index.unreadable.push({ key: o.key, reason: (err as Error).message });
    }
  }
  index.tableSnapshots!.sort((a, b) => Position.compare(Position.parse(a.position), Position.parse(b.position)));

  for await (const o of store.listAll(manifestsPrefix(source))) {
    const hour = hourOfManifestKey(source, o.key);
    if (!hour) continue;
    const bytes = await objects.get(store, o);
    try {
      index.hours.push({ hour, key: o.key, sha256: sha256Hex(bytes), manifest: parseManifest(bytes, o.key) });
    } catch (err) {
      index.unreadable.push({ key: o.key, reason: err instanceof ChartlogError ? err.message : String(err) });
    }
  }
  index.hours.sort((a, b) => (a.hour < b.hour ? -1 : 1));
  index.unproven = unprovenWindows(await readUnprovenRecords(store, source, (o) => objects.get(store, o)), [...index.snapshots, ...index.tableSnapshots!]);
  index.tableStarts = await readTableStarts(store, source, (o) => objects.get(store, o));
  objects.prune();

  return index;
}

/** Every table name the archive knows (snapshots, table-scoped snapshots, closed hours, open parts), sorted. */
export function tablesOf(index: ArchiveIndex): string[] {
  const names = new Set<string>();
  for (const s of index.snapshots) for (const t of Object.keys(s.tables)) names.add(t);
  // A table whose only record is a table-scoped base (a detached partition no change followed).
  for (const s of index.tableSnapshots ?? []) for (const t of Object.keys(s.tables)) names.add(t);
  for (const h of index.hours) for (const o of h.manifest.objects) if (o.table !== TRANSACTIONS_TABLE) names.add(o.table);
  for (const p of index.openParts) {
    for (const table of p.sections ? p.sections.map((s) => s.table) : [p.table]) if (table !== TRANSACTIONS_TABLE) names.add(table);
  }
  return [...names].sort();
}
