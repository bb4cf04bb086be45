import type { Position } from './position.js';

/**
 * How a connector asks for an online re-snapshot of tables it can no longer prove it streamed
 * whole (a DDL that rewrote a table without row events, a catalog change it cannot decode):
 * it calls the function it was given with the tables and a reason for the log, and keeps
 * streaming. The pipeline answers by running `chartlog resync` for those tables in the
 * background (src/pipeline/resync-queue.ts → resyncTables): a new base of each table at a
 * position of the stream, so a restore after it is right again. Calling it never blocks and
 * never throws; asking again for a table already queued or running is merged.
 */
export interface ResyncRequest {
  /** "schema.table" names, as the connector's `tables()` gives them. */
  readonly tables: readonly string[];
  /** Why, for the operator's log (never a row value). */
  readonly reason: string;
  /**
   * Where the table stops being provable (src/archive/unproven-tables.ts): `from` the earliest
   * position and `fromCommitTsUs` the earliest commit time the DDL may have had, `seenAt` a
   * position at or after its commit (a base read from then on holds its effect). The pipeline
   * records it durably before publishing anything later from the stream, so a restore inside
   * the window is refused and a crash does not lose the request. Absent: nothing is recorded.
   */
  readonly window?: {
    readonly from: Position;
    readonly fromCommitTsUs: bigint;
    readonly seenAt: Position;
    /**
     * What the connector read that showed the change (its own text, e.g. PostgreSQL's
     * "relfilenode 16410"), kept in the record: a start after a crash that finds the same change
     * again against an older catalog state knows it is already recorded (CatalogStates.load's
     * `recorded`) instead of opening a second, wider window.
     */
    readonly catalog?: string;
  };
}

export type RequestResync = (request: ResyncRequest) => void;
