import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { AvroCodec, type DecodedChange } from '../codec/avro-codec.js';
import { KeyManager } from '../phi/key-manager.js';
import { SchemaStore } from '../codec/schema-store.js';
import type { Config } from '../config/schema.js';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { hasRowKey, identityColumns, qualifiedName, UNCHANGED, type Row } from '../core/table-schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ArchiveReader, type TransactionFold } from '../archive/archive-reader.js';
import { readArchiveIndex, type ArchiveIndex } from '../archive/archive-index.js';
import { memoryShares, prepareStreamingReplay } from '../archive/streaming-replay.js';
import { keyOf } from '../archive/table-merge.js';
import { sortByKey } from '../archive/key-sort.js';
import { SpillKey } from '../archive/spill-file.js';
import { TransactionCutter } from '../archive/transaction-cut.js';
import type { TransactionRecord } from '../archive/transaction-log.js';
import { cellKey } from '../archive/table-state.js';
import { CodecEnvelopeReader } from '../archive/codec-envelope-reader.js';
import { removeIncompleteSnapshots, SnapshotPartsWriter } from './snapshot-builder.js';
import { type SnapshotManifest } from '../archive/snapshot-manifest.js';
import { authenticateArchive, refuseUnauthentic } from '../archive/archive-auth.js';
import type { ArchiveSigner } from '../phi/archive-mac.js';
import type { WriterFence } from '../archive/lease.js';

/**
 * Base snapshots synthesised from the archive (docs/architecture.md §4): the newest snapshot plus every
 * stored change up to a cut, replayed by the streaming engine restore uses
 * (archive/streaming-replay.ts: changes collapsed per key, the base streamed past them, both
 * spilling to sealed files past one memory budget), written back as a snapshot at the cut with
 * origin 'synthesised'. It reads only the object store — no load on the source, and
 * safe beside a running `chartlog run` — and needs no keyring: rows are decoded without
 * opening PHI and re-encoded with their sealed values passed through unchanged
 * (AvroCodec.encodeSnapshotRead), which stay valid because a sealed value's AAD binds source,
 * table, column and primary key, and a row keeps its key.
 *
 * Idempotent: the snapshot's id is its cut position and its bytes are a function of the
 * replayed rows, so the same cut always gives the same objects; the manifest is written last
 * and only if absent, so a crash leaves no snapshot (only parts a later run removes).
 */

export interface SynthesiseOptions {
  store: ObjectStore;
  source: string;
  /** The envelope's source.connector ('postgres' | 'mysql'). */
  connector: string;
  /** The envelope's source.db. */
  db?: string;
  /**
   * The cut: 'durable' (default) — the checkpoint, everything the archive holds durably,
   * open-hour parts included; 'closed' — the last transaction of the newest closed hour only.
   */
  upTo?: 'durable' | 'closed';
  signal?: AbortSignal;
  /**
   * The writer lease, when the caller holds it (the schedule inside `chartlog run`): interrupted
   * snapshot attempts are then removed first. Without it (`chartlog snapshot`, beside a running
   * `chartlog run`) nothing is deleted: only the new snapshot's objects are written.
   */
  fence?: WriterFence;
  /**
   * Archive MACs: the archive read is authenticated first (a snapshot built from a planted or
   * altered object would carry a valid MAC) and the new manifest is signed.
   */
  signer?: ArchiveSigner;
  /** Records decoded or encoded between two yields to the event loop (default 1000). */
  yieldEvery?: number;
  /**
   * Memory for collapsed changes (all tables together) and rows being sorted, a share each
   * (memoryShares), before they spill to sealed files (`restore.memoryBudgetMiB`; default 128 MiB).
   */
  memoryBudgetBytes?: number;
  /** Where the private spill directory is made (`restore.spillDir`; default the system's temporary directory). */
  spillDir?: string;
}

/** The default of `memoryBudgetBytes`, restore.memoryBudgetMiB's default. */
export const SYNTHESIS_MEMORY_BUDGET_BYTES = 128 * 2 ** 20;

/**
 * The cut of a synthesis (the last whole transaction up to `limit`), with the events up to it and
 * the newest commit time of every transaction it holds (stamps can step back: not the cut's own).
 */
class TalliedCut implements TransactionFold<{ cut: Position | null; commitTsUs: bigint; eventsToCut: number }> {
  private readonly cutter: TransactionCutter;
  private newest: bigint;
  private events = 0;
  private cut: Position | null = null;
  private commitTsUs: bigint;
  private eventsToCut = 0;

  constructor(limit: Position, baseCommitTsUs: bigint) {
    this.cutter = new TransactionCutter({ position: limit });
    this.newest = this.commitTsUs = baseCommitTsUs;
  }

  push(t: TransactionRecord): boolean {
    const before = this.cutter.lastWhole;
    if (!this.cutter.push(t)) return false;
    if (BigInt(t.commitTsUs) > this.newest) this.newest = BigInt(t.commitTsUs);
    for (const n of Object.values(t.tables)) this.events += Number(n);
    // With a position bound alone, every whole transaction read becomes the cut: this record ended one.
    const last = this.cutter.lastWhole;
    if (last !== before && last) {
      this.cut = last.position;
      this.commitTsUs = this.newest;
      this.eventsToCut = this.events;
    }
    return true;
  }

  result(): { cut: Position | null; commitTsUs: bigint; eventsToCut: number } {
    return { cut: this.cut, commitTsUs: this.commitTsUs, eventsToCut: this.eventsToCut };
  }
}

/** The memory budget and spill directory of the configuration (`restore.*`: one budget for restore and synthesis). */
export function synthesisMemory(config: Pick<Config, 'restore'>): Pick<SynthesiseOptions, 'memoryBudgetBytes' | 'spillDir'> {
  return { memoryBudgetBytes: config.restore.memoryBudgetMiB * 2 ** 20, ...(config.restore.spillDir ? { spillDir: config.restore.spillDir } : {}) };
}

export interface SynthesisResult {
  /**
   * written: a new snapshot; exists: a snapshot at this cut was already there; up-to-date:
   * no change was stored after the newest snapshot; no-base: the archive has no snapshot yet.
   */
  status: 'written' | 'exists' | 'up-to-date' | 'no-base';
  /** The snapshot written or found (the newest one for up-to-date), null for no-base. */
  snapshot: SnapshotManifest | null;
  /** The snapshot it was built from. */
  base: SnapshotManifest | null;
  rows: number;
  changes: number;
  ms: number;
  /** Tables whose collapsed changes or sorted rows outgrew the memory budget and spilled to sealed files. */
  spilled?: string[];
}

/**
 * Rows remember the table version they were decoded with, through the merge's copies and its
 * spill files (which keep string-named properties only): under a name no column can have, as
 * neither PostgreSQL nor MySQL allows NUL in an identifier. Removed before a row is encoded.
 */
const ROW_VERSION = '\u0000chartlog.rowVersion';
type TaggedRow = Record<string, Row[string]>;

export async function synthesiseSnapshot(o: SynthesiseOptions): Promise<SynthesisResult> {
  const started = Date.now();
  const log = logger().child({ source: o.source });
  const index = await readArchiveIndex(o.store, o.source);
  const base = index.snapshots.at(-1) ?? null;
  const done = (status: SynthesisResult['status'], snapshot: SnapshotManifest | null, rows = 0, changes = 0): SynthesisResult => ({
    status,
    snapshot,
    base,
    rows,
    changes,
    ms: Date.now() - started,
  });
  if (!base) return done('no-base', null);
  const basePos = Position.parse(base.position);
  const limit = limitOf(index, o.upTo ?? 'durable');
  if (!limit || Position.compare(limit, basePos) <= 0) return done('up-to-date', base);

  const mac = o.signer ? await o.signer.key() : null;
  // MACs only: the anchor checks are for a settled archive (verify, restore), and the writer
  // this runs beside may close an hour between reading the index and the checkpoint.
  if (mac) refuseUnauthentic(o.source, authenticateArchive(index, mac).filter((p) => p.kind === 'mac'), 'synthesise a snapshot');
  const schemas = new SchemaStore({ source: o.source, store: o.store, ...(mac ? { mac, signer: o.signer } : {}) });
  const envelopes = new CodecEnvelopeReader(schemas);
  // The cut is the last whole transaction within the limit (a checkpoint can fall inside a
  // transaction delivered in parts). The snapshot's commit time is the newest of every
  // transaction it holds, not the cut's: commit clocks can step back, and a restore to a
  // moment must never pick a snapshot holding a transaction committed after that moment.
  // Whole transactions only (transaction-cut.ts): a last record stored without every piece before
  // it ends the cut too. The log is read as it streams, once (a day of it can be millions of transactions).
  const { cut, commitTsUs, eventsToCut } = await new ArchiveReader(o.store, index, envelopes).foldTransactions(basePos, () => new TalliedCut(limit, BigInt(base.commitTsUs)));
  // Transactions without row changes (heartbeats) make no new snapshot.
  if (!cut || eventsToCut === 0) return done('up-to-date', base);
  const id = Position.format(cut);
  const existing = index.snapshots.find((s) => s.id === id);
  if (existing) return done('exists', existing);

  // The data keys: a block-sealed base's rows (format 5) are carried re-sealed per row (PhiOpener.keepSealed).
  const keys = o.signer ? new KeyManager({ source: o.source, store: o.store, keyring: o.signer.keyring }) : undefined;
  const codec = new AvroCodec({ source: o.source, connector: o.connector, db: o.db ?? '', schemas, ...(keys ? { keys } : {}) });
  const beforeApply = passThroughCheck(o.yieldEvery ?? 1000);
  if (o.fence) await removeIncompleteSnapshots(o.store, o.source, o.fence);
  const writer = new SnapshotPartsWriter(o.store, o.source, id, envelopes, o.signal, o.signer);
  let seq = 0;
  let rows = 0;
  let changes: number;
  const budget = o.memoryBudgetBytes ?? SYNTHESIS_MEMORY_BUDGET_BYTES;
  const spilled: string[] = [];
  const dir = await mkdtemp(join(o.spillDir ?? tmpdir(), 'chartlog-synthesis-spill-'));
  try {
    const replay = await prepareStreamingReplay({
      store: o.store,
      source: o.source,
      codec,
      schemas,
      envelopes,
      to: { kind: 'position', position: cut },
      open: false,
      index,
      beforeApply,
      asWritten: true,
      // The whole budget: the replay takes the changes' share of it, the sort below the sort share (memoryShares).
      memoryBudgetBytes: budget,
      spillDir: dir,
    });
    try {
      changes = replay.changes;
      const key = new SpillKey();
      let tableNo = 0;
      // One table at a time; each table's rows stream through the sort into the parts writer.
      for (const [name, table] of replay.tables) {
        const fingerprint = table.fingerprint;
        if (!fingerprint) continue; // no version of it at or before the cut: created after it
        // Rows keep the table version they were written with (no value is converted), one run
        // per version in key order, the current one last: few parts, and a reader of the
        // snapshot ends on the current version, as one replaying the changes does. The sort key
        // puts the versions in that order ahead of the row key, so one sort gives the runs.
        const rank = (v: string): string => (v === fingerprint ? '1' : `0${v}\u0000`);
        let sortSpilled = false;
        const sorted = sortByKey(table.rows('any'), (row) => `${rank(versionOf(row, fingerprint))}${keyOf(table.schema, row)}`, {
          budgetBytes: memoryShares(budget).sort,
          dir,
          key,
          prefix: `synthesis-${tableNo++}`,
          onRun: () => (sortSpilled = true),
        });
        for await (const batch of sorted) {
          for (const tagged of batch as TaggedRow[]) {
            o.signal?.throwIfAborted();
            // A copy without the tag: a key-less table's identical rows can be one object.
            const { [ROW_VERSION]: version, ...row } = tagged;
            await writer.add(await codec.encodeSnapshotRead(typeof version === 'string' ? version : fingerprint, row as Row, { position: Position.of(cut.commit, seq++), commitTsUs, tsUs: commitTsUs }));
            if (++rows % (o.yieldEvery ?? 1000) === 0) await yieldToLoop();
          }
        }
        if (table.spilled() || sortSpilled) spilled.push(name);
        writer.noteTable(name, fingerprint);
        await writer.closeTable(name);
      }
    } finally {
      await replay.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const manifest = await writer.finish({ position: cut, commitTsUs, origin: 'synthesised' });
  const result = { ...done('written', manifest, rows, changes), ...(spilled.length > 0 ? { spilled } : {}) };
  log.info({ snapshot: id, base: base.id, tables: Object.keys(manifest.tables).length, rows, changes, ms: result.ms, ...(spilled.length > 0 ? { spilled } : {}) }, 'snapshot synthesised from the archive');
  return result;
}

/** How far the archive is durable, as the `upTo` option asks (may fall inside a transaction). */
function limitOf(index: ArchiveIndex, upTo: 'durable' | 'closed'): Position | null {
  let closed: Position | null = null;
  for (const h of index.hours) if (h.manifest.lastPos) closed = Position.parse(h.manifest.lastPos);
  const durable = upTo === 'durable' && index.checkpoint ? index.checkpoint.position : null;
  return durable && closed ? Position.max(durable, closed) : (durable ?? closed);
}

/**
 * What replay calls before applying each decoded change: tags every row with its table version
 * (the fingerprint it was written with) and refuses what cannot be passed through sealed. It
 * yields to the event loop now and then so a stream beside it keeps flowing.
 */
function passThroughCheck(yieldEvery: number): (d: DecodedChange) => Promise<void> | undefined {
  let decoded = 0;
  return (d) => {
    if (d.sealedColumns.length !== d.phiColumns.length) throw new ChartlogError('internal', 'snapshot synthesis never opens PHI');
    const e = d.event;
    const table = qualifiedName(e.schema);
    const rowKey = hasRowKey(e.schema) ? identityColumns(e.schema) : [];
    const sealedKey = rowKey.filter((k) => d.sealedColumns.includes(k));
    if (sealedKey.length > 0) {
      // Each message seals its key anew, so rows cannot be matched by key without the keyring.
      throw new ChartlogError('phi_policy', `${table}: key column ${sealedKey.join(', ')} is sealed, so its rows cannot be replayed without the keyring`, {
        hint: 'take a snapshot from the source instead (`chartlog snapshot --from-source`), or stop classifying key columns as PHI',
      });
    }
    if (rowKey.length === 0 && (e.op === 'u' || e.op === 'd') && d.sealedColumns.some((c) => e.before?.[c] instanceof Uint8Array)) {
      // Without a key, rows are matched by their whole image, and each message seals anew.
      throw new ChartlogError('phi_policy', `${table}: has no primary key and sealed columns, so its updates and deletes cannot be matched to rows without the keyring`, {
        hint: 'take a snapshot from the source instead (`chartlog snapshot --from-source`), or give the table a primary key; if its sealed columns are not PHI, list them under phi.publicColumns (unclassified columns are sealed by default, phi.unclassified)',
      });
    }
    if (e.op === 'u' && e.before && e.after && rowKey.length > 0) {
      const key = (r: Row) => rowKey.map((k) => cellKey(r[k])).join('\u0001');
      const unchangedSealed = d.sealedColumns.filter((c) => e.after![c] === UNCHANGED);
      if (unchangedSealed.length > 0 && key(e.before) !== key(e.after)) {
        // The unchanged value would come from the row under its old key, sealed for that key.
        throw new ChartlogError('phi_policy', `${table}.${unchangedSealed.join(', ')}: an unchanged sealed value moved to a new primary key at ${Position.format(e.position)}`, {
          hint: 'take a snapshot from the source instead (`chartlog snapshot --from-source`); it re-reads the row',
        });
      }
    }
    for (const row of [e.before, e.after]) if (row) (row as TaggedRow)[ROW_VERSION] = d.fingerprint;
    return ++decoded % yieldEvery === 0 ? yieldToLoop() : undefined;
  };
}

/** The table version a merged row was written with (the table's current one when it carries none). */
function versionOf(row: TaggedRow, current: string): string {
  const v = row[ROW_VERSION];
  return typeof v === 'string' ? v : current;
}
