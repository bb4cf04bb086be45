import type { ChangeBatch, ChangeEvent } from '../core/change-event.js';
import { ChartlogError } from '../core/errors.js';
import { UNCHANGED, type CellValue, type Row, type TableSchema } from '../core/table-schema.js';
import { sealingKeyAad } from '../phi/aad.js';
import type { CryptoJobBuilder } from '../phi/crypto-jobs.js';
import type { KeyManager } from '../phi/key-manager.js';
import { isRowSealReference, referenceTo, rowSealHeaderLength, rowSealLength, RowPlaintext, sealRowBody, writeReference, writeRowSealHeader, REFERENCE_BYTES } from '../phi/row-seal.js';
import { isBlockReference } from '../phi/block-seal.js';
import { positionBytes, sealedKeyId, setPositionSeq, type DataKey } from '../phi/sealer.js';
import { AvroWriter, NotDirect } from './avro-binary.js';
import { ENVELOPE_OPS, MARKER_NAME } from './avro-schema.js';
import type { CompiledColumn, CompiledTable } from './compiled-table.js';
import { singleObject } from './single-object.js';
import { ValueTypeError } from './value-mapping.js';

/** The envelope's source fields that are the same for every message of a codec. */
export interface EnvelopeOrigin {
  /** Source name from configuration. */
  readonly source: string;
  /** 'postgres' | 'mysql': the envelope's source.connector. */
  readonly connector: string;
  /** The source database name ('' when the schema names it, as on MySQL). */
  readonly db: string;
}

/**
 * Writes one event as a single-object message, PHI sealed into it. Two writers: the direct one
 * (avro-binary.ts, no envelope object, sealed values written straight into the message) for
 * table versions whose schema toAvroSchema made, and avsc from the stored schema for the rest
 * and for values the direct writer leaves to avsc (NotDirect).
 */
export class EnvelopeWriter {
  /** The sealed values of the row image being written, for its row seal. */
  private readonly rowPlain = new RowPlaintext();
  /** The message being written (direct path), reused for every event. */
  private readonly writer = new AvroWriter();

  constructor(
    private readonly origin: EnvelopeOrigin,
    /** Counts values sealed again when the avsc path takes over an event (see `encode`). */
    private readonly keys: KeyManager | undefined,
  ) {}

  /** With `presealed`, sealed columns must hold sealed values already and are passed through. */
  encode(compiled: CompiledTable, event: ChangeEvent, batch: ChangeBatch, tsUs: bigint, dek: DataKey | null, presealed = false): Uint8Array {
    const table = compiled.name;
    if (!ENVELOPE_OPS.has(event.op)) throw new ChartlogError('internal', `${table}: unknown op "${String(event.op)}"`);
    if (compiled.direct) {
      const w = this.writer;
      w.reset();
      try {
        this.writeDirect(w, compiled, event, batch, tsUs, dek, presealed);
        return w.result();
      } catch (err) {
        if (!(err instanceof NotDirect)) throw err;
        // A value avsc writes its own way, or refuses naming the field: its path decides. It
        // seals the event's values again (fresh nonces), so they count against the key again.
        if (dek && !presealed) this.keys?.sealWith(sealedCells(compiled, event));
      }
    }
    const pos = sealingPosition(compiled, event, presealed);
    const envelope = {
      before: event.before ? { [compiled.valueBranch]: this.rowToAvro(compiled, event.before, dek, presealed, pos) } : null,
      after: event.after ? { [compiled.valueBranch]: this.rowToAvro(compiled, event.after, dek, presealed, pos) } : null,
      op: event.op,
      source: {
        connector: this.origin.connector,
        name: this.origin.source,
        db: this.origin.db,
        schema: event.schema.schema,
        table: event.schema.table,
        pos: event.position.commit,
        txId: batch.txId === null ? null : { string: batch.txId },
        seq: BigInt(event.position.seq),
        commitTsUs: batch.commitTsUs,
        snapshot: batch.snapshot,
      },
      tsUs,
    };
    let body: Buffer;
    try {
      body = compiled.type.toBuffer(envelope);
    } catch {
      // avsc's message quotes the value; ours names the field paths only.
      const paths: string[] = [];
      compiled.type.isValid(envelope, { errorHook: (path: string[]) => paths.push(path.join('.')) });
      throw new ChartlogError('internal', `${table}: the event does not fit its Avro schema at ${paths.join(', ') || '(unknown)'}`);
    }
    return singleObject(compiled.header, body);
  }

  /**
   * The envelope straight to Avro binary: what avsc writes for `encode`'s envelope object. With
   * `jobs`, sealed values are left as holes of their sealed length that the jobs fill later.
   * Throws NotDirect for a value only avsc writes (`w` and `jobs` then hold a partial event).
   */
  writeDirect(w: AvroWriter, compiled: CompiledTable, event: ChangeEvent, batch: ChangeBatch, tsUs: bigint, dek: DataKey | null, presealed: boolean, jobs: CryptoJobBuilder | null = null): void {
    w.raw(compiled.header);
    const pos = this.sealingPosition(compiled, event, presealed);
    this.writeImage(w, compiled, event.before, dek, presealed, jobs, pos);
    this.writeImage(w, compiled, event.after, dek, presealed, jobs, pos);
    w.string(event.op);
    w.raw(this.originOf(event.schema));
    w.raw(this.commitOf(event.position.commit));
    const fields = this.batchFieldsOf(batch, tsUs);
    w.raw(fields.txId);
    w.long(event.position.seq);
    w.raw(fields.tail);
  }

  /**
   * The envelope's fields that every event of a batch shares, Avro-encoded once per batch: the
   * txId before the event's seq, and commitTsUs, snapshot and tsUs after it (two BigInt
   * conversions per event otherwise).
   */
  private batchFieldsOf(batch: ChangeBatch, tsUs: bigint): BatchFields {
    const last = this.lastBatchFields;
    // Compared by value: keeping the batch itself would keep its events alive until the next one.
    if (last && last.txIdValue === batch.txId && last.commitTsUs === batch.commitTsUs && last.snapshot === batch.snapshot && last.tsUs === tsUs) return last;
    const t = new AvroWriter(64);
    if (batch.txId === null) t.long(0);
    else {
      t.long(1);
      t.string(batch.txId);
    }
    const txIdEnd = t.pos;
    t.bigLong(batch.commitTsUs);
    t.boolean(batch.snapshot);
    t.bigLong(tsUs);
    this.lastBatchFields = { txIdValue: batch.txId, commitTsUs: batch.commitTsUs, snapshot: batch.snapshot, tsUs, txId: t.buf.subarray(0, txIdEnd), tail: t.buf.subarray(txIdEnd, t.pos) };
    return this.lastBatchFields;
  }

  private lastBatchFields: BatchFields | null = null;

  /**
   * The envelope's connector, source name, database, schema and table, Avro-encoded once per
   * table version: the same five strings were encoded again for every event.
   */
  private originOf(schema: TableSchema): Uint8Array {
    const last = this.lastOrigin;
    if (last && last.schema === schema) return last.bytes;
    const w = new AvroWriter(256);
    w.string(this.origin.connector);
    w.string(this.origin.source);
    w.string(this.origin.db);
    w.string(schema.schema);
    w.string(schema.table);
    this.lastOrigin = { schema, bytes: w.buf.subarray(0, w.pos) };
    return this.lastOrigin.bytes;
  }

  /** The commit part of the position, Avro-encoded once per transaction (its events share it). */
  private commitOf(commit: string): Uint8Array {
    const last = this.lastCommit;
    if (last && last.commit === commit) return last.bytes;
    const w = new AvroWriter(64);
    w.string(commit);
    this.lastCommit = { commit, bytes: w.buf.subarray(0, w.pos) };
    return this.lastCommit.bytes;
  }

  /**
   * The event's position as sealed values carry it (`positionBytes`), or NO_POSITION when it seals
   * nothing. For the direct writer the bytes are reused from event to event (one transaction's
   * events share the commit; only the seq is rewritten): each row seal's header copies them, and
   * nothing keeps them past the event.
   */
  private sealingPosition(compiled: CompiledTable, event: ChangeEvent, presealed: boolean): Uint8Array {
    if (presealed || compiled.sealedColumns.length === 0) return NO_POSITION;
    const p = event.position;
    const last = this.lastPosition;
    if (last && last.commit === p.commit) {
      setPositionSeq(last.bytes, p.seq);
      return last.bytes;
    }
    this.lastPosition = { commit: p.commit, bytes: positionBytes(p) };
    return this.lastPosition.bytes;
  }

  private lastPosition: { readonly commit: string; readonly bytes: Uint8Array } | null = null;
  private lastOrigin: { readonly schema: TableSchema; readonly bytes: Uint8Array } | null = null;
  private lastCommit: { readonly commit: string; readonly bytes: Uint8Array } | null = null;

  /**
   * One row image (or null). Its sealed values go into one row seal (format 3, row-seal.ts)
   * carried by the first of them, the others holding references to it; with `jobs` the seal's
   * body is left as a hole that the jobs fill later (header, nonce and references written now).
   */
  private writeImage(w: AvroWriter, compiled: CompiledTable, row: Row | null, dek: DataKey | null, presealed: boolean, jobs: CryptoJobBuilder | null, pos: Uint8Array): void {
    if (!row) {
      w.long(0);
      return;
    }
    w.long(1);
    const table = compiled.name;
    const rp = presealed ? null : this.collectSealed(compiled, row);
    let sealAt = -1;
    let nonceAt = -1;
    let present = 0;
    for (const c of compiled.columns) {
      if (!Object.hasOwn(row, c.name)) {
        w.long(c.markerIndex);
        w.long(1); // ABSENT
        continue;
      }
      present++;
      const v = row[c.name]!;
      if (v === null) w.long(0);
      else if (v === UNCHANGED) {
        w.long(c.markerIndex);
        w.long(0); // UNCHANGED
      } else if (c.sealed) {
        w.long(1);
        if (!rp) {
          w.bytes(presealedValue(v, table, c.name));
          continue;
        }
        if (sealAt >= 0) {
          w.long(REFERENCE_BYTES);
          w.ensure(REFERENCE_BYTES);
          w.pos = writeReference(w.buf, w.pos, sealAt, nonceAt);
          continue;
        }
        const k = requireDek(dek, table, c.name);
        const key = sealingKeyAad(compiled.key, row, null, true);
        const n = rowSealLength(k, pos, rp.set, rp.length);
        w.long(n);
        w.ensure(n);
        sealAt = w.pos;
        nonceAt = sealAt + rowSealHeaderLength(pos, rp.set);
        writeRowSealHeader(k, pos, rp.set, w.buf, w.pos);
        const place = compiled.rowPlaces.of(rp.set);
        if (jobs) {
          jobs.add(k, rp.plaintext, place, key, NO_POSITION, w.pos);
          w.pos += n; // the hole the job fills
        } else w.pos = sealRowBody(k, rp.plaintext, place, key, w.buf, w.pos);
      } else {
        try {
          c.mapping.write(w, v, 1);
        } catch (err) {
          throw valueError(err, compiled, c);
        }
      }
    }
    checkAllColumnsKnown(compiled, row, present);
  }

  /** The image's sealed values (set and plaintext of its row seal); null when it has none. */
  private collectSealed(compiled: CompiledTable, row: Row): RowPlaintext | null {
    const sealed = compiled.sealed;
    if (sealed.length === 0) return null;
    const rp = this.rowPlain;
    rp.reset(sealed.length);
    for (let i = 0; i < sealed.length; i++) {
      const name = sealed[i]!.name;
      if (!Object.hasOwn(row, name)) continue;
      const v = row[name]!;
      if (v !== null && v !== UNCHANGED) rp.add(i, v);
    }
    return rp.count > 0 ? rp : null;
  }

  /** A row image as avsc's envelope object wants it (its row seal as `writeImage` makes it). */
  private rowToAvro(compiled: CompiledTable, row: Row, dek: DataKey | null, presealed: boolean, pos: Uint8Array): Record<string, unknown> {
    const table = compiled.name;
    const out: Record<string, unknown> = {};
    let present = 0;
    const rp = presealed ? null : this.collectSealed(compiled, row);
    let seal: Buffer | null = null;
    for (const c of compiled.columns) {
      if (!Object.hasOwn(row, c.name)) {
        out[c.field] = { [MARKER_NAME]: 'ABSENT' };
        continue;
      }
      present++;
      const v = row[c.name]!;
      if (v === null) out[c.field] = null;
      else if (v === UNCHANGED) out[c.field] = { [MARKER_NAME]: 'UNCHANGED' };
      else if (c.sealed) {
        let bytes: Buffer;
        if (!rp) bytes = Buffer.from(presealedValue(v, table, c.name));
        else if (seal) {
          bytes = Buffer.from(referenceTo(seal));
        } else {
          const k = requireDek(dek, table, c.name);
          seal = Buffer.alloc(rowSealLength(k, pos, rp.set, rp.length));
          writeRowSealHeader(k, pos, rp.set, seal, 0);
          sealRowBody(k, rp.plaintext, compiled.rowPlaces.of(rp.set), sealingKeyAad(compiled.key, row, null, true), seal, 0);
          bytes = seal;
        }
        out[c.field] = { bytes };
      } else {
        try {
          out[c.field] = c.mapping.toAvro(v);
        } catch (err) {
          throw valueError(err, compiled, c);
        }
      }
    }
    checkAllColumnsKnown(compiled, row, present);
    return out;
  }
}

const NO_POSITION = new Uint8Array(0);

/** A batch's shared envelope fields (EnvelopeWriter.batchFieldsOf): the values, and their Avro bytes. */
interface BatchFields {
  readonly txIdValue: string | null;
  readonly commitTsUs: bigint;
  readonly snapshot: boolean;
  readonly tsUs: bigint;
  readonly txId: Uint8Array;
  readonly tail: Uint8Array;
}

/** The event's position as sealed values carry it (`positionBytes`), when it seals any: made once per event. */
function sealingPosition(compiled: CompiledTable, event: ChangeEvent, presealed: boolean): Uint8Array {
  return presealed || compiled.sealedColumns.length === 0 ? NO_POSITION : positionBytes(event.position);
}

/** Values one event seals, counted against the data key: every sealed column of each image. */
export function sealedCells(compiled: CompiledTable, event: ChangeEvent): number {
  return compiled.sealedColumns.length * ((event.before ? 1 : 0) + (event.after ? 1 : 0));
}

/** The bytes of a row read from the archive without opening: a sealed value, row seal or reference to one. */
function presealedValue(v: CellValue, table: string, column: string): Uint8Array {
  if (v instanceof Uint8Array && (sealedKeyId(v) !== null || isRowSealReference(v) || isBlockReference(v))) return v;
  throw new ChartlogError('internal', `${table}.${column}: a presealed row holds a value that is not sealed`, {
    hint: 'rows passed through sealed must be read from the archive without opening them',
  });
}

function requireDek(dek: DataKey | null, table: string, column: string): DataKey {
  if (!dek) throw new ChartlogError('internal', `no data key to seal ${table}.${column}`);
  return dek;
}

/** A mapping's refusal of a value, as an error that names the column and kind, never the value. */
function valueError(err: unknown, compiled: CompiledTable, c: CompiledColumn): unknown {
  if (err instanceof ValueTypeError) return new ChartlogError('internal', `${compiled.name}.${c.name}: ${err.message} (kind ${compiled.table.columns.find((x) => x.name === c.name)?.type.kind})`);
  return err;
}

function checkAllColumnsKnown(compiled: CompiledTable, row: Row, present: number): void {
  // Counted without Object.keys' array (one per row image, all garbage).
  let own = 0;
  for (const k in row) if (Object.hasOwn(row, k)) own++;
  if (present !== own) {
    const extra = Object.keys(row).filter((k) => !compiled.byName.has(k));
    throw new ChartlogError('internal', `${compiled.name}: row has columns not in its table version: ${extra.join(', ')}`);
  }
}
