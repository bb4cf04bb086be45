import type { Position } from './position.js';

/**
 * What a connector keeps in the archive about the source's catalog, so that a change made while
 * `chartlog run` was stopped (a PostgreSQL table rewrite, a rename, a partition attached or
 * detached: none of them reaches the stream) is found at the next start by comparing the catalog
 * then with what was last recorded (connectors/postgres/catalog-memory.ts). The state is the
 * connector's own JSON (it carries its own format number); the archive only stores it under the
 * stream position it was taken at (src/archive/catalog-states.ts).
 *
 * A state is saved only once every resync request made before it is durable (the pipeline awaits
 * them first), so a kill -9 between a change found and its request recorded leaves the older state
 * in place: the next start finds the change again.
 */
export interface SavedCatalogState {
  /** The stream position the state was taken at: every change after it is not in the stream's view yet. */
  readonly position: Position;
  readonly state: unknown;
}

/**
 * A change a connector found and whose window the archive recorded (an unproven-table record
 * carrying the connector's `catalog` text), found after the state `load` returns: a start that
 * finds the same change against that state knows it is covered (src/core/resync-request.ts).
 */
export interface RecordedChange {
  readonly table: string;
  readonly catalog: string;
}

export interface CatalogStates {
  /**
   * The newest state saved at or before `upTo` (the position the stream resumes from: a state of
   * a later, never durable position is not used), and the archive's commit time of `upTo` (its
   * checkpoint), or null when it has none.
   */
  load(upTo: Position): Promise<{ saved: SavedCatalogState | null; upToCommitTsUs: bigint | null; recorded?: readonly RecordedChange[] }>;
  /** Stores a state; resolves once it is durable and every resync request made before it is. */
  save(saved: SavedCatalogState): Promise<void>;
}
