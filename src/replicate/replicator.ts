import type { Config, SourceConfig } from '../config/schema.js';
import { ChartlogError, usageError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { COMMIT_SEQ, Position } from '../core/position.js';
import { Backoff, sleep } from '../core/retry.js';
import type { ObjectStore } from '../storage/object-store.js';
import { appendAuditRecord, currentUser } from '../phi/audit-log.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';
import { openArchiveCodec, type ArchiveCodec } from '../archive/archive-codec.js';
import { authenticateArchive, loadArchiveMac, refuseUnauthentic } from '../archive/archive-auth.js';
import { readArchiveIndex, type ArchiveIndex } from '../archive/archive-index.js';
import { ArchiveReader, type StoredRecord } from '../archive/archive-reader.js';
import { formatUs } from '../archive/layout.js';
import { writeReplicaState, type ReplicaState } from '../archive/replica-state.js';
import { restoreArchive, resolveTables } from '../restore/restore.js';
import type { RestoreTarget } from '../restore/targets/restore-target.js';
import { OmitPhiTarget } from './omit-phi-target.js';
import type { ReplicaLocation } from './replica-name.js';
import { startDecision, type PhiMode, type ReplicaChange, type ReplicaTarget } from './replica-target.js';
import { ArchiveFollower } from './archive-follower.js';
import { GROUP_ROWS, groupTransactions, transactionRuns, type GroupableTransaction } from './transaction-groups.js';
import { LOAD_MARK, baseWaitMs, cannotRebuild, holdingWindow, inBase, pendingBases, tableAwaitingBase } from './table-resyncs.js';
import { UnknownOlderRowsError } from './schema-evolution.js';
import { tableSnapshotsPrefix, type SnapshotManifest } from '../archive/snapshot-manifest.js';

export interface ReplicateOptions {
  config: Readonly<Config>;
  source: Readonly<SourceConfig>;
  store: ObjectStore;
  target: ReplicaTarget;
  /** The same database as a restore target, for the initial load (restore's streaming path). */
  loadTarget: () => RestoreTarget;
  /** "schema.table" names; every table of the archive when absent. */
  tables?: readonly string[];
  phi: PhiMode;
  signal: AbortSignal;
  /** How often the archive is read for new durable transactions when nothing was applied (default: pollDefaults). */
  pollMs?: number;
  /** How often the checkpoint alone is looked at while waiting for a poll (default: pollDefaults; at most `pollMs`). */
  checkpointLookMs?: number;
  /** Rows of consecutive source transactions applied as one target transaction at most (transaction-groups.ts; 1: each alone). */
  groupRows?: number;
  /** How often the status is logged and reported (default 60 s). */
  statusEveryMs?: number;
  /** Lag past which each status warns (default 300 s). */
  warnLagSeconds?: number;
  /** Told the status every `statusEveryMs`, after the start and at the stop (the CLI prints `--json` lines). */
  onStatus?: (s: ReplicaStatus) => void;
  /**
   * The replica's name and where it is (no credentials): with them, each status is also written to
   * `<source>/state/replicas/<name>.json` for `chartlog timeline` (src/archive/replica-state.ts).
   */
  record?: { name: string; location: ReplicaLocation };
}

/** What `--json` prints and the log carries every minute. No row values. */
export interface ReplicaStatus {
  at: string;
  source: string;
  target: string;
  phi: PhiMode;
  /** load: the target was loaded from the archive in this session; resume: it already was a replica. */
  started: 'load' | 'resume';
  position: string;
  commitTime: string;
  /** Since this process started. */
  appliedTransactions: number;
  appliedRows: number;
  /** Rows per second over the last status interval. */
  rowsPerSecond: number;
  /** Source transactions in the archive after the replica's position (durable or still in flight). */
  lagTransactions: number;
  /** Now minus the commit time of the oldest transaction not applied yet; 0 when none is. */
  lagSeconds: number;
  /** Seconds the initial load took (load sessions only). */
  loadSeconds?: number;
}

/**
 * Where a round's time went (debug): reading the archive (or waiting for the read pipelined with
 * the previous round), planning, decoding, building changes, applying — for diagnoses of lag.
 */
class RoundTimes {
  private last = performance.now();
  private readonly times: Record<string, number> = {};
  lap(name: string): void {
    const now = performance.now();
    this.times[name] = Math.round(now - this.last);
    this.last = now;
  }
  log(counts: Record<string, number>): void {
    const log = logger();
    if (log.isLevelEnabled('debug')) log.debug({ component: 'replicate', ...counts, ...this.times }, 'round');
  }
}

/** Records decoded (and, with --phi open, their PHI opened) per request. */
const DECODE_GROUP = 2048;
/** Transactions taken per round, so one round's decoded rows stay bounded after a long pause. */
const ROUND_LIMIT = 5000;
/**
 * How often an idle replica reads the archive (`pollMs`: lists the index, reads new objects) and,
 * between reads, looks at the checkpoint alone (`checkpointLookMs`: one small GET; a replica
 * that has applied everything durable goes on within this of the checkpoint moving, since nothing
 * past the checkpoint can be applied). The checkpoint moves at most once per flush interval of the
 * archive (1 s by default), so a look adds at most its interval to the lag (about half of it on
 * average). On a local store looks cost nothing: 50 ms looks, 250 ms reads. On S3 every look is a
 * billed request and every read several LISTs (priced about ten GETs each): 200 ms looks (5 GETs
 * a second instead of 20; measured lag p99 1.2 s at 50 ms, so still well under the 2 s goal) and
 * 1 s reads (only table bases, which come without the checkpoint moving, wait for a read).
 */
export function pollDefaults(storageUrl: string): { pollMs: number; checkpointLookMs: number } {
  return storageUrl.startsWith('s3://') ? { pollMs: 1000, checkpointLookMs: 200 } : { pollMs: 250, checkpointLookMs: 50 };
}

/**
 * `chartlog replicate` (docs/architecture.md §5a): keeps a live database equal to a source's
 * archive. An empty target is loaded first through restore's streaming path, up to the newest
 * whole durable transaction, and records its position in the `chartlog_replica` table; a target
 * that already is a replica resumes from that position; anything else is refused (exit 2,
 * nothing written). Then every transaction that becomes settled in the archive (whole, durable:
 * settled-transactions.ts) is applied in source order as one target transaction together with the
 * position row, so a kill at any moment neither loses nor repeats one. Runs until `signal`.
 */
export async function replicate(o: ReplicateOptions): Promise<ReplicaStatus> {
  const states = new ReplicaStateWriter(o, o.statusEveryMs ?? 60_000);
  try {
    return await replicateSession(o, states);
  } catch (err) {
    // A replica stopped by the archive (a gap, a failed check) says so in timeline too.
    const now = states.current?.();
    if (now) states.write(now, 'failed', err);
    await states.settle();
    throw err;
  }
}

async function replicateSession(o: ReplicateOptions, states: ReplicaStateWriter): Promise<ReplicaStatus> {
  const log = logger().child({ component: 'replicate', source: o.source.name });
  const name = o.source.name;
  const defaults = pollDefaults(o.config.storage.url);
  const pollMs = o.pollMs ?? defaults.pollMs;
  const checkpointLookMs = o.checkpointLookMs ?? defaults.checkpointLookMs;
  const index = await readArchiveIndex(o.store, name);
  if (index.unreadable.length > 0) {
    throw new ChartlogError('integrity', `the archive of ${name} has unreadable objects: ${index.unreadable.map((u) => u.key).join(', ')}; refusing to replicate`, {
      hint: 'run `chartlog verify` and restore those objects from a copy of the archive',
    });
  }
  const mac = await loadArchiveMac(o.store, name, () => openKeyring(o.config.phi.keyring, { backupRoot: backupRootOf(o.config.storage.url) }));
  refuseUnauthentic(name, authenticateArchive(index, mac), 'replicate');
  const scope = o.tables && o.tables.length > 0 ? [...new Set(resolveTables(index, o.tables))].sort() : null;
  const archive = openArchiveCodec(o.config, o.source, o.store, o.phi === 'open', mac);
  // The crypto thread starts while the target is inspected and the replica loaded or resumed:
  // started by the first batch instead, its start (hundreds of ms) delayed the first transaction.
  archive.cryptoPool?.warm();

  const decision = startDecision(await o.target.inspect(), { source: name, phi: o.phi, tables: scope, target: o.target.description });
  let position: Position;
  let commitTsUs: bigint;
  let loadSeconds: number | undefined;
  if (decision.kind === 'resume') {
    ({ position, commitTsUs } = decision.replica);
    log.info({ position: Position.format(position), target: o.target.description, processMs: Math.round(performance.now()) }, 'resuming the replica');
  } else {
    const started = performance.now();
    ({ position, commitTsUs } = await loadPosition(o.store, index, archive));
    log.info({ position: Position.format(position), target: o.target.description, processMs: Math.round(performance.now()) }, 'loading the replica from the archive');
    await o.target.beginLoad({ source: name, state: 'loading', position, commitTsUs, phi: o.phi, tables: scope });
    const restoreTarget = o.phi === 'omit' ? new OmitPhiTarget(o.loadTarget()) : o.loadTarget();
    try {
      await restoreArchive({
        config: o.config,
        source: o.source,
        store: o.store,
        to: { kind: 'position', position },
        requested: `replicate (load to ${Position.format(position)})`,
        ...(scope ? { tables: scope } : {}),
        target: restoreTarget,
        keepSealed: o.phi !== 'open',
      });
    } finally {
      await restoreTarget.close();
    }
    await o.target.finishLoad(name, position, commitTsUs);
    // The load took every table base up to its position (restore's chooseTableBase).
    await o.target.recordBases(name, new Map([[LOAD_MARK, position]]));
    loadSeconds = Math.round(performance.now() - started) / 1000;
    log.info({ position: Position.format(position), seconds: loadSeconds }, 'replica loaded');
  }

  const statusEvery = o.statusEveryMs ?? 60_000;
  const stats = { transactions: 0, rows: 0, lagTransactions: 0, oldestUs: null as bigint | null, sinceRows: 0, since: performance.now() };
  const status = (): ReplicaStatus => {
    const seconds = (performance.now() - stats.since) / 1000;
    const s: ReplicaStatus = {
      at: new Date().toISOString(),
      source: name,
      target: o.target.description,
      phi: o.phi,
      started: decision.kind,
      position: Position.format(position),
      commitTime: formatUs(commitTsUs),
      appliedTransactions: stats.transactions,
      appliedRows: stats.rows,
      rowsPerSecond: seconds > 0 ? Math.round(stats.sinceRows / seconds) : 0,
      lagTransactions: stats.lagTransactions,
      lagSeconds: stats.oldestUs === null ? 0 : Math.max(0, Math.round((Date.now() * 1000 - Number(stats.oldestUs)) / 1000) / 1000),
      ...(loadSeconds !== undefined ? { loadSeconds } : {}),
    };
    stats.sinceRows = 0;
    stats.since = performance.now();
    return s;
  };
  states.current = status;
  const report = (how: ReplicaState['status'] = 'running'): ReplicaStatus => {
    const s = status();
    if (s.lagSeconds > (o.warnLagSeconds ?? 300)) log.warn({ ...s }, 'replica lag is past the warning threshold');
    else log.info({ ...s }, 'replica status');
    o.onStatus?.(s);
    states.write(s, how);
    return s;
  };
  report();
  let nextStatus = performance.now() + statusEvery;

  const inScope = (t: string) => scope === null || scope.includes(t);
  /** PHI columns per table version, resolved once: a backlog's rows share a few versions, and an await per row cost the main thread. */
  const sealedSets = new Map<string, ReadonlySet<string>>();
  const sealedOf = async (fingerprint: string): Promise<ReadonlySet<string>> => {
    let set = sealedSets.get(fingerprint);
    if (set === undefined) {
      set = (await archive.schemas.resolve(BigInt(`0x${fingerprint}`))).version.sealed;
      sealedSets.set(fingerprint, set);
    }
    return set;
  };
  /** PHI columns ("table.column") named in this session's audit records. */
  const audited = new Set<string>();
  const backoff = new Backoff({ initialDelayMs: 250, maxDelayMs: 30_000 });
  const reportWhenDue = () => {
    if (performance.now() < nextStatus) return;
    report();
    nextStatus = performance.now() + statusEvery;
  };
  const follower = new ArchiveFollower(o.store, name, archive, mac, inScope);
  // Resumed at once: the index read (and authenticated) at the start is the first read's listing.
  if (decision.kind === 'resume') follower.seed(index);
  /** Per table, the position of the base its rows were last rebuilt from (table-resyncs.ts). */
  const marks = await o.target.takenBases(name);
  if (!marks.has(LOAD_MARK)) {
    // A replica built before table bases were followed (or stopped between its load's end and
    // this mark): bases up to its position are taken as its own, never rebuilt from — an old
    // base plus changes the archive may no longer hold could only be worse.
    marks.set(LOAD_MARK, position);
    await o.target.recordBases(name, new Map([[LOAD_MARK, position]]));
    log.info({ position: Position.format(position) }, 'table bases up to the replica position recorded as taken');
  }
  let heldAt: string | null = null;
  /** The table whose change met no row while its base may still come (awaitingBase), and since when. */
  let pendingSince: { table: string | null; since: number } = { table: null, since: 0 };
  /** The read of the archive under way while a round applies (pipelined), awaited before the next plan. */
  let reading: Promise<void> | null = null;
  while (!o.signal.aborted) {
    let applied = 0;
    const round = new RoundTimes();
    try {
      await (reading ?? follower.read(position));
      reading = null;
      round.lap('readMs');
      const plan = follower.plan(position, ROUND_LIMIT);
      round.lap('planMs');
      stats.lagTransactions = plan.transactions.length + plan.inFlight;
      stats.oldestUs = plan.transactions[0]?.commitTsUs ?? plan.oldestInFlightUs;
      // New table bases first (table-resyncs.ts): each table rebuilt in one target transaction.
      const index = follower.lastIndex!;
      for (const { table, base } of pendingBases(index.tableSnapshots ?? [], marks, inScope)) {
        if (!o.target.replaceTable) throw cannotRebuild(table, base, o.target.description);
        const started = performance.now();
        const rows = await rebuildTable(o, archive, index, table, base, position, sealedOf, audited, commitTsUs);
        marks.set(table, Position.parse(base.position));
        log.info({ table, base: base.id, basePosition: base.position, position: Position.format(position), rows, seconds: Math.round(performance.now() - started) / 1000 }, 'table rebuilt in the replica from its new base (table resync)');
      }
      // An open unproven window holds the replica before it: what follows may hold old values.
      const hold = holdingWindow(index.unproven ?? [], inScope);
      const upTo = hold ? plan.transactions.findIndex((t) => Position.compare(t.position, hold.from) >= 0) : -1;
      const settled = upTo >= 0 ? plan.transactions.slice(0, upTo) : plan.transactions;
      if (hold && (upTo >= 0 || Position.compare(position, hold.from) >= 0)) {
        const at = `${hold.table}@${Position.format(hold.from)}`;
        if (heldAt !== at) {
          heldAt = at;
          log.warn({ table: hold.table, from: Position.format(hold.from), reason: hold.reason }, `the replica waits before ${Position.format(hold.from)}: ${hold.table} is being re-read at the source (${hold.reason}); it goes on once the table's new base is in the archive (with sources[].resync.automatic false: chartlog resync --tables ${hold.table})`);
        }
      } else heldAt = null;
      // A table's changes at or before its base are in the base already.
      const txsIn = settled.map((t) => ({ ...t, records: t.records.filter((r) => !inBase(marks, r.table, r.position)) }));
      // The next read of the archive runs while this round decodes and applies: what became
      // durable meanwhile is ready when the round ends (its failure is the next round's, through
      // the await above).
      if (txsIn.length > 0) {
        reading = follower.read(position);
        reading.catch(() => undefined);
      }
      // Decoded a run at a time, the next run while this one is applied: the target's work and
      // this thread's decoding overlap, and the first transactions of a large backlog are applied
      // after one run is decoded rather than all of them.
      const runs = transactionRuns(txsIn, Math.max(o.groupRows ?? GROUP_ROWS, DECODE_GROUP));
      const changesOf = async (run: readonly (typeof txsIn)[number][]): Promise<GroupableTransaction[]> => {
        const decoded = await decodeAll(run.flatMap((t) => t.records), archive, o.phi === 'open');
        let at = 0;
        const txs: GroupableTransaction[] = [];
        for (const tx of run) {
          const changes: ReplicaChange[] = [];
          const versions: string[] = [];
          for (const r of tx.records) {
            const d = decoded[at++]!;
            const phiColumns = sealedSets.get(r.fingerprint) ?? (await sealedOf(r.fingerprint));
            changes.push({ op: d.op, table: r.table, schema: d.schema, before: d.before, after: d.after, position: r.position, phiColumns });
            versions.push(r.fingerprint);
          }
          txs.push({ position: tx.position, commitTsUs: tx.commitTsUs, changes, versions });
        }
        return txs;
      };
      // The next run is decoded once this thread is free (setImmediate): after the group in hand
      // has been built and sent, so the target applies it while this thread decodes. Started at
      // once instead, the decoding's first synchronous stretch (a few thousand records read before
      // its first await) ran before the group was sent, and the target waited for it.
      const decodeLater = (run: readonly (typeof txsIn)[number][]) => new Promise<void>((resolve) => setImmediate(resolve)).then(() => changesOf(run));
      let next = runs.length > 0 ? changesOf(runs[0]!) : null;
      for (let i = 0; next && !o.signal.aborted; i++) {
        const txs = await next;
        round.lap('decodeMs');
        next = i + 1 < runs.length ? decodeLater(runs[i + 1]!) : null;
        next?.catch(() => undefined); // a failure of the next run is met when it is awaited
        for (const group of groupTransactions(txs, o.groupRows ?? GROUP_ROWS)) {
          const count = group.transactions ?? 1;
          if (o.phi === 'open') await auditOpening(o, group.changes, audited, group.position, group.commitTsUs);
          const { rows } = await o.target.apply(name, group, position, o.phi);
          position = group.position;
          commitTsUs = group.commitTsUs;
          applied += count;
          stats.transactions += count;
          stats.rows += rows;
          stats.sinceRows += rows;
          stats.lagTransactions -= count;
          stats.oldestUs = txsIn[applied]?.commitTsUs ?? plan.oldestInFlightUs;
          reportWhenDue();
          // A stop asked for between transactions is honoured at once (each is whole in the target).
          if (o.signal.aborted) break;
        }
        round.lap('applyMs');
      }
      // A hole after what was applied: the replica stops there, never applying around it.
      if (txsIn.length > 0) round.log({ transactions: applied, records: txsIn.reduce((n, t) => n + t.records.length, 0), objects: follower.lastRead?.objects ?? 0, indexMs: follower.lastRead?.indexMs ?? 0, objectsMs: follower.lastRead?.objectsMs ?? 0 });
      if (plan.stop && !o.signal.aborted && txsIn.length === plan.transactions.length) throw plan.stop;
      backoff.reset();
      pendingSince = { table: null, since: 0 };
    } catch (err) {
      // A read under way is let finish (it changes nothing on failure) before the next starts.
      await reading?.catch(() => undefined);
      reading = null;
      if (!(err instanceof ChartlogError)) throw err;
      // A failure whose table's new base may still come (tableAwaitingBase: a PostgreSQL RENAME
      // TO, whose new name's changes come before its base; a column added with values not
      // captured, met before the run recorded the rewrite's window): the replica waits for the
      // base (which then supersedes those changes) while a resync is under way, or baseWaitMs;
      // then it stops as before.
      const missing = err.retriable ? null : await awaitingBase(o.store, name, err, follower.lastIndex, pendingSince, baseWaitMs(o.source, err));
      if (missing) {
        if (pendingSince.table !== missing) {
          log.warn(
            { table: missing },
            err instanceof UnknownOlderRowsError
              ? `${err.message}: waiting for the table's new base (chartlog run re-reads a table rewritten without row events once a catalog reading finds it)`
              : `a change of ${missing} meets no row of the replica: waiting for its new base (a table renamed at the source is re-read under its new name)`,
          );
        }
        pendingSince = { table: missing, since: pendingSince.table === missing ? pendingSince.since : performance.now() };
        await sleep(pollMs, o.signal).catch(() => undefined);
        continue;
      }
      if (!(err.retriable || vanishedPart(err))) throw err;
      const delay = backoff.next()!;
      log.warn({ err: err.message, retryInMs: Math.round(delay) }, 'replication round failed; retrying');
      await sleep(delay, o.signal).catch(() => undefined);
      continue;
    }
    reportWhenDue();
    // Nothing applied: the next read once the checkpoint moves (looked at every checkpointLookMs), or after the poll interval.
    if (applied === 0 && !follower.behind) await follower.waitForCheckpoint(pollMs, Math.min(checkpointLookMs, pollMs), o.signal);
  }
  await reading?.catch(() => undefined);
  const last = report('stopped');
  await states.settle();
  return last;
}

/**
 * Writes each status to the replica's state object (`record` given), one write at a time: a
 * write still in flight when the next status comes is followed by the newest one only. A failed
 * write is logged and dropped: the state is informational, and the replica must not stop for it.
 */
class ReplicaStateWriter {
  private inFlight: Promise<void> | null = null;
  private next: ReplicaState | null = null;
  /** The replica's status now, once the session has one (set by the session after its start). */
  current: (() => ReplicaStatus) | undefined;

  constructor(
    private readonly o: ReplicateOptions,
    private readonly statusEveryMs: number,
  ) {}

  write(s: ReplicaStatus, status: ReplicaState['status'], err?: unknown): void {
    const r = this.o.record;
    if (!r) return;
    this.next = {
      version: 1,
      name: r.name,
      source: s.source,
      target: r.location,
      phi: s.phi,
      status,
      ...(status === 'failed' ? { reason: failureReason(err) } : {}),
      position: s.position,
      commitTime: s.commitTime,
      lagSeconds: s.lagSeconds,
      lagTransactions: s.lagTransactions,
      intervalSeconds: this.statusEveryMs / 1000,
      updatedAt: s.at,
    };
    this.inFlight ??= this.drain();
  }

  /** Resolves once every status given so far is written (or its write has failed). */
  async settle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private async drain(): Promise<void> {
    for (let state = this.next; state; state = this.next) {
      this.next = null;
      try {
        await writeReplicaState(this.o.store, state);
      } catch (err) {
        logger().child({ component: 'replicate', source: state.source }).warn({ err: (err as Error).message, replica: state.name }, 'could not record the replica state for `chartlog timeline`; continuing');
      }
    }
    this.inFlight = null;
  }
}

/**
 * Why a replica stopped, for its state object: chartlog's own message when the archive refused
 * (integrity: a gap, missing events, a failed check), which names positions, tables and objects
 * only; for anything else only the kind of error, since a database's message can quote a value.
 */
function failureReason(err: unknown): string {
  if (err instanceof ChartlogError && err.code === 'integrity') return err.message;
  if (err instanceof ChartlogError) return `${err.code} error (the replicator's log has the message)`;
  return "unexpected error (the replicator's log has the message)";
}

/**
 * An object listed in the index that was gone when read: the compactor closed its hour (parts
 * merged into segments, then deleted) between the listing and the read. A fresh index finds it.
 */
function vanishedPart(err: ChartlogError): boolean {
  return err.code === 'integrity' && /is listed in the archive but missing from the store/.test(err.message) && /\/parts\//.test(err.message);
}

async function decodeAll(records: readonly StoredRecord[], archive: ArchiveCodec, open: boolean) {
  const out = [];
  for (let i = 0; i < records.length; i += DECODE_GROUP) {
    const decoded = await archive.codec.decodeMany(
      records.slice(i, i + DECODE_GROUP).map((r) => r.message),
      { open },
    );
    for (const d of decoded) out.push(d.event);
  }
  return out;
}

/**
 * The table to wait for (tableAwaitingBase) while a table resync is under way in the archive (a
 * table-snapshots/ folder with progress and no manifest yet) or for `waitMs` since the first
 * such failure; otherwise null (stop).
 */
async function awaitingBase(store: ObjectStore, source: string, err: ChartlogError, index: ArchiveIndex | null, pending: { table: string | null; since: number }, waitMs: number): Promise<string | null> {
  const table = tableAwaitingBase(err, index);
  if (!table) return null;
  if (pending.table !== table || performance.now() - pending.since < waitMs) return table;
  const folders = new Map<string, Set<string>>();
  for await (const o of store.listAll(tableSnapshotsPrefix(source))) {
    const [id, file] = o.key.slice(tableSnapshotsPrefix(source).length).split('/');
    if (!id || !file) continue;
    const set = folders.get(id) ?? new Set<string>();
    set.add(file);
    folders.set(id, set);
  }
  return [...folders.values()].some((f) => f.has('progress.json') && !f.has('manifest.json')) ? table : null;
}

/**
 * Rebuilds one table of the replica from a new base (TableReplacement): the base's rows and the
 * table's changes after the base up to the replica's position (none when the replica is still
 * before the base; its later changes up to the base are then dropped: inBase), in one target
 * transaction. Returns the rows written.
 */
async function rebuildTable(
  o: ReplicateOptions,
  archive: ArchiveCodec,
  index: ArchiveIndex,
  table: string,
  base: SnapshotManifest,
  position: Position,
  sealedOf: (fingerprint: string) => Promise<ReadonlySet<string>>,
  audited: Set<string>,
  commitTsUs: bigint,
): Promise<number> {
  const reader = new ArchiveReader(o.store, index, archive.envelopes);
  const open = o.phi === 'open';
  const version = (await archive.schemas.resolve(BigInt(`0x${base.tables[table]!.fingerprint}`))).version;
  const basePosition = Position.parse(base.position);
  const toChanges = async (records: readonly StoredRecord[]): Promise<ReplicaChange[]> => {
    const decoded = await decodeAll(records, archive, open);
    const out: ReplicaChange[] = [];
    for (let i = 0; i < records.length; i++) {
      const d = decoded[i]!;
      out.push({ op: d.op, table, schema: d.schema, before: d.before, after: d.after, position: records[i]!.position, phiColumns: await sealedOf(records[i]!.fingerprint) });
    }
    return out;
  };
  const laterRecords =
    Position.compare(position, basePosition) > 0
      ? (await reader.tableRecords(table, basePosition)).filter((r) => Position.compare(r.position, position) <= 0).sort((a, b) => Position.compare(a.position, b.position))
      : [];
  const later = await toChanges(laterRecords);
  const shape: ReplicaChange = { op: 'r', table, schema: version.table, before: null, after: null, position: basePosition, phiColumns: version.sealed };
  if (open) await auditOpening(o, [shape, ...later], audited, position, commitTsUs);
  async function* rows(): AsyncGenerator<ReplicaChange[]> {
    for await (const batch of reader.snapshotRecordBatches(base, table)) {
      for (let i = 0; i < batch.length; i += DECODE_GROUP) yield toChanges(batch.slice(i, i + DECODE_GROUP));
    }
  }
  const { rows: written } = await o.target.replaceTable!(o.source.name, { table, baseId: base.id, schema: version.table, phiColumns: version.sealed, rows: rows(), later, position, basePosition }, o.phi);
  return written;
}

/**
 * The position an empty replica is loaded to: the newest whole transaction at or before the
 * checkpoint (a checkpoint naming a piece of a large transaction is not whole), or the newest
 * base snapshot when no transaction follows it.
 */
async function loadPosition(store: ObjectStore, index: ArchiveIndex, archive: ArchiveCodec): Promise<{ position: Position; commitTsUs: bigint }> {
  const cp = index.checkpoint;
  const snapshot = index.snapshots.at(-1);
  if (!cp || !snapshot) {
    throw usageError(`source ${index.source} has nothing to replicate yet (${snapshot ? 'no durable commit' : 'no base snapshot'})`, 'run `chartlog run` until it has written its first snapshot; `chartlog timeline` shows the range');
  }
  const reader = new ArchiveReader(store, index, archive.envelopes);
  const from = { position: Position.parse(snapshot.position), commitTsUs: BigInt(snapshot.commitTsUs) };
  // The log read as it streams, up to the checkpoint: a day of it can be millions of transactions.
  return reader.foldTransactions(from.position, () => {
    let best = from;
    return {
      push: (t) => {
        const p = Position.parse(t.pos);
        if (Position.compare(p, cp.position) > 0) return false;
        if (p.seq === COMMIT_SEQ) best = { position: p, commitTsUs: BigInt(t.commitTsUs) };
        return true;
      },
      result: () => best,
    };
  });
}

/**
 * One audit record per replica session for the PHI it opens, written before the first opened
 * value leaves the process; another only when a table or PHI column not yet recorded appears.
 */
async function auditOpening(o: ReplicateOptions, changes: readonly ReplicaChange[], audited: Set<string>, position: Position, commitTsUs: bigint): Promise<void> {
  const fresh = new Map<string, Set<string>>();
  for (const c of changes) {
    for (const col of c.phiColumns) {
      if (audited.has(`${c.table}\u0000${col}`)) continue;
      const set = fresh.get(c.table) ?? new Set<string>();
      set.add(col);
      fresh.set(c.table, set);
    }
  }
  if (fresh.size === 0) return;
  const key = await appendAuditRecord(o.store, {
    version: 1,
    at: new Date().toISOString(),
    action: 'replicate',
    who: currentUser(),
    source: o.source.name,
    tables: [...fresh].map(([table, cols]) => ({ table, phiColumns: [...cols].sort() })),
    requested: `replicate --phi open into ${o.target.description}`,
    restoredTo: { position: Position.format(position), commitTime: formatUs(commitTsUs) },
    target: o.target.description,
  });
  for (const [table, cols] of fresh) for (const col of cols) audited.add(`${table}\u0000${col}`);
  logger().child({ component: 'replicate', source: o.source.name }).info({ audit: key }, 'PHI opened for the replica: audit record written');
}
