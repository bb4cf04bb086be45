import { randomBytes } from 'node:crypto';
import type { RecordTableStart } from '../../src/core/table-start.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { logger as rootLogger, type Logger } from '../../src/core/logger.js';
import type { RequestResync, ResyncRequest } from '../../src/core/resync-request.js';
import type { CatalogStates } from '../../src/core/catalog-state.js';
import { catalogMemoryKey, parseCatalogMemory, storeCatalogMemory, type CatalogMemory, type VersionColumns } from './catalog-memory.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import { Backoff, gaveUp, sleep, type ReconnectPolicy } from '../../src/core/retry.js';
import type {
  ArchiveClaim,
  ConnectorCapabilities,
  SampledRow,
  SnapshotOptions,
  SourceConnector,
  StreamOptions,
} from '../../src/core/source-connector.js';
import { qualifiedName, type TableSchema } from '../../src/core/table-schema.js';
import { TlsPreference, type TlsSettings } from '../../src/core/tls-settings.js';
import { skipThrough, statusLsn, type AckProgress } from './ack-policy.js';
import { capturedTables } from './captured-tables.js';
import { sampleRows } from './sample-rows.js';
import { clientConfig, serverHasNoTls } from './connection-settings.js';
import { lsnHex, lsnOfPosition, maxLsn, parseLsn, POSTGRES_COMMIT_TIME_RESOLUTION_US, type Lsn } from './lsn.js';
import {
  applyRelation,
  convertChange,
  convertInsert,
  initialConverterState,
  type ChangeMessage,
  type ConverterState,
} from './pgoutput-converter.js';
import { decodePgoutput, insertRelationOid, TAG_INSERT, type PgMessage } from './pgoutput-decoder.js';
import { connectionError, ReplicationSession, type SessionItem } from './replication-session.js';
import { RewriteWatch } from './rewrite-watch.js';
import { COLUMN_READING_SQL, ColumnWatch, attnumsOf, columnReadings } from './column-watch.js';
import { renamedPrevious, versionBeforeStop, withRenames } from './column-renames.js';
import { RELFILE_READING_SQL, relfileReading } from './relfile-reading.js';
import { checkSetup, ensurePublication, publishedTables, type SetupNames } from './setup-check.js';
import { ownSlotName, planSlot, slotBase, type SlotPlan } from './slot-ownership.js';
import { takeSnapshot } from './snapshot.js';
import { TransactionBuffer } from '../../src/core/transaction-buffer.js';
import { TypeCatalog, type DescribedTable, type Queryable } from './type-catalog.js';
import { isBuiltinType } from './type-parsers.js';

/**
 * PostgreSQL as a SourceConnector: a consistent snapshot from an exported slot snapshot, then
 * the slot's pgoutput stream, one ChangeBatch per transaction.
 *
 * Positions. A transaction's position has, as its commit part, the transaction's commit END
 * LSN (pgoutput's commit.end_lsn) as 16 hex digits — not the commit record's start LSN —
 * because that is the LSN to confirm to the slot once the transaction is durable: it needs no
 * map from positions to LSNs, survives restarts, and orders transactions exactly as their
 * commits do. Events carry (commit end, index in transaction). Snapshot batches carry the slot's
 * consistent point; every streamed transaction ends after it.
 *
 * Acknowledgement (docs/architecture.md §1). Only `acknowledge()` moves what the server is told beyond the
 * slot's own confirmed position. Keepalives are answered with the last acknowledged LSN; only
 * when everything received has been acknowledged and no transaction is open may the reply carry
 * the server's position (so an idle slot advances and a fast shutdown can finish). The last
 * delivered position is remembered and transactions at or below it are skipped after a
 * reconnect, since PostgreSQL 15 can move a slot's confirmed_flush_lsn back after a restart.
 *
 * Large transactions arrive whole at commit (pgoutput v1). Their messages are held by a
 * TransactionBuffer, spilled to disk past `spillThresholdBytes`, and delivered in batches of at
 * most `maxBatchEvents` events: every batch but the last is `partial`, with the position of its
 * last event; the last has the transaction's position. Acknowledging a partial batch confirms
 * nothing to the server (a transaction is confirmed whole), but `stream({ from })` with such a
 * position resumes inside that transaction, after the given event.
 */
/** The slice of a source's configuration (src/config/schema.ts) this connector reads. */
export interface PostgresSourceSettings {
  readonly name: string;
  readonly url: string;
  readonly tables?: readonly string[];
  readonly tls: TlsSettings;
  readonly postgres: {
    readonly slotName?: string;
    readonly publicationName?: string;
    readonly heartbeatIntervalMs: number;
    readonly slotLagWarnBytes: number;
    /** How often the catalog is read for rewrites and drops (default 10 s); `deps.rewriteCheckIntervalMs` wins (tests). */
    readonly catalogCheckIntervalMs?: number;
    readonly spillThresholdBytes: number;
    /** Tables that take inserts only and may lack a replica identity (setup-check.ts). */
    readonly insertOnlyTables?: readonly string[];
  };
  readonly snapshot: { readonly chunkRows: number; readonly connections?: number };
  /** Backoff between reconnects, and attempts in a row before giving up (default: never). */
  readonly reconnect?: ReconnectPolicy;
}

export interface PostgresConnectorDeps {
  /** Records a captured table's start (CREATE TABLE) in the archive (src/core/table-start.ts). */
  readonly recordTableStart?: RecordTableStart;
  readonly logger?: Logger;
  /** Directory for spilled transactions. Default: <tmpdir>/chartlog-spill. */
  readonly spillDir?: string;
  /** Events per delivered batch before a transaction is split into partial batches. Default MAX_BATCH_EVENTS. */
  readonly maxBatchEvents?: number;
  /** How often the replication connection reports status and asks for a reply. Default 10 s. */
  readonly statusIntervalMs?: number;
  /** Reconnect when the server has said nothing for this long while chartlog waited. Default 60 s. */
  readonly idleTimeoutMs?: number;
  /**
   * Asks the pipeline to re-read tables whose rows changed without row events (a table rewrite:
   * rewrite-watch.ts). Without it such a table is only logged, with the command to run by hand.
   */
  readonly requestResync?: RequestResync;
  /** How often the captured tables are read from the catalog (rewrites, drops) besides at relation messages. Default 10 s. */
  readonly rewriteCheckIntervalMs?: number;
  /** The catalog as the archive last recorded it (catalog-memory.ts): changes made while stopped are found at start. */
  readonly catalogStates?: CatalogStates;
}

type Progress = { -readonly [K in keyof AckProgress]: AckProgress[K] };

type Begin = Extract<PgMessage, { tag: 'begin' }>;
/** A captured table's history ending: found gone from the catalog (DROP TABLE), under a new name (`renamedTo`), or attached as a partition of a captured table (`attachedTo`). */
type TableEnd = { oid: number; table: string; atLsn: Lsn; timeUs: bigint; renamedTo?: string; attachedTo?: string };
type Commit = Extract<PgMessage, { tag: 'commit' }>;

/**
 * Received replication messages queued ahead of the connector (replication-session.ts): enough
 * for the server to decode a few 10k-row transactions while the pipeline encodes and writes the
 * one before, small beside a transaction's own spill threshold.
 */
const SESSION_QUEUE_BYTES = 8 * 1024 * 1024;

/**
 * Events per delivered batch: a larger transaction goes out in partial batches. Every event of a
 * batch is alive from its decoding until the batch is encoded, so with the bin's small young
 * generation (--max-semi-space-size=4) the events of a 10 000-event batch all survived into the
 * old generation; at 2 500 fewer do: 11–15 % less CPU per row and 6–33 MiB less peak RSS over
 * a 200k-row backlog of 10k-row transactions (loaded runs back to back, benchmarks/README.md).
 * At 1 000 fewer still: 20.8 against 23.1 µs of CPU per row and 314 against 323 MiB peak RSS
 * over a 500k-row backlog (same run, loaded); 500 gave nothing more (22.3 against 22.2 µs/row
 * for 1 000, the next run). The batches' own cost (one crypto hand-off, one bus batch each) is
 * small beside it. The MySQL/MariaDB connector keeps 2 500.
 */
const MAX_BATCH_EVENTS = 1_000;

const CHANGE_TAGS = new Set(['insert', 'update', 'delete', 'truncate']);
/** pgoutput message type bytes: B, C, R, M, O. */
const TAG_BEGIN = 0x42;
const TAG_COMMIT = 0x43;
const TAG_RELATION = 0x52;
const TAG_MESSAGE = 0x4d;
const TAG_ORIGIN = 0x4f;

export class PostgresConnector implements SourceConnector {
  /** Microseconds: see POSTGRES_COMMIT_TIME_RESOLUTION_US. */
  static readonly commitTimeResolutionUs = POSTGRES_COMMIT_TIME_RESOLUTION_US;
  readonly name: string;
  readonly capabilities: ConnectorCapabilities = {
    beforeImage: 'key',
    truncate: true,
    snapshot: true,
    unchangedValues: true,
  };

  /** The slot in use changes once a claim decides it (slot-ownership.ts). */
  private names: SetupNames;
  /** The slot name from before owners were recorded: the configured one, or chartlog_<source>. */
  private readonly legacySlot: string;
  /** Slot names of this source are `<base>_<archive id>`. */
  private readonly slotBase: string;
  private claimed: ArchiveClaim | null = null;
  private readonly tls: TlsPreference;
  private readonly log: Logger;
  private readonly catalog: TypeCatalog;
  private readonly maxBatchEvents: number;
  private readonly spillDir: string;
  private readonly progress: Progress = { ackTarget: 0n, confirmed: 0n, inTx: false, highestDataCommit: 0n };
  private session: ReplicationSession | null = null;
  private closed = false;
  /** Aborted by close(), so a stream waiting out a reconnect delay stops at once. */
  private readonly closing = new AbortController();

  constructor(
    private readonly config: PostgresSourceSettings,
    private readonly deps: PostgresConnectorDeps = {},
  ) {
    this.name = config.name;
    const defaultName = `chartlog_${config.name.replace(/-/g, '_')}`;
    this.legacySlot = config.postgres.slotName ?? defaultName;
    this.slotBase = slotBase(this.legacySlot);
    this.names = Object.freeze({
      slot: this.legacySlot,
      publication: config.postgres.publicationName ?? defaultName,
      tables: config.tables,
      insertOnly: config.postgres.insertOnlyTables ?? [],
    });
    this.log = (deps.logger ?? rootLogger()).child({ source: config.name, connector: 'postgres' });
    this.catalog = new TypeCatalog(this.log);
    this.tls = new TlsPreference(config.name, config.tls.mode, this.log);
    this.maxBatchEvents = deps.maxBatchEvents ?? MAX_BATCH_EVENTS;
    this.spillDir = deps.spillDir ?? join(tmpdir(), 'chartlog-spill');
  }

  /**
   * Slot and publication names this connector uses. The slot is the configured one until a
   * claim (claim()) decides this archive's: `<base>_<archive id>`, or an adopted legacy slot.
   */
  get slotName(): string {
    return this.names.slot;
  }
  get publicationName(): string {
    return this.names.publication;
  }

  async check(): Promise<void> {
    const db = await this.connect(false);
    try {
      await checkSetup(asQueryable(db), this.names);
    } finally {
      await db.end().catch(() => undefined);
    }
  }

  /**
   * Slot ownership (slot-ownership.ts): decides which slot this archive uses and refuses, with a
   * 'config' error (exit 2), a slot of another archive. Reads only; snapshot() and stream()
   * decide again when they act.
   */
  async claim(claim: ArchiveClaim): Promise<void> {
    const db = await this.connect(false);
    try {
      const plan = await this.planSlot(asQueryable(db), claim);
      this.claimed = claim;
      this.log.info(
        { slot: plan.slot, archive: claim.archiveId, exists: plan.exists, adoptedLegacy: plan.adoptedLegacy, ...(plan.drop.length ? { takeOver: plan.drop } : {}) },
        plan.adoptedLegacy ? 'replication slot from before owners were recorded: adopted by this archive (the store has its checkpoint)' : "this archive's replication slot",
      );
      if (plan.others.length > 0) {
        this.log.warn({ slots: plan.others }, 'replication slots of other archives of this source hold WAL for them: drop the ones no archive uses');
      }
    } finally {
      await db.end().catch(() => undefined);
    }
  }

  async tables(): Promise<readonly TableSchema[]> {
    const db = await this.connect(false);
    try {
      return await capturedTables(asQueryable(db), this.catalog, { tables: this.names.tables, publication: this.names.publication });
    } catch (err) {
      throw classify(err);
    } finally {
      await db.end().catch(() => undefined);
    }
  }

  async sample(table: TableSchema, limit: number): Promise<readonly SampledRow[]> {
    const db = await this.connect(false);
    try {
      return await sampleRows(asQueryable(db), table, limit);
    } catch (err) {
      throw classify(err);
    } finally {
      await db.end().catch(() => undefined);
    }
  }

  async *snapshot(options: SnapshotOptions = {}): AsyncGenerator<ChangeBatch> {
    if (options.alongsideStream) {
      // `chartlog resync`: a temporary slot of its own gives the exported snapshot and its LSN;
      // the stream's slot and the publication are not touched.
      if (!options.tables || options.tables.length === 0) throw new ChartlogError('internal', 'a snapshot alongside the stream needs its tables named');
      yield* takeSnapshot({
        source: this.name,
        slot: `chartlog_resync_${process.pid}_${randomBytes(4).toString('hex')}`,
        temporary: true,
        tables: options.tables,
        chunkRows: options.chunkRows ?? this.config.snapshot.chunkRows,
        ...(options.signal ? { signal: options.signal } : {}),
        catalog: this.catalog,
        connect: (replication) => this.connect(replication),
        log: this.log,
      });
      return;
    }
    const db = await this.connect(false);
    let tables: readonly string[];
    try {
      const q = asQueryable(db);
      const plan = this.claimed ? await this.planSlot(q, this.claimed) : null;
      const state = await checkSetup(q, this.names);
      await ensurePublication(q, this.names, state);
      // A new snapshot needs a new slot (see snapshot.ts); the old one would only hold WAL.
      // Under a claim that is always this archive's own: an adopted legacy slot is replaced by
      // it, and slots of other archives are dropped only on --take-over-slot (in plan.drop).
      const old = plan ? [...plan.drop, ...(plan.exists ? [plan.slot] : [])] : state.slotExists ? [this.names.slot] : [];
      await this.dropSlots(q, old, plan?.drop ?? []);
      if (this.claimed) this.names = Object.freeze({ ...this.names, slot: ownSlotName(this.slotBase, this.claimed.archiveId) });
      tables = options.tables ?? this.names.tables ?? (await publishedTables(q, this.names.publication));
    } finally {
      await db.end().catch(() => undefined);
    }
    yield* takeSnapshot({
      source: this.name,
      slot: this.names.slot,
      tables,
      chunkRows: options.chunkRows ?? this.config.snapshot.chunkRows,
      connections: this.config.snapshot.connections ?? 1,
      ...(options.signal ? { signal: options.signal } : {}),
      catalog: this.catalog,
      connect: (replication) => this.connect(replication),
      log: this.log,
      // A whole-source snapshot is the stream's new start: the catalog it was read under is recorded with it.
      ...(options.tables ? {} : { atConsistentPoint: (q, at, timeUs) => this.rememberSnapshotCatalog(q, tables, at, timeUs) }),
    });
  }

  async *stream(options: StreamOptions): AsyncGenerator<ChangeBatch> {
    const signal = options.signal;
    if (options.from) lsnOfPosition(options.from); // a position of another source fails here, clearly
    let resumeAfter: Position | null = options.from;
    const backoff = new Backoff(this.config.reconnect);
    // A reconnect delay ends early on the caller's stop and on close().
    const stopWaiting = signal ? AbortSignal.any([signal, this.closing.signal]) : this.closing.signal;
    while (!signal?.aborted && !this.closed) {
      let session: ReplicationSession | null = null;
      let db: pg.Client | null = null;
      let heartbeat: NodeJS.Timeout | null = null;
      let rewriteTimer: NodeJS.Timeout | null = null;
      const buffer = new TransactionBuffer({
        spillThresholdBytes: this.config.postgres.spillThresholdBytes,
        spillDir: this.spillDir,
      });
      try {
        db = await this.connect(false);
        const q = asQueryable(db);
        const plan = this.claimed ? await this.planSlot(q, this.claimed) : null;
        const setup = await checkSetup(q, this.names);
        await ensurePublication(q, this.names, setup);
        let slotConfirmed = setup.slotConfirmedFlush;
        if (!setup.slotExists) {
          if (resumeAfter !== null) {
            // Checked before anything is dropped: a slot made now would skip what happened since.
            throw new ChartlogError('source_setup', `replication slot ${this.names.slot} is gone`, {
              hint: 'the changes since the last backup position cannot be read any more; take a new base snapshot: chartlog snapshot --from-source, then chartlog run',
            });
          }
          await this.dropSlots(q, plan?.drop ?? [], plan?.drop ?? []);
          const created = await q.query(`SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`, [this.names.slot]);
          slotConfirmed = parseLsn(created.rows[0]!.lsn!);
          this.log.info({ slot: this.names.slot }, 'created replication slot (no snapshot: streaming from now)');
        }
        this.progress.confirmed = maxLsn(this.progress.confirmed, slotConfirmed ?? 0n);
        this.progress.highestDataCommit = 0n;
        this.progress.inTx = false;

        session = new ReplicationSession({
          clientConfig: this.clientConfig(),
          slot: this.names.slot,
          publication: this.names.publication,
          statusLsn: (server, caughtUp) => this.statusLsn(server, caughtUp),
          statusIntervalMs: this.deps.statusIntervalMs ?? 10_000,
          idleTimeoutMs: this.deps.idleTimeoutMs ?? 60_000,
          queueBytes: SESSION_QUEUE_BYTES,
          log: this.log,
        });
        this.session = session;
        await session.start();
        session.report(false); // acknowledgements made while disconnected
        heartbeat = this.startHeartbeat(q);
        const captured = await capturedTables(q, this.catalog, { tables: this.names.tables, publication: this.names.publication });
        if (!this.seeded) {
          for (const t of captured) this.seenVersions.set(qualifiedName(t), t);
          this.seeded = true;
        }
        if (resumeAfter) this.streamedUpTo = maxLsn(this.streamedUpTo, lsnOfPosition(resumeAfter));
        // The catalog the archive last recorded is the baseline of the first reading of this process.
        const recalling = !this.recalled;
        if (recalling) {
          await this.recall(q, resumeAfter, captured);
          this.recalled = true;
        }
        // The first reading is the baseline (unless recalled); after a reconnect, changes since are seen.
        this.comparingRecord = recalling;
        try {
          await this.readRelfiles(q, { names: captured.map(qualifiedName), oids: this.rewrites.oids() });
        } finally {
          this.comparingRecord = false;
        }
        // Column numbers as the stream starts, so the first relation message can show a rename.
        // And the columns of each table's version as the stream starts (unless recalled): what the archive is told of.
        for (const [oid, m] of await this.readAttnums(q, this.rewrites.oids())) {
          if (!this.attnums.has(oid)) this.attnums.set(oid, m);
          if (!this.versionColumns.has(oid)) this.versionColumns.set(oid, m);
        }
        await this.checkColumns(q, this.rewrites.oids());
 await this.checkTableStarts(q);
        // One check at a time: on a loaded server a check can outlast the interval, and ticks
        // fired regardless would queue their queries behind it on the one connection.
        let checking = false;
        rewriteTimer = setInterval(() => {
          if (checking) return;
          checking = true;
          void this.checkCatalog(q).finally(() => (checking = false));
        }, this.deps.rewriteCheckIntervalMs ?? this.config.postgres.catalogCheckIntervalMs ?? 10_000);
        rewriteTimer.unref();
        this.log.info({ slot: this.names.slot, from: resumeAfter ? Position.format(resumeAfter) : null }, 'streaming');
        backoff.reset();

        const conv = { state: initialConverterState as ConverterState };
        let begin: Begin | null = null;
        for (;;) {
          // A queued message is taken at once; only an empty queue costs a wait (and the race
          // with the abort signal), not every message of a backlog.
          if (!begin && this.endsReady.length > 0) {
            const batch = this.endBatch(conv.state, resumeAfter);
            if (batch) {
              resumeAfter = batch.position;
              this.streamedUpTo = maxLsn(this.streamedUpTo, lsnOfPosition(batch.position));
              yield batch;
            }
            continue;
          }
          const item = (signal?.aborted ? null : session.poll()) ?? (await nextItem(session, signal, this.endsWake.promise));
          if (item === 'wake') continue;
          if (item === null) return; // aborted
          if (item.kind === 'end') {
            if (item.error) throw item.error;
            return; // closed
          }
          // Only begin, commit and stray relation messages are decoded on arrival; a
          // transaction's own messages are decoded once, when it is replayed at commit.
          const tag = item.bytes[0];
          if (tag === TAG_BEGIN) {
            begin = decodePgoutput(item.bytes) as Begin;
            this.progress.inTx = true;
          } else if (tag === TAG_COMMIT) {
            const commit = decodePgoutput(item.bytes) as Commit;
            if (!begin) throw new ChartlogError('decode', 'commit without begin', { retriable: true });
            if (buffer.size > 0) this.progress.highestDataCommit = maxLsn(this.progress.highestDataCommit, commit.endLsn);
            for await (const batch of this.replay(begin, commit, buffer, conv, q, resumeAfter)) {
              resumeAfter = batch.position;
              this.streamedUpTo = maxLsn(this.streamedUpTo, lsnOfPosition(batch.position));
              yield batch;
            }
            begin = null;
            this.progress.inTx = false;
            this.decideRewrites(commit.endLsn);
          } else if (begin) {
            if (tag !== TAG_MESSAGE && tag !== TAG_ORIGIN && !buffer.tryAdd(item.bytes)) await buffer.add(item.bytes);
          } else if (tag === TAG_RELATION) {
            const msg = decodePgoutput(item.bytes) as Extract<PgMessage, { tag: 'relation' }>;
            conv.state = applyRelation(conv.state, msg, await this.describe(q, msg, conv.state.relations.get(msg.relationOid)?.table.schema)).state;
            await this.readRelfiles(q, { oids: [msg.relationOid] });
          }
          session.markConsumed();
        }
      } catch (err) {
        const e = classify(err);
        // Stopped while an attempt failed (a connect refused as the caller aborts): the caller
        // asked for the end, and a transient failure is no news to it. Fatal errors still tell.
        if (e.retriable && (signal?.aborted || this.closed)) return;
        const delay = !e.retriable ? null : backoff.next();
        if (delay === null) {
          const stop = e.retriable && backoff.exhausted ? gaveUp(e, backoff.attempts) : e;
          this.log.error({ err: stop }, 'PostgreSQL stream stopped');
          throw stop;
        }
        this.log.warn({ err: e, attempt: backoff.attempts, delayMs: delay }, 'PostgreSQL stream interrupted; reconnecting');
        await sleep(delay, stopWaiting);
      } finally {
        if (heartbeat) clearInterval(heartbeat);
        if (rewriteTimer) clearInterval(rewriteTimer);
        if (this.session === session) this.session = null;
        this.progress.inTx = false;
        await session?.stop();
        await db?.end().catch(() => undefined);
        await buffer.discard();
      }
    }
  }

  async acknowledge(position: Position): Promise<void> {
    // A partial batch: the server can only be told about whole transactions.
    if (position.seq !== COMMIT_SEQ) return;
    const lsn = lsnOfPosition(position);
    this.endsUnacked = this.endsUnacked.filter((e) => e > lsn);
    if (lsn <= this.progress.ackTarget) return;
    this.progress.ackTarget = lsn;
    this.session?.report(false);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    await this.session?.stop();
  }

  /** The slot plan under `claim` for the slots of this database now; refuses by throwing. */
  private async planSlot(q: Queryable, claim: ArchiveClaim): Promise<Extract<SlotPlan, { kind: 'use' }>> {
    let rows: Record<string, string | null>[];
    try {
      ({ rows } = await q.query(`SELECT slot_name, active FROM pg_replication_slots WHERE database = current_database() AND slot_type = 'logical'`));
    } catch (err) {
      throw classify(err);
    }
    const plan = planSlot({
      source: this.name,
      legacyName: this.legacySlot,
      base: this.slotBase,
      claim,
      slots: rows.map((r) => ({ name: r.slot_name ?? '', active: r.active === 't' })),
    });
    if (plan.kind === 'refuse') throw plan.error;
    this.names = Object.freeze({ ...this.names, slot: plan.slot });
    return plan;
  }

  /** Drops slots; `takenOver` are other archives' (--take-over-slot), logged as such. */
  private async dropSlots(q: Queryable, slots: readonly string[], takenOver: readonly string[]): Promise<void> {
    for (const slot of slots) {
      try {
        await q.query('SELECT pg_drop_replication_slot($1)', [slot]);
      } catch (err) {
        throw new ChartlogError('source_setup', `cannot drop replication slot ${slot}`, {
          cause: err,
          retriable: true,
          hint: 'stop the other process that streams from this slot (another chartlog run), then try again',
        });
      }
      if (takenOver.includes(slot)) this.log.warn({ slot }, 'dropped the replication slot of another archive (--take-over-slot): that archive no longer receives changes');
      else this.log.info({ slot }, 'dropped the old slot: a snapshot starts a new one');
    }
  }

  /** The LSN a status update may carry now (see the class comment). */
  private statusLsn(serverLsn: Lsn, caughtUp: boolean): Lsn {
    // Caught up outside a transaction: every commit the server decoded before `serverLsn` (a
    // keepalive's position) has been processed, so catalog readings up to it can be decided.
    if (caughtUp && !this.progress.inTx) this.decideRewrites(serverLsn);
    this.progress.confirmed = statusLsn(this.progress, serverLsn, caughtUp);
    return this.progress.confirmed;
  }

  /**
   * One committed transaction → batches. Relation messages are applied even in skipped
   * transactions: the server sends each relation once per connection.
   */
  private async *replay(
    begin: Begin,
    commit: Commit,
    buffer: TransactionBuffer,
    conv: { state: ConverterState },
    q: Queryable,
    resumeAfter: Position | null,
  ): AsyncGenerator<ChangeBatch> {
    const commitHex = lsnHex(commit.endLsn);
    // Events with seq <= skip were delivered before (or are older than `from`).
    const skip = skipThrough(commitHex, resumeAfter);
    const skipAll = skip === COMMIT_SEQ;
    const base = { source: this.name, txId: String(begin.xid), commitTsUs: begin.commitTimeUs, snapshot: false };
    let events: ChangeEvent[] = [];
    let schemaChanges: TableSchema[] = [];
    let seq = 0;
    let spilled = false;
    /** Tables truncated in this transaction with no row change of theirs after the truncate. */
    const truncatedHere = new Set<number>();
    /** Adds `e` to the batch; returns the full batch to deliver first, if any. */
    const add = (e: ChangeEvent): ChangeBatch | null => {
      let full: ChangeBatch | null = null;
      // A full batch goes out only when another event follows, so the transaction's last
      // batch is never empty.
      if (events.length >= this.maxBatchEvents) {
        const last = events[events.length - 1]!.position;
        full = { ...base, position: last, events, partial: true, ...(schemaChanges.length ? { schemaChanges } : {}) };
        events = [];
        schemaChanges = [];
      }
      events.push(e);
      return full;
    };
    for await (const chunk of buffer.drainChunks()) {
      spilled ||= buffer.spilled;
      for (const bytes of chunk) {
        if (bytes[0] === TAG_INSERT) {
          // Nearly every message of a backlog: straight from its bytes to the event (convertInsert).
          if (truncatedHere.size > 0) truncatedHere.delete(insertRelationOid(bytes));
          if (skipAll) continue;
          const e = convertInsert(conv.state, bytes, commitHex, seq++);
          if (e.position.seq <= skip) continue;
          const full = add(e);
          if (full) yield full;
          continue;
        }
        const msg = decodePgoutput(bytes);
        if (msg.tag === 'relation') {
          const r = applyRelation(conv.state, msg, await this.describe(q, msg, conv.state.relations.get(msg.relationOid)?.table.schema));
          conv.state = r.state;
          if (r.schemaChange && !skipAll) schemaChanges.push(r.schemaChange);
          // The archive has this version once this transaction is durable (catalog-memory.ts columns).
          const described = this.describedColumns.get(msg.relationOid);
          if (described) this.versionColumns.set(msg.relationOid, described);
          if (!skipAll) this.columnsDurableAt = maxLsn(this.columnsDurableAt, commit.endLsn);
          // A relation message follows an invalidation of the table, a rewrite among them.
          await this.readRelfiles(q, { oids: [msg.relationOid] });
        } else if (msg.tag === 'truncate') {
          for (const oid of msg.relationOids) truncatedHere.add(oid);
        } else if (msg.tag === 'insert' || msg.tag === 'update' || msg.tag === 'delete') {
          truncatedHere.delete(msg.relationOid);
        }
        if (msg.tag !== 'relation' && !skipAll && CHANGE_TAGS.has(msg.tag)) {
          const produced = convertChange(conv.state, msg as ChangeMessage, commitHex, seq);
          seq += produced.length;
          for (const e of produced) {
            if (e.position.seq <= skip) continue;
            const full = add(e);
            if (full) yield full;
          }
        }
      }
    }
    for (const oid of truncatedHere) this.rewrites.truncated(oid, String(begin.xid));
    if (skipAll) {
      this.log.debug({ position: commitHex }, 'transaction already delivered; skipped');
      return;
    }
    if (events.length === 0 && schemaChanges.length === 0 && seq === 0) return; // nothing in it for us
    if (seq > this.maxBatchEvents) {
      this.log.info({ position: commitHex, events: seq, spilled }, 'large transaction delivered in partial batches');
    }
    yield { ...base, position: Position.of(commitHex), events, ...(schemaChanges.length ? { schemaChanges } : {}) };
  }

  /**
   * `previous`: the version this connection knew; before the table's first relation message, the
   * version last seen by this process (or the catalogue's when the stream started). Columns new
   * since it are checked for what their older rows read (type-catalog.ts missingOf).
   */
  private async describe(q: Queryable, msg: Extract<PgMessage, { tag: 'relation' }>, previous?: TableSchema): Promise<DescribedTable> {
    // Types may have changed with the relation (ALTER TYPE … ADD VALUE): read them again.
    this.catalog.forget(msg.columns.map((c) => c.typeOid).filter((o) => !isBuiltinType(o)));
    const name = `${msg.schema}.${msg.table}`;
    const seen = previous ? undefined : this.seenVersions.get(name);
    // Compared with the version described before this one: a column replaced under its name.
    // RENAME COLUMN (column-renames.ts): the previous version is read under the new names, so a
    // renamed column keeps what it had and carries its earlier names.
    const attnumsNow = await this.checkColumns(q, [msg.relationOid]);
    const priorAttnums = this.attnums.get(msg.relationOid) ?? new Map<string, number>();
    const known = previous ?? seen;
    const prior = known ? renamedPrevious(known, msg.columns.map((c) => c.name), priorAttnums, attnumsNow.get(msg.relationOid) ?? new Map()) : undefined;
    if (prior && prior !== known) {
      const renamed = prior.columns.filter((c, i) => c.name !== known!.columns[i]!.name).map((c) => ({ from: c.renamedFrom?.[0], to: c.name }));
      this.log.info({ table: name, renamed }, 'columns renamed: kept as the same columns');
    }
    const plain = await this.catalog.describe(q, msg.relationOid, msg.schema, msg.table, msg.columns, prior, seen !== undefined && !this.fromStream.has(name));
    const described = { ...plain, schema: withRenames(plain.schema, prior) };
    const now = attnumsNow.get(msg.relationOid) ?? new Map<string, number>();
    this.describedColumns.set(msg.relationOid, new Map(described.schema.columns.filter((c) => now.has(c.name)).map((c) => [c.name, now.get(c.name)!])));
    this.attnums.set(msg.relationOid, new Map([...priorAttnums, ...now]));
    this.fromStream.add(name);
    this.seenVersions.set(name, described.schema);
    return described;
  }

  /** Per table OID, column name → attnum as last read (names of dropped columns may stay). */
  private readonly attnums = new Map<number, VersionColumns>();
  /** Per table OID, the columns (name → attnum) of the version last described. */
  private readonly describedColumns = new Map<number, VersionColumns>();
  /**
   * Per table OID, the columns of the version last handed on in a transaction (or recalled, or
   * read as the stream started): what the archive records in its catalog state, once every
   * transaction up to `columnsDurableAt` is acknowledged (a state ahead of the archive would hide
   * a rename the archive never got).
   */
  private readonly versionColumns = new Map<number, VersionColumns>();
  private columnsDurableAt: Lsn = 0n;

  /** Replaced columns and renamed enum values (column-watch.ts). */
  private readonly columnWatch = new ColumnWatch();

  /**
   * The catalog timer's check: table rewrites, replaced columns and renamed enum values, tables
   * begun or ended, then the catalog as read recorded in the archive. Each part fails alone and
   * is tried again at the next check.
   */
  private async checkCatalog(q: Queryable): Promise<void> {
    await this.readRelfiles(q, { oids: this.rewrites.oids() }).catch((err: unknown) => this.log.debug({ err }, 'relfilenode check failed'));
    await this.checkColumns(q, this.rewrites.oids()).catch((err: unknown) => this.log.warn({ err }, 'column check failed (tried again at the next check)'));
    await this.checkTableStarts(q).catch((err: unknown) => this.log.warn({ err }, 'table start check failed (tried again at the next check)'));
    await this.rememberCatalog().catch((err: unknown) => this.log.warn({ err }, 'cannot record the catalog in the archive (tried again at the next check)'));
  }

  /**
   * Reads the columns of `oids` and re-reads (resync with its window) each table whose stored
   * values changed with no row event: a column dropped and added again under its name, or an enum
   * value its columns use renamed (column-watch.ts).
   */
  private async checkColumns(q: Queryable, oids: readonly number[]): Promise<Map<number, VersionColumns>> {
    // Taken before the query: every commit the stream handed on by now is visible to it.
    const streamLsn = this.streamedUpTo;
    const read = await this.readColumns(q, oids);
    if (!read) return new Map();
    const known = (oid: number): VersionColumns | undefined => this.describedColumns.get(oid) ?? this.versionColumns.get(oid);
    for (const v of this.columnWatch.observe(read.readings, known, { streamLsn, timeUs: read.timeUs })) {
      const table = this.relNames.get(v.oid);
      if (!table) continue;
      this.catalog.forget(v.relabelled.map((l) => l.typeOid));
      const what = [
        ...(v.replaced.length > 0 ? [`column ${v.replaced.join(', ')} was dropped and added again under the same name (older rows hold the old column's values under it)`] : []),
        ...v.relabelled.map((l) => `enum value '${l.from}' was renamed to '${l.to}' (ALTER TYPE … RENAME VALUE: rows not changed since hold the old label)`),
      ].join('; ');
      // The window: after the last reading that showed the table as known, up to this one.
      const window = v.since
        ? { from: Position.of(lsnHex(v.since.streamLsn + 1n), 0), fromCommitTsUs: v.since.timeUs, seenAt: Position.of(lsnHex(parseLsn(read.atLsn)), 0) }
        : undefined;
      this.resyncOrWarn(table, `${what}: its rows are read again`, window);
    }
    return attnumsOf(read.readings);
  }

  /** The live columns of `oids` now (COLUMN_READING_SQL); null when there are none. */
  private async readColumns(q: Queryable, oids: readonly number[]): Promise<ReturnType<typeof columnReadings>> {
    return oids.length === 0 ? null : columnReadings((await q.query(COLUMN_READING_SQL, [oids])).rows);
  }

  /** The catalog's column numbers now, per table OID. */
  private async readAttnums(q: Queryable, oids: readonly number[]): Promise<Map<number, VersionColumns>> {
    const read = await this.readColumns(q, oids);
    return read ? attnumsOf(read.readings) : new Map();
  }

  /**
   * Per table, the last version this process described, seeded from the catalogue when the
   * stream first starts (a DDL made while chartlog was stopped is already in that seed: not seen).
   */
  private seenVersions = new Map<string, TableSchema>();
  private seeded = false;
  /** Tables whose seen version came from a relation message (not from the catalogue seed). */
  private readonly fromStream = new Set<string>();

  /** Table rewrites the stream does not carry (rewrite-watch.ts). */
  private readonly rewrites = new RewriteWatch();
  /** Rewrites whose windows the archive recorded after the catalog state this start compares with (rewriteMark). */
  private readonly recordedRewrites = new Set<string>();
  /** The newest commit end the stream has handed on: a commit a later catalog reading does not see ends after it. */
  private streamedUpTo: Lsn = 0n;
  /** Captured table OID → "schema.table" as last read. */
  private readonly relNames = new Map<number, string>();
  /** Tables found gone from the catalog, waiting for the stream to pass the reading. */
  private endsPending: TableEnd[] = [];
  /** ... and those the stream has passed (`after`: everything before it was processed). */
  private endsReady: (TableEnd & { after: Lsn })[] = [];
  private endsWake = wakeable();

  /**
   * DROP TABLE on PostgreSQL (logical decoding carries no DDL): a batch of its own with one 'x'
   * event per table found gone from the catalog. Its position is `after + 1` as a commit part:
   * `after` is an LSN before which the stream has processed every commit (a commit's end LSN, or
   * the position of a keepalive received when caught up), so every change of the table the stream
   * carried sorts before it, and every later transaction's commit end lies past it (a commit
   * record starts at or after `after` and is longer than one byte). Acknowledging it confirms
   * only what was processed. Its time is when the catalog read showed the table gone: the drop
   * happened before that, so a restore to any moment from then on does not create the table;
   * one between the real DROP and that read still does (it cannot be proved gone then).
   */
  private endBatch(state: ConverterState, resumeAfter: Position | null): ChangeBatch | null {
    const ends = this.endsReady;
    this.endsReady = [];
    this.endsWake = wakeable();
    let lsn = ends.reduce((m, e) => maxLsn(m, e.after), 0n) + 1n;
    if (resumeAfter) lsn = maxLsn(lsn, lsnOfPosition(resumeAfter) + 1n);
    const commit = lsnHex(lsn);
    const events: ChangeEvent[] = [];
    for (const e of ends) {
      // A renamed table's relation may already carry the new name: the end is the old name's.
      const current = state.relations.get(e.oid)?.table.schema;
      const schema = current && qualifiedName(current) === e.table ? current : (this.seenVersions.get(e.table) ?? (e.renamedTo ? undefined : current));
      if (!schema) continue;
      events.push({ op: 'x', schema, before: null, after: null, position: Position.of(commit, events.length) });
      if (e.renamedTo) this.log.info({ table: e.table, renamedTo: e.renamedTo }, 'table renamed (ALTER TABLE … RENAME TO): the old name\'s history ends here');
      else if (e.attachedTo) this.log.info({ table: e.table, attachedTo: e.attachedTo }, 'table attached as a partition (ALTER TABLE … ATTACH PARTITION): its history ends here, its rows are read again under the partitioned table');
      else this.log.warn({ table: e.table }, 'table gone from the catalog (DROP TABLE): recorded as its end');
    }
    if (events.length === 0) return null;
    this.endsUnacked.push(lsn);
    const timeUs = ends.reduce((m, e) => (e.timeUs > m ? e.timeUs : m), 0n);
    return { source: this.name, txId: null, position: Position.of(commit), commitTsUs: timeUs, snapshot: false, events };
  }

  /**
   * Reads the relfilenode of captured tables (by OID, and by name for the first reading) with
   * the server's WAL position at that moment, for the rewrite watch.
   *
   * Partitioned tables (captured as their root: the publication has publish_via_partition_root,
   * the snapshot reads the root) have no storage of their own, and ATTACH / DETACH / DROP of a
   * partition, or a partition rewritten or truncated alone (pgoutput does not publish a TRUNCATE
   * of one partition through its root), change the root's rows with no row events. So a root's
   * reading is the list of its partitions with their relfilenodes (relfile-reading.ts): any change
   * to it is a rewrite of the root, re-read by a resync — unless it is the stream's own TRUNCATE
   * of the root (every leaf then has that transaction's xmin). A captured table found to be a
   * partition of a published root was attached: its history ends like a dropped table's. A
   * partition of a root that is no longer one (DETACH) is re-read when it comes into scope
   * (checkTableStarts).
   */
  private async readRelfiles(q: Queryable, which: { oids: readonly number[]; names?: readonly string[] }): Promise<void> {
    if (which.oids.length === 0 && !which.names?.length) return;
    // Taken before the query: every commit the stream handed on by now is visible to it.
    const streamLsn = this.streamedUpTo;
    // One statement: every commit its catalog snapshot shows ended before pg_current_wal_lsn().
    const { rows } = await q.query(`${RELFILE_READING_SQL} AND (c.oid = ANY($1::oid[]) OR n.nspname || '.' || c.relname = ANY($2::text[]))`, [
      which.oids,
      which.names ?? [],
      this.names.publication,
    ]);
    // A statement after the catalog read: its WAL position follows every commit that read saw.
    const atLsn = parseLsn(rows[0]?.lsn ?? (await q.query('SELECT pg_current_wal_lsn() AS lsn')).rows[0]!.lsn!);
    const readings = rows.map(relfileReading);
    // Attached to a published root: its rows are the root's from now on.
    const present = new Set(readings.filter((r) => !r.attachedTo).map((r) => r.oid));
    for (const oid of which.oids) {
      if (present.has(oid) || this.endsPending.some((e) => e.oid === oid)) continue;
      // Gone from the catalog (dropped, DROP TABLE) or attached as a partition, before atLsn.
      // Recorded as its end once the stream has passed atLsn, so every change of it the stream
      // carries comes first.
      const table = this.relNames.get(oid);
      this.rewrites.forget(oid);
      this.columnWatch.forget(oid);
      const attachedTo = readings.find((r) => r.oid === oid)?.attachedTo;
      if (table) this.endsPending.push({ oid, table, atLsn, timeUs: BigInt(Date.now()) * 1000n, ...(attachedTo ? { attachedTo } : {}) });
    }
    const kept = readings.filter((r) => !r.attachedTo);
    for (const r of kept) {
      const before = this.relNames.get(r.oid);
      if (before !== undefined && before !== r.table && !this.endsPending.some((e) => e.oid === r.oid)) this.renamed(r.oid, before, r.table, atLsn);
      this.relNames.set(r.oid, r.table);
      if (r.partitions) {
        this.roots.add(r.oid);
        for (const p of r.partitions) this.partitionOf.set(p, r.table);
      }
    }
    // The statement's start: a commit its catalog snapshot did not see committed after it.
    const tsUs = rows[0]?.ts_us;
    this.rewrites.observe(kept, atLsn, tsUs ? { streamLsn, timeUs: BigInt(tsUs) } : undefined);
  }

  /** OIDs of captured partitioned tables (their readings are partition lists). */
  private readonly roots = new Set<number>();
  /**
   * "schema.table" of every partition read under a captured root → that root (DETACH). Entries
   * stay until the name comes into scope: a stale one (a partition dropped, its name reused by a
   * new table) costs a needless resync, never a missed one.
   */
  private readonly partitionOf = new Map<string, string>();

  /** The tables in scope at the last catalog reading of them, and when it was taken (table starts). */
  private scope: { names: ReadonlySet<string>; streamLsn: Lsn; fromUs: bigint } | null = null;
  private scopeChecking = false;

  /**
   * CREATE TABLE on PostgreSQL (logical decoding carries no DDL): each catalog check lists the
   * tables in scope (the configured names that exist, else the publication's tables); one not in
   * the previous list started between the two readings. Its start is recorded with those bounds
   * (src/core/table-start.ts): it did not exist when the previous reading's snapshot was taken —
   * after its statement time, and after every commit the stream had handed on by then — and did
   * exist before this reading's clock time and WAL position. A restore between the two is refused
   * for the table rather than guessed. The first reading (at start) is the baseline: a table
   * created while chartlog was stopped gets no record, and restores as before.
   */
  private async checkTableStarts(q: Queryable): Promise<void> {
    if (!this.deps.recordTableStart || this.scopeChecking) return;
    this.scopeChecking = true;
    try {
      // Taken before the query: every commit the stream handed on by now is visible to it.
      const streamLsn = this.streamedUpTo;
      const r = await this.readScope(q);
      const names = new Set(JSON.parse(r.names ?? '[]') as string[]);
      const previous = this.scope;
      if (previous) {
        for (const table of names) {
          if (previous.names.has(table)) continue;
          const start = {
            table,
            from: Position.of(lsnHex(previous.streamLsn + 1n), 0),
            fromCommitTsUs: previous.fromUs,
            seenAt: Position.of(lsnHex(parseLsn(r.lsn!)), 0),
            seenAtCommitTsUs: BigInt(r.seen_us!),
          };
          // A failed write leaves the previous reading in place: the next check records it.
          await this.deps.recordTableStart(start);
          const detachedFrom = this.partitionOf.get(table);
          if (detachedFrom === undefined) {
            this.log.info({ table, from: Position.format(start.from), seenAt: Position.format(start.seenAt) }, 'table created (found by the catalog check): its start recorded');
            continue;
          }
          // DETACH PARTITION: the table starts with the rows it had as a partition, which no
          // row event carries. Read them by a resync (the root is re-read for their leaving).
          this.partitionOf.delete(table);
          this.log.info({ table, detachedFrom, from: Position.format(start.from), seenAt: Position.format(start.seenAt) }, 'table detached from a partitioned table (found by the catalog check): its start recorded');
          this.resyncOrWarn(table, `detached from ${detachedFrom} (ALTER TABLE … DETACH PARTITION): its rows are read again as a table of its own`, {
            from: start.from,
            fromCommitTsUs: start.fromCommitTsUs,
            seenAt: start.seenAt,
          });
        }
      }
      this.scope = { names, streamLsn, fromUs: BigInt(r.from_us!) };
    } finally {
      this.scopeChecking = false;
    }
  }

  /**
   * ALTER TABLE … RENAME TO on PostgreSQL (logical decoding carries no DDL): the catalog check
   * (every 10 s, and at relation messages) finds a captured OID under a new name. As on
   * MariaDB/MySQL, the old name's history ends (op `x`, recorded like a DROP TABLE once the stream
   * has passed the reading, after every change the stream carried under the old name) and the
   * table is read again under its new name by an automatic resync, so a restore after the resync
   * has the new name with every row and not the old one, a restore before the rename the old
   * name. The new name is re-read only when the source captures it (`sources[].tables` lists it
   * or is absent); otherwise its history ends here and the log says so.
   */
  private renamed(oid: number, from: string, to: string, atLsn: Lsn): void {
    const since = this.rewrites.seenAt(oid);
    this.endsPending.push({ oid, table: from, atLsn, timeUs: BigInt(Date.now()) * 1000n, renamedTo: to });
    const captured = !this.names.tables || this.names.tables.includes(to);
    if (!captured) {
      this.log.warn({ table: from, renamedTo: to }, `table ${from} was renamed to ${to}, which this source does not capture: its history ends here`);
      return;
    }
    // Found at start against the recorded catalog (renamed while chartlog was stopped): a durable
    // request with its window, from the previous run's last reading that showed the old name. A
    // rename found while running is re-read as before, without a window (not recorded).
    const window =
      since && this.comparingRecord
        ? { from: Position.of(lsnHex(since.streamLsn + 1n), 0), fromCommitTsUs: since.timeUs, seenAt: Position.of(lsnHex(atLsn), 0) }
        : undefined;
    this.resyncOrWarn(to, `renamed from ${from}: its rows are read again under the new name`, window);
  }

  /** Asks the pipeline to re-read `table` (durably when `window` is given); without a pipeline (no requestResync), says which command does. */
  private resyncOrWarn(table: string, reason: string, window?: ResyncRequest['window']): void {
    if (this.deps.requestResync) {
      this.log.info({ table }, `${table} ${reason}`);
      this.deps.requestResync({ tables: [table], reason, ...(window ? { window } : {}) });
    } else {
      this.log.warn({ table }, `${table} was ${reason.replace(': its rows are', ': its rows must be')}: chartlog resync --tables ${table}`);
    }
  }

  /** The tables in scope now (the configured names that exist, else the publication's), with the reading's clock and WAL position. */
  private async readScope(q: Queryable): Promise<Record<string, string | null | undefined>> {
    const inScope = this.names.tables
      ? `SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY($1::text[])`
      : `SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables WHERE pubname = $1::text`;
    const { rows } = await q.query(
      `SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::int8::text AS from_us,
              (SELECT coalesce(json_agg(t.name), '[]')::text FROM (${inScope}) t) AS names,
              (extract(epoch FROM clock_timestamp()) * 1000000)::int8::text AS seen_us,
              pg_current_wal_lsn() AS lsn`,
      [this.names.tables ?? this.names.publication],
    );
    return rows[0]!;
  }

  /** Set once the archive's record of the catalog was read (or found absent) by this process. */
  private recalled = false;
  /** What the last state saved or read holds (catalogMemoryKey): a new one is saved only when it differs. */
  private savedKey: string | null = null;
  private saving = false;
  /** Set during the first reading of a start, compared with the archive's record: a rename found then was made while stopped. */
  private comparingRecord = false;
  /** End batches ('x') handed on and not yet acknowledged: the recorded catalog keeps their tables until then. */
  private endsUnacked: Lsn[] = [];

  /**
   * Changes made while chartlog was stopped (catalog-memory.ts): the catalog the archive last
   * recorded at or before the resume position seeds the rewrite watch, the table names, the
   * partition lists and the tables in scope, so the first reading finds a rewrite, a rename, a
   * drop, an ATTACH or DETACH made meanwhile as the periodic check would have, and asks for the
   * same durable resyncs (window: from the last reading that showed the table unchanged).
   *
   * An archive with changes but no recorded catalog (written before catalog states) cannot prove
   * that nothing changed while stopped: every captured table is re-read once, its window from the
   * resume position (and the archive's commit time of it) to now. Never guessed as unchanged.
   */
  private async recall(q: Queryable, resumeAfter: Position | null, versions: readonly TableSchema[]): Promise<void> {
    const store = this.deps.catalogStates;
    if (!store || !resumeAfter) return;
    const captured = versions.map(qualifiedName);
    const { saved, upToCommitTsUs, recorded } = await store.load(resumeAfter);
    for (const r of recorded ?? []) this.recordedRewrites.add(rewriteMark(r.table, r.catalog));
    if (saved) {
      const m = parseCatalogMemory(saved.state, Position.format(saved.position));
      this.rewrites.seed(m.tables);
      for (const t of m.tables) {
        this.relNames.set(t.oid, t.table);
        if (!t.partitions) continue;
        this.roots.add(t.oid);
        for (const p of t.partitions) this.partitionOf.set(p, t.table);
      }
      if (m.scope) this.scope = { names: new Set(m.scope.names), streamLsn: m.scope.streamLsn, fromUs: m.scope.fromUs };
      this.savedKey = catalogMemoryKey(m);
      this.log.info({ tables: m.tables.length, recordedAt: Position.format(saved.position) }, 'catalog compared with what the archive last recorded (changes made while stopped are re-read)');
      await this.recallColumns(q, m, versions);
      return;
    }
    const reason =
      'the archive holds no record of the source catalog (written by a chartlog before catalog states): a rewrite, rename or partition change made while chartlog was stopped cannot be ruled out';
    const now = await q.query('SELECT pg_current_wal_lsn() AS lsn');
    const window =
      upToCommitTsUs === null
        ? undefined
        : { from: Position.of(lsnHex(lsnOfPosition(resumeAfter) + 1n), 0), fromCommitTsUs: upToCommitTsUs, seenAt: Position.of(lsnHex(parseLsn(now.rows[0]!.lsn!)), 0) };
    this.log.warn({ tables: captured }, `${reason}: every captured table is re-read once`);
    for (const table of captured) this.resyncOrWarn(table, reason, window);
  }

  /**
   * Column changes made while stopped (catalog-memory.ts format 2, column-renames.ts
   * versionBeforeStop): each recalled table's first relation message is compared with the version
   * the archive last had, not with the catalog at start, so a rename is kept as a rename and an
   * added column gets what older rows read in it, exactly as when running. What the stream cannot
   * make exact is re-read by a durable resync with its window (from the last reading that showed
   * the table unchanged, to now): a column dropped and added again under its name (older rows hold
   * the old column's values under it), and a table whose recorded state has no column list (format
   * 1: written by an older chartlog, nothing to compare with).
   */
  private async recallColumns(q: Queryable, m: CatalogMemory, versions: readonly TableSchema[]): Promise<void> {
    const byName = new Map(versions.map((v) => [qualifiedName(v), v]));
    const now = await this.readAttnums(q, m.tables.map((t) => t.oid));
    const nowLsn = parseLsn((await q.query('SELECT pg_current_wal_lsn() AS lsn')).rows[0]!.lsn!);
    for (const t of m.tables) {
      const version = byName.get(t.table);
      const attnums = now.get(t.oid);
      // Gone or renamed: the table checks decide (its end, or a resync under the new name).
      if (!version || !attnums) continue;
      const window = { from: Position.of(lsnHex(t.seen.streamLsn + 1n), 0), fromCommitTsUs: t.seen.timeUs, seenAt: Position.of(lsnHex(nowLsn), 0) };
      if (!t.columns) {
        this.resyncOrWarn(t.table, 'the archive recorded no column list for it (a catalog state written by an older chartlog): a column change made while chartlog was stopped cannot be ruled out', window);
        continue;
      }
      const { previous, replaced } = versionBeforeStop(version, t.columns, attnums);
      this.attnums.set(t.oid, new Map(t.columns));
      this.versionColumns.set(t.oid, t.columns);
      // The start's column check compares the labels with these (an enum value renamed while stopped).
      if (t.labels) this.columnWatch.recall(t.oid, t.labels, t.seen);
      this.seenVersions.set(t.table, previous);
      if (replaced.length > 0) {
        this.resyncOrWarn(t.table, `column ${replaced.join(', ')} was dropped and added again under the same name while chartlog was stopped: older rows hold the old column's values`, window);
        this.columnWatch.reportedAlready(t.oid, attnums, replaced);
      }
    }
  }

  /**
   * Records the catalog as this process knows it (catalog-memory.ts) when it changed, once no
   * change waits for its verdict and every table end handed on was acknowledged. The pipeline
   * stores it only after every resync request made before it is durable: a kill -9 between a
   * change found and its request recorded leaves the older state, and the next start finds the
   * change again.
   */
  private async rememberCatalog(): Promise<void> {
    const store = this.deps.catalogStates;
    if (!store || !this.recalled || this.saving) return;
    if (this.endsPending.length > 0 || this.endsReady.length > 0 || this.endsUnacked.length > 0) return;
    if (this.columnsDurableAt > this.progress.ackTarget) return;
    const readings = this.rewrites.knownWithStamps();
    if (!readings) return;
    const m: CatalogMemory = {
      tables: readings.map((r) => {
        const columns = this.versionColumns.get(r.oid);
        const labels = this.columnWatch.labelsOf(r.oid);
        return { ...r, table: this.relNames.get(r.oid) ?? r.table, ...(columns ? { columns } : {}), ...(labels ? { labels } : {}) };
      }),
      scope: this.scope ? { names: [...this.scope.names], streamLsn: this.scope.streamLsn, fromUs: this.scope.fromUs } : null,
    };
    const key = catalogMemoryKey(m);
    if (key === this.savedKey) return;
    this.saving = true;
    try {
      const { state, position } = storeCatalogMemory(m);
      await store.save({ position, state });
      this.savedKey = key;
      this.log.info({ tables: m.tables.length, position: Position.format(position) }, 'catalog recorded in the archive');
    } finally {
      this.saving = false;
    }
  }

  /**
   * A source snapshot records the catalog it was read under, read in its own transaction (so
   * exactly as of its consistent point): the stream after it compares with that.
   */
  private async rememberSnapshotCatalog(q: Queryable, tables: readonly string[], at: Lsn, timeUs: bigint): Promise<void> {
    const store = this.deps.catalogStates;
    if (!store) return;
    const { rows } = await q.query(`${RELFILE_READING_SQL} AND (c.oid = ANY($1::oid[]) OR n.nspname || '.' || c.relname = ANY($2::text[]))`, [[], tables, this.names.publication]);
    const seen = { streamLsn: at, timeUs };
    const scope = await this.readScope(q);
    const readings = rows.map(relfileReading).filter((r) => !r.attachedTo);
    // The snapshot's own versions: its transaction reads the columns as of the consistent point.
    const columns = new Map((await this.readColumns(q, readings.map((r) => r.oid)))?.readings.map((c) => [c.oid, c]));
    const m: CatalogMemory = {
      tables: readings.map((r) => {
        const c = columns.get(r.oid);
        return { ...r, seen, ...(c ? { columns: c.attnums, labels: c.labels } : {}) };
      }),
      scope: { names: JSON.parse(scope.names ?? '[]') as string[], streamLsn: at, fromUs: timeUs },
    };
    const { state, position } = storeCatalogMemory(m);
    await store.save({ position, state });
    this.log.info({ tables: m.tables.length, position: Position.format(position) }, 'catalog of the snapshot recorded in the archive');
  }

  /** The stream has processed everything before `lsn`: tables rewritten by then are re-read. */
  private decideRewrites(lsn: Lsn): void {
    const ready = this.endsPending.filter((e) => e.atLsn <= lsn);
    if (ready.length > 0) {
      this.endsPending = this.endsPending.filter((e) => e.atLsn > lsn);
      for (const e of ready) this.endsReady.push({ ...e, after: lsn });
      this.endsWake.resolve();
    }
    for (const v of this.rewrites.passed(lsn)) {
      if (v.kind === 'truncate') {
        this.log.debug({ table: v.table }, 'new relfilenode explained by a TRUNCATE in the stream');
        continue;
      }
      if (v.kind === 'kept') {
        this.log.info({ table: v.table, why: 'a new relfilenode with no pg_attribute row of the table written since the last reading (VACUUM FULL, CLUSTER, SET TABLESPACE …)' }, 'table rewritten with its values kept: not re-read');
        continue;
      }
      const catalog = `relfilenode ${v.relfilenode}`;
      if (this.recordedRewrites.has(rewriteMark(v.table, catalog))) {
        // Found before a kill -9 that came before the catalog state was stored: its window is
        // in the archive already, and its resync is re-run (or ran) from that record.
        this.log.info({ table: v.table }, 'table rewrite already recorded in the archive before this start: no new window');
        continue;
      }
      const reason = this.roots.has(v.oid)
        ? `${v.table}'s partitions changed without row events (a partition attached, detached or dropped, or one rewritten or truncated on its own)`
        : `${v.table} was rewritten without row events (its relfilenode changed with no TRUNCATE in the stream, and nothing proves its values kept: ALTER … TYPE … USING, a volatile default, or VACUUM FULL/CLUSTER together with a column change)`;
      if (this.deps.requestResync) {
        this.log.warn({ table: v.table }, `${reason}: re-reading the table`);
        // The window: after the last reading that showed the old relfilenode, up to this one.
        const window = v.since
          ? { from: Position.of(lsnHex(v.since.streamLsn + 1n), 0), fromCommitTsUs: v.since.timeUs, seenAt: Position.of(lsnHex(v.atLsn), 0), catalog }
          : undefined;
        this.deps.requestResync({ tables: [v.table], reason, ...(window ? { window } : {}) });
      } else {
        this.log.warn({ table: v.table }, `${reason}: a restore after it may hold the old values until the table is re-read: chartlog resync --tables ${v.table}`);
      }
    }
  }

  /**
   * Idle databases: a non-transactional logical message writes WAL in this database, so the
   * walsender moves past it and the next keepalive lets the slot advance. Also reports how much
   * WAL the slot retains.
   */
  private startHeartbeat(q: Queryable): NodeJS.Timeout {
    let messageRefused = false;
    const beat = async (): Promise<void> => {
      if (!messageRefused) {
        try {
          await q.query(`SELECT pg_logical_emit_message(false, 'chartlog_heartbeat', '')`);
        } catch (err) {
          messageRefused = true;
          this.log.warn({ err }, 'heartbeat message refused; an idle database may hold WAL in the slot until it changes');
        }
      }
      try {
        const { rows } = await q.query(
          `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 AS lag FROM pg_replication_slots WHERE slot_name = $1`,
          [this.names.slot],
        );
        const lagBytes = Number(rows[0]?.lag ?? 0);
        const warnAt = this.config.postgres.slotLagWarnBytes;
        if (lagBytes > warnAt) {
          this.log.warn({ slot: this.names.slot, lagBytes, warnAt }, 'replication slot retains much WAL: the backup is behind or acknowledgements stopped');
        } else {
          this.log.info({ slot: this.names.slot, lagBytes }, 'slot lag');
        }
      } catch (err) {
        this.log.debug({ err }, 'slot lag query failed');
      }
    };
    const timer = setInterval(() => void beat(), this.config.postgres.heartbeatIntervalMs);
    timer.unref();
    return timer;
  }

  /**
   * The replication session's connection follows the last connection made (with tls.mode
   * prefer: TLS if the server offered it then); a server that changed meanwhile fails the
   * session, and the reconnect decides again.
   */
  private clientConfig(useTls: boolean = this.tls.lastUsedTls): pg.ClientConfig {
    return clientConfig(this.config.url, this.config.tls, `chartlog:${this.name}`, useTls);
  }

  /**
   * A connected client; failures to connect are retriable unless authentication was refused.
   * TLS as `tls.mode` says; `prefer` falls back to plaintext only when the server offers no TLS.
   */
  private async connect(replication: boolean): Promise<pg.Client> {
    try {
      return await this.tls.connect(async (useTls) => {
        const client = new pg.Client({ ...this.clientConfig(useTls), ...(replication ? { replication: 'database' } : {}) });
        // Errors surface through the failing query; an idle client's error must not crash the process.
        client.on('error', (err) => this.log.debug({ err }, 'PostgreSQL connection error'));
        try {
          await client.connect();
        } catch (err) {
          await client.end().catch(() => undefined);
          throw err;
        }
        return client;
      }, serverHasNoTls);
    } catch (err) {
      throw classify(err);
    }
  }
}

/** Retriable: connection-class failures (lost connection, restart, shutdown); fatal otherwise. */
function classify(err: unknown): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const code = (err as { code?: string }).code;
  if (code === '28000' || code === '28P01') {
    return new ChartlogError('auth', 'PostgreSQL refused the login', { cause: err, hint: 'check the source URL user and password' });
  }
  if (code === undefined || /^(08|57|53|58|55006)/.test(code) || /^E[A-Z]+$/.test(code)) {
    return connectionError(err);
  }
  return new ChartlogError('internal', `PostgreSQL error ${code}: ${(err as Error).message ?? String(err)}`, { cause: err });
}

function asQueryable(client: pg.Client): Queryable {
  return client as unknown as Queryable;
}

async function nextItem(session: ReplicationSession, signal: AbortSignal | undefined, wake: Promise<'wake'>): Promise<SessionItem | 'wake' | null> {
  // Races the session's readiness, not session.next(): when the wake or the abort wins, a
  // message arriving just then stays queued for the next call instead of being taken and lost.
  const ready = session.ready().then(() => 'ready' as const);
  if (!signal) {
    const r = await Promise.race([ready, wake]);
    return r === 'ready' ? (session.poll() ?? 'wake') : r;
  }
  if (signal.aborted) return null;
  let onAbort: (() => void) | null = null;
  const aborted = new Promise<null>((resolve) => {
    onAbort = () => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const r = await Promise.race([ready, aborted, wake]);
    return r === 'ready' ? (session.poll() ?? 'wake') : r;
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/** A promise resolved on demand (wakes the stream loop for batches it makes itself). */
function wakeable(): { promise: Promise<'wake'>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<'wake'>((r) => (resolve = () => r('wake')));
  return { promise, resolve };
}

/** A rewrite as the archive's unproven record names it: the table and the relfilenode that showed it. */
function rewriteMark(table: string, catalog: string): string {
  return `${table}\n${catalog}`;
}
