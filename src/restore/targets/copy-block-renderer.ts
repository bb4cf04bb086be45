import { ChartlogError } from '../../core/errors.js';
import { COMMIT_SEQ, Position } from '../../core/position.js';
import { identityColumns, type CellValue, type ColumnSchema, type Row } from '../../core/table-schema.js';
import { AvroDecodeError, AvroReader } from '../../codec/avro-binary.js';
import { compileTable, type CompiledColumn, type CompiledTable } from '../../codec/compiled-table.js';
import { readBlockRecord } from '../../codec/envelope-reader.js';
import type { RegisteredSchema } from '../../codec/schema-store.js';
import { openingKeyAad } from '../../phi/aad.js';
import { BLOCK_REFERENCE, blockIdOf, blockRowOf, isBlockReference, isBlockSeal, OpenedBlock, referencedRow } from '../../phi/block-seal.js';
import { setCell } from '../../phi/cell-serialization.js';
import { OpeningKeys, type DataKeySource } from '../../phi/opening-keys.js';
import { PhiOpener } from '../../phi/phi-opener.js';
import { sealedPosition } from '../../phi/sealer.js';
import { pgText } from './postgres-text.js';
import { heldTest, keyOf, type BaseBatch, type HeldKeys } from '../../archive/table-merge.js';
import type { TableBlocks } from '../../archive/streaming-replay.js';
import { CopyTextBuffer, writeCopyRow } from './copy-text-buffer.js';
import type { SourceEngine, TablePlan } from './restore-target.js';

/**
 * One table's base snapshot container blocks turned into COPY text — records read where they
 * lie, PHI opened in place, rows written as COPY lines — with the rows the merge must see (held
 * keys) handed back as rows. The one form for the COPY threads (copy-block-worker.ts) and for
 * the calling thread when there are none (`renderInline`): either way a block's rows become
 * bytes without passing through the merge as row objects one by one.
 *
 * Nothing here logs; errors name tables and columns, never values.
 */

/** What a table's rows need (sent with its first block to each COPY thread). */
export interface CopyTableSpec {
  readonly source: string;
  readonly open: boolean;
  readonly columns: TablePlan['table']['columns'];
  readonly sealed: readonly boolean[];
  readonly engine: SourceEngine;
  /** Keys whose rows go back as rows (TableBlocks.held). */
  readonly held: HeldKeys;
  /** "schema.table", for messages. */
  readonly name: string;
}

/** One block's COPY text and the rows held back from it. */
export interface RenderedRows {
  readonly bytes: Uint8Array;
  /** Rows in `bytes`. */
  readonly rows: number;
  /** Base rows whose keys are held, in block order, without views into the block. */
  readonly held: Row[];
}

/** The spec of a table for a plan and its blocks. */
export function copyTableSpec(t: TableBlocks, plan: TablePlan): CopyTableSpec {
  return {
    source: t.source,
    open: t.open,
    columns: plan.table.columns,
    sealed: plan.table.columns.map((c) => plan.sealed.has(c.name)),
    engine: plan.sourceEngine,
    held: t.held,
    name: plan.name,
  };
}

/** A column of a version read on the direct path (`DirectVersion`). */
interface DirectColumn {
  readonly col: CompiledColumn;
  /** The plan's column (the same name and type): what the text is written for. */
  readonly plan: ColumnSchema;
  /** Index among the sealed columns; -1: plain. */
  readonly sealed: number;
  /** The value is kept for the row's key (primary key, identity). */
  readonly key: boolean;
  /** Per value branch: its Avro bytes are UTF-8 text written as they are (a string branch, not a key). */
  readonly raw: readonly boolean[];
}

/**
 * A table version whose block-sealed base rows are written straight from the container block and
 * the opened block seal into COPY text: no row object, position or string per value on the way
 * (docs/architecture.md §5, restore's write path). Only where that gives the very bytes the row
 * path gives: the plan writes exactly this version's columns, PHI is opened (or there is none),
 * and the key and identity columns are plain.
 */
interface DirectVersion {
  readonly compiled: CompiledTable;
  readonly columns: readonly DirectColumn[];
  /** Sealed cells of the row being read (views into the block), by sealed column index. */
  readonly cells: (Uint8Array | null)[];
  readonly where: readonly string[];
}

/** A block seal met in a table's rows, opened at its first row (PhiOpener's BlockSeals, for the direct path). */
interface SealEntry {
  readonly seal: Uint8Array;
  opened: OpenedBlock | null;
  /** The last record commit its position was checked against. */
  checked: string;
}

/** What reading one record on the direct path gave: a row written, a row held back, or the row path must read it. */
const WRITTEN = 0;
const HELD = 1;
const ROW_PATH = 2;
/** Block seals held at once (a table's part is read in order: one or two are in use). */
const MAX_SEALS = 8;

export class CopyBlockRenderer {
  /** Whether a row's key is held; null: none is. */
  private readonly held: ((key: string) => boolean) | null;
  private readonly compiled = new Map<string, CompiledTable>();
  private readonly direct = new Map<string, DirectVersion | null>();
  private readonly opener: PhiOpener;
  private readonly keys: OpeningKeys;
  private readonly seals = new Map<string, SealEntry>();
  /** The block seal the last block-sealed cell named. */
  private lastSeal: SealEntry | null = null;
  /** The last record's position bytes and commit, read once for the records that share them. */
  private lastPos: Uint8Array = new Uint8Array(0);
  private lastCommit = '';

  /** `keys`: the data keys sealed values name (on a COPY thread, asked of the calling thread). */
  constructor(
    readonly spec: CopyTableSpec,
    keys: DataKeySource,
  ) {
    this.held = heldTest(spec.held);
    this.opener = new PhiOpener({ source: spec.source, keys });
    this.keys = new OpeningKeys(keys);
  }

  /** Wipes the opened block seals (the table is done). */
  end(): void {
    for (const e of this.seals.values()) e.opened?.wipe();
    this.seals.clear();
    this.lastSeal = null;
  }

  /** Whether a table version's blocks can be rendered (it was added). */
  knows(fingerprint: string): boolean {
    return this.compiled.has(fingerprint);
  }

  /** A table version blocks may be of. */
  addVersion(fingerprint: string, registered: RegisteredSchema): void {
    if (this.compiled.has(fingerprint)) return;
    const compiled = compileTable(this.spec.source, registered);
    this.compiled.set(fingerprint, compiled);
    this.direct.set(fingerprint, directVersion(compiled, this.spec));
  }

  /** One block of `count` records of version `fingerprint` as COPY text; `data` is read where it lies. */
  async render(fingerprint: string, count: number, data: Buffer): Promise<RenderedRows> {
    const compiled = this.compiled.get(fingerprint);
    if (!compiled) throw new ChartlogError('internal', `restore has no table version ${fingerprint} of ${this.spec.name}`);
    const { columns, sealed, engine, open } = this.spec;
    const opening = open && compiled.sealedColumns.length > 0;
    const held = this.held;
    const r = new AvroReader(data, 0);
    const out = new CopyTextBuffer(data.length);
    const heldRows: Row[] = [];
    let records = 0;
    let rows = 0;
    const direct = this.direct.get(fingerprint) ?? null;
    while (r.pos < r.end) {
      const start = r.pos;
      if (direct) {
        const mark = out.length;
        const got = this.readDirect(direct, r, out);
        if (got === WRITTEN) {
          records++;
          rows++;
          continue;
        }
        out.rewind(mark);
        r.pos = start;
        if (got instanceof Uint8Array) {
          // A block seal under a data key not unwrapped yet: read again once it is (else the row path refuses the seal).
          await this.keys.loadOne(got);
          if (this.keys.of(got)) continue;
        }
        if (got === HELD) {
          records++;
          heldRows.push(ownBytes(this.heldRow(direct, r)));
          continue;
        }
      }
      const d = readBlockRecord(compiled, r, opening);
      records++;
      if (opening) {
        const loading = this.opener.open(compiled, d.before, d.after, d.position, d.op !== 'r');
        if (loading) await loading;
      } else if (compiled.sealedColumns.length > 0 && d.op === 'r') {
        // --keep-sealed: a block-sealed row (format 5) leaves re-sealed per row (PhiOpener.keepSealed).
        const loading = this.opener.keepSealed(compiled, d.after, d.position);
        if (loading) await loading;
      }
      const row = d.after;
      if (!row) continue;
      if (held && held(keyOf(compiled.table, row))) {
        heldRows.push(ownBytes(row));
        continue;
      }
      writeCopyRow(out, row, columns, sealed, engine);
      rows++;
    }
    if (records !== count) {
      throw new ChartlogError('integrity', `a base snapshot block of ${this.spec.name} holds ${records} records where its header says ${count}`, {
        hint: 'the object is damaged; run `chartlog verify`',
      });
    }
    return { bytes: out.take(), rows, held: heldRows };
  }

  /**
   * One record at `r.pos` on the direct path: its row written as a COPY line (WRITTEN), or, with
   * nothing written, HELD (its key is held), ROW_PATH (a record the row path reads: not a
   * block-sealed or plain snapshot row, or one it refuses with its own message), or the block
   * seal whose data key must be unwrapped first. Refuses what `PhiOpener` refuses of a
   * block-sealed row (block-seal.ts blockRowOf, the seal's position), with the same messages.
   */
  private readDirect(v: DirectVersion, r: AvroReader, out: CopyTextBuffer): number | Uint8Array {
    const { compiled, columns, cells } = v;
    const engine = this.spec.engine;
    const buf = r.buf;
    const keyRow: Record<string, CellValue> = {};
    let first = -1;
    let entry: SealEntry | null = null;
    try {
      if (r.long() !== 0 || r.long() !== 1) return ROW_PATH; // a before image, or no after image
      for (let i = 0; i < columns.length; i++) {
        const c = columns[i]!;
        if (i > 0) out.byte(0x09);
        const b = r.long();
        if (b === 0) {
          if (c.sealed >= 0) cells[c.sealed] = null;
          if (c.key) setCell(keyRow, c.col.name, null);
          out.nullValue();
          continue;
        }
        if (b <= 0 || b >= c.col.markerIndex) return ROW_PATH; // a marker (unchanged, absent), or damage
        if (c.sealed < 0) {
          if (c.raw[b - 1]) {
            const n = r.long();
            if (n < 0 || r.pos + n > r.end) throw new AvroDecodeError('truncated');
            if (!out.ascii(buf, r.pos, r.pos + n)) out.text(buf.toString('utf8', r.pos, r.pos + n));
            r.pos += n;
            continue;
          }
          const value = c.col.mapping.read(r, b - 1);
          if (c.key) setCell(keyRow, c.col.name, value);
          if (value instanceof Uint8Array) out.bytea(value);
          else {
            const t = pgText(value, c.plan, false, engine);
            if (t === null) out.nullValue();
            else out.text(t);
          }
          continue;
        }
        const cell = r.bytesView();
        cells[c.sealed] = cell;
        let e: SealEntry | undefined;
        let row: number;
        if (cell[0] === BLOCK_REFERENCE && isBlockReference(cell)) {
          // Nearly every reference names the block the row before used: compared as bytes, no hex id.
          const last = this.lastSeal;
          e = last?.opened?.isNamedBy(cell) ? last : this.seals.get(blockIdOf(cell));
          row = referencedRow(cell);
        } else if (isBlockSeal(cell)) {
          e = this.noteSeal(cell);
          row = 0;
        } else return ROW_PATH; // a value sealed otherwise (formats 1–4): opened by the PhiOpener
        if (!e) return ROW_PATH; // a reference to a block not met (refused there)
        if (!e.opened) {
          const dek = this.keys.of(e.seal);
          if (!dek) return e.seal;
          e.opened = OpenedBlock.open(dek, e.seal, compiled.blockPlaces, c.col.where);
        }
        this.lastSeal = e;
        if (first < 0) {
          first = c.sealed;
          entry = e;
        }
        // Written now, checked with the whole row below: a refusal fails the table, so nothing written stays.
        if (row >= 0 && row < e.opened.rows && e.opened.holds(c.sealed, row)) writeCell(out, e.opened, c.sealed, row, c.plan, engine);
        else out.nullValue();
      }
      // The envelope: a snapshot read ('r'), its position (nearly always the last record's), the rest skipped.
      const opLength = r.long();
      if (opLength !== 1 || r.pos >= r.end || buf[r.pos] !== 0x72) return ROW_PATH;
      r.pos++;
      for (let i = 0; i < 5; i++) r.skipBytes(); // connector, name, db, schema, table
      const posLength = r.long();
      if (posLength < 0 || r.pos + posLength > r.end) throw new AvroDecodeError('truncated');
      const commit = this.commitAt(buf, r.pos, posLength);
      r.pos += posLength;
      const t = r.long();
      if (t !== 0 && t !== 1) return ROW_PATH;
      if (t === 1) r.skipBytes(); // txId
      const seq = r.long();
      if (seq < 0 || seq > COMMIT_SEQ || commit === null) return ROW_PATH; // refused there as an invalid position
      r.skipLong(); // commitTsUs
      r.boolean(); // snapshot
      r.skipLong(); // tsUs
    } catch (err) {
      if (err instanceof ChartlogError) throw err;
      return ROW_PATH; // damage: the row path refuses it, naming the table
    }
    if (entry) {
      for (const c of v.compiled.sealed.keys()) {
        const x = cells[c];
        if (x && !isBlockReference(x) && !isBlockSeal(x)) {
          throw refusedRow(compiled.where, `${compiled.sealed[c]!.name}: a block-sealed row holds another sealed value`);
        }
      }
      this.checkSealPosition(entry, v.where[first]!);
      blockRowOf(entry.opened!, cells, openingKeyAad(compiled.key, keyRow, true), v.where);
    } else if (cells.some((x) => x !== null)) return ROW_PATH;
    if (this.held?.(keyOf(compiled.table, keyRow))) return HELD;
    out.byte(0x0a);
    return WRITTEN;
  }

  /** A held row read on the direct path: the record as a row, its block-sealed PHI opened from the block (checked as `readDirect` checks). */
  private heldRow(v: DirectVersion, r: AvroReader): Row {
    const d = readBlockRecord(v.compiled, r, true);
    const row = d.after as Record<string, CellValue>;
    const sealed = v.compiled.sealed;
    const cells = sealed.map((c) => row[c.name] ?? null);
    const at = cells.findIndex((x) => isBlockReference(x) || isBlockSeal(x));
    if (at < 0) return row;
    const e = this.seals.get(blockIdOf(cells[at] as Uint8Array))!;
    this.checkSealPosition(e, v.where[at]!);
    const n = blockRowOf(e.opened!, cells, openingKeyAad(v.compiled.key, row, true), v.where);
    for (let c = 0; c < sealed.length; c++) if (e.opened!.holds(c, n)) setCell(row, sealed[c]!.name, e.opened!.value(c, n));
    return row;
  }

  /** The block seal `seal` names, noted (a copy) when first met. */
  private noteSeal(seal: Uint8Array): SealEntry {
    const id = blockIdOf(seal);
    let e = this.seals.get(id);
    if (!e) {
      this.seals.set(id, (e = { seal: seal.slice(), opened: null, checked: '' }));
      if (this.seals.size > MAX_SEALS) {
        const [oldest] = this.seals.keys();
        const gone = this.seals.get(oldest!)!;
        gone.opened?.wipe();
        this.seals.delete(oldest!);
        if (this.lastSeal === gone) this.lastSeal = null;
      }
    }
    return e;
  }

  /** The commit of the position text at buf[at, at + n): the last record's when the bytes are the same; null when invalid. */
  private commitAt(buf: Buffer, at: number, n: number): string | null {
    const last = this.lastPos;
    if (last.length === n) {
      let same = true;
      for (let i = 0; i < n; i++) if (buf[at + i] !== last[i]) { same = false; break; }
      if (same) return this.lastCommit;
    }
    const text = buf.toString('utf8', at, at + n);
    try {
      Position.of(text, 0);
    } catch {
      return null;
    }
    this.lastPos = buf.slice(at, at + n);
    this.lastCommit = text;
    return text;
  }

  /** A base row's block seal was sealed at or before its record's transaction (PhiOpener's check), once per commit. */
  private checkSealPosition(e: SealEntry, where: string): void {
    const commit = this.lastCommit;
    if (e.checked === commit) return;
    const at = sealedPosition(e.seal);
    if (at === null || Position.compare(Position.commitOf(at), Position.of(commit)) > 0) {
      throw new ChartlogError('integrity', `${where}: a block sealed at ${at ? Position.format(at) : 'an unreadable position'} is in the snapshot at ${commit}`, {
        hint: 'the archive object was tampered with (a block moved from another snapshot); run `chartlog verify` and restore from an intact copy',
      });
    }
    e.checked = commit;
  }
}

/** The direct path for a version, or null when its rows take the row path (see DirectVersion). */
function directVersion(compiled: CompiledTable, spec: CopyTableSpec): DirectVersion | null {
  const table = compiled.table;
  if (!compiled.direct || spec.sealed.some(Boolean) || (!spec.open && compiled.sealedColumns.length > 0)) return null;
  if (table.primaryKey.length === 0 || compiled.key.some((k) => k.sealed)) return null;
  const keyed = new Set([...table.primaryKey, ...identityColumns(table)]);
  if (compiled.columns.some((c) => c.sealed && keyed.has(c.name))) return null;
  if (JSON.stringify(spec.columns) !== JSON.stringify(table.columns)) return null;
  const sealedIndex = new Map(compiled.sealed.map((c, i) => [c.name, i]));
  const columns = compiled.columns.map((col, i): DirectColumn => {
    const plan = spec.columns[i]!;
    const key = keyed.has(col.name);
    // Text a string branch holds goes out as it is, except where pgText would change it (MySQL zero dates).
    const dated = spec.engine === 'mysql' && (plan.type.kind === 'date' || plan.type.kind === 'timestamp' || plan.type.kind === 'timestamptz');
    const raw = col.sealed ? [] : col.mapping.branches.map((b) => !key && !dated && (b === 'string' || (typeof b === 'object' && b !== null && (b as { type?: unknown }).type === 'string')));
    return { col, plan, sealed: sealedIndex.get(col.name) ?? -1, key, raw };
  });
  return { compiled, columns, cells: compiled.sealed.map(() => null), where: compiled.sealed.map((c) => c.where) };
}

/** Sealed column c of row r of an opened block as COPY text: a compact ASCII string as its bytes, anything else as the row path writes its value. */
function writeCell(out: CopyTextBuffer, block: OpenedBlock, c: number, r: number, col: ColumnSchema, engine: SourceEngine): void {
  const bytes = block.cellBytes(c, r);
  if (bytes[0] === COMPACT_STRING && out.ascii(bytes, 1, bytes.length)) return;
  const value = block.value(c, r);
  if (value instanceof Uint8Array) out.bytea(value);
  else {
    const t = pgText(value, col, false, engine);
    if (t === null) out.nullValue();
    else out.text(t);
  }
}

/** Format 4's compact cell tag of a string (cell-serialization.ts TAG_STRING): UTF-8 follows. */
const COMPACT_STRING = 5;

function refusedRow(where: string, what: string): ChartlogError {
  return new ChartlogError('integrity', `${where}: ${what} (altered, moved, truncated or removed)`, {
    hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
  });
}

/**
 * `CopyBlockThreads.render` on the calling thread (no COPY threads: fewer than 4 cores, or
 * `restore.copyThreads: 0`): the same blocks, text and held rows, in block order.
 */
export async function* renderInline(t: TableBlocks, plan: TablePlan): AsyncGenerator<{ bytes: Buffer; rows: number; held: BaseBatch | null }> {
  const renderer = new CopyBlockRenderer(copyTableSpec(t, plan), { get: (idHex) => t.dataKey(idHex) });
  const versions = new Map<string, RegisteredSchema>();
  try {
    for await (const { fingerprint, count, data } of t.blocks) {
      let registered = versions.get(fingerprint);
      if (!registered) {
        versions.set(fingerprint, (registered = await t.registered(fingerprint)));
        renderer.addVersion(fingerprint, registered);
      }
      const r = await renderer.render(fingerprint, count, data).catch((err: unknown) => {
        throw describeRenderError(err, plan.name);
      });
      yield { bytes: Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength), rows: r.rows, held: r.held.length > 0 ? { schema: registered.version.table, rows: r.held } : null };
    }
  } finally {
    renderer.end();
  }
}

/** A held row without views into the block (a view would keep, or carry across threads, the whole block). */
function ownBytes(row: Row): Row {
  const copy: Record<string, Row[string]> = {};
  for (const k of Object.keys(row)) {
    const v = row[k]!;
    if (k === '__proto__') Object.defineProperty(copy, k, { value: v instanceof Uint8Array ? v.slice() : v, enumerable: true, writable: true, configurable: true });
    else copy[k] = v instanceof Uint8Array ? v.slice() : v;
  }
  return copy;
}

/** A rendering error as restore raises it: a damaged block's decoder error is still a refusal, never a bug. */
export function describeRenderError(err: unknown, table: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  return new ChartlogError('integrity', `reading the base snapshot of ${table} failed: ${err instanceof Error ? err.message : 'unknown error'}; an object may be damaged`, {
    hint: 'run `chartlog verify`, and restore damaged objects from a copy of the archive',
  });
}
