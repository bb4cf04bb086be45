import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { CellValue, Row } from '../core/table-schema.js';
import { openingKeyAad, type KeyColumn } from './aad.js';
import { deserializeCell, setCell } from './cell-serialization.js';
import type { CryptoPool } from './crypto-pool.js';
import { CryptoJobBuilder } from './crypto-jobs.js';
import type { KeyManager } from './key-manager.js';
import { OpeningKeys } from './opening-keys.js';
import { openedLength, openValueWithAad, positionBytes, sameHeaderPosition, SEALED_FORMAT_VERSION, sealedAt, sealedPosition, sealedPositionBytes, type DataKey } from './sealer.js';

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
  keys?: KeyManager;
  /** Called once for every message whose PHI is opened. Gets names, positions and key ids only, never values. */
  onOpen?: (entry: OpenAuditEntry) => void;
}

export class PhiOpener {
  private readonly source: string;
  private readonly keys: OpeningKeys | undefined;
  private readonly onOpen: PhiOpenerOptions['onOpen'];

  constructor(options: PhiOpenerOptions) {
    this.source = options.source;
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
    if (keys.lacks(table.sealed, before) || keys.lacks(table.sealed, after)) return this.loadKeysThenOpen(keys, table, before, after, position, sealedHere);
    this.openLoaded(keys, table, before, after, position, sealedHere);
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
    this.openLoaded(keys, table, before, after, position, sealedHere);
  }

  private openLoaded(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void {
    // Rows fresh from the codec's reader: opened in place.
    const audit = this.onOpen ? new OpeningAudit(table.sealed.length) : null;
    for (const row of [before, after]) {
      eachSealedCell(keys, table, row, position, sealedHere, audit, (dek, sealed, c, aad) => setCell(row as Record<string, CellValue>, c.name, openValueWithAad(dek, sealed, c.place, aad, c.where)));
    }
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
  private readonly columns: SealedColumn[] = [];
  private readonly ends: number[] = [];
  private readonly audits: { table: SealedTable; position: Position; audit: OpeningAudit }[] = [];
  private outLength = 0;

  constructor(private readonly opener: PhiOpener) {}

  add(table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void | Promise<void> {
    const keys = this.opener.keysFor(table);
    if (keys.lacks(table.sealed, before) || keys.lacks(table.sealed, after)) return this.loadKeysThenAdd(keys, table, before, after, position, sealedHere);
    this.addLoaded(keys, table, before, after, position, sealedHere);
  }

  /** Opens every value added, sets it in its row, then reports the audit entries. */
  async run(pool: CryptoPool): Promise<void> {
    const { rows, columns, ends } = this;
    const plain = await pool.open(this.jobs.take(), this.outLength, (i) => columns[i]!.where);
    let at = 0;
    for (let i = 0; i < rows.length; i++) {
      setCell(rows[i]!, columns[i]!.name, deserializeCell(plain.subarray(at, ends[i]!)));
      at = ends[i]!;
    }
    for (const a of this.audits) this.opener.report(a.table, a.position, a.audit);
  }

  private async loadKeysThenAdd(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): Promise<void> {
    await keys.load(table.name, table.sealed, before);
    await keys.load(table.name, table.sealed, after);
    this.addLoaded(keys, table, before, after, position, sealedHere);
  }

  private addLoaded(keys: OpeningKeys, table: SealedTable, before: Row | null, after: Row | null, position: Position, sealedHere: boolean): void {
    const audit = this.opener.audited ? new OpeningAudit(table.sealed.length) : null;
    const add = (row: Row | null): void =>
      eachSealedCell(keys, table, row, position, sealedHere, audit, (dek, sealed, c, aad) => {
        this.jobs.add(dek, sealed, c.place, aad, EMPTY, this.outLength);
        this.outLength += openedLength(dek, sealed);
        this.rows.push(row as Record<string, CellValue>);
        this.columns.push(c);
        this.ends.push(this.outLength);
      });
    add(before);
    add(after);
    if (audit && audit.keys.length > 0) this.audits.push({ table, position, audit });
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

/**
 * Every sealed value of a row with its data key (in memory already) and the AAD key half it
 * was sealed with, noted in `audit`. Both AAD halves come from the row as sealed, before any
 * of its key columns is opened. Format 2 values carry the position they were sealed at: a
 * change event's values were sealed for it (`sealedHere`) and must name its very position; a
 * snapshot row carries values sealed by the change that last wrote them (synthesised snapshots),
 * which cannot be after the snapshot's transaction. Anything else is a value moved from another
 * change: 'integrity', naming the column.
 */
function eachSealedCell(
  keys: OpeningKeys,
  table: SealedTable,
  row: Row | null,
  position: Position,
  sealedHere: boolean,
  audit: OpeningAudit | null,
  fn: (dek: DataKey, sealed: Uint8Array, c: SealedColumn, aad: Uint8Array) => void,
): void {
  if (!row) return;
  const plain = table.needsPlainKeyAad ? openingKeyAad(table.key, row, true) : EMPTY;
  const full = table.needsFullKeyAad ? openingKeyAad(table.key, row, false) : EMPTY;
  const sealed = table.sealed;
  let pos: Uint8Array | undefined;
  // Every value is checked before any is opened, so a refused row leaves nothing opened; then
  // opened in a second pass, with no list of cells made per row. Both AAD halves were taken
  // above, before `fn` replaces any of the row's sealed values.
  for (const c of sealed) {
    const v = row[c.name];
    if (!(v instanceof Uint8Array) || v[0] !== SEALED_FORMAT_VERSION) continue;
    if (sealedHere ? sealedAt(v, (pos ??= positionBytes(position))) : notAfter(v, position)) continue;
    const at = sealedPosition(v);
    throw new ChartlogError('integrity', `${c.where}: a value sealed at ${at ? Position.format(at) : 'an unreadable position'} is in the message at ${Position.format(position)}`, {
      hint: 'the archive object was tampered with (a sealed value moved from another change); run `chartlog verify` and restore from an intact copy',
    });
  }
  for (let i = 0; i < sealed.length; i++) {
    const c = sealed[i]!;
    const v = row[c.name];
    if (!(v instanceof Uint8Array)) continue;
    const dek = keys.of(v)!;
    if (audit) {
      audit.columns[i] = true;
      if (!audit.keys.includes(dek)) audit.keys.push(dek);
    }
    fn(dek, v, c, c.sealedKey ? plain : full);
  }
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
