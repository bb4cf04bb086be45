import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';

export interface SnapshotPart {
  key: string;
  fingerprint: string;
  sha256: string;
  bytes: number;
  rows: number;
}

export interface SnapshotTable {
  /** Schema version of the table at the snapshot (also for tables with no rows). */
  fingerprint: string;
  rows: number;
  parts: SnapshotPart[];
}

/** snapshots/<id>/manifest.json: written last, so a snapshot exists only once complete. */
export interface SnapshotManifest {
  version: 1;
  source: string;
  id: string;
  /** The consistent position: the stream continues with what committed after it. */
  position: string;
  commitTsUs: string;
  takenAt: string;
  /**
   * 'source' for a connector's consistent snapshot, 'synthesised' for one built from the archive,
   * 'resync' for a table-scoped re-snapshot read from the source while the stream ran.
   */
  origin: 'source' | 'synthesised' | 'resync';
  /**
   * Absent: the whole source (every captured table). 'tables': a table-scoped base
   * (`chartlog resync`), stored under table-snapshots/: a new base of the tables it lists only,
   * from its position on; every other table keeps its base from `snapshots/`.
   */
  scope?: 'tables';
  tables: Record<string, SnapshotTable>;
}

export function snapshotsPrefix(source: string): string {
  return `${source}/snapshots/`;
}

export function snapshotManifestKey(source: string, id: string): string {
  return `${snapshotsPrefix(source)}${id}/manifest.json`;
}

/**
 * Table-scoped bases (`chartlog resync`) live under their own prefix, so a chartlog version
 * that does not know them ignores them (and restores those tables from the older base plus the
 * stream, as before) instead of taking one for a base of the whole source.
 */
export function tableSnapshotsPrefix(source: string): string {
  return `${source}/table-snapshots/`;
}

export function tableSnapshotManifestKey(source: string, id: string): string {
  return `${tableSnapshotsPrefix(source)}${id}/manifest.json`;
}

/** Snapshots are listed by their manifests; anything else under snapshots/ is an interrupted attempt. */
export async function listSnapshots(store: ObjectStore, source: string): Promise<SnapshotManifest[]> {
  const out: SnapshotManifest[] = [];
  for await (const o of store.listAll(snapshotsPrefix(source))) {
    if (!o.key.endsWith('/manifest.json')) continue;
    const m = JSON.parse(Buffer.from(await store.get(o.key)).toString('utf8')) as SnapshotManifest;
    out.push(m);
  }
  return out.sort((a, b) => Position.compare(Position.parse(a.position), Position.parse(b.position)));
}
