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
  /** 'source' for a connector's consistent snapshot, 'synthesised' for one built from the archive. */
  origin: 'source' | 'synthesised';
  tables: Record<string, SnapshotTable>;
}

export function snapshotsPrefix(source: string): string {
  return `${source}/snapshots/`;
}

export function snapshotManifestKey(source: string, id: string): string {
  return `${snapshotsPrefix(source)}${id}/manifest.json`;
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
