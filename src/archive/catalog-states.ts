import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { SavedCatalogState } from '../core/catalog-state.js';
import type { ObjectStore } from '../storage/object-store.js';

/**
 * A connector's recorded view of the source catalog (src/core/catalog-state.ts; docs/formats.md,
 * "Catalog states"): one immutable object per state saved, named by the stream position it was
 * taken at and a sequence of its writer so two states of one position never collide,
 *
 *   <source>/catalog-states/<position>-<written µs, 16 digits>.json
 *
 * holding `{ format: 1, position, state }`, `state` the connector's own JSON. A connector saves
 * one only when its view changed (rarely: a DDL), so the folder stays small. The newest at or
 * before a resume position is the one read back; an unreadable one stops the start (integrity)
 * rather than be skipped: skipping it could hide a change made while chartlog was stopped.
 */
interface CatalogStateObject {
  format: 1;
  position: string;
  state: unknown;
}

export function catalogStatesPrefix(source: string): string {
  return `${source}/catalog-states/`;
}

export async function writeCatalogState(store: ObjectStore, source: string, saved: SavedCatalogState, nowUs: bigint = BigInt(Date.now()) * 1000n): Promise<void> {
  const body: CatalogStateObject = { format: 1, position: Position.format(saved.position), state: saved.state };
  const key = `${catalogStatesPrefix(source)}${Position.format(saved.position)}-${nowUs.toString().padStart(16, '0')}.json`;
  await store.putIfAbsent(key, Buffer.from(`${JSON.stringify(body)}\n`), { contentType: 'application/json' });
}

/** The newest state whose position is at or before `upTo`; null when none is. */
export async function readCatalogState(store: ObjectStore, source: string, upTo: Position): Promise<SavedCatalogState | null> {
  let best: { key: string; position: Position } | null = null;
  for await (const o of store.listAll(catalogStatesPrefix(source))) {
    const name = o.key.slice(catalogStatesPrefix(source).length);
    const m = /^(.+)-(\d{16})\.json$/.exec(name);
    if (!m) continue;
    const position = Position.parse(m[1]!);
    if (Position.compare(position, upTo) > 0) continue;
    if (!best || Position.compare(position, best.position) > 0 || (Position.compare(position, best.position) === 0 && o.key > best.key)) best = { key: o.key, position };
  }
  if (!best) return null;
  try {
    const r = JSON.parse(Buffer.from(await store.get(best.key)).toString('utf8')) as CatalogStateObject;
    if (r.format !== 1) throw new Error(`format ${String(r.format)} is not 1: written by a newer chartlog`);
    return { position: Position.parse(r.position), state: r.state };
  } catch (err) {
    throw new ChartlogError('integrity', `unreadable catalog state ${best.key}: ${(err as Error).message}`, {
      hint: 'chartlog cannot tell what changed in the source catalog while it was stopped without it; restore the object from a copy of the archive, or run a newer chartlog',
    });
  }
}
