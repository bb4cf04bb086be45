import type { Position } from './position.js';

/**
 * A captured table's start (CREATE TABLE), as a connector saw it: the table did not exist
 * before `from` (position) / `fromCommitTsUs` (time), and surely exists from `seenAt` /
 * `seenAtCommitTsUs` on. MariaDB/MySQL know it exactly (the statement's own position and
 * time: both bounds equal); PostgreSQL's logical decoding carries no DDL, so its catalog check
 * bounds it between the last reading without the table and the first with it — a moment
 * between the two is not guessed: restore refuses it for that table (src/archive/table-starts.ts).
 */
export interface TableStart {
  /** "schema.table" */
  readonly table: string;
  readonly from: Position;
  readonly fromCommitTsUs: bigint;
  readonly seenAt: Position;
  readonly seenAtCommitTsUs: bigint;
}

/**
 * Records a table's start durably (the pipeline writes it to the archive). The connector
 * awaits it before handing on anything that follows the CREATE where it can (MariaDB/MySQL);
 * a failure is retriable (the stream restarts from what was published).
 */
export type RecordTableStart = (start: TableStart) => Promise<void>;
