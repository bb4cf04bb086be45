import type { ChangeBatch } from '../core/change-event.js';
import type { TableSchema } from '../core/table-schema.js';
import type { BusMessage } from './bus-message.js';
import type { BlockOrdinals } from '../phi/block-seal.js';
import type { BaseMessage } from './message-encoder.js';

/**
 * Turns a plaintext batch into bus messages: PHI sealed, Avro single-object encoded. The
 * writer schema of every message is durable in the store (schemas/<fingerprint>.json) before
 * the message is returned, so nothing downstream can hold a record whose schema is missing.
 */
export interface BatchEncoder {
  encode(batch: ChangeBatch): Promise<BusMessage[]>;
  /**
   * A base snapshot's batch for its parts (never for a bus): rows block-sealed (format 5,
   * MessageEncoder.encodeBaseSnapshot), `ordinals` the snapshot's own. Absent: `encode`.
   */
  encodeBase?(batch: ChangeBatch, ordinals: BlockOrdinals): Promise<BaseMessage[]>;
  /** Stores a table version's schema if new; returns its fingerprint. */
  fingerprintOf(source: string, schema: TableSchema): Promise<string>;
}
