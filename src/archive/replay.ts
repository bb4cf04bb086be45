import { ChartlogError, usageError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { TableSchema } from '../core/table-schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { AvroCodec, DecodedChange } from '../codec/avro-codec.js';
import type { SchemaStore } from '../codec/schema-store.js';
import type { EnvelopeReader } from './envelope-reader.js';
import type { SnapshotManifest } from './snapshot-manifest.js';
import { ArchiveReader, type StoredRecord } from './archive-reader.js';
import { readArchiveIndex, tablesOf, type ArchiveIndex } from './archive-index.js';
import { TableState } from './table-state.js';
import { formatUs } from './layout.js';
import { committedBy, TransactionCutter, type CutBound, type CutResult, type CutTransaction } from './transaction-cut.js';

/**
 * Where to stop: the newest state at or before a commit time, at a position, or everything.
 * A time may carry the resolution of the source's commit times (µs; 1 when absent): see
 * transaction-cut.ts for what a coarser one includes.
 */
export type RestorePoint = { kind: 'latest' } | { kind: 'time'; us: bigint; resolutionUs?: bigint } | { kind: 'position'; position: Position };

export interface ReplayResult {
  snapshot: SnapshotManifest;
  tables: Map<string, TableState>;
  /** Position and commit time of the last change applied (the snapshot's when none was). */
  position: Position;
  commitTsUs: bigint;
  changes: number;
  /** Per table, the table versions its applied changes were written with; absent: none applied. */
  versions: Map<string, AppliedVersions>;
}

/** What the changes applied to one table say about its table versions. */
export interface AppliedVersions {
  /** The version the table ends on (its TableState's schema): fingerprint and PHI columns. */
  fingerprint: string;
  phiColumns: ReadonlySet<string>;
  /** The PHI columns of every version applied, the last one's included. */
  everPhiColumns: ReadonlySet<string>;
}

export interface ReplayOptions {
  store: ObjectStore;
  source: string;
  codec: AvroCodec;
  schemas: SchemaStore;
  envelopes: EnvelopeReader;
  to: RestorePoint;
  /** "schema.table" names; all tables the archive knows when absent. */
  tables?: readonly string[];
  /** Open sealed PHI (needs the keyring); otherwise PHI columns stay sealed bytes. */
  open: boolean;
  index?: ArchiveIndex;
  /**
   * Called with every decoded change, in order, just before it is applied: to look at it, tag its
   * rows, or refuse it by throwing (which ends the replay with that error).
   */
  beforeApply?: (change: DecodedChange) => void | Promise<void>;
}

/**
 * The archive's tables at a moment (docs/architecture.md §5): the newest base snapshot at or before it,
 * then every change after the snapshot's position up to the moment — whole transactions only
 * (a transaction's events share its commit time and position), each once, in position order.
 */
export async function replayArchive(o: ReplayOptions): Promise<ReplayResult> {
  const index = o.index ?? (await readArchiveIndex(o.store, o.source));
  const snapshot = chooseSnapshot(index, o.to);
  const reader = new ArchiveReader(o.store, index, o.envelopes);
  const snapshotPos = Position.parse(snapshot.position);
  const names = o.tables ?? tablesOf(index);
  const tables = new Map<string, TableState>();
  let position = snapshotPos;
  let commitTsUs = BigInt(snapshot.commitTsUs);
  let changes = 0;
  const versions = new Map<string, AppliedVersions>();
  const cut = await cutPosition(reader, snapshotPos, o.to);

  for (const name of names) {
    // A table re-snapshotted (`chartlog resync`) before the cut starts from that newer base.
    const base = chooseTableBase(index, name, snapshot, cut);
    const entry = base.tables[name];
    const records = await reader.tableRecords(name, Position.parse(base.position));
    const fingerprint = entry?.fingerprint ?? records[0]?.fingerprint;
    if (!fingerprint) continue; // created after the moment asked for
    const state = new TableState((await o.schemas.resolve(BigInt(`0x${fingerprint}`))).version.table);
    const apply = new DecodeAhead(o.codec, o.open, state, o.beforeApply);
    for await (const batch of reader.snapshotRecordBatches(base, name)) await apply.push(batch);
    let within = 0;
    for (const r of records) {
      if (cut && Position.compare(Position.commitOf(r.position), cut) > 0) break; // position order: nothing later is within
      within++;
      if (Position.compare(r.position, position) > 0) {
        position = Position.commitOf(r.position);
        commitTsUs = r.commitTsUs;
      }
    }
    for (let i = 0; i < within; i += CHANGES_PER_DECODE) await apply.push(records.slice(i, Math.min(within, i + CHANGES_PER_DECODE)));
    await apply.drain();
    changes += within;
    tables.set(name, state);
    const applied = apply.versions();
    if (applied) versions.set(name, applied);
  }
  return { snapshot, tables, position, commitTsUs, changes, versions };
}

/** Changes decoded (and their PHI opened) per request. */
const CHANGES_PER_DECODE = 2048;

/**
 * Applies records to a table in order, decoding the next group while the PHI of the previous
 * one is opened on the codec's crypto thread (when it has one).
 */
class DecodeAhead {
  private pending: Promise<DecodedChange[]> | null = null;
  /** The last change applied: its version is the one the table ends on. */
  private last: DecodedChange | null = null;
  /** The table version of the change before, so that each version's PHI columns are noted once per run of it. */
  private lastSchema: TableSchema | null = null;
  private readonly everPhiColumns = new Set<string>();

  constructor(
    private readonly codec: AvroCodec,
    private readonly open: boolean,
    private readonly state: TableState,
    private readonly beforeApply: ReplayOptions['beforeApply'],
  ) {}

  async push(records: readonly StoredRecord[]): Promise<void> {
    const next = this.codec.decodeMany(
      records.map((r) => r.message),
      { open: this.open },
    );
    // Awaited after the previous group: not an unhandled rejection meanwhile.
    next.catch(() => undefined);
    await this.drain();
    this.pending = next;
  }

  async drain(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (!pending) return;
    for (const d of await pending) {
      if (this.beforeApply) {
        const looking = this.beforeApply(d);
        if (looking) await looking;
      }
      if (d.event.schema !== this.lastSchema) {
        this.lastSchema = d.event.schema;
        for (const c of d.phiColumns) this.everPhiColumns.add(c);
      }
      this.state.apply(d.event);
      this.last = d;
    }
  }

  /** The table versions of the changes applied, null when none was. */
  versions(): AppliedVersions | null {
    const last = this.last;
    return last ? { fingerprint: last.fingerprint, phiColumns: new Set(last.phiColumns), everPhiColumns: this.everPhiColumns } : null;
  }
}

/**
 * The last transaction to include, as one position for every table, so the restored tables
 * are one consistent moment: the last *whole* transaction (every piece stored) within the point
 * (transaction-cut.ts). For a time: the transaction before the first (in commit order) that
 * may have committed after it — commit clocks can step back between transactions, and a cut by
 * position never shows a later transaction without an earlier one.
 */
export async function cutPosition(reader: ArchiveReader, after: Position, to: RestorePoint): Promise<Position> {
  return (await restoreCut(reader, after, to)).position;
}

/** A cut with what it was decided on: the last whole transaction, and what stopped it. */
export interface RestoreCut extends CutResult {
  /** The last whole transaction's position; the starting point (snapshot) when none follows it. */
  position: Position;
}

export async function restoreCut(reader: ArchiveReader, after: Position, to: RestorePoint): Promise<RestoreCut> {
  const bound: CutBound =
    to.kind === 'position' ? { position: to.position } : to.kind === 'time' ? { us: to.us, ...(to.resolutionUs ? { resolutionUs: to.resolutionUs } : {}) } : {};
  // Streamed: the log after a day-old snapshot can be millions of transactions.
  const result = await reader.foldTransactions(after, () => new TransactionCutter(bound));
  const position = result.last?.position ?? after;
  if (to.kind === 'time' && result.stoppedBy && result.laterWithin) throw nonMonotonicMoment(to.us, position, result.stoppedBy, result.laterWithin);
  return { ...result, position };
}

/**
 * A moment where commit times are not monotonic: the transaction that stops the cut is stamped
 * after it, yet a later one (in source order) is stamped within it. Cutting before the first
 * would silently leave the second out, cutting after the second would include the first: the
 * moment names no consistent state, so it is refused (exit 2) and the two positions offered.
 */
function nonMonotonicMoment(us: bigint, before: Position, after: CutTransaction, within: CutTransaction): ChartlogError {
  const a = Position.format(after.position);
  const b = Position.format(within.position);
  return usageError(
    `--to ${formatUs(us)} falls where commit times are not monotonic: position ${a} is stamped ${formatUs(after.commitTsUs)}, after that time, ` +
      `yet it precedes position ${b}, stamped ${formatUs(within.commitTsUs)}, at or before it (a source clock stepped, or stamps of whole seconds); ` +
      'a time cut there would leave out the second or include the first',
    `restore --to a position instead: --to ${Position.format(before)} (everything before ${a}) or --to ${b} (through ${b}, ${a} included); \`chartlog timeline\` lists the non-monotonic stretches`,
  );
}

/**
 * The base one table is restored from: the newest table-scoped snapshot (`chartlog resync`) of
 * it that is newer than the source's base `snapshot` and at or before the cut (without a cut:
 * the checkpoint, what is durable) — its image is the table at its position, so replaying the
 * table's changes after that position up to the cut gives the table at the cut. Otherwise the
 * source's base itself. Moments before a resync keep restoring from the earlier base.
 */
export function chooseTableBase(index: ArchiveIndex, table: string, snapshot: SnapshotManifest, cut: Position | null): SnapshotManifest {
  const from = Position.parse(snapshot.position);
  const upTo = cut ?? index.checkpoint?.position ?? null;
  let chosen = snapshot;
  for (const t of index.tableSnapshots ?? []) {
    if (!t.tables[table]) continue;
    const p = Position.parse(t.position);
    if (Position.compare(p, from) <= 0) continue;
    if (!upTo || Position.compare(p, upTo) > 0) continue;
    if (Position.compare(p, Position.parse(chosen.position)) > 0) chosen = t;
  }
  return chosen;
}

/** The newest snapshot at or before the moment; a clear error when the moment is before all. */
export function chooseSnapshot(index: ArchiveIndex, to: RestorePoint): SnapshotManifest {
  const candidates = index.snapshots.filter((s) => {
    if (to.kind === 'latest') return true;
    if (to.kind === 'time') return committedBy(BigInt(s.commitTsUs), to.us, to.resolutionUs);
    return Position.compare(Position.parse(s.position), to.position) <= 0;
  });
  const chosen = candidates[candidates.length - 1];
  if (!chosen) {
    const earliest = index.snapshots[0];
    throw new ChartlogError(
      'usage',
      earliest
        ? `--to is before the earliest restorable moment of source ${index.source} (${formatUs(earliest.commitTsUs)})`
        : `source ${index.source} has no base snapshot yet: nothing can be restored`,
      { hint: earliest ? `choose a moment at or after ${formatUs(earliest.commitTsUs)}; \`chartlog timeline\` shows the range` : 'run `chartlog run` until its first snapshot is written' },
    );
  }
  return chosen;
}
