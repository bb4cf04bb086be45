import type { ChangeBatch } from './change-event.js';
import type { Logger } from './logger.js';
import type { RequestResync } from './resync-request.js';
import type { RecordTableStart } from './table-start.js';
import type { CatalogStates } from './catalog-state.js';
import type { Position } from './position.js';
import type { TableSchema } from './table-schema.js';

/**
 * What the pipeline hands every connector besides its configuration (connectors/registry.ts).
 * Every field is optional: a connector built alone (tests, `chartlog resync`) gets none.
 */
export interface ConnectorOptions {
  readonly logger?: Logger;
  /**
   * How the connector asks for an online re-snapshot of tables it can no longer prove it
   * streamed whole (a rewriting DDL): `chartlog run` gives the source's ResyncQueue.request
   * (src/pipeline/resync-queue.ts). Absent: the connector logs what it would have asked for and
   * the `chartlog resync` command that fixes it.
   */
  readonly requestResync?: RequestResync;
  /**
   * How the connector records that a captured table started to exist (CREATE TABLE) after the
   * stream began (src/core/table-start.ts), so a restore to an earlier moment leaves it out.
   * Absent: nothing is recorded (restore then creates it, empty, at any earlier moment).
   */
  readonly recordTableStart?: RecordTableStart;
  /**
   * Where the connector keeps its view of the source catalog between runs (src/core/catalog-state.ts),
   * so a change made while chartlog was stopped is found at the next start. Absent: the first
   * catalog reading of a start is the baseline (such a change is not seen).
   */
  readonly catalogStates?: CatalogStates;
}

/**
 * What a connector can deliver. The rest of chartlog asks these instead of branching on the
 * database's name.
 */
export interface ConnectorCapabilities {
  /** 'full': updates/deletes carry whole old rows; 'key': only key columns; 'none'. */
  readonly beforeImage: 'full' | 'key' | 'none';
  /** TRUNCATE arrives as an event. */
  readonly truncate: boolean;
  /** A consistent initial snapshot can be taken without a global lock. */
  readonly snapshot: boolean;
  /** Columns may arrive as UNCHANGED (PostgreSQL TOAST). */
  readonly unchangedValues: boolean;
}

/** One sampled row: column name → the value's text, or null (SQL NULL, or a column not read). */
export type SampledRow = Readonly<Record<string, string | null>>;

export interface SnapshotOptions {
  /** "schema.table" names; all configured tables when absent. */
  readonly tables?: readonly string[];
  /** Rows per primary-key chunk (keyset pagination), bounding memory. */
  readonly chunkRows?: number;
  readonly signal?: AbortSignal;
  /**
   * A table re-snapshot taken while `chartlog run` streams the source (`chartlog resync`): the
   * connector reads the same consistent image at a position of the stream, but creates, drops
   * and moves none of the stream's server-side state (PostgreSQL: a temporary slot of its own,
   * gone with its connection, instead of the stream's slot). Nothing is acknowledged.
   */
  readonly alongsideStream?: boolean;
}

/**
 * Which archive a connector works for (docs/architecture.md §1, "Slot ownership"). Two archives
 * of one source (a copied configuration with another `storage.url`) must not share server-side
 * state that decides what the source keeps for them: a PostgreSQL replication slot confirms
 * for one reader only, so a slot moved to another archive leaves the first one missing
 * transactions without any gap it could see. A connector with such state records the archive
 * id on it and never drops or reuses state of another archive unless `takeOver` says so.
 */
export interface ArchiveClaim {
  /** The archive's id (`<source>/state/archive.json`, src/archive/archive-identity.ts). */
  readonly archiveId: string;
  /**
   * The store holds a checkpoint of this source: state with no recorded owner (created before
   * owners were recorded) was this archive's and may be adopted. Without a checkpoint it may
   * be another archive's and is refused like one.
   */
  readonly adoptLegacy: boolean;
  /** `--take-over-slot`: state of another archive (or of none recorded) may be dropped and replaced. */
  readonly takeOver: boolean;
}

export interface StreamOptions {
  /**
   * Last position known durable downstream. The stream starts after it: transactions at or
   * before it are skipped even if the source sends them again.
   */
  readonly from: Position | null;
  readonly signal?: AbortSignal;
}

/**
 * A source database as a stream of whole transactions.
 *
 * Contract (docs/architecture.md §1, the acknowledgement rule):
 * - `acknowledge(p)` is the ONLY way a position reaches the source (slot confirm, checkpoint).
 *   Callers acknowledge a batch's `position` only after every event up to it is durable one
 *   stage down. Nothing else — keepalives, timers, reconnects — may confirm unacknowledged data.
 * - Delivery is at-least-once: after a crash or reconnect, batches after the last acknowledged
 *   position may come again; their positions are equal, so consumers drop duplicates by position.
 * - Batches come in strictly increasing position order within one `stream()` call.
 * - Errors are ChartlogErrors: retriable ones (lost connection) may be retried by calling
 *   `stream()` again from the last durable position; fatal ones carry a hint for the operator.
 */
export interface SourceConnector {
  readonly name: string;
  readonly capabilities: ConnectorCapabilities;

  /**
   * Verifies the source is set up for CDC (log format, privileges, identities). Creates
   * nothing. Throws a fatal ChartlogError('source_setup') whose hint says what to run.
   */
  check(): Promise<void>;

  /**
   * The tables this source captures, as its catalog has them now, with the columns the
   * connector delivers: `sources[].tables` when configured (those that exist), otherwise every
   * table it would capture. Reads the catalog only; creates nothing. The pipeline checks the
   * configured PHI names against it before anything is read or written (src/phi/phi-names.ts).
   */
  tables(): Promise<readonly TableSchema[]>;

  /**
   * Up to `limit` rows of one table `tables()` gave, for `chartlog phi classify`: each value in
   * the database's own text form, SQL NULL as null, bytes columns not read (null). Read-only: one
   * SELECT … LIMIT in a read-only transaction, no order, nothing created. The caller keeps the
   * values in memory only and never prints, logs or stores them.
   */
  sample(table: TableSchema, limit: number): Promise<readonly SampledRow[]>;

  /**
   * A consistent snapshot: batches with `snapshot: true` and op 'r' events, all at one
   * consistent position P (each batch's `position` is P). `stream({ from: P })` afterwards
   * yields exactly the changes committed after the snapshot: snapshot + stream = every row once.
   */
  snapshot(options?: SnapshotOptions): AsyncIterable<ChangeBatch>;

  /** Committed transactions after `options.from`, until the signal aborts or an error. */
  stream(options: StreamOptions): AsyncIterable<ChangeBatch>;

  /**
   * Binds the connector to the archive it works for (ArchiveClaim) and checks, reading only,
   * that its server-side state is this archive's or free. Throws a 'config' error (exit 2)
   * naming the state, the archive that owns it and the fix. `snapshot()` and `stream()` then
   * act under the claim and check it again when they drop or create state. Connectors without
   * such state (MySQL/MariaDB: the binlog is read, not held) need not implement it. Without a
   * claim (a connector tested alone) the configured names are used as they are.
   */
  claim?(claim: ArchiveClaim): Promise<void>;

  /** Confirms to the source that everything up to and including `position` is durable. */
  acknowledge(position: Position): Promise<void>;

  /** Releases connections. Does not drop slots or other server-side state. */
  close(): Promise<void>;
}
