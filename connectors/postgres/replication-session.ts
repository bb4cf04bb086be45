import pg from 'pg';
import { ChartlogError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/logger.js';
import type { Lsn } from './lsn.js';
import { PRIMARY_KEEPALIVE, readKeepalive, standbyStatusUpdate, XLOG_DATA, XLOG_HEADER_BYTES } from './replication-protocol.js';
import { quoteIdent } from './setup-check.js';

/**
 * One replication connection (one START_REPLICATION), as a pull queue of raw pgoutput
 * messages. A `pg` client in replication mode runs START_REPLICATION; its CopyData messages
 * are read here (replication-protocol.ts), with every trap of FIELD-NOTES closed:
 *
 * - Nothing is confirmed by itself: no auto-acknowledgement on receipt, no timer confirming the
 *   last *received* LSN (pg-logical-replication, used before, did both unless told not to).
 * - Keepalives are answered here with the LSN the connector's policy allows — the last
 *   acknowledged commit, or the server's position only when everything received is
 *   acknowledged — never with received-but-unacknowledged data.
 * - Status updates carry exactly the commit end LSN (standbyStatusUpdate): lsn + 1 would skip a
 *   transaction whose commit record starts right at that end.
 * - Bounded memory: this session pauses the replication socket while its queue holds
 *   `queueBytes`, resuming at half. The bound is in bytes, and megabytes of them: while the
 *   pipeline encodes and writes a transaction the server goes on decoding the next one into
 *   this queue. A bound of 1024 messages (a tenth of a 10k-row transaction) paused the server
 *   after milliseconds, so it and the pipeline took turns instead of working at the same time
 *   (a third of the pipeline's wall time was waits for it).
 * - A session is used once: every reconnect builds a new session that resumes from the slot.
 * - The end of START_REPLICATION, a connection error or a silent server (watchdog) ends the
 *   session with a retriable error, and the connector reconnects.
 * - Values never pass through pg's lossy global type parsers: the message bytes are queued
 *   untouched and pgoutput-decoder.ts decodes them.
 * - Per received message: one copy of its bytes (pg reuses its read buffer) into the queue's
 *   slabs, and no object that outlives it; no LSN strings, events or promises (the library made
 *   all three, ≈ 4 % of the pipeline).
 */
export type SessionItem =
  | { readonly kind: 'data'; readonly bytes: Uint8Array }
  | { readonly kind: 'end'; readonly error: ChartlogError | null };

export interface SessionOptions {
  readonly clientConfig: pg.ClientConfig;
  readonly slot: string;
  readonly publication: string;
  /** The LSN a status update may report now, given the server's latest position. */
  readonly statusLsn: (serverLsn: Lsn, caughtUp: boolean) => Lsn;
  readonly statusIntervalMs: number;
  readonly idleTimeoutMs: number;
  /** Message bytes queued before the socket is paused (a single larger message still passes). */
  readonly queueBytes: number;
  readonly log: Logger;
}

/** A keepalive that asks for nothing is answered with an unchanged position at most this often. */
const KEEPALIVE_ANSWER_MS = 100;

/** Bytes per slab of the message queue: 8 slabs make the default bound. */
const SLAB_BYTES = 1 << 20;

interface PausableStream {
  pause(): void;
  resume(): void;
}

export class ReplicationSession {
  private readonly client: pg.Client;
  /** pg's connection: CopyData arrives as its 'copyData' events, status updates leave through it. */
  private readonly connection: PgConnection;
  /**
   * Received messages, as [u32 length][bytes] records packed into slabs of SLAB_BYTES: the
   * first slab is read from `readAt`, the last written at `writeAt`; `ends[i]` is where slab
   * i's records end. Packed, not one Buffer and queue item per message: a full queue holds tens
   * of thousands of messages (8 MiB during a backlog), and objects that wait that long survive
   * V8's young-generation collections, so each was copied twice and then collected by the
   * expensive old-generation collector — garbage collection was a quarter of the main thread.
   * (An array of items taken by `shift()` was worse still: ten times slower at that size.)
   * A slab is never written again once read from: the views `poll` returns stay valid.
   */
  private slabs: Buffer[] = [];
  private ends: number[] = [];
  private readAt = 0;
  private writeAt = 0;
  /** Set by finish(): handed out once every queued message was taken. */
  private endItem: SessionItem | null = null;
  private wakeConsumer: (() => void) | null = null;
  private socket: PausableStream | null = null;
  private paused = false;
  private queuedBytes = 0;
  private ended = false;
  private received = 0;
  private consumed = 0;
  private serverLsn: Lsn = 0n;
  private lastHeardAt = Date.now();
  private waitingSince: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Counted for the debug line at the end of the session. */
  private keepalives = 0;
  private statusSent = 0;
  /** The last status update sent: what and when (keepalive answers, see copyData). */
  private lastSentLsn: Lsn = -1n;
  private lastSentAt = 0;

  constructor(private readonly options: SessionOptions) {
    this.client = new pg.Client({ ...options.clientConfig, replication: 'database' } as pg.ClientConfig);
    this.connection = (this.client as unknown as { connection: PgConnection }).connection;
  }

  /** Connects and starts streaming; resolves once the server accepted START_REPLICATION. */
  async start(): Promise<void> {
    const { slot, publication } = this.options;
    this.client.on('error', (err: Error) => this.finish(connectionError(err)));
    await this.client.connect().catch((err: unknown) => {
      this.finish(connectionError(err));
      throw connectionError(err);
    });
    this.socket = this.connection.stream;
    const started = new Promise<void>((resolve) => this.connection.once('replicationStart', () => resolve()));
    this.connection.on('copyData', (msg: { chunk: Buffer }) => this.copyData(msg.chunk));
    // 0/0: start where the slot's confirmed_flush_lsn is. The query ends with the stream.
    const streaming = this.client.query(
      `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL 0/0 (proto_version '1', publication_names '${quoteIdent(publication)}')`,
    );
    streaming.then(
      () => this.finish(new ChartlogError('connection', 'replication stream ended', { retriable: true })),
      (err: unknown) => this.finish(connectionError(err)),
    );
    await Promise.race([started, streaming.then(() => undefined, () => undefined)]);
    if (this.ended) {
      const end = this.endItem;
      throw (end?.kind === 'end' && end.error) || new ChartlogError('connection', 'replication did not start', { retriable: true });
    }
    this.timer = setInterval(() => this.tick(), Math.min(this.options.statusIntervalMs, 1000));
    this.timer.unref();
  }

  /** One CopyData message of the stream: XLogData is queued, a keepalive answered. */
  private copyData(chunk: Buffer): void {
    this.lastHeardAt = Date.now();
    const tag = chunk[0];
    if (tag === XLOG_DATA) {
      this.received++;
      this.arrive(chunk, XLOG_HEADER_BYTES); // copied: pg reuses its read buffer
    } else if (tag === PRIMARY_KEEPALIVE) {
      let keepalive: { walEnd: Lsn; replyRequested: boolean };
      try {
        keepalive = readKeepalive(chunk);
      } catch (err) {
        this.finish(err as ChartlogError);
        return;
      }
      this.keepalives++;
      if (keepalive.walEnd > this.serverLsn) this.serverLsn = keepalive.walEnd;
      // Answered when the server asks (a fast shutdown, wal_sender_timeout) or when there is
      // news — a position not reported yet (the server advances the slot by these reports) —
      // at most every KEEPALIVE_ANSWER_MS; the status timer (tick) reports unchanged ones.
      // PostgreSQL 15 sends a keepalive each time its walsender waits for WAL while our reported
      // flush is behind what it sent: 5,353 during a 200k-row backlog, and answering each one (a
      // socket write here, a reply for the walsender to process there) was ≈ 5 % of the main
      // thread (cdc-postgres bench profile).
      this.answerKeepalive(keepalive.replyRequested);
    } else {
      this.finish(new ChartlogError('decode', `unknown replication message 0x${(tag ?? 0).toString(16)}`, { retriable: true }));
    }
  }

  /** Queues a received message (`src` from `start` on); pauses the socket once `queueBytes` are queued. */
  private arrive(src: Uint8Array, start = 0): void {
    if (this.ended) return;
    const n = src.length - start;
    let slab = this.slabs[this.slabs.length - 1];
    if (!slab || this.writeAt + 4 + n > slab.length) {
      slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, 4 + n));
      this.slabs.push(slab);
      this.ends.push(0);
      this.writeAt = 0;
    }
    slab.writeUInt32BE(n, this.writeAt);
    slab.set(start === 0 ? src : src.subarray(start), this.writeAt + 4);
    this.writeAt += 4 + n;
    this.ends[this.ends.length - 1] = this.writeAt;
    this.queuedBytes += n;
    if (this.queuedBytes >= this.options.queueBytes && !this.paused) {
      this.paused = true;
      this.socket?.pause();
    }
    this.wakeConsumer?.();
  }

  /** A message is queued (or the end). */
  private get hasItem(): boolean {
    // A later slab exists only once a message was written into it.
    return this.slabs.length > 1 || (this.slabs.length === 1 && this.readAt < this.ends[0]!) || this.endItem !== null;
  }

  /** The next message, or the end of the session. */
  async next(): Promise<SessionItem> {
    await this.ready();
    return this.poll()!;
  }

  /**
   * Resolves once a message (or the end) is queued, without taking it: a caller that races this
   * with other events and loses the race loses no message (racing `next()` would take one and
   * drop it: a BEGIN lost that way made "commit without begin").
   */
  async ready(): Promise<void> {
    while (!this.hasItem) {
      this.waitingSince ??= Date.now();
      await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
      this.wakeConsumer = null;
    }
  }

  /** The next message when one is queued, at once; null when the caller has to wait (next()). */
  poll(): SessionItem | null {
    // A slab read to its end while it was still the last one (the reader had caught up) is
    // dropped here, once a message had to open the next: without this the reader waited for
    // more of a slab the writer had left, for good (a stall seen on CI, 15k-row transaction).
    if (this.slabs.length > 1 && this.readAt >= this.ends[0]!) {
      this.slabs.shift();
      this.ends.shift();
      this.readAt = 0;
    }
    const slab = this.slabs[0];
    if (!slab || this.readAt >= this.ends[0]!) {
      if (!this.endItem) return null;
      const end = this.endItem;
      // Stays queued: every later call gets the end too.
      return end;
    }
    const n = slab.readUInt32BE(this.readAt);
    const bytes = slab.subarray(this.readAt + 4, this.readAt + 4 + n);
    this.readAt += 4 + n;
    if (this.readAt >= this.ends[0]! && this.slabs.length > 1) {
      // Done with this slab: the next one is read; this one lives on only in the views handed out.
      this.slabs.shift();
      this.ends.shift();
      this.readAt = 0;
    }
    this.waitingSince = null;
    this.queuedBytes -= n;
    if (this.paused && this.queuedBytes <= this.options.queueBytes / 2) {
      this.paused = false;
      this.socket?.resume();
    }
    return { kind: 'data', bytes };
  }

  /** The consumer finished with one data item (it counts toward "caught up"). */
  markConsumed(): void {
    this.consumed++;
  }

  /** Reports `lsn` as written, flushed and applied: exactly `lsn`, see the class comment. */
  sendStatus(lsn: Lsn, ping = false): void {
    if (lsn <= 0n || this.ended) return;
    this.statusSent++;
    this.lastSentLsn = lsn;
    this.lastSentAt = Date.now();
    this.connection.sendCopyFromChunk(standbyStatusUpdate(lsn, Date.now(), ping));
  }

  /** Sends what the policy allows now. */
  report(ping: boolean): void {
    this.sendStatus(this.options.statusLsn(this.serverLsn, this.received === this.consumed), ping);
  }

  /** The answer to a keepalive: see copyData. The policy is asked every time (it decides catalog readings). */
  private answerKeepalive(requested: boolean): void {
    const lsn = this.options.statusLsn(this.serverLsn, this.received === this.consumed);
    const now = Date.now();
    if (!requested && (lsn === this.lastSentLsn || now - this.lastSentAt < KEEPALIVE_ANSWER_MS)) return;
    this.sendStatus(lsn);
  }

  async stop(): Promise<void> {
    this.finish(null);
    await this.end();
  }

  /** Closes the connection once (a second end() of a pg client would wait for an event that never comes). */
  private ending: Promise<void> | null = null;
  private end(): Promise<void> {
    if (!this.ending) {
      this.options.log.debug({ slot: this.options.slot, messages: this.received, keepalives: this.keepalives, statusUpdates: this.statusSent }, 'replication session ended');
      this.ending = this.client.end().catch(() => undefined);
    }
    return this.ending;
  }

  private lastStatusAt = 0;
  private tick(): void {
    const now = Date.now();
    if (this.waitingSince !== null && now - Math.max(this.waitingSince, this.lastHeardAt) > this.options.idleTimeoutMs) {
      this.options.log.warn({ slot: this.options.slot, silentMs: now - this.lastHeardAt }, 'replication connection silent; reconnecting');
      this.finish(new ChartlogError('connection', 'replication connection went silent', { retriable: true }));
      void this.end();
      return;
    }
    if (now - this.lastStatusAt >= this.options.statusIntervalMs) {
      this.lastStatusAt = now;
      this.report(true);
    }
  }

  private finish(error: ChartlogError | null): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer) clearInterval(this.timer);
    this.endItem = { kind: 'end', error };
    this.wakeConsumer?.();
  }
}

/** The slice of pg's (untyped) Connection a replication session uses. */
interface PgConnection {
  readonly stream: PausableStream;
  on(event: 'copyData', listener: (msg: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', listener: () => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
}

/** Lost connections, restarts and a slot still held by an old walsender are all worth a retry. */
export function connectionError(err: unknown): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const e = err as { message?: string; code?: string };
  const message = e?.message ?? String(err);
  const code = e?.code;
  const fatal = code === '42704' /* slot missing */ || code === '28000' || code === '28P01' || code === '42501';
  if (code === '42704') {
    return new ChartlogError('source_setup', `replication slot is gone: ${message}`, {
      cause: err,
      hint: 'changes since the last backup position may be lost; take a new base snapshot from the source: chartlog snapshot --from-source, then chartlog run',
    });
  }
  return new ChartlogError(fatal ? 'auth' : 'connection', `replication connection failed: ${message}`, {
    retriable: !fatal,
    cause: err,
  });
}
