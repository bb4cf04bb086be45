import avro from 'avsc';
import type { BusMessage } from './bus-message.js';
import type { ChangeBatch, ChangeEvent, Op } from '../core/change-event.js';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { qualifiedName, UNCHANGED, type CellValue, type Row, type TableSchema } from '../core/table-schema.js';
import type { ColumnPolicy } from '../phi/column-policy.js';
import type { KeyManager } from '../phi/key-manager.js';
import { deserializeCell, serializeCell, serializeCellTransient } from '../phi/cell-serialization.js';
import type { CryptoPool } from '../phi/crypto-pool.js';
import { CryptoJobBuilder, openedLength } from '../phi/crypto-jobs.js';
import { isSealedUnder, keyAad, openValueWithAad, placeAad, SealArena, sealedKeyId, sealedLength, sealInto, type DataKey, type KeyPart } from '../phi/sealer.js';
import { AvroDecodeError, AvroReader, AvroWriter, NotDirect } from './avro-binary.js';
import { MARKER_NAME, toAvroSchema } from './avro-schema.js';
import { bigintTypeHook } from './bigint-long.js';
import { fingerprintBytesLE } from './rabin-fingerprint.js';
import type { RegisteredSchema, SchemaStore } from './schema-store.js';
import { mappingFor, SEALED, ValueTypeError, type ValueMapping } from './value-mapping.js';

/**
 * Change events ↔ Avro single-object messages (`C3 01`, CRC-64-AVRO fingerprint of the writer
 * schema little-endian, record body), PHI columns sealed on the way in (docs/architecture.md §2–§3).
 *
 * Encoding stores each table version's schema (SchemaStore) before returning a message that
 * uses it. Decoding returns exactly the event that went in; sealed values stay sealed bytes
 * unless `open` is asked for, which needs the keyring (a KeyManager). Errors name tables and
 * columns, never values.
 */

export const SINGLE_OBJECT_MAGIC = Uint8Array.of(0xc3, 0x01);
const HEADER_BYTES = 10;

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

/** What an audit log records about one opening. */
export interface OpenAuditEntry {
  readonly source: string;
  readonly table: string;
  readonly position: Position;
  readonly columns: readonly string[];
  readonly keyIds: readonly string[];
}

/** One decoded message. */
export interface DecodedChange {
  readonly event: ChangeEvent;
  readonly source: string;
  readonly connector: string;
  readonly db: string;
  readonly txId: string | null;
  readonly commitTsUs: bigint;
  readonly snapshot: boolean;
  readonly tsUs: bigint;
  readonly fingerprint: string;
  /** Columns whose values in before/after are still sealed bytes (empty once opened). */
  readonly sealedColumns: readonly string[];
}

interface CompiledColumn {
  readonly name: string;
  readonly field: string;
  readonly mapping: ValueMapping;
  readonly sealed: boolean;
  /** A sealed primary-key column: its AAD binds the plain key columns only. */
  readonly sealedKey: boolean;
  /** The AAD's place half (source, schema, table, column), for sealed columns. */
  readonly place: Uint8Array;
  /** "source schema.table.column", for messages. */
  readonly where: string;
  /** Union index of the marker (UNCHANGED, ABSENT) in the column's union: after null and the value branches. */
  readonly markerIndex: number;
}

/** A table version ready to encode and decode. */
interface CompiledTable {
  readonly registered: RegisteredSchema;
  readonly type: avro.Type;
  readonly valueBranch: string;
  readonly table: TableSchema;
  readonly columns: readonly CompiledColumn[];
  readonly byName: ReadonlyMap<string, CompiledColumn>;
  readonly sealedColumns: readonly string[];
  /** The sealed columns, compiled, in column order. */
  readonly sealed: readonly CompiledColumn[];
  /** Which AAD key halves sealed columns need: plain key columns only (sealed key columns), whole key (the others). */
  readonly needsPlainKeyAad: boolean;
  readonly needsFullKeyAad: boolean;
  /** Key columns in key order, and whether each is sealed. */
  readonly key: readonly { name: string; sealed: boolean }[];
  readonly header: Uint8Array;
  /**
   * True when the stored schema is exactly the one toAvroSchema makes for this version, so
   * messages are written and read by avro-binary.ts directly; otherwise (a schema from another
   * codec version) by avsc from the stored schema.
   */
  readonly direct: boolean;
}

const OPS: ReadonlySet<string> = new Set(['c', 'u', 'd', 'r', 't']);

export class AvroCodec {
  private readonly source: string;
  private readonly connector: string;
  private readonly db: string;
  private readonly schemas: SchemaStore;
  private readonly policy: ColumnPolicy | undefined;
  private readonly keys: KeyManager | undefined;
  private readonly clock: () => bigint;
  private readonly onOpen: AvroCodecOptions['onOpen'];
  private readonly byTable = new WeakMap<TableSchema, Promise<CompiledTable>>();
  private readonly byFingerprint = new Map<bigint, CompiledTable>();
  /** Table versions already compiled, looked up without a promise per event. */
  private readonly compiled = new WeakMap<TableSchema, CompiledTable>();
  /** Data keys already unwrapped for opening, looked up without a promise per value. */
  private readonly openKeys = new Map<string, DataKey>();
  /** The data key that opened the last value: consecutive values usually share it. */
  private lastOpenKey: DataKey | undefined;
  /** Sealed values of the event being encoded, until its message holds them. */
  private readonly arena = new SealArena();
  /** The message being written (direct path), reused for every event. */
  private readonly writer = new AvroWriter();
  /** Seals large batches on worker threads (optional). */
  private readonly cryptoPool: CryptoPool | undefined;
  private readonly poolFrom: number;
  /** Encoded bytes per event of the last pooled batch: the next one's buffer size. */
  private bytesPerEvent = 512;

  constructor(options: AvroCodecOptions) {
    this.source = options.source;
    this.connector = options.connector;
    this.db = options.db ?? '';
    this.schemas = options.schemas;
    this.policy = options.policy;
    this.keys = options.keys;
    this.clock = options.clock ?? (() => BigInt(Date.now()) * 1000n);
    this.onOpen = options.onOpen;
    this.cryptoPool = options.cryptoPool;
    this.poolFrom = options.poolFrom ?? 16;
  }

  /**
   * Checks a table version against the PHI policy (strict tables fail closed with
   * 'phi_policy') and stores its schema. Returns the fingerprint, 16 hex digits.
   */
  async fingerprintOf(table: TableSchema): Promise<string> {
    return (await this.compile(table)).registered.fingerprintHex;
  }

  /** Every event of a transaction as messages, PHI sealed, schemas durable first. */
  async encodeBatch(batch: ChangeBatch): Promise<BusMessage[]> {
    if (batch.source !== this.source) {
      throw new ChartlogError('internal', `batch of source ${batch.source} given to the codec of ${this.source}`);
    }
    for (const t of batch.schemaChanges ?? []) await this.compile(t);
    if (this.cryptoPool && batch.events.length >= this.poolFrom) {
      // Null when the pool's thread failed: the batch is encoded again here.
      const onPool = await this.encodeBatchOnPool(batch, this.cryptoPool);
      if (onPool) return onPool;
    }
    const out: BusMessage[] = [];
    const tsUs = this.clock();
    for (const event of batch.events) {
      const compiled = this.compiled.get(event.schema) ?? (await this.compile(event.schema));
      let dek: DataKey | null = null;
      // The current key without a promise when it may seal these values; else wait for it.
      if (compiled.sealedColumns.length > 0) dek = this.keys?.sealWith(sealedCells(compiled, event)) ?? (await this.dataKey(compiled, event));
      out.push({
        table: qualifiedName(event.schema),
        fingerprint: compiled.registered.fingerprintHex,
        key: this.partitionKey(compiled, event),
        value: this.encodeEvent(compiled, event, batch, tsUs, dek),
        position: event.position,
      });
    }
    return out;
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
    // Sized from the batches before, so it is rarely grown (each growth is a copy and garbage).
    const w = new AvroWriter(Math.min(64 * 1024 * 1024, Math.ceil(this.bytesPerEvent * 1.1 * batch.events.length) + 1024));
    const jobs = new CryptoJobBuilder();
    const spans: { table: string; fingerprint: string; key: Uint8Array | null; position: Position; start: number; end: number }[] = [];
    for (const event of batch.events) {
      const compiled = this.compiled.get(event.schema) ?? (await this.compile(event.schema));
      let dek: DataKey | null = null;
      if (compiled.sealedColumns.length > 0) dek = this.keys?.sealWith(sealedCells(compiled, event)) ?? (await this.dataKey(compiled, event));
      const start = w.pos;
      const jobsBefore = jobs.count;
      let written = false;
      if (compiled.direct && !compiled.needsPlainKeyAad && OPS.has(event.op)) {
        try {
          this.writeEnvelope(w, compiled, event, batch, tsUs, dek, qualifiedName(event.schema), false, jobs);
          written = true;
        } catch (err) {
          if (!(err instanceof NotDirect)) throw err;
          w.pos = start;
          jobs.truncate(jobsBefore);
        }
      }
      if (!written) w.raw(this.encodeEvent(compiled, event, batch, tsUs, dek));
      spans.push({ table: qualifiedName(event.schema), fingerprint: compiled.registered.fingerprintHex, key: this.partitionKey(compiled, event), position: event.position, start, end: w.pos });
    }
    this.bytesPerEvent = Math.max(64, w.pos / batch.events.length);
    const sealed = await pool.seal(jobs.take(), w.buf.subarray(0, w.pos));
    if (!sealed) return null;
    return spans.map((m) => ({
      table: m.table,
      fingerprint: m.fingerprint,
      key: m.key,
      value: Buffer.from(sealed.buffer, sealed.byteOffset + m.start, m.end - m.start),
      position: m.position,
    }));
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
    const compiled = await this.compiledFor(BigInt(`0x${fingerprint}`));
    const event: ChangeEvent = { op: 'r', schema: compiled.table, before: null, after: row, position: o.position };
    const batch: ChangeBatch = { source: this.source, txId: null, position: Position.commitOf(o.position), commitTsUs: o.commitTsUs, snapshot: true, events: [event] };
    return {
      table: qualifiedName(compiled.table),
      fingerprint: compiled.registered.fingerprintHex,
      key: this.partitionKey(compiled, event),
      value: this.encodeEvent(compiled, event, batch, o.tsUs, null, true),
      position: o.position,
    };
  }

  /** Reads a message's writer-schema fingerprint without decoding it. */
  static fingerprintOfMessage(message: Uint8Array): bigint {
    if (message.length < HEADER_BYTES || message[0] !== 0xc3 || message[1] !== 0x01) {
      throw new ChartlogError('integrity', 'not an Avro single-object message (no C3 01 marker)', {
        hint: 'the object is damaged or not a chartlog change record',
      });
    }
    return new DataView(message.buffer, message.byteOffset + 2, 8).getBigUint64(0, true);
  }

  /**
   * The event a message holds. Sealed PHI stays sealed bytes unless `open` is true, which
   * needs a KeyManager; opening fails with 'integrity' on any tampering, never wrong plaintext.
   */
  async decode(message: Uint8Array, options: { open?: boolean } = {}): Promise<DecodedChange> {
    const fingerprint = AvroCodec.fingerprintOfMessage(message);
    const compiled = this.byFingerprint.get(fingerprint) ?? (await this.compiledFor(fingerprint));
    const opening = options.open === true && compiled.sealedColumns.length > 0;
    const decoded = this.decodeWith(compiled, message, opening);
    if (!opening) return decoded;
    return this.open(compiled, decoded);
  }

  /**
   * `decode` of many messages, in order. With `open` and a crypto pool, the PHI of all of them
   * is opened on the pool's thread in one request while this thread goes on (restore decodes
   * the next block meanwhile): the same events, the same audit entries, the same errors.
   */
  async decodeMany(messages: readonly Uint8Array[], options: { open?: boolean } = {}): Promise<DecodedChange[]> {
    const pool = this.cryptoPool;
    if (options.open !== true || !pool || messages.length < this.poolFrom) {
      const out: DecodedChange[] = [];
      for (const m of messages) out.push(await this.decode(m, options));
      return out;
    }
    const decoded: DecodedChange[] = [];
    const jobs = new CryptoJobBuilder();
    const targets: { row: Record<string, CellValue>; column: string; where: string; at: number; length: number }[] = [];
    const audits: { compiled: CompiledTable; position: Position; audit: OpenAudit }[] = [];
    let outLength = 0;
    for (const message of messages) {
      const fingerprint = AvroCodec.fingerprintOfMessage(message);
      const compiled = this.byFingerprint.get(fingerprint) ?? (await this.compiledFor(fingerprint));
      if (compiled.sealedColumns.length === 0) {
        decoded.push(this.decodeWith(compiled, message));
        continue;
      }
      const d = this.decodeWith(compiled, message, true);
      const keys = this.requireKeys(compiled);
      const { before, after } = d.event;
      if (this.lacksKeys(compiled, before) || this.lacksKeys(compiled, after)) {
        await this.loadKeysOf(keys, compiled, before);
        await this.loadKeysOf(keys, compiled, after);
      }
      const audit: OpenAudit = { columns: new Array<boolean>(compiled.sealed.length).fill(false), keys: [] };
      for (const row of [before, after]) {
        this.eachSealedCell(compiled, row, audit, (dek, sealed, c, aad) => {
          const length = openedLength(sealed.length);
          jobs.add(dek, sealed, c.place, aad, outLength);
          targets.push({ row: row as Record<string, CellValue>, column: c.name, where: c.where, at: outLength, length });
          outLength += length;
        });
      }
      if (this.onOpen && audit.keys.length > 0) audits.push({ compiled, position: d.event.position, audit });
      decoded.push({ ...d, sealedColumns: [] });
    }
    const plain = await pool.open(jobs.take(), outLength, (i) => targets[i]!.where);
    for (const t of targets) setCell(t.row, t.column, deserializeCell(plain.subarray(t.at, t.at + t.length)));
    for (const a of audits) this.audit(a.compiled, a.position, a.audit);
    return decoded;
  }

  /** The table version a stored schema describes, as it was written (its own sealed columns). */
  private async compiledFor(fingerprint: bigint): Promise<CompiledTable> {
    let compiled = this.byFingerprint.get(fingerprint);
    if (!compiled) {
      compiled = this.build(await this.schemas.resolve(fingerprint));
      this.byFingerprint.set(fingerprint, compiled);
    }
    return compiled;
  }

  private async compile(table: TableSchema): Promise<CompiledTable> {
    const ready = this.compiled.get(table);
    if (ready) return ready;
    let p = this.byTable.get(table);
    if (!p) {
      p = (async () => {
        const sealed = this.policy ? this.policy.sealedColumns(table) : new Set<string>();
        const registered = await this.schemas.register(toAvroSchema(this.source, table, sealed));
        const known = this.byFingerprint.get(registered.fingerprint);
        if (known) {
          this.compiled.set(table, known);
          return known;
        }
        const compiled = this.build(registered, table);
        this.byFingerprint.set(registered.fingerprint, compiled);
        this.compiled.set(table, compiled);
        return compiled;
      })();
      this.byTable.set(table, p);
      p.catch(() => this.byTable.delete(table));
    }
    return p;
  }

  private build(registered: RegisteredSchema, original?: TableSchema): CompiledTable {
    const { version } = registered;
    const table = original ?? version.table;
    const columns = version.attribute.columns.map((c): CompiledColumn => {
      const mapping = c.sealed ? SEALED : mappingFor(c.type, c.sourceType, c.field);
      return {
        name: c.name,
        field: c.field,
        mapping,
        sealed: c.sealed,
        sealedKey: c.sealed && table.primaryKey.includes(c.name),
        place: c.sealed ? placeAad(this.source, table.schema, table.table, c.name) : new Uint8Array(0),
        where: `${this.source} ${qualifiedName(table)}.${c.name}`,
        markerIndex: 1 + mapping.branches.length,
      };
    });
    const sealed = columns.filter((c) => c.sealed);
    const byName = new Map(columns.map((c) => [c.name, c]));
    const type = avro.Type.forSchema(registered.schema as avro.Schema, { wrapUnions: true, typeHook: bigintTypeHook as never });
    return {
      registered,
      type,
      valueBranch: `${String(registered.schema.namespace)}.Value`,
      table,
      columns,
      byName,
      sealedColumns: sealed.map((c) => c.name),
      sealed,
      needsPlainKeyAad: sealed.some((c) => c.sealedKey),
      needsFullKeyAad: sealed.some((c) => !c.sealedKey),
      key: table.primaryKey.map((name) => ({ name, sealed: byName.get(name)?.sealed ?? false })),
      header: concat(SINGLE_OBJECT_MAGIC, fingerprintBytesLE(registered.fingerprint)),
      direct: fitsDirect(registered),
    };
  }

  /** How this codec writes and reads a table version's messages: for tests and diagnostics. */
  async avroPathOf(fingerprint: string): Promise<'direct' | 'avsc'> {
    return (await this.compiledFor(BigInt(`0x${fingerprint}`))).direct ? 'direct' : 'avsc';
  }

  private async dataKey(compiled: CompiledTable, event: ChangeEvent): Promise<DataKey> {
    if (!this.keys) {
      throw new ChartlogError('config', `${qualifiedName(event.schema)} has PHI columns but no keyring is open to seal them`, {
        hint: 'set phi.keyring and create it with `chartlog keys init --config FILE`',
      });
    }
    const cells = sealedCells(compiled, event);
    const dek = this.keys.sealWith(cells);
    if (dek) return dek;
    await this.keys.current();
    return this.keys.sealWith(cells) ?? (await this.keys.current());
  }

  /**
   * Rows of one key land in one partition: the key columns' serialised values. A key with a
   * sealed column is not exposed (null); unsealed key values are in the message body anyway.
   */
  private partitionKey(compiled: CompiledTable, event: ChangeEvent): Uint8Array | null {
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

  private encodeEvent(compiled: CompiledTable, event: ChangeEvent, batch: ChangeBatch, tsUs: bigint, dek: DataKey | null, presealed = false): Uint8Array {
    const table = qualifiedName(event.schema);
    if (!OPS.has(event.op)) throw new ChartlogError('internal', `${table}: unknown op "${String(event.op)}"`);
    // The previous event's sealed values are in its message by now.
    this.arena.reset();
    if (compiled.direct) {
      const w = this.writer;
      w.reset();
      try {
        this.writeEnvelope(w, compiled, event, batch, tsUs, dek, table, presealed);
        return w.result();
      } catch (err) {
        if (!(err instanceof NotDirect)) throw err;
        // A value avsc writes its own way, or refuses naming the field: its path decides. It
        // seals the event's values again (fresh nonces), so they count against the key again.
        this.arena.reset();
        if (dek && !presealed) this.keys?.sealWith(sealedCells(compiled, event));
      }
    }
    const envelope = {
      before: event.before ? { [compiled.valueBranch]: this.rowToAvro(compiled, event.before, dek, table, presealed) } : null,
      after: event.after ? { [compiled.valueBranch]: this.rowToAvro(compiled, event.after, dek, table, presealed) } : null,
      op: event.op,
      source: {
        connector: this.connector,
        name: this.source,
        db: this.db,
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
    return concat(compiled.header, body);
  }

  /** With `presealed`, sealed columns must hold sealed values already and are passed through. */
  private rowToAvro(compiled: CompiledTable, row: Row, dek: DataKey | null, table: string, presealed = false): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    let present = 0;
    const sealedKeys = compiled.needsPlainKeyAad ? this.sealKeyColumns(compiled, row, dek, table, presealed) : null;
    let fullAad: Uint8Array | undefined;
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
        let sealed = sealedKeys?.get(c.name);
        if (!sealed) {
          if (presealed) sealed = presealedValue(v, table, c.name);
          else sealed = this.arena.seal(requireDek(dek, table, c.name), v, c.place, (fullAad ??= keyAad(sealKeyParts(compiled, row, sealedKeys, false))));
        }
        out[c.field] = { bytes: Buffer.isBuffer(sealed) ? sealed : Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength) };
      } else {
        try {
          out[c.field] = c.mapping.toAvro(v);
        } catch (err) {
          throw valueError(err, compiled, c, table);
        }
      }
    }
    checkAllColumnsKnown(compiled, row, present, table);
    return out;
  }

  /**
   * The sealed bytes of the row's sealed key columns, sealed before the others: the AAD of every
   * other sealed column binds them. Their own AAD binds the plain key columns only.
   */
  private sealKeyColumns(compiled: CompiledTable, row: Row, dek: DataKey | null, table: string, presealed: boolean): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    let plainAad: Uint8Array | undefined;
    for (const k of compiled.key) {
      if (!k.sealed || !Object.hasOwn(row, k.name)) continue;
      const v = row[k.name]!;
      if (v === null || v === UNCHANGED) continue;
      const c = compiled.byName.get(k.name)!;
      if (presealed) out.set(k.name, presealedValue(v, table, c.name));
      else out.set(k.name, this.arena.seal(requireDek(dek, table, c.name), v, c.place, (plainAad ??= keyAad(sealKeyParts(compiled, row, null, true)))));
    }
    return out;
  }

  /** The envelope straight to Avro binary: what avsc writes for encodeEvent's envelope object. */
  private writeEnvelope(
    w: AvroWriter,
    compiled: CompiledTable,
    event: ChangeEvent,
    batch: ChangeBatch,
    tsUs: bigint,
    dek: DataKey | null,
    table: string,
    presealed: boolean,
    jobs: CryptoJobBuilder | null = null,
  ): void {
    w.raw(compiled.header);
    this.writeImage(w, compiled, event.before, dek, table, presealed, jobs);
    this.writeImage(w, compiled, event.after, dek, table, presealed, jobs);
    w.string(event.op);
    w.string(this.connector);
    w.string(this.source);
    w.string(this.db);
    w.string(event.schema.schema);
    w.string(event.schema.table);
    w.string(event.position.commit);
    if (batch.txId === null) w.long(0);
    else {
      w.long(1);
      w.string(batch.txId);
    }
    w.long(event.position.seq);
    w.bigLong(batch.commitTsUs);
    w.boolean(batch.snapshot);
    w.bigLong(tsUs);
  }

  /**
   * One row image (or null); sealed values are sealed straight into the message, or, with
   * `jobs`, left as holes of their sealed length that the jobs fill later.
   */
  private writeImage(w: AvroWriter, compiled: CompiledTable, row: Row | null, dek: DataKey | null, table: string, presealed: boolean, jobs: CryptoJobBuilder | null): void {
    if (!row) {
      w.long(0);
      return;
    }
    w.long(1);
    const sealedKeys = compiled.needsPlainKeyAad ? this.sealKeyColumns(compiled, row, dek, table, presealed) : null;
    let fullAad: Uint8Array | undefined;
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
        const sealed = sealedKeys?.get(c.name) ?? (presealed ? presealedValue(v, table, c.name) : undefined);
        if (sealed) {
          w.bytes(sealed);
          continue;
        }
        const key = (fullAad ??= keyAad(sealKeyParts(compiled, row, sealedKeys, false)));
        const plaintext = serializeCellTransient(v);
        const n = sealedLength(plaintext.length);
        w.long(n);
        w.ensure(n);
        if (jobs) {
          jobs.add(requireDek(dek, table, c.name), plaintext, c.place, key, w.pos);
          w.pos += n; // the hole the job fills
        } else w.pos = sealInto(requireDek(dek, table, c.name), plaintext, c.place, key, w.buf, w.pos);
      } else {
        try {
          c.mapping.write(w, v, 1);
        } catch (err) {
          throw valueError(err, compiled, c, table);
        }
      }
    }
    checkAllColumnsKnown(compiled, row, present, table);
  }

  private decodeWith(compiled: CompiledTable, message: Uint8Array, opening = false): DecodedChange {
    if (compiled.direct) return this.readEnvelope(compiled, message, opening);
    let env: Record<string, unknown>;
    try {
      env = compiled.type.fromBuffer(Buffer.from(message.buffer, message.byteOffset + HEADER_BYTES, message.byteLength - HEADER_BYTES)) as Record<string, unknown>;
    } catch {
      throw new ChartlogError('integrity', `message of ${qualifiedName(compiled.table)} (schema ${compiled.registered.fingerprintHex}) does not decode`, {
        hint: 'the object is damaged; run `chartlog verify`',
      });
    }
    const source = env.source as Record<string, unknown>;
    const txId = source.txId as { string: string } | null;
    const rowOf = (wrapped: unknown): Row | null => {
      if (wrapped === null) return null;
      const rec = (wrapped as Record<string, Record<string, unknown>>)[compiled.valueBranch]!;
      const row: Record<string, CellValue> = {};
      for (const c of compiled.columns) {
        const v = rec[c.field] as Record<string, unknown> | null;
        if (v === null) {
          setCell(row, c.name, null);
          continue;
        }
        const branch = Object.keys(v)[0]!;
        if (branch === MARKER_NAME) {
          if (v[branch] === 'UNCHANGED') setCell(row, c.name, UNCHANGED);
          continue;
        }
        setCell(row, c.name, c.mapping.fromAvro(branch, v[branch]));
      }
      return row;
    };
    let position: Position;
    try {
      if (!OPS.has(env.op as string)) throw new Error('op');
      position = Position.of(source.pos as string, Number(source.seq as bigint));
    } catch {
      throw new ChartlogError('integrity', `message of ${qualifiedName(compiled.table)} (schema ${compiled.registered.fingerprintHex}) has an invalid op or position`, {
        hint: 'the object is damaged; run `chartlog verify`',
      });
    }
    const event: ChangeEvent = {
      op: env.op as Op,
      schema: compiled.table,
      before: rowOf(env.before),
      after: rowOf(env.after),
      position,
    };
    return {
      event,
      source: source.name as string,
      connector: source.connector as string,
      db: source.db as string,
      txId: txId === null ? null : txId.string,
      commitTsUs: source.commitTsUs as bigint,
      snapshot: source.snapshot as boolean,
      tsUs: env.tsUs as bigint,
      fingerprint: compiled.registered.fingerprintHex,
      sealedColumns: compiled.sealedColumns,
    };
  }

  /**
   * A message read by avro-binary.ts. With `opening`, sealed values are views into the message,
   * not copies: `open` replaces every one of them before the event leaves the codec.
   */
  private readEnvelope(compiled: CompiledTable, message: Uint8Array, opening: boolean): DecodedChange {
    const r = new AvroReader(Buffer.from(message.buffer, message.byteOffset, message.byteLength), HEADER_BYTES);
    let before: Row | null;
    let after: Row | null;
    let op: string;
    let connector: string;
    let name: string;
    let db: string;
    let pos: string;
    let txId: string | null;
    let seq: number;
    let commitTsUs: bigint;
    let snapshot: boolean;
    let tsUs: bigint;
    try {
      before = readImage(r, compiled, opening);
      after = readImage(r, compiled, opening);
      op = r.string();
      connector = r.string();
      name = r.string();
      db = r.string();
      r.string(); // schema and table: the table version's own
      r.string();
      pos = r.string();
      const t = r.long();
      if (t !== 0 && t !== 1) throw new AvroDecodeError('invalid union index');
      txId = t === 0 ? null : r.string();
      seq = r.long();
      commitTsUs = r.bigLong();
      snapshot = r.boolean();
      tsUs = r.bigLong();
      if (r.pos !== r.end) throw new AvroDecodeError('trailing data');
    } catch (err) {
      if (err instanceof ChartlogError) throw err;
      throw new ChartlogError('integrity', `message of ${qualifiedName(compiled.table)} (schema ${compiled.registered.fingerprintHex}) does not decode`, {
        hint: 'the object is damaged; run `chartlog verify`',
      });
    }
    let position: Position;
    try {
      if (!OPS.has(op)) throw new Error('op');
      position = Position.of(pos, seq);
    } catch {
      throw new ChartlogError('integrity', `message of ${qualifiedName(compiled.table)} (schema ${compiled.registered.fingerprintHex}) has an invalid op or position`, {
        hint: 'the object is damaged; run `chartlog verify`',
      });
    }
    return {
      event: { op: op as Op, schema: compiled.table, before, after, position },
      source: name,
      connector,
      db,
      txId,
      commitTsUs,
      snapshot,
      tsUs,
      fingerprint: compiled.registered.fingerprintHex,
      sealedColumns: compiled.sealedColumns,
    };
  }

  private async loadOpenKey(keys: KeyManager, id: string): Promise<DataKey> {
    const key = await keys.get(id);
    this.openKeys.set(id, key);
    return key;
  }

  /** The unwrapped data key a sealed value names, if in memory; the last one used is checked first, without hex. */
  private openKeyOf(sealed: Uint8Array): DataKey | undefined {
    const last = this.lastOpenKey;
    if (last && isSealedUnder(sealed, last.id)) return last;
    const id = sealedKeyId(sealed);
    const key = id === null ? undefined : this.openKeys.get(id);
    if (key) this.lastOpenKey = key;
    return key;
  }

  /** True when a sealed value of the row names a data key not unwrapped yet. */
  private lacksKeys(compiled: CompiledTable, row: Row | null): boolean {
    if (!row) return false;
    for (const c of compiled.sealed) {
      const v = row[c.name];
      if (v instanceof Uint8Array && !this.openKeyOf(v)) return true;
    }
    return false;
  }

  /** Unwraps every data key the row's sealed values name that is not in memory yet. */
  private async loadKeysOf(keys: KeyManager, compiled: CompiledTable, row: Row | null): Promise<void> {
    if (!row) return;
    for (const c of compiled.sealed) {
      const v = row[c.name];
      if (!(v instanceof Uint8Array) || this.openKeyOf(v)) continue;
      const id = sealedKeyId(v);
      if (id === null) {
        throw new ChartlogError('integrity', `${qualifiedName(compiled.table)}.${c.name}: not a sealed value`, { hint: 'the object is damaged; run `chartlog verify`' });
      }
      await this.loadOpenKey(keys, id);
    }
  }

  /** Opens the message's PHI; synchronously when every data key it names is in memory already. */
  private open(compiled: CompiledTable, decoded: DecodedChange): DecodedChange | Promise<DecodedChange> {
    const keys = this.requireKeys(compiled);
    const { before, after } = decoded.event;
    if (this.lacksKeys(compiled, before) || this.lacksKeys(compiled, after)) return this.loadKeysThenOpen(keys, compiled, decoded);
    return this.openLoaded(compiled, decoded);
  }

  private async loadKeysThenOpen(keys: KeyManager, compiled: CompiledTable, decoded: DecodedChange): Promise<DecodedChange> {
    await this.loadKeysOf(keys, compiled, decoded.event.before);
    await this.loadKeysOf(keys, compiled, decoded.event.after);
    return this.openLoaded(compiled, decoded);
  }

  private openLoaded(compiled: CompiledTable, decoded: DecodedChange): DecodedChange {
    const { before, after } = decoded.event;
    // Rows fresh from decodeWith: opened in place.
    const audit: OpenAudit | null = this.onOpen ? { columns: new Array<boolean>(compiled.sealed.length).fill(false), keys: [] } : null;
    for (const row of [before, after]) {
      this.eachSealedCell(compiled, row, audit, (dek, sealed, c, aad) => setCell(row as Record<string, CellValue>, c.name, openValueWithAad(dek, sealed, c.place, aad, c.where)));
    }
    if (audit) this.audit(compiled, decoded.event.position, audit);
    return { ...decoded, sealedColumns: [] };
  }

  private requireKeys(compiled: CompiledTable): KeyManager {
    if (!this.keys) {
      throw new ChartlogError('auth', `opening PHI of ${qualifiedName(compiled.table)} needs the keyring`, {
        hint: 'set phi.keyring to the keyring that sealed this archive',
      });
    }
    return this.keys;
  }

  /**
   * Every sealed value of a row with its data key (in memory already) and the AAD key half it
   * was sealed with, noted in `audit`. Both AAD halves come from the row as sealed, before any
   * of its key columns is opened.
   */
  private eachSealedCell(compiled: CompiledTable, row: Row | null, audit: OpenAudit | null, fn: (dek: DataKey, sealed: Uint8Array, c: CompiledColumn, aad: Uint8Array) => void): void {
    if (!row) return;
    const plain = compiled.needsPlainKeyAad ? keyAad(openKeyParts(compiled, row, true)) : EMPTY;
    const full = compiled.needsFullKeyAad ? keyAad(openKeyParts(compiled, row, false)) : EMPTY;
    const sealed = compiled.sealed;
    const cells: [DataKey, Uint8Array, CompiledColumn][] = [];
    for (let i = 0; i < sealed.length; i++) {
      const c = sealed[i]!;
      const v = row[c.name];
      if (!(v instanceof Uint8Array)) continue;
      const dek = this.openKeyOf(v)!;
      cells.push([dek, v, c]);
      if (audit) {
        audit.columns[i] = true;
        if (!audit.keys.includes(dek)) audit.keys.push(dek);
      }
    }
    // Called after the AADs are taken: `fn` may replace the row's sealed values.
    for (const [dek, v, c] of cells) fn(dek, v, c, c.sealedKey ? plain : full);
  }

  /** The audit entry of one opened message (docs/architecture.md §5). */
  private audit(compiled: CompiledTable, position: Position, audit: OpenAudit): void {
    if (!this.onOpen || audit.keys.length === 0) return;
    const columns = compiled.sealedColumns.filter((_c, i) => audit.columns[i]);
    this.onOpen({ source: this.source, table: qualifiedName(compiled.table), position, columns, keyIds: audit.keys.map((k) => k.idHex) });
  }
}

/** Which columns of one message were opened and under which keys, for the audit entry. */
interface OpenAudit {
  columns: boolean[];
  keys: DataKey[];
}

const EMPTY = new Uint8Array(0);

/**
 * A sealed row's key parts, for opening: a sealed key column binds the plain key columns only
 * (`plainOnly`); every other sealed column the whole key, sealed key columns as their sealed bytes.
 */
function openKeyParts(compiled: CompiledTable, row: Row, plainOnly: boolean): KeyPart[] {
  const parts: KeyPart[] = [];
  for (const k of compiled.key) {
    if (plainOnly && k.sealed) continue;
    if (!Object.hasOwn(row, k.name)) {
      parts.push(undefined);
      continue;
    }
    const kv = row[k.name]!;
    if (kv === UNCHANGED) parts.push(undefined);
    else parts.push(k.sealed && kv instanceof Uint8Array ? { sealed: kv } : { value: kv });
  }
  return parts;
}

/**
 * A row's key parts for the AAD of its sealed columns: a sealed key column binds the plain key
 * columns only (`plainOnly`; its own sealed bytes are made from them); every other sealed column
 * binds the whole key, sealed key columns as their sealed bytes (`sealedKeys`).
 */
function sealKeyParts(compiled: CompiledTable, row: Row, sealedKeys: ReadonlyMap<string, Uint8Array> | null, plainOnly: boolean): KeyPart[] {
  const parts: KeyPart[] = [];
  for (const k of compiled.key) {
    if (plainOnly && k.sealed) continue;
    if (!Object.hasOwn(row, k.name)) {
      parts.push(undefined);
      continue;
    }
    const sealed = sealedKeys?.get(k.name);
    if (sealed) {
      parts.push({ sealed });
      continue;
    }
    const v = row[k.name]!;
    parts.push(v === UNCHANGED ? undefined : { value: v });
  }
  return parts;
}

/** The bytes of a row read from the archive without opening: they must be a sealed value. */
function presealedValue(v: CellValue, table: string, column: string): Uint8Array {
  if (v instanceof Uint8Array && sealedKeyId(v) !== null) return v;
  throw new ChartlogError('internal', `${table}.${column}: a presealed row holds a value that is not sealed`, {
    hint: 'rows passed through sealed must be read from the archive without opening them',
  });
}

function requireDek(dek: DataKey | null, table: string, column: string): DataKey {
  if (!dek) throw new ChartlogError('internal', `no data key to seal ${table}.${column}`);
  return dek;
}

/** A mapping's refusal of a value, as an error that names the column and kind, never the value. */
function valueError(err: unknown, compiled: CompiledTable, c: CompiledColumn, table: string): unknown {
  if (err instanceof ValueTypeError) return new ChartlogError('internal', `${table}.${c.name}: ${err.message} (kind ${compiled.table.columns.find((x) => x.name === c.name)?.type.kind})`);
  return err;
}

function checkAllColumnsKnown(compiled: CompiledTable, row: Row, present: number, table: string): void {
  if (present !== Object.keys(row).length) {
    const extra = Object.keys(row).filter((k) => !compiled.byName.has(k));
    throw new ChartlogError('internal', `${table}: row has columns not in its table version: ${extra.join(', ')}`);
  }
}

/** Values `dataKey` counts for one event: every sealed column of each image. */
function sealedCells(compiled: CompiledTable, event: ChangeEvent): number {
  return compiled.sealedColumns.length * ((event.before ? 1 : 0) + (event.after ? 1 : 0));
}

/** One row image read by avro-binary.ts (see readEnvelope). */
function readImage(r: AvroReader, compiled: CompiledTable, opening: boolean): Row | null {
  const present = r.long();
  if (present === 0) return null;
  if (present !== 1) throw new AvroDecodeError('invalid union index');
  const row: Record<string, CellValue> = {};
  for (const c of compiled.columns) {
    const b = r.long();
    if (b === 0) setCell(row, c.name, null);
    else if (b === c.markerIndex) {
      const symbol = r.long();
      if (symbol === 0) setCell(row, c.name, UNCHANGED);
      else if (symbol !== 1) throw new AvroDecodeError('invalid enum index'); // 1: ABSENT, no cell
    } else if (b > 0 && b < c.markerIndex) setCell(row, c.name, c.sealed && opening ? r.bytesView() : c.mapping.read(r, b - 1));
    else throw new AvroDecodeError('invalid union index');
  }
  return row;
}

/**
 * True when the stored schema's fields are exactly those toAvroSchema makes for the version it
 * describes: then the direct writer and reader, which follow toAvroSchema, match it byte for byte.
 */
function fitsDirect(registered: RegisteredSchema): boolean {
  try {
    const v = registered.version;
    return JSON.stringify(toAvroSchema(v.source, v.table, v.sealed).fields) === JSON.stringify(registered.schema.fields);
  } catch {
    return false;
  }
}

/** Sets an own property even for a column named "__proto__", which plain assignment would not. */
function setCell(row: Record<string, CellValue>, name: string, value: CellValue): void {
  if (name === '__proto__') Object.defineProperty(row, name, { value, enumerable: true, writable: true, configurable: true });
  else row[name] = value;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

