import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { CellValue, Row } from '../core/table-schema.js';
import { openingKeyAad, type KeyColumn } from './aad.js';
import { deserializeCell, setCell } from './cell-serialization.js';
import type { CryptoPool } from './crypto-pool.js';
import { CryptoJobBuilder } from './crypto-jobs.js';
import { OpeningKeys, type DataKeySource } from './opening-keys.js';
import { blockIdOf, isBlockReference, isBlockSeal, OpenedBlock, openBlockRow, type BlockPlaces } from './block-seal.js';
import { firstMember, inSet, isRowSeal, isRowSealReference, referenceTo, refersTo, RowCursor, RowPlaintext, rowSealLength, rowSealSet, sealRowBody, setSize, writeRowSealHeader, type RowPlaces } from './row-seal.js';
import { BLOCK_SEAL_FORMAT, openedLength, openPartsTransient, openValueWithAad, isRowSealFormat, positionBytes, sameHeaderPosition, SEALED_FORMAT_V2, sealedAt, sealedPosition, sealedPositionBytes, type DataKey } from './sealer.js';

/**
 * Opening sealed PHI in decoded row images (docs/architecture.md §5: every opening is audited).
 * The codec's readers leave sealed values in the rows and hand them here with what this needs
 * to know about their table version (a SealedTable); values are opened in place. Opening fails
 * with 'integrity' on any tampering, never wrong plaintext.
 */

/** What an audit log records about one opening. */
export interface OpenAuditEntry {
  readonly source: string;
  readonly table: string;
  readonly position: Position;
  readonly columns: readonly string[];
  readonly keyIds: readonly string[];
}

/** A sealed column of a table version, as opening needs it. */
export interface SealedColumn {
  readonly name: string;
  /** A sealed primary-key column: its AAD binds the plain key columns only. */
  readonly sealedKey: boolean;
  /** The AAD's place half (source, schema, table, column). */
  readonly place: Uint8Array;
  /** "source schema.table.column", for messages. */
  readonly where: string;
}

/** What opening needs to know about a table version (the codec's compiled tables are these). */
export interface SealedTable {
  /** "schema.table". */
  readonly name: string;
  /** "source schema.table", for messages about a row seal. */
  readonly where: string;
  /** The AAD place halves of the table version's row seals (format 3). */
  readonly rowPlaces: RowPlaces;
  /** The AAD place halves of the table version's block seals (format 5). */
  readonly blockPlaces: BlockPlaces;
  /** The sealed columns in column order. */
  readonly sealed: readonly SealedColumn[];
  /** Their names, in the same order. */
  readonly sealedColumns: readonly string[];
  /** Key columns in key order, and whether each is sealed. */
  readonly key: readonly KeyColumn[];
  /** Which AAD key halves sealed columns need: plain key columns only (sealed key columns), whole key (the others). */
  readonly needsPlainKeyAad: boolean;
  readonly needsFullKeyAad: boolean;
}

export interface PhiOpenerOptions {
  /** Source name from configuration: the audit entries'. */
  source: string;
  /** Data keys; absent: opening fails with 'auth', naming the table. */
  keys?: DataKeySource;
  /** Called once for every message whose PHI is opened. Gets names, positions and key ids only, never values. */
  onOpen?: (entry: OpenAuditEntry) => void;
  /**
   * Per-column opening: the sealed columns of a table ("schema.table") to open; the others stay
   * sealed (a reference whose row seal is opened becomes a copy of that seal, so it can still be
   * opened later). Absent, or undefined for a table: every sealed column.
   */
  columns?: (table: string) => ReadonlySet<string> | undefined;
}

export class PhiOpener {
  private readonly source: string;
  private readonly keys: OpeningKeys | undefined;
  private readonly onOpen: PhiOpenerOptions['onOpen'];
  /** For PooledOpening. */
  readonly columns: PhiOpenerOptions['columns'];
  /** Block seals met in base-snapshot rows (format 5), so the block's later rows open from them. (For PooledOpening.) */
  readonly blocks = new BlockSeals();

  constructor(options: PhiOpenerOptions) {
    this.source = options.source;
    this.columns = options.columns;
    this.keys = options.keys ? new OpeningKeys(options.keys) : undefined;
    this.onOpen = options.onOpen;
  }

  /**
   * Opens one message's PHI in place; synchronously when every data key it names is in memory
   * already. `sealedHere`: a change event, whose values were sealed at its own position (false
   * for snapshot reads, op 'r').
   */
  open(table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void | Promise<void> {
    const keys = this.keysFor(table);
    const block = this.blocks.note(table, after);
    if (keys.lacks(table.sealed, before) || keys.lacks(table.sealed, after) || (block && !keys.of(block))) return this.loadKeysThenOpen(keys, table, before, after, position, sealedHere);
    this.openLoaded(keys, table, before, after, position, sealedHere);
  }

  /**
   * A base-snapshot row read WITHOUT opening (restore --keep-sealed, replicate `phi: sealed`,
   * snapshot synthesis): a block-sealed row (format 5) is re-sealed as a format-4 row seal at its
   * block's position, so its cells open on their own later, whatever happens to the rest of its
   * block; that needs the keyring. Nothing is disclosed, so nothing is audited. Other rows are
   * left as they are.
   */
  keepSealed(table: SealedTable, after: Row | null, position: Position): void | Promise<void> {
    if (!hasBlockCell(table, after)) return;
    if (!this.keys) {
      throw new ChartlogError('auth', `${table.where}: its base snapshot is block-sealed (sealed format 5), whose rows leave sealed only re-sealed per row, which needs the keyring`, {
        hint: 'set phi.keyring to the keyring that sealed this archive (restore --keep-sealed, replicate phi: sealed and snapshot synthesis of such an archive need it)',
      });
    }
    const keys = this.keys;
    const block = this.blocks.note(table, after);
    if (block && !keys.of(block)) return keys.loadOne(block).then(() => eachSealedCell(keys, this.blocks, table, after, position, false, null, NONE, OPEN_HERE));
    eachSealedCell(keys, this.blocks, table, after, position, false, null, NONE, OPEN_HERE);
  }

  /** Collects many messages whose PHI is then opened on a crypto pool's thread in one request. */
  pooled(): PooledOpening {
    return new PooledOpening(this);
  }

  /** The data keys for opening `table`'s values; 'auth' naming the table without a keyring. (For PooledOpening.) */
  keysFor(table: SealedTable): OpeningKeys {
    if (!this.keys) {
      throw new ChartlogError('auth', `opening PHI of ${table.name} needs the keyring`, {
        hint: 'set phi.keyring to the keyring that sealed this archive',
      });
    }
    return this.keys;
  }

  /** True when openings are reported (`onOpen`). */
  get audited(): boolean {
    return this.onOpen !== undefined;
  }

  /** The audit entry of one opened message (docs/architecture.md §5). (For PooledOpening.) */
  report(table: SealedTable, position: Position, audit: OpeningAudit): void {
    if (!this.onOpen || audit.keys.length === 0) return;
    const columns = table.sealedColumns.filter((_c, i) => audit.columns[i]);
    this.onOpen({ source: this.source, table: table.name, position, columns, keyIds: audit.keys.map((k) => k.idHex) });
  }

  private async loadKeysThenOpen(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): Promise<void> {
    await keys.load(table.name, table.sealed, before);
    await keys.load(table.name, table.sealed, after);
    await this.blocks.loadKey(keys, table, after);
    this.openLoaded(keys, table, before, after, position, sealedHere);
  }

  private openLoaded(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void {
    // Rows fresh from the codec's reader: opened in place.
    const audit = this.onOpen ? new OpeningAudit(table.sealed.length) : null;
    const only = this.columns?.(table.name);
    eachSealedCell(keys, this.blocks, table, before, position, sealedHere, audit, only, OPEN_HERE);
    eachSealedCell(keys, this.blocks, table, after, position, sealedHere, audit, only, OPEN_HERE);
    if (audit) this.report(table, position, audit);
  }
}

/**
 * The PHI of many messages opened on a crypto pool's thread in one request while this thread
 * goes on: the same values, audit entries and errors as opening each with `PhiOpener.open`.
 * `add` every message in order (it waits only to unwrap a data key not in memory yet), then `run`.
 */
export class PooledOpening {
  private readonly jobs = new CryptoJobBuilder();
  // One entry per value to open, kept in parallel arrays: a restore opens millions of values,
  // and an object per value was a large part of its garbage.
  private readonly rows: Record<string, CellValue>[] = [];
  /** The column a value job opens; null for a row seal's job (its targets in `rowSeals`). */
  private readonly columns: (SealedColumn | null)[] = [];
  private readonly ends: number[] = [];
  private readonly rowSeals = new Map<number, { table: SealedTable; version: number; set: Uint8Array; targets: number[] }>();
  private readonly audits: { table: SealedTable; position: Position; audit: OpeningAudit }[] = [];
  private outLength = 0;

  /** Every value and row seal `eachSealedCell` finds becomes a job (made once, not per row). */
  private readonly toJobs: CellOpeners = {
    value: (dek, sealed, c, aad, row) => this.addJob(dek, sealed, c.place, aad, row, c),
    rowSeal: (dek, seal, targets, aad, row, table) => {
      const set = rowSealSet(seal);
      this.rowSeals.set(this.rows.length, { table, version: seal[0]!, set, targets });
      this.addJob(dek, seal, table.rowPlaces.of(set), aad, row, null);
    },
  };

  constructor(private readonly opener: PhiOpener) {}

  add(table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void | Promise<void> {
    const keys = this.opener.keysFor(table);
    const block = this.opener.blocks.note(table, after);
    if (keys.lacks(table.sealed, before) || keys.lacks(table.sealed, after) || (block && !keys.of(block))) return this.loadKeysThenAdd(keys, table, before, after, position, sealedHere);
    this.addLoaded(keys, table, before, after, position, sealedHere);
  }

  /** Opens every value added, sets it in its row, then reports the audit entries. */
  async run(pool: CryptoPool): Promise<void> {
    const { rows, columns, ends } = this;
    const plain = await pool.open(this.jobs.take(), this.outLength, (i) => columns[i]?.where ?? this.rowSeals.get(i)!.table.where);
    let at = 0;
    for (let i = 0; i < rows.length; i++) {
      const c = columns[i];
      if (c) setCell(rows[i]!, c.name, deserializeCell(plain.subarray(at, ends[i]!)));
      else {
        const r = this.rowSeals.get(i)!;
        setOpened(plain.subarray(at, ends[i]!), r.version, r.set, r.table, r.targets, rows[i]!);
      }
      at = ends[i]!;
    }
    plain.fill(0);
    for (const a of this.audits) this.opener.report(a.table, a.position, a.audit);
  }

  private async loadKeysThenAdd(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): Promise<void> {
    await keys.load(table.name, table.sealed, before);
    await keys.load(table.name, table.sealed, after);
    await this.opener.blocks.loadKey(keys, table, after);
    this.addLoaded(keys, table, before, after, position, sealedHere);
  }

  private addLoaded(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void {
    const audit = this.opener.audited ? new OpeningAudit(table.sealed.length) : null;
    const only = this.opener.columns?.(table.name);
    // A block-sealed row's values are set here, at once (one AEAD a block); the others' become jobs.
    eachSealedCell(keys, this.opener.blocks, table, before, position, sealedHere, audit, only, this.toJobs);
    eachSealedCell(keys, this.opener.blocks, table, after, position, sealedHere, audit, only, this.toJobs);
    if (audit && audit.keys.length > 0) this.audits.push({ table, position, audit });
  }

  private addJob(dek: DataKey, sealed: Uint8Array, place: Uint8Array, aad: Uint8Array, row: Row, c: SealedColumn | null): void {
    this.jobs.add(dek, sealed, place, aad, EMPTY, this.outLength);
    this.outLength += openedLength(dek, sealed);
    this.rows.push(row as Record<string, CellValue>);
    this.columns.push(c);
    this.ends.push(this.outLength);
  }
}

/** Which columns of one message were opened and under which keys, for its audit entry. */
export class OpeningAudit {
  readonly columns: boolean[];
  readonly keys: DataKey[] = [];

  constructor(sealedColumns: number) {
    this.columns = new Array<boolean>(sealedColumns).fill(false);
  }
}

const EMPTY = new Uint8Array(0);

/** What opening one row image does with each sealed thing it holds (checked first, see `eachSealedCell`). */
interface CellOpeners {
  /** A format-1 or -2 value of column `c` of `row`, with the AAD key half it was sealed with. */
  value: (dek: DataKey, sealed: Uint8Array, c: SealedColumn, aad: Uint8Array, row: Row) => void;
  /** A row seal (format 3) of `row` whose values go to `targets` (indices into the table's sealed columns). */
  rowSeal: (dek: DataKey, seal: Uint8Array, targets: number[], aad: Uint8Array, row: Row, table: SealedTable) => void;
}

/** Opening on this thread, at once. */
const OPEN_HERE: CellOpeners = {
  value: (dek, sealed, c, aad, row) => setCell(row as Record<string, CellValue>, c.name, openValueWithAad(dek, sealed, c.place, aad, c.where)),
  rowSeal: (dek, seal, targets, aad, row, table) => {
    const set = rowSealSet(seal);
    const plain = openPartsTransient(dek, seal, table.rowPlaces.of(set), aad, table.where);
    try {
      setOpened(plain, seal[0]!, set, table, targets, row);
    } finally {
      plain.fill(0);
    }
  },
};

const cursor = new RowCursor();

/** Sets the `targets` of an opened row seal's plaintext in `row` (the others of its set stay as they are). */
function setOpened(plain: Uint8Array, version: number, set: Uint8Array, table: SealedTable, targets: readonly number[], row: Row): void {
  cursor.start(plain, set, table.where, version);
  while (cursor.next()) if (targets.includes(cursor.member)) setCell(row as Record<string, CellValue>, table.sealed[cursor.member]!.name, cursor.cell());
  cursor.end();
}

function wanted(only: ReadonlySet<string> | undefined, c: SealedColumn): boolean {
  return !only || only.has(c.name);
}

function note(audit: OpeningAudit | null, i: number, dek: DataKey): void {
  if (!audit) return;
  audit.columns[i] = true;
  if (!audit.keys.includes(dek)) audit.keys.push(dek);
}

/**
 * Every sealed value and row seal of a row with its data key (in memory already) and the AAD key
 * half it was sealed with, noted in `audit`. Both AAD halves come from the row as sealed, before
 * any of its key columns is opened. Formats 2 and 3 carry the position they were sealed at: a
 * change event's values were sealed for it (`sealedHere`) and must name its very position; a
 * snapshot row carries values sealed by the change that last wrote them (synthesised snapshots),
 * which cannot be after the snapshot's transaction. Anything else is a value moved from another
 * change: 'integrity', naming the column.
 *
 * A change event's row seal must be in the first column of its set and every other column of the
 * set a reference to it, no more and no fewer. A snapshot row may be merged from several images:
 * each row seal stands for its own column (which must be in its set) and each reference must find
 * its seal in the row, the column in its set. `only`: the columns to open (absent: all).
 */
function eachSealedCell(
  keys: OpeningKeys,
  blocks: BlockSeals,
  table: SealedTable,
  row: Row | null,
  position: Position,
  sealedHere: boolean,
  audit: OpeningAudit | null,
  only: ReadonlySet<string> | undefined,
  open: CellOpeners,
): void {
  if (!row) return;
  if (hasBlockCell(table, row)) return openBlockSealed(keys, blocks, table, row, position, sealedHere, audit, only);
  const plain = table.needsPlainKeyAad ? openingKeyAad(table.key, row, true) : EMPTY;
  const full = table.needsFullKeyAad ? openingKeyAad(table.key, row, false) : EMPTY;
  const sealed = table.sealed;
  let pos: Uint8Array | undefined;
  // Every value is checked before any is opened, so a refused row leaves nothing opened; then
  // opened in a second pass. Both AAD halves were taken above, before any sealed value is replaced.
  let seals: number[] | null = null;
  let refs: number[] | null = null;
  for (let i = 0; i < sealed.length; i++) {
    const c = sealed[i]!;
    const v = row[c.name];
    if (!(v instanceof Uint8Array)) continue;
    if (isRowSealReference(v)) {
      (refs ??= []).push(i);
      continue;
    }
    if (v[0] !== SEALED_FORMAT_V2 && !isRowSealFormat(v[0])) continue;
    if (!(sealedHere ? sealedAt(v, (pos ??= positionBytes(position))) : notAfter(v, position))) {
      const at = sealedPosition(v);
      throw new ChartlogError('integrity', `${c.where}: a value sealed at ${at ? Position.format(at) : 'an unreadable position'} is in the message at ${Position.format(position)}`, {
        hint: 'the archive object was tampered with (a sealed value moved from another change); run `chartlog verify` and restore from an intact copy',
      });
    }
    if (isRowSealFormat(v[0])) {
      if (!isRowSeal(v)) throw rowSealRefused(table, 'a row seal is truncated');
      (seals ??= []).push(i);
    }
  }
  const targets = seals ? rowSealTargets(table, row, seals, refs ?? [], sealedHere) : null;
  if (!targets && refs) throw rowSealRefused(table, 'a reference has no row seal in its row');
  // A row seal's AAD binds the plain key columns (its sealed key columns are inside it): the
  // plain half when taken above; else, with no key column sealed, the whole key is the same bytes.
  const rowKey = !targets ? EMPTY : table.needsPlainKeyAad ? plain : table.needsFullKeyAad ? full : openingKeyAad(table.key, row, true);
  for (let i = 0; i < sealed.length; i++) {
    const c = sealed[i]!;
    const v = row[c.name];
    if (!(v instanceof Uint8Array) || isRowSealReference(v) || isRowSealFormat(v[0]) || !wanted(only, c)) continue;
    const dek = keys.of(v)!;
    note(audit, i, dek);
    open.value(dek, v, c, c.sealedKey ? plain : full, row);
  }
  if (!targets) return;
  for (const [at, all] of targets) {
    const seal = row[sealed[at]!.name] as Uint8Array;
    let open3 = all;
    if (only) {
      open3 = all.filter((i) => only.has(sealed[i]!.name));
      if (open3.length === 0) continue;
      if (open3.length < all.length) {
        // The columns left sealed keep a copy of the seal (their references would lose it).
        const copy = seal.slice();
        for (const i of all) if (!only.has(sealed[i]!.name)) setCell(row as Record<string, CellValue>, sealed[i]!.name, copy);
      }
    }
    const dek = keys.of(seal)!;
    for (const i of open3) note(audit, i, dek);
    open.rowSeal(dek, seal, open3, rowKey, row, table);
  }
}

/**
 * Which columns each row seal of a row fills: the seal's column index → the columns (its own and
 * those whose references name it). Checks what `eachSealedCell` says, or 'integrity' naming the table.
 */
function rowSealTargets(table: SealedTable, row: Row, seals: number[], refs: number[], sealedHere: boolean): Map<number, number[]> {
  // Run for every row opened: no closure here (tsx names each closure as it is made, per call).
  const out = new Map<number, number[]>();
  const sealed = table.sealed;
  for (const s of seals) {
    if (!inSet(rowSealSet(row[sealed[s]!.name] as Uint8Array), s)) throw rowSealRefused(table, 'a row seal is in a column it does not hold');
    out.set(s, [s]);
  }
  for (const r of refs) {
    const ref = row[sealed[r]!.name] as Uint8Array;
    let s = -1;
    for (const c of seals) if (refersTo(ref, row[sealed[c]!.name] as Uint8Array)) s = c;
    if (s < 0) throw rowSealRefused(table, 'a reference has no row seal in its row');
    if (!inSet(rowSealSet(row[sealed[s]!.name] as Uint8Array), r)) throw rowSealRefused(table, 'a reference is in a column its row seal does not hold');
    out.get(s)!.push(r);
  }
  if (sealedHere) {
    // A change event's image was written with one row seal, in the first column of its set.
    if (seals.length !== 1) throw rowSealRefused(table, 'a change holds more than one row seal per row image');
    const s = seals[0]!;
    const set = rowSealSet(row[sealed[s]!.name] as Uint8Array);
    if (firstMember(set) !== s || setSize(set) !== out.get(s)!.length) throw rowSealRefused(table, "a row image's sealed columns do not match its row seal");
  }
  return out;
}

function rowSealRefused(table: SealedTable, what: string): ChartlogError {
  return new ChartlogError('integrity', `${table.where}: ${what} (altered, moved, truncated or removed)`, {
    hint: 'the archive object is damaged or was tampered with; run `chartlog verify` and restore from an intact copy',
  });
}

/** True when a format-2 value was sealed in the transaction of `position` or an earlier one (a snapshot row's values). */
function notAfter(sealed: Uint8Array, position: Position): boolean {
  // A snapshot's values nearly all carry the same sealing position: the verdict for the last
  // header seen is kept (compared byte for byte), which spares a Position per value.
  const memo = notAfterMemo;
  if (memo.commit === position.commit && sameHeaderPosition(sealed, memo.header)) return memo.verdict;
  const at = sealedPosition(sealed);
  const verdict = at !== null && Position.compare(Position.commitOf(at), Position.commitOf(position)) <= 0;
  notAfterMemo = { commit: position.commit, header: sealedPositionBytes(sealed), verdict };
  return verdict;
}

let notAfterMemo: { commit: string; header: Uint8Array | null; verdict: boolean } = { commit: '', header: null, verdict: false };

/** No column opened: every value of a block-sealed row is re-sealed per row (PhiOpener.keepSealed). */
const NONE: ReadonlySet<string> = new Set();

/** True when a sealed cell of the row is a block seal or a reference into one (format 5). */
function hasBlockCell(table: SealedTable, row: Row | null): boolean {
  if (!row) return false;
  for (const c of table.sealed) {
    const v = row[c.name];
    if (v instanceof Uint8Array && (v[0] === BLOCK_SEAL_FORMAT || v[0] === 0x15) && (isBlockReference(v) || isBlockSeal(v))) return true;
  }
  return false;
}

/**
 * The block seals (format 5) a reader has met, by block id, each opened once when its first row
 * is: a base snapshot's part is read in order and its block's first row carries the seal, so a
 * reference finds its seal here. The newest MAX_BLOCKS are held (tables restored side by side
 * each have one or two blocks open); a block left is wiped.
 */
class BlockSeals {
  private readonly byId = new Map<string, { seal: Uint8Array; opened: OpenedBlock | null }>();

  /** Notes the row's block seal, if it carries one; returns the block seal the row's cells name, if any. */
  note(table: SealedTable, row: Row | null): Uint8Array | null {
    if (!hasBlockCell(table, row)) return null;
    for (const c of table.sealed) {
      const v = row![c.name];
      if (isBlockSeal(v)) {
        const id = blockIdOf(v);
        if (!this.byId.has(id)) {
          this.byId.set(id, { seal: v.slice(), opened: null });
          if (this.byId.size > MAX_BLOCKS) {
            const [oldest] = this.byId.keys();
            this.byId.get(oldest!)!.opened?.wipe();
            this.byId.delete(oldest!);
          }
        }
        return this.byId.get(id)!.seal;
      }
      if (isBlockReference(v)) return this.byId.get(blockIdOf(v))?.seal ?? null;
    }
    return null;
  }

  /** Unwraps the data key of the block seal the row's cells name. */
  async loadKey(keys: OpeningKeys, table: SealedTable, row: Row | null): Promise<void> {
    const seal = this.note(table, row);
    if (seal) await keys.loadOne(seal);
  }

  /** The block a cell names, opened (once); 'integrity' naming `where` when its seal was not met. */
  open(keys: OpeningKeys, cell: Uint8Array, table: SealedTable, position: Position, where: string): { block: OpenedBlock; dek: DataKey; seal: Uint8Array } {
    const e = this.byId.get(blockIdOf(cell));
    if (!e) throw rowSealRefused(table, `${where.slice(table.where.length + 1)}: a reference names a block seal not met before it`);
    if (!notAfter(e.seal, position)) {
      const at = sealedPosition(e.seal);
      throw new ChartlogError('integrity', `${where}: a block sealed at ${at ? Position.format(at) : 'an unreadable position'} is in the snapshot at ${Position.format(position)}`, {
        hint: 'the archive object was tampered with (a block moved from another snapshot); run `chartlog verify` and restore from an intact copy',
      });
    }
    const dek = keys.of(e.seal);
    if (!dek) throw new ChartlogError('internal', `${where}: the data key of a block seal was not loaded`);
    e.opened ??= OpenedBlock.open(dek, e.seal, table.blockPlaces, table.where);
    return { block: e.opened, dek, seal: e.seal };
  }
}

const MAX_BLOCKS = 32;

/**
 * Opens a block-sealed base-snapshot row (format 5): every sealed cell of it a reference into one
 * block (or, in the block's first row, the seal), checked against the block (block-seal.ts
 * openBlockRow) before any value is set. Columns not asked for (`only`) are re-sealed together as
 * a format-4 row seal at the block's position, so they open later on their own.
 */
function openBlockSealed(keys: OpeningKeys, blocks: BlockSeals, table: SealedTable, row: Row, position: Position, sealedHere: boolean, audit: OpeningAudit | null, only: ReadonlySet<string> | undefined): void {
  const sealed = table.sealed;
  if (sealedHere) throw rowSealRefused(table, 'a change event holds a block seal or a reference into one');
  const cells: CellValue[] = [];
  let first: { cell: Uint8Array; where: string } | null = null;
  for (const c of sealed) {
    const v = row[c.name] ?? null;
    cells.push(v);
    if (isBlockReference(v) || isBlockSeal(v)) first ??= { cell: v, where: c.where };
    else if (v instanceof Uint8Array) throw rowSealRefused(table, `${c.name}: a block-sealed row holds another sealed value`);
  }
  const { block, dek, seal } = blocks.open(keys, first!.cell, table, position, first!.where);
  const key = openingKeyAad(table.key, row, true);
  const kept: [number, CellValue][] = [];
  openBlockRow(
    block,
    cells,
    key,
    sealed.map((c) => c.where),
    (i, v) => {
      if (!wanted(only, sealed[i]!)) kept.push([i, v]);
      else {
        setCell(row as Record<string, CellValue>, sealed[i]!.name, v);
        note(audit, i, dek);
      }
    },
  );
  if (kept.length > 0) resealAsRow(dek, sealedPositionBytes(seal)!, table, row, kept, key);
}

/** Seals `values` (by sealed column index, ascending) of `row` as one format-4 row seal in the first of their columns, references in the others. */
function resealAsRow(dek: DataKey, pos: Uint8Array, table: SealedTable, row: Row, values: readonly [number, CellValue][], key: Uint8Array): void {
  const rp = new RowPlaintext();
  rp.reset(table.sealed.length);
  for (const [i, v] of values) rp.add(i, v);
  const seal = new Uint8Array(rowSealLength(dek, pos, rp.set, rp.length));
  writeRowSealHeader(dek, pos, rp.set, seal, 0);
  sealRowBody(dek, rp.plaintext, table.rowPlaces.of(rp.set), key, seal, 0);
  rp.plaintext.fill(0);
  const r = row as Record<string, CellValue>;
  setCell(r, table.sealed[values[0]![0]]!.name, seal);
  for (const [i] of values.slice(1)) setCell(r, table.sealed[i]!.name, referenceTo(seal));
}
