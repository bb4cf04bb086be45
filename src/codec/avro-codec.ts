import type { ChangeBatch } from '../core/change-event.js';
import type { Position } from '../core/position.js';
import type { Row, TableSchema } from '../core/table-schema.js';
import type { ColumnPolicy } from '../phi/column-policy.js';
import type { CryptoPool } from '../phi/crypto-pool.js';
import type { KeyManager } from '../phi/key-manager.js';
import type { BlockOrdinals } from '../phi/block-seal.js';
import { PhiOpener, type OpenAuditEntry } from '../phi/phi-opener.js';
import type { BusMessage } from './bus-message.js';
import { CompiledTables } from './compiled-table.js';
import type { DecodedChange } from './envelope-reader.js';
import { EnvelopeWriter } from './envelope-writer.js';
import { MessageDecoder, type BlockRows } from './message-decoder.js';
import { MessageEncoder, type BaseMessage } from './message-encoder.js';
import type { RegisteredSchema, SchemaStore } from './schema-store.js';
import { singleObjectFingerprint } from './single-object.js';

export type { DecodedChange } from './envelope-reader.js';
export type { BlockRows } from './message-decoder.js';

/**
 * Change events ↔ Avro single-object messages (single-object.ts), PHI columns sealed on the way
 * in (docs/architecture.md §2–§3).
 *
 * Encoding stores each table version's schema (SchemaStore) before returning a message that
 * uses it. Decoding returns exactly the event that went in; sealed values stay sealed bytes
 * unless `open` is asked for, which needs the keyring (a KeyManager). Errors name tables and
 * columns, never values.
 *
 * This class only composes the parts: compiled-table.ts (table versions), envelope-writer.ts
 * and envelope-reader.ts (the Avro envelope, direct and through avsc), message-encoder.ts and
 * message-decoder.ts (batches, data keys, the crypto thread) and phi/phi-opener.ts (opening
 * and its audit).
 */

export interface AvroCodecOptions {
  /** Source name from configuration. */
  source: string;
  /** 'postgres' | 'mysql': the envelope's source.connector. */
  connector: string;
  /** The source database name (PostgreSQL database; '' when the schema names it, as on MySQL). */
  db?: string;
  schemas: SchemaStore;
  /** Which columns to seal; absent: none (archive readers). */
  policy?: ColumnPolicy;
  /** Data keys: needed to seal PHI columns and to open them. */
  keys?: KeyManager;
  /** The envelope's tsUs (processing time), microseconds since the epoch. */
  clock?: () => bigint;
  /**
   * Called once for every message whose PHI is opened (docs/architecture.md §5: every opening is
   * audited). Gets names, positions and key ids only, never values.
   */
  onOpen?: (entry: OpenAuditEntry) => void;
  /** Seals and opens the PHI of many messages at once on worker threads; absent: everything on this thread. */
  cryptoPool?: CryptoPool;
  /** Batches of at least this many messages go to the pool (default 16): below, a thread's round trip costs more than it saves. */
  poolFrom?: number;
}

export class AvroCodec {
  /** Where the codec stores the schemas of the table versions it writes, and resolves those it reads. */
  readonly schemas: SchemaStore;
  private readonly tables: CompiledTables;
  private readonly encoder: MessageEncoder;
  private readonly decoder: MessageDecoder;

  constructor(options: AvroCodecOptions) {
    const poolFrom = options.poolFrom ?? 16;
    this.schemas = options.schemas;
    this.tables = new CompiledTables(options.source, options.schemas, options.policy);
    this.encoder = new MessageEncoder({
      source: options.source,
      tables: this.tables,
      writer: new EnvelopeWriter({ source: options.source, connector: options.connector, db: options.db ?? '' }, options.keys),
      keys: options.keys,
      clock: options.clock ?? (() => BigInt(Date.now()) * 1000n),
      cryptoPool: options.cryptoPool,
      poolFrom,
    });
    this.decoder = new MessageDecoder({
      tables: this.tables,
      opener: new PhiOpener({ source: options.source, ...(options.keys ? { keys: options.keys } : {}), ...(options.onOpen ? { onOpen: options.onOpen } : {}) }),
      cryptoPool: options.cryptoPool,
      poolFrom,
    });
  }

  /**
   * Checks a table version against the PHI policy (strict tables fail closed with
   * 'phi_policy') and stores its schema. Returns the fingerprint, 16 hex digits.
   */
  async fingerprintOf(table: TableSchema): Promise<string> {
    return (await this.tables.compile(table)).registered.fingerprintHex;
  }

  /** The stored form of a table version (compiled and stored as `fingerprintOf` does): its sealed columns and missing values as archived. */
  async registeredOf(table: TableSchema): Promise<RegisteredSchema> {
    return (await this.tables.compile(table)).registered;
  }

  /** Every event of a transaction as messages, PHI sealed, schemas durable first. */
  encodeBatch(batch: ChangeBatch): Promise<BusMessage[]> {
    return this.encoder.encodeBatch(batch);
  }

  /** A base snapshot's batch, its rows block-sealed: see MessageEncoder.encodeBaseSnapshot. */
  encodeBaseSnapshot(batch: ChangeBatch, ordinals: BlockOrdinals): Promise<BaseMessage[]> {
    return this.encoder.encodeBaseSnapshot(batch, ordinals);
  }

  /** A row read from the archive without opening, as a snapshot read: see MessageEncoder.encodeSnapshotRead. */
  encodeSnapshotRead(fingerprint: string, row: Row, o: { position: Position; commitTsUs: bigint; tsUs: bigint }): Promise<BusMessage> {
    return this.encoder.encodeSnapshotRead(fingerprint, row, o);
  }

  /** Reads a message's writer-schema fingerprint without decoding it. */
  static fingerprintOfMessage(message: Uint8Array): bigint {
    return singleObjectFingerprint(message);
  }

  /**
   * The event a message holds. Sealed PHI stays sealed bytes unless `open` is true, which
   * needs a KeyManager; opening fails with 'integrity' on any tampering, never wrong plaintext.
   */
  decode(message: Uint8Array, options: { open?: boolean } = {}): Promise<DecodedChange> {
    return this.decoder.decode(message, options);
  }

  /** `decode` of many messages, in order; with `open` and a crypto pool, their PHI is opened on its thread. */
  decodeMany(messages: readonly Uint8Array[], options: { open?: boolean } = {}): Promise<DecodedChange[]> {
    return this.decoder.decodeMany(messages, options);
  }

  /**
   * Reads the container blocks of one table version in place (restore's base snapshot rows):
   * see BlockRows. Null for a version not read directly (written by another codec version):
   * decode its messages with `decodeMany`.
   */
  blockRows(fingerprint: string): Promise<BlockRows | null> {
    return this.decoder.blockRows(BigInt(`0x${fingerprint}`));
  }

  /** How this codec writes and reads a table version's messages: for tests and diagnostics. */
  async avroPathOf(fingerprint: string): Promise<'direct' | 'avsc'> {
    return (await this.tables.compiledFor(BigInt(`0x${fingerprint}`))).direct ? 'direct' : 'avsc';
  }
}
