import type { Config, SourceConfig } from '../config/schema.js';
import { ChartlogError, usageError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { openArchiveCodec } from '../archive/archive-codec.js';
import { readArchiveIndex, tablesOf, type ArchiveIndex } from '../archive/archive-index.js';
import { appendAuditRecord, currentUser } from '../phi/audit-log.js';
import { authenticateArchive, loadArchiveMac, refuseUnauthentic } from '../archive/archive-auth.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';
import type { Keyring } from '../phi/keyring/keyring.js';
import type { RestoreCut, RestorePoint } from '../archive/replay.js';
import { FAR_CUT_US } from '../archive/transaction-cut.js';
import { prepareStreamingReplay } from '../archive/streaming-replay.js';
import { formatUs } from '../archive/layout.js';
import type { RestoreTarget, SourceEngine, TablePlan } from './targets/restore-target.js';
import type { RestoreProgress } from './restore-progress.js';

export type { RestoreProgress } from './restore-progress.js';

export interface RestoreOptions {
  config: Readonly<Config>;
  source: Readonly<SourceConfig>;
  store: ObjectStore;
  to: RestorePoint;
  /** --to as the user gave it, for the summary and the audit record. */
  requested: string;
  /** "schema.table" names; every table of the archive when absent. */
  tables?: readonly string[];
  target: RestoreTarget;
  /** Leave PHI sealed (no keyring, no audit record). */
  keepSealed: boolean;
  /** Tables written at the same time. */
  parallel?: number;
  /** Overrides restore.memoryBudgetMiB of the configuration (tests force spilling with it). */
  memoryBudgetBytes?: number;
  /** Resolution of the source's commit times in µs (its connector says: 1, or 1_000_000 for binlog headers). Default 1. */
  commitTimeResolutionUs?: bigint;
  progress?: RestoreProgress;
}

export interface RestoreSummary {
  source: string;
  requested: string;
  /** The exact position and commit time restored to (the last change applied). */
  position: string;
  commitTime: string;
  snapshot: string;
  changes: number;
  rows: number;
  tables: { table: string; rows: number; phiColumns: string[]; sealed: boolean }[];
  /** Tables asked for that did not exist yet at that moment. */
  absent: string[];
  target: string;
  /** Key of the audit record, when PHI was opened. */
  audit: string | null;
  /**
   * Time spent reading the changes and collapsing them per key (replay), and streaming the base
   * snapshot past them into the target (write).
   */
  seconds: { replay: number; write: number };
  /** Tables whose collapsed changes outgrew the memory budget and spilled to (sealed) files. */
  spilled: string[];
  /** The last whole transaction restored (every piece of it stored); null: none after the base snapshot. */
  lastTransaction: { position: string; txId: string | null; commitTime: string } | null;
  /** How exact the source's commit times are: 'seconds' for MySQL/MariaDB binlog headers. */
  commitTimeResolution: 'microseconds' | 'seconds';
  /** What the operator should know about the cut (far from the time asked, a transaction left out as not whole). */
  warnings: string[];
}

const round = (s: number): number => Math.round(s * 1000) / 1000;

/**
 * `chartlog restore` (docs/architecture.md §5): checks the request against the archive and the target
 * before anything is written (exit 2 with the reason), replays the archive to one consistent
 * moment, records the PHI opening in the audit log, then writes the tables (in parallel).
 * On a failure while writing, the target is left as it was found.
 */
export async function restoreArchive(o: RestoreOptions): Promise<RestoreSummary> {
  const log = logger().child({ component: 'restore', source: o.source.name });
  const index = await readArchiveIndex(o.store, o.source.name);
  if (index.unreadable.length > 0) {
    // A manifest that cannot be read hides the objects it lists: replaying without them would
    // silently restore a different moment.
    throw new ChartlogError('integrity', `the archive of ${o.source.name} has unreadable objects: ${index.unreadable.map((u) => u.key).join(', ')}; refusing to restore`, {
      hint: 'run `chartlog verify` and restore those objects from a copy of the archive',
    });
  }
  // Authentic before anything else is read or written: a planted, altered or truncated archive
  // would otherwise restore a different moment silently (exit 1, naming each object).
  const mac = await loadArchiveMac(o.store, o.source.name, () => openKeyringFor(o.config));
  refuseUnauthentic(o.source.name, authenticateArchive(index, mac), 'restore');
  if (!mac) log.warn('the archive has no archive-MAC key (written before archive MACs): its objects cannot be authenticated, only checked against their sha256 chain');
  const resolutionUs = o.commitTimeResolutionUs ?? 1n;
  const point = resolvePoint(index, o.to, o.requested, resolutionUs);
  const names = resolveTables(index, o.tables);
  const open = !o.keepSealed;
  let archive: ReturnType<typeof openArchiveCodec>;
  try {
    archive = openArchiveCodec(o.config, o.source, o.store, open, mac);
  } catch (err) {
    if (!(err instanceof ChartlogError)) throw err;
    // An authenticated archive needed the keyring already; only an older one restores sealed without it.
    const alternative = mac ? 'or restore with --keep-sealed: PHI columns stay sealed bytes' : 'or restore with --keep-sealed: PHI columns stay sealed bytes and no keyring is needed';
    throw new ChartlogError(err.code, err.message, { cause: err, hint: `${err.hint ? `${err.hint}; ` : ''}${alternative}` });
  }
  await o.target.check(names.map(splitName));

  log.info({ tables: names.length, to: o.requested }, 'replaying the archive');
  const replayStarted = performance.now();
  const result = await prepareStreamingReplay({
    store: o.store,
    source: o.source.name,
    codec: archive.codec,
    schemas: archive.schemas,
    envelopes: archive.envelopes,
    to: point,
    tables: names,
    open,
    index,
    ...(archive.keys ? { keys: archive.keys } : {}),
    memoryBudgetBytes: o.memoryBudgetBytes ?? o.config.restore.memoryBudgetMiB * 2 ** 20,
    // Tables are written in parallel: their key-order sorts share the sort share.
    sortsAtOnce: Math.max(1, Math.min(o.parallel ?? 4, names.length)),
    ...(o.config.restore.spillDir ? { spillDir: o.config.restore.spillDir } : {}),
  }).catch((err: unknown) => {
    if (err instanceof ChartlogError) throw err;
    // A damaged object can break a decoder in ways it does not name (parts of open hours
    // have no recorded sha256): still a refusal, and never shown as a bug.
    throw new ChartlogError('integrity', `reading the archive of ${o.source.name} failed: ${(err as Error).message}; an object may be damaged`, {
      cause: err,
      hint: 'run `chartlog verify`, and restore damaged objects from a copy of the archive',
    });
  });
  const replaySeconds = (performance.now() - replayStarted) / 1000;
  const engine: SourceEngine = o.source.type === 'mysql' ? 'mysql' : 'postgres';
  // Which columns are PHI: the table versions of the records applied say (known before any row is written).
  const phiColumnsOf = (name: string): string[] => [...(result.tables.get(name)?.everPhiColumns ?? [])].sort();
  const plans: TablePlan[] = [];
  for (const [name, t] of result.tables) {
    const phi = t.phiColumns ?? new Set<string>();
    const present = new Set(t.schema.columns.map((c) => c.name));
    plans.push({ name, table: t.schema, sealed: open ? new Set() : new Set([...phi].filter((c) => present.has(c))), sourceEngine: engine });
  }
  const position = Position.format(result.position);
  const commitTime = formatUs(result.commitTsUs);
  const phiTables = plans
    .map((p) => ({ table: p.name, phiColumns: phiColumnsOf(p.name) }))
    .filter((t) => t.phiColumns.length > 0);

  const counts = new Map<string, number>();
  let audit: string | null = null;
  try {
    if (open && phiTables.length > 0) {
      // Durable before any opened value leaves this process.
      audit = await appendAuditRecord(o.store, {
        version: 1,
        at: new Date().toISOString(),
        action: 'restore',
        who: currentUser(),
        source: o.source.name,
        tables: phiTables,
        requested: o.requested,
        restoredTo: { position, commitTime },
        target: o.target.description,
      });
      log.info({ audit }, 'PHI opened: audit record written');
    }
    const writeStarted = performance.now();
    await o.target.prepare(plans);
    const queue = [...plans];
    const order = o.target.rowOrder === 'any' ? 'any' : 'key';
    // A table fails while others are being written (a damaged snapshot part is found as it
    // streams): the others stop taking tables and finish, so that abort sees every one of them.
    let failure: { err: unknown } | null = null;
    const worker = async (): Promise<void> => {
      for (let plan = queue.shift(); plan && !failure; plan = queue.shift()) {
        try {
          const table = result.tables.get(plan.name)!;
          const progress = (n: number, bytes?: number) => o.progress?.advance(plan.name, n, bytes ?? 0);
          // A target that reads base snapshot blocks itself (PostgreSQL: block by block into COPY text) gets them when
          // the table allows; on its COPY threads when there are any and the table is large enough to repay starting them.
          const { copyThreads, copyThreadsFromRows } = o.config.restore;
          const threaded = copyThreads !== 0 && table.estimatedRows >= copyThreadsFromRows;
          const blocks = o.target.writeBlocks && order === 'any' ? await table.blocks() : null;
          o.progress?.tableStarted(plan.name, table.estimatedRows);
          counts.set(plan.name, blocks ? await o.target.writeBlocks!(plan, blocks, progress, threaded) : await o.target.writeTable(plan, table.rows(order), progress));
          o.progress?.tableDone(plan.name, counts.get(plan.name)!);
          log.info({ table: plan.name, rows: counts.get(plan.name), base: blocks ? (threaded ? 'blocks on COPY threads' : 'blocks on the main thread') : 'rows' }, 'table restored');
        } catch (err) {
          failure ??= { err };
          queue.length = 0;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.parallel ?? 4, plans.length)) }, worker));
    if (failure) throw (failure as { err: unknown }).err;
    const summary: RestoreSummary = {
      source: o.source.name,
      requested: o.requested,
      position,
      commitTime,
      snapshot: result.snapshot.id,
      changes: result.changes,
      rows: [...counts.values()].reduce((a, b) => a + b, 0),
      tables: plans.map((p) => ({ table: p.name, rows: counts.get(p.name) ?? 0, phiColumns: phiColumnsOf(p.name), sealed: p.sealed.size > 0 })),
      absent: names.filter((n) => !result.tables.has(n)),
      target: o.target.description,
      audit,
      seconds: { replay: round(replaySeconds), write: round((performance.now() - writeStarted) / 1000) },
      spilled: [...result.tables.values()].filter((t) => t.spilled()).map((t) => t.name),
      ...cutSummary(result.cut, point, resolutionUs),
    };
    for (const w of summary.warnings) log.warn(w);
    await o.target.finish({ ...summary });
    return summary;
  } catch (err) {
    await o.target.abort().catch((e: unknown) => log.error({ err: e }, 'could not remove what the failed restore wrote'));
    throw err;
  } finally {
    o.progress?.stop();
    await result.close();
  }
}

/**
 * The moment as replay takes it, checked against the restorable range (oldest base snapshot →
 * newest durable commit). `latest` and moments at the newest commit are cut at the checkpoint:
 * what lies beyond it may not be whole yet.
 */
export function resolvePoint(index: ArchiveIndex, to: RestorePoint, requested: string, resolutionUs = 1n): RestorePoint {
  const oldest = index.snapshots[0];
  const cp = index.checkpoint;
  if (!oldest || !cp) {
    throw usageError(`source ${index.source} has nothing restorable yet (${oldest ? 'no durable commit' : 'no base snapshot'})`, 'run `chartlog run` until it has written its first snapshot; `chartlog timeline` shows the range');
  }
  const fromUs = BigInt(oldest.commitTsUs);
  const from = Position.parse(oldest.position);
  const range = `${formatUs(fromUs)} (position ${oldest.position}) → ${formatUs(cp.commitTsUs)} (position ${Position.format(cp.position)})`;
  const outside = (): ChartlogError =>
    usageError(`--to ${requested} is outside the restorable range of source ${index.source}: ${range}`, 'choose a moment inside that range; `chartlog timeline` shows it');
  switch (to.kind) {
    case 'latest':
      return { kind: 'position', position: cp.position };
    case 'time':
      if (to.us < fromUs || to.us > cp.commitTsUs) throw outside();
      // At the newest commit: cut at the checkpoint. A coarser clock cannot say the checkpoint's
      // transaction committed by then: the time rule decides (transaction-cut.ts).
      if (resolutionUs === 1n && to.us === cp.commitTsUs) return { kind: 'position', position: cp.position };
      return resolutionUs === 1n ? to : { ...to, resolutionUs };
    case 'position':
      if (to.position.commit.length !== cp.position.commit.length) {
        throw usageError(`--to ${requested} is not a position of source ${index.source} (its positions look like ${Position.format(cp.position)})`, '`chartlog timeline` prints positions of this source');
      }
      if (Position.compare(to.position, from) < 0 || Position.compare(to.position, cp.position) > 0) throw outside();
      return to;
  }
}

/**
 * The summary's account of the cut: the last whole transaction, the clock's resolution, and
 * warnings — a transaction left out because not every piece of it is stored (kill -9 inside
 * it), and a time cut far before the moment asked for (a commit stamped after it stopped the cut:
 * a clock stepped forward, or later transactions stamped earlier than one before them).
 */
export function cutSummary(cut: RestoreCut, point: RestorePoint, resolutionUs: bigint): Pick<RestoreSummary, 'lastTransaction' | 'commitTimeResolution' | 'warnings'> {
  const warnings: string[] = [];
  if (cut.incomplete) {
    warnings.push(`a transaction at commit ${cut.incomplete} is not whole in the archive (some of its pieces are missing, e.g. after a kill -9 inside it): it and everything after it are left out`);
  }
  if (point.kind === 'time') {
    const at = cut.last?.commitTsUs;
    if (cut.stoppedBy && (at === undefined || point.us - at > FAR_CUT_US)) {
      warnings.push(
        `the cut is ${at === undefined ? 'at the base snapshot' : `${formatSeconds(point.us - at)} before the time asked for`}: the next transaction (position ${Position.format(cut.stoppedBy.position)}) is stamped ${formatUs(cut.stoppedBy.commitTsUs)}, after it, so no later transaction is included (\`chartlog timeline\` notes commit times that step backwards)`,
      );
    }
  }
  return {
    lastTransaction: cut.last ? { position: Position.format(cut.last.position), txId: cut.last.txId, commitTime: formatUs(cut.last.commitTsUs) } : null,
    commitTimeResolution: resolutionUs >= 1_000_000n ? 'seconds' : 'microseconds',
    warnings,
  };
}

function formatSeconds(us: bigint): string {
  return `${(Number(us) / 1e6).toFixed(us < 10_000_000n ? 6 : 0)} s`;
}

/** The tables asked for, each known to the archive; all of them when none are named. */
export function resolveTables(index: ArchiveIndex, wanted: readonly string[] | undefined): string[] {
  const known = tablesOf(index);
  if (!wanted || wanted.length === 0) return known;
  const unknown = wanted.filter((t) => !known.includes(t));
  if (unknown.length > 0) {
    throw usageError(`--tables: source ${index.source} has no table ${unknown.join(', ')}`, `its archive holds: ${known.join(', ') || '(no tables)'}`);
  }
  return [...new Set(wanted)];
}

/** The keyring, needed to authenticate the archive also with --keep-sealed (it unwraps the archive-MAC key only). */
function openKeyringFor(config: Readonly<Config>): Keyring {
  try {
    return openKeyring(config.phi.keyring, { backupRoot: backupRootOf(config.storage.url) });
  } catch (err) {
    if (!(err instanceof ChartlogError)) throw err;
    throw new ChartlogError(err.code, err.message, {
      cause: err,
      hint: `${err.hint ? `${err.hint}; ` : ''}the archive is authenticated with a key the keyring wraps, so restore needs phi.keyring also with --keep-sealed`,
    });
  }
}

function splitName(name: string): { schema: string; table: string } {
  const dot = name.indexOf('.');
  return { schema: name.slice(0, dot), table: name.slice(dot + 1) };
}

/** The summary for people: where to, the exact moment, and rows per table. */
export function renderRestoreSummary(s: RestoreSummary): string {
  const lines = [
    `restored source ${s.source} to position ${s.position} (commit ${s.commitTime}), asked for ${s.requested}`,
    `  ${s.tables.length} table${s.tables.length === 1 ? '' : 's'}, ${s.rows} rows into ${s.target} (base snapshot ${s.snapshot} + ${s.changes} changes)`,
    `  changes collapsed in ${s.seconds.replay.toFixed(2)} s, tables streamed into the target in ${s.seconds.write.toFixed(2)} s`,
  ];
  const width = Math.max(0, ...s.tables.map((t) => t.table.length));
  for (const t of s.tables) {
    const phi = t.phiColumns.length === 0 ? '' : t.sealed ? `  PHI kept sealed: ${t.phiColumns.join(', ')}` : `  PHI opened: ${t.phiColumns.join(', ')}`;
    lines.push(`    ${t.table.padEnd(width)} ${String(t.rows).padStart(10)} rows${phi}`);
  }
  if (s.spilled.length > 0) lines.push(`  changes spilled to sealed files (past restore.memoryBudgetMiB): ${s.spilled.join(', ')}`);
  for (const a of s.absent) lines.push(`    ${a}: did not exist yet at that moment, not created`);
  lines.push(
    s.lastTransaction
      ? `  last whole transaction: ${s.lastTransaction.txId ?? '(no id)'} at position ${s.lastTransaction.position} (commit ${s.lastTransaction.commitTime}${s.commitTimeResolution === 'seconds' ? ', to the second' : ''})`
      : '  no transaction after the base snapshot',
  );
  if (s.commitTimeResolution === 'seconds') lines.push('  commit times of this source are whole seconds: a time cut includes a transaction only when its whole second is at or before the time asked for');
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  if (s.audit) lines.push(`  audit record ${s.audit}`);
  return `${lines.join('\n')}\n`;
}
