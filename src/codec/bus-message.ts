import type { Position } from '../core/position.js';

/**
 * What travels on a bus: one source transaction, encoded. Values are Avro single-object
 * messages with PHI already sealed; nothing on a bus is plaintext PHI.
 */
export interface BusMessage {
  /** "schema.table". */
  readonly table: string;
  /** Rabin fingerprint of the writer schema, 16 lowercase hex digits. */
  readonly fingerprint: string;
  /** Encoded primary key (Kafka partitioning), null for tables without one. */
  readonly key: Uint8Array | null;
  /** Avro single-object encoding (single-object.ts): C3 01, fingerprint (8 bytes LE), record body. */
  readonly value: Uint8Array;
  /** The event's position (the transaction's commit part, the event's seq). */
  readonly position: Position;
}

export interface BusBatch {
  readonly source: string;
  /** The transaction's position (seq = COMMIT_SEQ): what is acknowledged once durable. */
  readonly position: Position;
  /** The position of the batch published before this one (null for the first ever). */
  readonly previous: Position | null;
  readonly txId: string | null;
  readonly commitTsUs: bigint;
  readonly messages: readonly BusMessage[];
}
