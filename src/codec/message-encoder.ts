import type { ChangeBatch, ChangeEvent } from '../core/change-event.js';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { UNCHANGED, type CellValue, type Row } from '../core/table-schema.js';
import { serializeCell } from '../phi/cell-serialization.js';
import type { CryptoPool } from '../phi/crypto-pool.js';
import { CryptoJobBuilder } from '../phi/crypto-jobs.js';
import type { KeyManager } from '../phi/key-manager.js';
import { positionBytes, type DataKey } from '../phi/sealer.js';
import { BLOCK_SEAL_ROWS, sealBlock, type BlockOrdinals } from '../phi/block-seal.js';
import { sealingKeyAad } from '../phi/aad.js';
import { AvroWriter, NotDirect } from './avro-binary.js';
import { ENVELOPE_OPS } from './avro-schema.js';
import type { BusMessage } from './bus-message.js';
import type { CompiledTable, CompiledTables } from './compiled-table.js';
import { sealedCells, type EnvelopeWriter } from './envelope-writer.js';

export interface MessageEncoderOptions {
  source: string;
  tables: CompiledTables;
  writer: EnvelopeWriter;
  /** Data keys: needed to seal PHI columns. */
  keys: KeyManager | undefined;
  /** The envelope's tsUs (processing time), microseconds since the epoch. */
  clock: () => bigint;
  /** Seals the PHI of large batches on worker threads; absent: everything on this thread. */
  cryptoPool: CryptoPool | undefined;
  /** Batches of at least this many messages go to the pool. */
  poolFrom: number;
}

/**
 * Change events → bus messages: which data key seals each event, whose PHI is sealed on the
 * crypto pool's thread, and the partition key. Schemas are durable before a message uses them
 * (CompiledTables.compile).
 */
export class MessageEncoder {
  private readonly source: string;
  private readonly tables: CompiledTables;
  private readonly writer: EnvelopeWriter;
  private readonly keys: KeyManager | undefined;
  private readonly clock: () => bigint;
  private readonly cryptoPool: CryptoPool | undefined;
  private readonly poolFrom: number;
  /** Encoded bytes per event of the last pooled batch: the next one's buffer size. */
  private bytesPerEvent = 512;
  /** The base-snapshot batch being encoded: one at a time, so each table's block seals take their ordinals in row order. */
  private baseTurn: Promise<unknown> = Promise.resolve();

  constructor(o: MessageEncoderOptions) {
    this.source = o.source;
    this.tables = o.tables;
    this.writer = o.writer;
    this.keys = o.keys;
    this.clock = o.clock;
    this.cryptoPool = o.cryptoPool;
    this.poolFrom = o.poolFrom;
  }

  /** Every event of a transaction as messages, PHI sealed, schemas durable first. */
  async encodeBatch(batch: ChangeBatch): Promise<BusMessage[]> {
    if (batch.source !== this.source) {
      throw new ChartlogError('internal', `batch of source ${batch.source} given to the codec of ${this.source}`);
    }
    for (const t of batch.schemaChanges ?? []) await this.tables.compile(t);
    if (this.cryptoPool && batch.events.length >= this.poolFrom) {
      // Null when the pool's thread failed: the batch is encoded again here.
      const onPool = await this.encodeBatchOnPool(batch, this.cryptoPool);
      if (onPool) return onPool;
    }
    return this.encodeBatchInline(batch);
  }

  /**
   * Every message of the batch written into one buffer, PHI sealed in place on this thread; the
   * messages are views of that buffer. One allocation per batch instead of a buffer and a copy
   * per message (each message's own ArrayBuffer was the largest per-row allocation).
   */
  private async encodeBatchInline(batch: ChangeBatch): Promise<BusMessage[]> {
    const tsUs = this.clock();
    const w = new AvroWriter(this.bufferSize(batch));
    const spans = new MessageSpans();
    for (const event of batch.events) {
      const compiled = this.tables.ready(event.schema) ?? (await this.tables.compile(event.schema));
      let dek: DataKey | null = null;
      // The current key without a promise when it may seal these values; else wait for it.
      if (compiled.sealedColumns.length > 0) dek = this.keys?.sealWith(sealedCells(compiled, event)) ?? (await this.dataKey(compiled, event));
      const start = w.pos;
      let written = false;
      // Sealed key columns go through encode(), whose seal arena is reset per event.
      if (compiled.direct && !compiled.needsPlainKeyAad && ENVELOPE_OPS.has(event.op)) {
        try {
          this.writer.writeDirect(w, compiled, event, batch, tsUs, dek, false);
          written = true;
        } catch (err) {
          if (!(err instanceof NotDirect)) throw err;
          w.pos = start;
          // The avsc path seals the event's values again (fresh nonces): they count again.
          if (dek) this.keys?.sealWith(sealedCells(compiled, event));
        }
      }
      if (!written) w.raw(this.writer.encode(compiled, event, batch, tsUs, dek));
      spans.add(compiled, event, start, w.pos);
    }
    this.bytesPerEvent = Math.max(64, w.pos / Math.max(1, batch.events.length));
    return spans.finish(w.buf);
  }

  /** Sized from the batches before, so the batch buffer is rarely grown (each growth is a copy and garbage). */
  private bufferSize(batch: ChangeBatch): number {
    return Math.min(64 * 1024 * 1024, Math.ceil(this.bytesPerEvent * 1.1 * batch.events.length) + 1024);
  }

  /**
   * `encodeBatch` for a large batch: every message is written into one buffer with a hole where
   * each sealed value goes, the holes are sealed on the pool's thread while this thread goes on
   * (the pipeline reads the next transaction meanwhile), and the messages are views of the
   * sealed buffer. Events the direct writer cannot take (sealed key columns, whose sealed bytes
   * are part of the other columns' AAD, and values avsc writes) are sealed here as before.
   * The buffer goes to the thread and back without a copy; null when the thread failed.
   */
  private async encodeBatchOnPool(batch: ChangeBatch, pool: CryptoPool): Promise<BusMessage[] | null> {
    const tsUs = this.clock();
    const w = new AvroWriter(this.bufferSize(batch));
    const jobs = new CryptoJobBuilder();
    const spans = new MessageSpans();
    for (const event of batch.events) {
      const compiled = this.tables.ready(event.schema) ?? (await this.tables.compile(event.schema));
      let dek: DataKey | null = null;
      if (compiled.sealedColumns.length > 0) dek = this.keys?.sealWith(sealedCells(compiled, event)) ?? (await this.dataKey(compiled, event));
      const start = w.pos;
      const jobsBefore = jobs.count;
      let written = false;
      if (compiled.direct && !compiled.needsPlainKeyAad && ENVELOPE_OPS.has(event.op)) {
        try {
          this.writer.writeDirect(w, compiled, event, batch, tsUs, dek, false, jobs);
          written = true;
        } catch (err) {
          if (!(err instanceof NotDirect)) throw err;
          w.pos = start;
          jobs.truncate(jobsBefore);
        }
      }
      if (!written) w.raw(this.writer.encode(compiled, event, batch, tsUs, dek));
      spans.add(compiled, event, start, w.pos);
    }
    this.bytesPerEvent = Math.max(64, w.pos / batch.events.length);
    const sealed = await pool.seal(jobs.take(), w.buf.subarray(0, w.pos));
    if (!sealed) return null;
    return spans.finish(sealed);
  }

  /**
   * A base snapshot's batch (snapshot-builder.ts writeSnapshot, whose parts keep rows in order):
   * each run of up to BLOCK_SEAL_ROWS consecutive rows of one table version is block-sealed
   * (format 5, block-seal.ts: one AEAD, one data key per block) and its rows written with the
   * seal or a reference in their sealed columns; `blockStart` marks each block's first row, so
   * the parts writer starts a container block there and never splits one. Tables with sealed key
   * columns (whose sealed bytes the other columns' AAD binds), rows with an absent sealed column,
   * and tables without PHI are encoded as `encodeBatch` does.
   *
   * `ordinals`: the snapshot's (one per snapshot, its writer's): each table's block seals are
   * numbered in the order its rows reach the parts, which readers check (block-seal.ts
   * BlockOrder). Calls run one after another in call order (a writer encodes the next chunk while
   * it writes the one before), so the order of the messages is the order of the ordinals.
   */
  encodeBaseSnapshot(batch: ChangeBatch, ordinals: BlockOrdinals): Promise<BaseMessage[]> {
    const run = this.baseTurn.then(() => this.encodeBaseNow(batch, ordinals));
    this.baseTurn = run.catch(() => undefined);
    return run;
  }

  private async encodeBaseNow(batch: ChangeBatch, ordinals: BlockOrdinals): Promise<BaseMessage[]> {
    if (batch.source !== this.source) throw new ChartlogError('internal', `batch of source ${batch.source} given to the codec of ${this.source}`);
    for (const t of batch.schemaChanges ?? []) await this.tables.compile(t);
    const out: BaseMessage[] = [];
    const tsUs = this.clock();
    const events = batch.events;
    for (let i = 0; i < events.length; ) {
      const compiled = this.tables.ready(events[i]!.schema) ?? (await this.tables.compile(events[i]!.schema));
      let j = i;
      while (j < events.length && j - i < BLOCK_SEAL_ROWS && events[j]!.schema === events[i]!.schema && blockSealable(compiled, events[j]!)) j++;
      if (j === i) {
        out.push(...(await this.encodeBatchInline({ ...batch, events: [events[i]!] })));
        i++;
        continue;
      }
      out.push(...(await this.encodeBlock(compiled, batch, events.slice(i, j), tsUs, ordinals)));
      i = j;
    }
    return out;
  }

  private async encodeBlock(compiled: CompiledTable, batch: ChangeBatch, events: readonly ChangeEvent[], tsUs: bigint, ordinals: BlockOrdinals): Promise<BaseMessage[]> {
    const rows = events.map((e) => ({ key: sealingKeyAad(compiled.key, e.after!, null, true), cells: compiled.sealed.map((c) => e.after![c.name] as CellValue) }));
    // One AEAD operation per block: it counts once against the data key.
    const dek = this.keys?.sealWith(1) ?? (await this.dataKey(compiled, events[0]!));
    const sealed = sealBlock(dek, positionBytes(events[0]!.position), ordinals.next(compiled.name), compiled.blockPlaces, rows, compiled.sealed.length);
    if (sealed) ordinals.advance(compiled.name); // a block without a seal (no sealed value) takes no ordinal
    if (!sealed) return (await this.encodeBatchInline({ ...batch, events })).map((m) => ({ ...m }));
    return events.map((e, r) => {
      const after: Record<string, CellValue> = { ...e.after! };
      compiled.sealed.forEach((c, k) => (after[c.name] = sealed.cells[r]![k]!));
      const event: ChangeEvent = { ...e, after };
      return {
        table: compiled.name,
        fingerprint: compiled.registered.fingerprintHex,
        key: partitionKey(compiled, e),
        value: this.writer.encode(compiled, event, batch, tsUs, null, true),
        position: e.position,
        blockStart: r === 0,
      };
    });
  }

  /**
   * A snapshot read ('r') of a row read back from the archive WITHOUT opening it, encoded with
   * the table version `fingerprint` names: for base snapshots synthesised from the archive
   * (compactor/snapshot-synthesiser.ts). Sealed columns must already hold sealed values (checked
   * by shape) and are passed through byte for byte, never re-sealed: their AAD binds source,
   * schema.table, column and the row's primary key, none of which changes, so no keyring is
   * needed and they open exactly as before. Plain columns encode as in `encodeBatch`. `tsUs` is
   * given, not read from the clock, so the same rows always encode to the same bytes.
   */
  async encodeSnapshotRead(fingerprint: string, row: Row, o: { position: Position; commitTsUs: bigint; tsUs: bigint }): Promise<BusMessage> {
    const compiled = await this.tables.compiledFor(BigInt(`0x${fingerprint}`));
    const event: ChangeEvent = { op: 'r', schema: compiled.table, before: null, after: row, position: o.position };
    const batch: ChangeBatch = { source: this.source, txId: null, position: Position.commitOf(o.position), commitTsUs: o.commitTsUs, snapshot: true, events: [event] };
    return {
      table: compiled.name,
      fingerprint: compiled.registered.fingerprintHex,
      key: partitionKey(compiled, event),
      value: this.writer.encode(compiled, event, batch, o.tsUs, null, true),
      position: o.position,
    };
  }

  private async dataKey(compiled: CompiledTable, event: ChangeEvent): Promise<DataKey> {
    if (!this.keys) {
      throw new ChartlogError('config', `${compiled.name} has PHI columns but no keyring is open to seal them`, {
        hint: 'set phi.keyring and create it with `chartlog keys init --config FILE`',
      });
    }
    const cells = sealedCells(compiled, event);
    const dek = this.keys.sealWith(cells);
    if (dek) return dek;
    await this.keys.current();
    return this.keys.sealWith(cells) ?? (await this.keys.current());
  }
}

/** A base snapshot's message: `blockStart` true on a block seal's first row, false on its others, absent outside blocks. */
export interface BaseMessage extends BusMessage {
  readonly blockStart?: boolean;
}

/** True when a base-snapshot event's row can go into a block seal (see encodeBaseSnapshot). */
function blockSealable(compiled: CompiledTable, e: ChangeEvent): boolean {
  if (e.op !== 'r' || !e.after || e.before || compiled.sealed.length === 0 || compiled.needsPlainKeyAad) return false;
  for (const c of compiled.sealed) {
    const v = e.after[c.name];
    if (v === undefined || v === UNCHANGED) return false;
  }
  return true;
}

/**
 * The messages of a batch as its events are written: one object per message, whose value is set
 * once the buffer is final (`finish`; for the pool, the sealed buffer that came back), not a
 * span object per event and then the message.
 */
class MessageSpans {
  private readonly messages: { table: string; fingerprint: string; key: Uint8Array | null; value: Uint8Array; position: Position }[] = [];
  /** Start and end of each message in the buffer. */
  private readonly bounds: number[] = [];

  add(compiled: CompiledTable, event: ChangeEvent, start: number, end: number): void {
    this.messages.push({ table: compiled.name, fingerprint: compiled.registered.fingerprintHex, key: partitionKey(compiled, event), value: NO_VALUE, position: event.position });
    this.bounds.push(start, end);
  }

  /** The messages as views of `buf`, the buffer they were written into (or its sealed copy). */
  finish(buf: Uint8Array): BusMessage[] {
    const { messages, bounds } = this;
    for (let i = 0; i < messages.length; i++) messages[i]!.value = Buffer.from(buf.buffer, buf.byteOffset + bounds[2 * i]!, bounds[2 * i + 1]! - bounds[2 * i]!);
    return messages;
  }
}

const NO_VALUE = Buffer.alloc(0);

/**
 * Rows of one key land in one partition: the key columns' serialised values. A key with a
 * sealed column is not exposed (null); unsealed key values are in the message body anyway.
 */
function partitionKey(compiled: CompiledTable, event: ChangeEvent): Uint8Array | null {
  if (compiled.key.length === 0 || compiled.key.some((k) => k.sealed)) return null;
  const row = event.after ?? event.before;
  if (!row) return null;
  if (compiled.key.length === 1) {
    const v = row[compiled.key[0]!.name];
    return v === undefined || v === UNCHANGED ? null : serializeCell(v);
  }
  const parts = compiled.key.map((k) => row[k.name]);
  return parts.some((v) => v === undefined || v === UNCHANGED) ? null : serializeCell(parts as CellValue[]);
}
