import type { CryptoPool } from '../phi/crypto-pool.js';
import type { PhiOpener } from '../phi/phi-opener.js';
import type { CompiledTables } from './compiled-table.js';
import type { Row, TableSchema } from '../core/table-schema.js';
import type { AvroReader } from './avro-binary.js';
import type { CompiledTable } from './compiled-table.js';
import { readBlockRecord, readEnvelope, type BlockRecord, type DecodedChange } from './envelope-reader.js';
import { singleObjectFingerprint } from './single-object.js';

export interface MessageDecoderOptions {
  tables: CompiledTables;
  opener: PhiOpener;
  /** Opens the PHI of many messages at once on a worker thread; absent: everything on this thread. */
  cryptoPool: CryptoPool | undefined;
  /** `decodeMany` of at least this many messages goes to the pool. */
  poolFrom: number;
}

/** Bus or archive messages → the events they hold, PHI opened only when asked (by the PhiOpener). */
export class MessageDecoder {
  private readonly tables: CompiledTables;
  private readonly opener: PhiOpener;
  private readonly cryptoPool: CryptoPool | undefined;
  private readonly poolFrom: number;

  constructor(o: MessageDecoderOptions) {
    this.tables = o.tables;
    this.opener = o.opener;
    this.cryptoPool = o.cryptoPool;
    this.poolFrom = o.poolFrom;
  }

  /**
   * The event a message holds. Sealed PHI stays sealed bytes unless `open` is true, which
   * needs a KeyManager; opening fails with 'integrity' on any tampering, never wrong plaintext.
   */
  async decode(message: Uint8Array, options: { open?: boolean } = {}): Promise<DecodedChange> {
    const fingerprint = singleObjectFingerprint(message);
    const compiled = this.tables.readyFor(fingerprint) ?? (await this.tables.compiledFor(fingerprint));
    const opening = options.open === true && compiled.sealedColumns.length > 0;
    const decoded = readEnvelope(compiled, message, opening);
    if (!opening) return this.keptSealed(compiled, decoded);
    const { before, after, position, op } = decoded.event;
    // Synchronous when every data key the message names is in memory already.
    const loading = this.opener.open(compiled, before, after, position, op !== 'r');
    if (loading) await loading;
    return decoded; // read with `opening`: its sealedColumns is empty already
  }

  /**
   * `decode` of many messages, in order. With `open` and a crypto pool, the PHI of all of them
   * is opened on the pool's thread in one request while this thread goes on (restore decodes
   * the next block meanwhile): the same events, the same audit entries, the same errors.
   */
  /**
   * A change read without opening: a block-sealed base-snapshot row (format 5) is re-sealed per
   * row (PhiOpener.keepSealed), so what leaves sealed opens on its own; others as they are.
   */
  private async keptSealed(compiled: CompiledTable, decoded: DecodedChange): Promise<DecodedChange> {
    if (compiled.sealedColumns.length > 0 && decoded.event.op === 'r') {
      const loading = this.opener.keepSealed(compiled, decoded.event.after, decoded.event.position);
      if (loading) await loading;
    }
    return decoded;
  }

  /** `keptSealed` of records read where they lie (BlockRows), in order. */
  async keepSealed(compiled: CompiledTable, records: readonly BlockRecord[]): Promise<void> {
    for (const d of records) {
      if (d.op !== 'r') continue;
      const loading = this.opener.keepSealed(compiled, d.after, d.position);
      if (loading) await loading;
    }
  }

  async decodeMany(messages: readonly Uint8Array[], options: { open?: boolean } = {}): Promise<DecodedChange[]> {
    const pool = this.cryptoPool;
    if (options.open !== true || !pool || messages.length < this.poolFrom) {
      const out: DecodedChange[] = [];
      for (const m of messages) out.push(await this.decode(m, options));
      return out;
    }
    const decoded: DecodedChange[] = [];
    const opening = this.opener.pooled();
    for (const message of messages) {
      const fingerprint = singleObjectFingerprint(message);
      const compiled = this.tables.readyFor(fingerprint) ?? (await this.tables.compiledFor(fingerprint));
      if (compiled.sealedColumns.length === 0) {
        decoded.push(readEnvelope(compiled, message));
        continue;
      }
      // (With `open`: a block-sealed row is opened by `add` like any other.)
      const d = readEnvelope(compiled, message, true);
      const loading = opening.add(compiled, d.event.before, d.event.after, d.event.position, d.event.op !== 'r');
      if (loading) await loading;
      decoded.push(d); // read with `opening`: its sealedColumns is empty already
    }
    await opening.run(pool);
    return decoded;
  }

  /**
   * A reader of container blocks whose records are all of one table version (a base snapshot's
   * part): see BlockRows. Null when the version is not read directly (a schema another codec
   * version wrote): the caller decodes its messages with `decodeMany`.
   */
  async blockRows(fingerprint: bigint): Promise<BlockRows | null> {
    const compiled = this.tables.readyFor(fingerprint) ?? (await this.tables.compiledFor(fingerprint));
    return compiled.direct ? new BlockRows(compiled, this) : null;
  }

  /**
   * Opens the PHI of records read with `opening` in place, in order, as `decodeMany` does (the
   * pool's thread for at least `poolFrom` records, this thread below): the same audit entries,
   * the same errors.
   */
  async openRecords(compiled: CompiledTable, records: readonly BlockRecord[]): Promise<void> {
    const pool = this.cryptoPool;
    if (!pool || records.length < this.poolFrom) {
      for (const d of records) {
        const loading = this.opener.open(compiled, d.before, d.after, d.position, d.op !== 'r');
        if (loading) await loading;
      }
      return;
    }
    const opening = this.opener.pooled();
    for (const d of records) {
      const loading = opening.add(compiled, d.before, d.after, d.position, d.op !== 'r');
      if (loading) await loading;
    }
    await opening.run(pool);
  }
}

/**
 * The rows of a base snapshot's container blocks, read where they lie (envelope-reader.ts,
 * readBlockRecord) rather than split into messages and decoded one by one: `read` takes up to
 * `max` records from a block's reader synchronously (so the next call may start at once), then
 * opens their PHI when asked and gives each record's after image — what `decodeMany` of the
 * same records gives as `event.after`, value for value.
 */
export class BlockRows {
  /** The table version the rows are of. */
  readonly table: TableSchema;

  constructor(
    private readonly compiled: CompiledTable,
    private readonly decoder: MessageDecoder,
  ) {
    this.table = compiled.table;
  }

  /**
   * Reads up to `max` records at `r.pos` (fewer at the block's end) now; `rows`: their after
   * images once their PHI is opened (with `open`). `count`: the records read.
   */
  read(r: AvroReader, max: number, open: boolean): { count: number; rows: Promise<Row[]> } {
    const opening = open && this.compiled.sealedColumns.length > 0;
    const records: BlockRecord[] = [];
    for (let i = 0; i < max && r.pos < r.end; i++) records.push(readBlockRecord(this.compiled, r, opening));
    if (!opening) {
      if (this.compiled.sealedColumns.length === 0) return { count: records.length, rows: Promise.resolve(afterImages(records)) };
      return { count: records.length, rows: this.decoder.keepSealed(this.compiled, records).then(() => afterImages(records)) };
    }
    return { count: records.length, rows: this.decoder.openRecords(this.compiled, records).then(() => afterImages(records)) };
  }
}

function afterImages(records: readonly BlockRecord[]): Row[] {
  const rows: Row[] = [];
  for (const d of records) if (d.after) rows.push(d.after);
  return rows;
}
