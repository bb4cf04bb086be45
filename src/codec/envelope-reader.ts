import type { ChangeEvent, Op } from '../core/change-event.js';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { UNCHANGED, type CellValue, type Row } from '../core/table-schema.js';
import { setCell } from '../phi/cell-serialization.js';
import { AvroDecodeError, AvroReader } from './avro-binary.js';
import { ENVELOPE_OPS, MARKER_NAME } from './avro-schema.js';
import type { CompiledTable } from './compiled-table.js';
import { SINGLE_OBJECT_HEADER_BYTES } from './single-object.js';

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
  /**
   * The table version's PHI columns, sealed when written: the same as `sealedColumns` until the
   * values are opened, and still named here after. What a restore reports and audits.
   */
  readonly phiColumns: readonly string[];
}

/**
 * The event a message holds, its sealed values left sealed. Two readers: the direct one
 * (avro-binary.ts) for table versions whose schema toAvroSchema made, avsc from the stored
 * schema for the rest. With `opening` (direct reader only), sealed values are views into the
 * message, not copies: the caller opens every one of them before the event leaves the codec,
 * so the result already says no column is sealed (one object per message, not a copy after).
 */
export function readEnvelope(compiled: CompiledTable, message: Uint8Array, opening = false): DecodedChange {
  return compiled.direct ? readDirect(compiled, message, opening) : readWithAvsc(compiled, message, opening);
}

/** A message read by avro-binary.ts. */
function readDirect(compiled: CompiledTable, message: Uint8Array, opening: boolean): DecodedChange {
  const r = new AvroReader(Buffer.from(message.buffer, message.byteOffset, message.byteLength), SINGLE_OBJECT_HEADER_BYTES);
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
    throw doesNotDecode(compiled);
  }
  const position = positionOf(compiled, op, pos, seq);
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
    sealedColumns: opening ? NONE_SEALED : compiled.sealedColumns,
    phiColumns: compiled.sealedColumns,
  };
}

const NONE_SEALED: readonly string[] = Object.freeze([]);

/** One record of a container block, read in place: what restoring a table needs of it. */
export interface BlockRecord {
  readonly op: Op;
  readonly before: Row | null;
  readonly after: Row | null;
  readonly position: Position;
}

/**
 * The record at `r.pos` of a container block of a direct table version (avro-binary.ts), read
 * where it lies: no copy of it behind a single-object header, no second parse to split the
 * block, and the envelope's names, transaction id and times skipped without making a string or
 * a bigint of them (restore reads millions of base rows; each such value was garbage). The row
 * images are read exactly as `readEnvelope` reads them (`opening`: sealed values are views to
 * open in place). Leaves `r.pos` at the next record. Errors as `readEnvelope`'s.
 */
export function readBlockRecord(compiled: CompiledTable, r: AvroReader, opening: boolean): BlockRecord {
  let before: Row | null;
  let after: Row | null;
  let tail: EnvelopeTail;
  try {
    before = readImage(r, compiled, opening);
    after = readImage(r, compiled, opening);
    tail = readTail(r, false);
  } catch (err) {
    if (err instanceof ChartlogError) throw err;
    throw doesNotDecode(compiled);
  }
  return { op: tail.op as Op, before, after, position: positionOf(compiled, tail.op, tail.pos, tail.seq) };
}

/**
 * The position and commit time of the record at `r.pos` of a container block of a direct table
 * version, its row images passed over without making a value of them (restore and the replicator
 * split every block this way before decoding the records they keep; avsc's schema resolution did
 * it at several times the cost, building a record and two bigints per message). Leaves `r.pos` at
 * the next record. Errors as `readEnvelope`'s.
 */
export function splitBlockRecord(compiled: CompiledTable, r: AvroReader): { position: Position; commitTsUs: bigint } {
  let tail: EnvelopeTail;
  try {
    const skips = skipsOf(compiled);
    skipImage(r, compiled, skips);
    skipImage(r, compiled, skips);
    tail = readTail(r, true);
  } catch (err) {
    if (err instanceof ChartlogError) throw err;
    throw doesNotDecode(compiled);
  }
  return { position: positionOf(compiled, tail.op, tail.pos, tail.seq), commitTsUs: tail.commitTsUs };
}

/** What a block reader takes of the envelope after its row images. */
interface EnvelopeTail {
  op: string;
  pos: string;
  seq: number;
  /** 0n unless asked for. */
  commitTsUs: bigint;
}

/**
 * The envelope after the row images, read where it lies: op, position and (`withCommit`) the
 * commit time; the names, transaction id, snapshot flag and tsUs passed over without making a
 * string or a bigint of them.
 */
function readTail(r: AvroReader, withCommit: boolean): EnvelopeTail {
  const op = r.string();
  for (let i = 0; i < 5; i++) r.skipBytes(); // connector, name, db, schema, table
  const pos = r.string();
  const t = r.long();
  if (t !== 0 && t !== 1) throw new AvroDecodeError('invalid union index');
  if (t === 1) r.skipBytes(); // txId
  const seq = r.long();
  let commitTsUs = 0n;
  if (withCommit) commitTsUs = r.bigLong();
  else r.skipLong();
  r.boolean(); // snapshot
  r.skipLong(); // tsUs
  return { op, pos, seq, commitTsUs };
}

/** How a value of a union branch is passed over: by its Avro encoding, or (any other type) read by its mapping and dropped. */
const SKIP_BYTES = 0;
const SKIP_VARINT = 1;
const SKIP_BOOLEAN = 2;
const SKIP_DOUBLE = 3;
const SKIP_BY_READING = 4;

/** Per column, per value branch, how to pass over it (computed once per table version). */
const skipPlans = new WeakMap<CompiledTable, number[][]>();

function skipsOf(compiled: CompiledTable): number[][] {
  let plan = skipPlans.get(compiled);
  if (!plan) {
    plan = compiled.columns.map((c) =>
      c.mapping.branches.map((b) => {
        switch (typeof b === 'string' ? b : (b as { type?: unknown }).type) {
          case 'string':
          case 'bytes':
            return SKIP_BYTES;
          case 'int':
          case 'long':
            return SKIP_VARINT;
          case 'boolean':
            return SKIP_BOOLEAN;
          case 'double':
            return SKIP_DOUBLE;
          default:
            return SKIP_BY_READING;
        }
      }),
    );
    skipPlans.set(compiled, plan);
  }
  return plan;
}

/** Passes over one row image as `readImage` reads it, checking the same union indexes. */
function skipImage(r: AvroReader, compiled: CompiledTable, skips: number[][]): void {
  const present = r.long();
  if (present === 0) return;
  if (present !== 1) throw new AvroDecodeError('invalid union index');
  const columns = compiled.columns;
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    const b = r.long();
    if (b === 0) continue;
    if (b === c.markerIndex) {
      const symbol = r.long();
      if (symbol !== 0 && symbol !== 1) throw new AvroDecodeError('invalid enum index');
      continue;
    }
    if (!(b > 0 && b < c.markerIndex)) throw new AvroDecodeError('invalid union index');
    switch (skips[i]![b - 1]) {
      case SKIP_BYTES:
        r.skipBytes();
        break;
      case SKIP_VARINT:
        r.skipLong();
        break;
      case SKIP_BOOLEAN:
        r.boolean();
        break;
      case SKIP_DOUBLE:
        r.double();
        break;
      default:
        c.mapping.read(r, b - 1);
    }
  }
}

/** One row image read by avro-binary.ts (see readDirect). */
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

/** A message read by avsc from its stored schema (a schema another codec version wrote). */
function readWithAvsc(compiled: CompiledTable, message: Uint8Array, opening: boolean): DecodedChange {
  let env: Record<string, unknown>;
  try {
    env = compiled.type.fromBuffer(
      Buffer.from(message.buffer, message.byteOffset + SINGLE_OBJECT_HEADER_BYTES, message.byteLength - SINGLE_OBJECT_HEADER_BYTES),
    ) as Record<string, unknown>;
  } catch {
    throw doesNotDecode(compiled);
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
  const position = positionOf(compiled, env.op as string, source.pos as string, Number(source.seq as bigint));
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
    sealedColumns: opening ? NONE_SEALED : compiled.sealedColumns,
    phiColumns: compiled.sealedColumns,
  };
}

/** The event's position, refusing an op or position no writer makes. */
function positionOf(compiled: CompiledTable, op: string, pos: string, seq: number): Position {
  try {
    if (!ENVELOPE_OPS.has(op)) throw new Error('op');
    return Position.of(pos, seq);
  } catch {
    throw new ChartlogError('integrity', `message of ${compiled.name} (schema ${compiled.registered.fingerprintHex}) has an invalid op or position`, {
      hint: 'the object is damaged; run `chartlog verify`',
    });
  }
}

function doesNotDecode(compiled: CompiledTable): ChartlogError {
  return new ChartlogError('integrity', `message of ${compiled.name} (schema ${compiled.registered.fingerprintHex}) does not decode`, {
    hint: 'the object is damaged; run `chartlog verify`',
  });
}
