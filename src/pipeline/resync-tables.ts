import { randomBytes } from 'node:crypto';
import { ChartlogError, usageError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { sleep, withRetry } from '../core/retry.js';
import { qualifiedName } from '../core/table-schema.js';
import type { BaseMessage } from '../codec/message-encoder.js';
import { BlockOrdinals } from '../phi/block-seal.js';
import { listSnapshots, tableSnapshotsPrefix, type SnapshotManifest } from '../archive/snapshot-manifest.js';
import { SnapshotPartsWriter } from '../compactor/snapshot-builder.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { SourcePipelineDeps } from './prepare-source.js';

/** How far a resync has come, for the operator (rows and rate only: never a value). */
export interface ResyncProgress {
  /** The table being read (null before the first row). */
  table: string | null;
  rows: number;
  elapsedMs: number;
  /** Rows per second since the start. */
  rate: number;
}

export interface ResyncOptions {
  /** The source's connector, encoder (PHI sealed as `chartlog run` seals it), schemas and signer. */
  deps: Pick<SourcePipelineDeps, 'source' | 'store' | 'connector' | 'encoder' | 'envelopes' | 'signer'>;
  /** "schema.table" names, as the source's catalog has them. */
  tables: readonly string[];
  /** Rows read per second at most (0: as fast as the source gives them). */
  rowsPerSecond: number;
  signal?: AbortSignal;
  onProgress?: (p: ResyncProgress) => void;
}

/** A resync attempt that wrote nothing for this long is taken as interrupted and removed by the next one. */
const INTERRUPTED_AFTER_MS = 15 * 60_000;
/** An attempt in progress touches its progress object at least this often, so it is never taken as interrupted. */
const PROGRESS_EVERY_MS = 60_000;

/**
 * An online re-snapshot of some tables while `chartlog run` keeps streaming (docs/architecture.md
 * §4, "Table re-snapshots"): one consistent image of the tables at a known stream position P,
 * read without locks in primary-key chunks (the connector's snapshot with `alongsideStream`:
 * PostgreSQL an exported snapshot of a temporary slot, MariaDB `START TRANSACTION WITH
 * CONSISTENT SNAPSHOT` and its GTID), throttled to `rowsPerSecond`, sealed and encoded as the
 * stream's rows are, and stored as a table-scoped base under `table-snapshots/<id>/` with its
 * manifest last. Restore then starts those tables from it for every moment at or after P and
 * replays only the changes after P (chooseTableBase); earlier moments use the earlier base.
 *
 * It writes no object `chartlog run` writes (not the checkpoint, parts, segments, manifests or
 * `snapshots/`), only new, uniquely named objects, so it needs no writer lease and never
 * disturbs the stream. Interrupted (kill -9), it leaves a folder without a manifest, which no
 * reader uses; running it again takes a new image at a new position and removes the old
 * folder once it has been idle for 15 minutes.
 *
 * This is also the entry point for a connector that needs a table re-read (a rewriting DDL):
 * the pipeline's ResyncQueue calls it (src/pipeline/resync-queue.ts).
 */
export async function resyncTables(o: ResyncOptions): Promise<SnapshotManifest> {
  const { source, store, connector, encoder, envelopes, signer } = o.deps;
  const log = logger().child({ component: 'resync', source: source.name });
  if (o.tables.length === 0) throw usageError('--tables: name at least one table', 'e.g. --tables public.patients,public.encounters');
  if (!Number.isInteger(o.rowsPerSecond) || o.rowsPerSecond < 0) {
    throw usageError(`--rows-per-second: ${o.rowsPerSecond} is not a whole number ≥ 0`, 'give e.g. --rows-per-second 5000 (0: unthrottled)');
  }
  if (!connector.capabilities.snapshot) {
    throw usageError(`the ${source.type} connector of source ${source.name} cannot take a consistent snapshot`, 'resync is not possible for this source');
  }
  if ((await listSnapshots(store, source.name)).length === 0) {
    throw usageError(`source ${source.name} has no base snapshot yet: a table resync would be a base with nothing to restore beside it`, 'let `chartlog run` take its first snapshot, then resync');
  }
  const captured = new Set((await connector.tables()).map(qualifiedName));
  const unknown = o.tables.filter((t) => !captured.has(t));
  if (unknown.length > 0) {
    throw usageError(`--tables: source ${source.name} does not capture ${unknown.join(', ')}`, `it captures: ${[...captured].sort().join(', ') || '(no tables)'}`);
  }
  const tables = [...new Set(o.tables)];
  await removeInterruptedResyncs(store, source.name);

  const chunkRows = o.rowsPerSecond > 0 ? Math.max(100, Math.min(source.snapshot.chunkRows, Math.floor(o.rowsPerSecond / 4))) : source.snapshot.chunkRows;
  const started = performance.now();
  let rows = 0;
  let table: string | null = null;
  let position: Position | null = null;
  let commitTsUs = 0n;
  let writer: SnapshotPartsWriter | null = null;
  let lastProgressPut = 0;
  let encoding: Promise<BaseMessage[]> | null = null;
  // The base's block seals numbered per table in row order (readers check it: docs/formats.md).
  const ordinals = new BlockOrdinals();
  const progressKey = (): string => `${tableSnapshotsPrefix(source.name)}${writer!.id}/progress.json`;
  const report = (): void => {
    const elapsedMs = performance.now() - started;
    o.onProgress?.({ table, rows, elapsedMs, rate: elapsedMs > 0 ? (rows * 1000) / elapsedMs : 0 });
  };

  for await (const batch of connector.snapshot({ tables, chunkRows, alongsideStream: true, ...(o.signal ? { signal: o.signal } : {}) })) {
    if (!batch.snapshot) throw new ChartlogError('internal', 'a snapshot yielded a non-snapshot batch');
    if (!writer || !position) {
      position = batch.position;
      commitTsUs = batch.commitTsUs;
      // Unique per attempt: a second resync at the same position (an idle source) never
      // overwrites the parts of the first.
      const id = `${Position.format(position)}-${randomBytes(4).toString('hex')}`;
      writer = new SnapshotPartsWriter(store, source.name, id, envelopes, o.signal, signer, true);
      log.info({ snapshot: id, position: Position.format(position), tables: tables.length, rowsPerSecond: o.rowsPerSecond }, 'table resync started');
    } else if (!Position.equals(position, batch.position)) {
      throw new ChartlogError('internal', 'snapshot batches must share one consistent position');
    }
    // One chunk is encoded (its PHI block-sealed, as a connector's base snapshot) while the previous one is written.
    const next = encoder.encodeBase ? encoder.encodeBase(batch, ordinals) : encoder.encode(batch);
    next.catch(() => undefined);
    if (encoding) for (const m of await encoding) await writer.add(m);
    encoding = next;
    for (const s of batch.schemaChanges ?? []) {
      // A table's last part is written as soon as the next table starts: memory holds one table's part.
      if (table && table !== qualifiedName(s)) await writer.closeTable(table);
      table = qualifiedName(s);
      writer.noteTable(table, await encoder.fingerprintOf(source.name, s));
    }
    rows += batch.events.length;
    if (Date.now() - lastProgressPut > PROGRESS_EVERY_MS) {
      lastProgressPut = Date.now();
      const body = { rows, updatedAt: new Date().toISOString() };
      await withRetry(() => store.put(progressKey(), Buffer.from(`${JSON.stringify(body)}\n`)), o.signal ? { signal: o.signal } : {});
    }
    report();
    // The throttle: the next chunk is asked for only once the rate allows it, so the source's
    // read load stays at rowsPerSecond.
    if (o.rowsPerSecond > 0) {
      const due = (rows * 1000) / o.rowsPerSecond - (performance.now() - started);
      if (due > 0) await sleep(due, o.signal);
    }
  }
  if (!writer || !position) throw new ChartlogError('internal', 'the resync produced no consistent position');
  if (encoding) for (const m of await encoding) await writer.add(m);
  const manifest = await writer.finish({ position, commitTsUs, origin: 'resync' });
  await store.delete(progressKey()).catch(() => undefined);
  report();
  log.info({ snapshot: manifest.id, position: manifest.position, rows, seconds: Math.round(performance.now() - started) / 1000 }, 'table resync written');
  return manifest;
}

/** Folders under table-snapshots/ without a manifest, idle for 15 minutes: killed attempts. Only resync writes there. */
async function removeInterruptedResyncs(store: ObjectStore, source: string, nowMs = Date.now()): Promise<void> {
  const prefix = tableSnapshotsPrefix(source);
  const byId = new Map<string, { keys: string[]; newest: number; complete: boolean }>();
  for await (const o of store.listAll(prefix)) {
    const id = o.key.slice(prefix.length).split('/')[0]!;
    const e = byId.get(id) ?? { keys: [], newest: 0, complete: false };
    e.keys.push(o.key);
    e.newest = Math.max(e.newest, o.lastModified.getTime());
    e.complete ||= o.key.endsWith('/manifest.json');
    byId.set(id, e);
  }
  for (const [id, e] of byId) {
    if (e.complete || nowMs - e.newest < INTERRUPTED_AFTER_MS) continue;
    logger().warn({ source, snapshot: id, objects: e.keys.length }, 'removing an interrupted table resync');
    for (const k of e.keys) await store.delete(k);
  }
}
