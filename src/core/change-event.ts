import type { Position } from './position.js';
import type { Row, TableSchema } from './table-schema.js';

/**
 * Debezium's operation codes: c insert, u update, d delete, r snapshot read, t truncate; and
 * chartlog's x: the table was dropped (its end: a restore to a later moment does not create it,
 * unless a change of a table of that name follows).
 */
export type Op = 'c' | 'u' | 'd' | 'r' | 't' | 'x';

/**
 * One row change (or a truncate) as the connector decoded it: plaintext, exact values.
 *
 * - insert/snapshot read: `before` null, `after` the new row.
 * - update: `after` the new row; `before` the old row when the source sends one (MySQL full
 *   image, PostgreSQL REPLICA IDENTITY FULL), the old key only (PostgreSQL key change), or null.
 * - delete: `before` the old row or only its key columns; `after` null.
 * - truncate, drop: both null.
 */
export interface ChangeEvent {
  readonly op: Op;
  /** The table version the row was decoded with. */
  readonly schema: TableSchema;
  readonly before: Row | null;
  readonly after: Row | null;
  /** commit part = the transaction's; seq = this event's index in it. */
  readonly position: Position;
}

/**
 * One source transaction, whole: events in source order and the position to acknowledge once
 * every event is durable downstream. DDL and TRUNCATE may come as batches of their own.
 */
export interface ChangeBatch {
  /** Source name from configuration. */
  readonly source: string;
  /** Source transaction id (PostgreSQL xid, MySQL/MariaDB GTID or xid), null when unknown. */
  readonly txId: string | null;
  /** The transaction's position: its commit part with seq = COMMIT_SEQ. */
  readonly position: Position;
  /** Commit time, microseconds since the Unix epoch (second resolution on MySQL binlogs). */
  readonly commitTsUs: bigint;
  /** True for the batches of a consistent snapshot (op 'r'). */
  readonly snapshot: boolean;
  readonly events: readonly ChangeEvent[];
  /**
   * True when this batch is one part of a transaction too large to deliver at once (bounded
   * memory); the transaction continues in the next batch(es) with the same commit part. A
   * partial batch's `position` is its last event's position (seq < COMMIT_SEQ), so it sorts
   * before the transaction's last batch, which carries the transaction's position and no
   * `partial`. Acknowledging a partial position is allowed but confirms nothing to the source;
   * `stream({ from })` with one resumes after that event. Absent on whole transactions.
   */
  readonly partial?: boolean;
  /**
   * Table versions that became current in this batch (DDL, relation message) even when no row
   * of that table changed in it, so schema history is complete.
   */
  readonly schemaChanges?: readonly TableSchema[];
}
