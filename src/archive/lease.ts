import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { ChartlogError, toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { sleep, withRetry } from '../core/retry.js';
import type { LeaseLane, ObjectStore, VersionedObject } from '../storage/object-store.js';
import { leaseKey } from './layout.js';

/**
 * What a writer of shared archive state checks before it writes (docs/architecture.md §1, "One
 * writer per archive"): the checkpoint, hour closing (segments, manifests, deleting parts) and
 * the removal of interrupted snapshot attempts.
 */
export interface WriterFence {
  /**
   * Throws a fatal 'lease' error unless this process holds the lease by its own clock: acquired,
   * not released, not lost, and its last renewal not older than the TTL less a safety margin.
   * No I/O: cheap enough before every part written.
   */
  assertHeld(): void;
  /**
   * assertHeld, then reads the lease in the store: throws a fatal 'lease' error unless it still
   * names this owner and epoch (another process took over, e.g. after a pause longer than the
   * TTL, or an operator removed the lease).
   */
  check(): Promise<void>;
}

/**
 * No fence: for code that writes without a lease on purpose (unit tests of a single writer,
 * `chartlog snapshot` synthesising, which writes only deterministically named new objects).
 */
export const NO_FENCE: WriterFence = {
  assertHeld() {},
  async check() {},
};

/** `<source>/state/lease.json` (docs/formats.md). */
export interface LeaseRecord {
  version: 1;
  source: string;
  /** Random per process and source: who holds it. */
  owner: string;
  host: string;
  pid: number;
  /**
   * Linux boot id and PID namespace of the holder: with the host they say whether `pid` can be
   * checked from here (same machine, same boot, same PID namespace). Absent elsewhere.
   */
  bootId?: string;
  pidNamespace?: string;
  /** The fencing epoch: 1 for the first holder, one more at every takeover. */
  epoch: number;
  acquiredAt: string;
  renewedAt: string;
  /** Another process may take over once this has passed (or `released` is true). */
  expiresAt: string;
  ttlMs: number;
  /** Renewals by this owner in this epoch (keeps every body unique, which compare-and-swap needs). */
  renewals: number;
  /** Set on a clean stop, so the next process takes over at once. */
  released: boolean;
}

export interface LeaseOptions {
  store: ObjectStore;
  source: string;
  /** How long a lease lasts without renewal (`storage.leaseTtlMs`). */
  ttlMs: number;
  /** Defaults: a random id, this host, this process. */
  owner?: string;
  host?: string;
  pid?: number;
  /** Milliseconds since the epoch (tests move time by hand). */
  now?: () => number;
  /** While waiting, who holds the lease is logged this often (default 5 s). */
  logEveryMs?: number;
  /** The lease object (default `leaseKey(source)`; `compactorLeaseKey` for `--role compact`). */
  key?: string;
}

type State = 'idle' | 'held' | 'released' | 'lost';

/**
 * One writer per source archive: a lease object in the store (`<source>/state/lease.json`),
 * created if absent (putIfAbsent) and replaced only by compare-and-swap (putIfVersion), holding
 * an owner, host, pid, a fencing epoch and an expiry.
 *
 * - `acquire` creates it, or takes it over (epoch + 1) once it has expired or was released.
 *   While another process holds it, it waits, logging every few seconds who holds it — it
 *   never exits for that.
 * - Once held it is renewed every third of the TTL. A renewal that finds another owner, or
 *   that cannot succeed before TTL − margin (the store unreachable), loses the lease: `signal`
 *   aborts with a fatal 'lease' error and `assertHeld`/`check` throw it from then on, so the
 *   pipeline stops before it writes anything else. The margin (a sixth of the TTL) is what
 *   the holder's and a taker's clocks may disagree by.
 * - `release` marks it released (by compare-and-swap, so a lost lease is never touched).
 *
 * Expiry is by wall clock, written in the record: hosts sharing an archive need synchronised
 * clocks (NTP), to within the margin.
 *
 * A holder that died on this very machine (same host name, boot id and PID namespace, and its
 * pid no longer exists: `kill -9`, OOM) is taken over at once, without waiting for the expiry.
 */
export class Lease implements WriterFence {
  readonly key: string;
  private readonly owner: string;
  private readonly host: string;
  private readonly pid: number;
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly marginMs: number;
  private readonly renewEveryMs: number;
  private readonly pollMs: number;
  private readonly logEveryMs: number;
  private readonly log;
  private state: State = 'idle';
  private record: LeaseRecord | null = null;
  private version: string | null = null;
  private heldUntil = 0;
  private lostError: ChartlogError | null = null;
  private readonly lostController = new AbortController();
  private renewTimer: NodeJS.Timeout | null = null;
  private deadlineTimer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> = Promise.resolve();
  // Why a renewal came too late, for the loss message: was the process itself late to start it
  // (event loop or CPU starved), or was the store slow to answer (disk, fsync, network)?
  private renewDueAt = 0;
  private renewStartedAt: number | null = null;
  private storeCallSince: number | null = null;
  private failedWrites = 0;
  /**
   * Where every read and write of the lease goes: the store's own lane when it has one
   * (ObjectStore.leaseLane), so a renewal never waits behind the flushes of the writer it
   * fences — a back-to-back flush load once kept a renewal's file:// write waiting 7–11 s.
   */
  private readonly lane: LeaseLane;
  private laneOpen: boolean;

  constructor(private readonly o: LeaseOptions) {
    if (!Number.isFinite(o.ttlMs) || o.ttlMs < 100) throw new ChartlogError('config', `lease TTL ${o.ttlMs} ms is too short`);
    this.key = o.key ?? leaseKey(o.source);
    this.owner = o.owner ?? randomUUID();
    this.host = o.host ?? hostname();
    this.pid = o.pid ?? process.pid;
    this.now = o.now ?? Date.now;
    this.ttlMs = o.ttlMs;
    this.marginMs = Math.floor(o.ttlMs / 6);
    this.renewEveryMs = Math.floor(o.ttlMs / 3);
    this.pollMs = Math.min(1000, Math.max(50, Math.floor(o.ttlMs / 10)));
    this.logEveryMs = o.logEveryMs ?? 5000;
    this.log = logger().child({ source: o.source, component: 'lease' });
    const lane = o.store.leaseLane?.();
    this.lane = lane ?? o.store;
    this.laneOpen = lane !== undefined;
  }

  /** Aborted (reason: the fatal 'lease' error) when the lease is lost. */
  get signal(): AbortSignal {
    return this.lostController.signal;
  }

  /** Why the lease was lost, or null. */
  get lost(): ChartlogError | null {
    return this.lostError;
  }

  get held(): boolean {
    return this.state === 'held';
  }

  /** The fencing epoch held, or null. */
  get epoch(): number | null {
    return this.state === 'held' ? (this.record?.epoch ?? null) : null;
  }

  get ownerId(): string {
    return this.owner;
  }

  /**
   * One try: takes the lease when it is absent, expired, released or already ours; otherwise
   * says who holds it.
   */
  async tryAcquire(): Promise<{ acquired: true } | { acquired: false; holder: LeaseRecord }> {
    if (this.state !== 'idle') throw new ChartlogError('internal', `a lease that is ${this.state} cannot be acquired again`);
    for (;;) {
      const r = await this.attempt();
      if (r === 'acquired') return { acquired: true };
      if (r !== 'again') return { acquired: false, holder: r };
    }
  }

  /**
   * Takes the lease, waiting as long as another process holds it (logging who, every
   * `logEveryMs`). False when `signal` aborted the wait (nothing was written).
   */
  async acquire(signal?: AbortSignal): Promise<boolean> {
    let lastLog = -Infinity;
    const waitStart = this.now();
    for (;;) {
      if (signal?.aborted) return false;
      const r = await this.tryAcquire();
      if (r.acquired) {
        const waitedMs = this.now() - waitStart;
        this.log.info({ epoch: this.record!.epoch, ttlMs: this.ttlMs, ...(waitedMs >= this.pollMs ? { waitedMs } : {}) }, 'writer lease acquired');
        return true;
      }
      const h = r.holder;
      const expiresInMs = Date.parse(h.expiresAt) - this.now();
      if (this.now() - lastLog >= this.logEveryMs) {
        lastLog = this.now();
        this.log.warn(
          { holder: { host: h.host, pid: h.pid, epoch: h.epoch, owner: h.owner }, expiresInMs, waitedMs: this.now() - waitStart },
          `another chartlog (host ${h.host}, pid ${h.pid}) writes this source's archive; waiting for its lease (expires in ${Math.max(0, Math.ceil(expiresInMs / 1000))} s unless renewed)`,
        );
      }
      await sleep(Math.max(10, Math.min(this.pollMs, expiresInMs + 5)), signal);
    }
  }

  assertHeld(): void {
    if (this.state === 'held' && this.now() >= this.heldUntil) {
      this.lose(new ChartlogError('lease', `the writer lease of source ${this.o.source} was not renewed in time; it may have expired`, { hint: LOST_HINT }));
    }
    if (this.state !== 'held') {
      throw this.lostError ?? new ChartlogError('lease', `this process does not hold the writer lease of source ${this.o.source} (${this.state})`, { hint: LOST_HINT });
    }
  }

  async check(): Promise<void> {
    this.assertHeld();
    const current = await withRetry(() => this.lane.getVersioned(this.key), { maxAttempts: 3 });
    this.assertHeld();
    const rec = current ? decodeRecord(current.bytes, this.key) : null;
    if (!rec || rec.owner !== this.owner || rec.epoch !== this.record!.epoch || rec.released) {
      this.lose(takenOver(this.o.source, rec));
      throw this.lostError!;
    }
  }

  /** Marks the lease released so the next process takes over at once. Safe to call twice. */
  async release(): Promise<void> {
    this.clearTimers();
    await this.renewing;
    try {
      await this.releaseHeld();
    } finally {
      await this.closeLane();
    }
  }

  private async releaseHeld(): Promise<void> {
    if (this.state !== 'held' || !this.record || !this.version) {
      if (this.state === 'idle') this.state = 'released';
      return;
    }
    const t = this.now();
    const rec: LeaseRecord = { ...this.record, renewedAt: iso(t), expiresAt: iso(t), renewals: this.record.renewals + 1, released: true };
    this.state = 'released';
    try {
      const done = await this.replace(rec, this.version);
      if (done) this.log.info({ epoch: rec.epoch }, 'writer lease released');
      else this.log.warn({ epoch: rec.epoch }, 'writer lease was already taken over when released');
    } catch (err) {
      this.log.warn({ err: toChartlogError(err) }, 'could not release the writer lease; the next process takes over once it expires');
    }
  }

  /** 'acquired', 'again' (raced: look again at once), or the record of the live holder. */
  private async attempt(): Promise<'acquired' | 'again' | LeaseRecord> {
    const current = await withRetry(() => this.lane.getVersioned(this.key));
    const t = this.now();
    if (!current) {
      const rec = this.newRecord(1, t);
      const body = encodeRecord(rec);
      if (await withRetry(() => this.lane.putIfAbsent(this.key, body, { contentType: 'application/json' }))) {
        const mine = await withRetry(() => this.lane.getVersioned(this.key));
        if (mine && Buffer.from(mine.bytes).equals(body)) {
          this.hold(rec, mine.version, t);
          return 'acquired';
        }
      }
      return 'again';
    }
    const rec = decodeRecord(current.bytes, this.key);
    if (rec.owner === this.owner && !rec.released) {
      // Ours already: a create or takeover whose response was lost and was sent again.
      this.hold(rec, current.version, Math.min(t, Date.parse(rec.renewedAt)));
      return 'acquired';
    }
    const gone = !rec.released && t < Date.parse(rec.expiresAt) && this.holderIsGone(rec);
    if (!rec.released && t < Date.parse(rec.expiresAt) && !gone) return rec;
    const next = this.newRecord(rec.epoch + 1, t);
    if (await this.replace(next, current.version)) {
      const previous = { host: rec.host, pid: rec.pid, epoch: rec.epoch, expiresAt: rec.expiresAt };
      if (gone) this.log.warn({ previous }, 'took over the writer lease of a holder that died on this machine');
      else if (!rec.released) this.log.warn({ previous }, 'took over an expired writer lease');
      this.hold(next, this.version!, t);
      return 'acquired';
    }
    return 'again';
  }

  /** True only when the holder provably ran on this machine, in this boot and PID namespace, and is gone. */
  private holderIsGone(rec: LeaseRecord): boolean {
    if (rec.host !== this.host || this.host !== hostname() || this.pid !== process.pid) return false;
    if (!LOCAL.bootId || !LOCAL.pidNamespace || rec.bootId !== LOCAL.bootId || rec.pidNamespace !== LOCAL.pidNamespace) return false;
    if (rec.pid === process.pid) return false;
    try {
      process.kill(rec.pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }

  private newRecord(epoch: number, t: number): LeaseRecord {
    return {
      version: 1,
      source: this.o.source,
      owner: this.owner,
      host: this.host,
      pid: this.pid,
      ...LOCAL,
      epoch,
      acquiredAt: iso(t),
      renewedAt: iso(t),
      expiresAt: iso(t + this.ttlMs),
      ttlMs: this.ttlMs,
      renewals: 0,
      released: false,
    };
  }

  /**
   * Compare-and-swap of the lease to `rec`; true when the store now holds exactly `rec` (also
   * when our write happened but its answer was lost). Sets `version` on success.
   */
  private async replace(rec: LeaseRecord, version: string): Promise<boolean> {
    const body = encodeRecord(rec);
    let failure: unknown = null;
    try {
      const v = await this.lane.putIfVersion(this.key, body, version);
      if (v !== null) {
        this.version = v;
        return true;
      }
    } catch (err) {
      failure = err;
    }
    const current: VersionedObject | null = await withRetry(() => this.lane.getVersioned(this.key), { maxAttempts: 3 });
    if (current && Buffer.from(current.bytes).equals(body)) {
      this.version = current.version;
      return true;
    }
    if (failure !== null && !current) throw failure;
    return false;
  }

  /** Holds `rec` (at `version`), counting the deadline from `since`, when the write began. */
  private hold(rec: LeaseRecord, version: string, since: number): void {
    this.record = rec;
    this.version = version;
    this.state = 'held';
    this.heldUntil = since + this.ttlMs - this.marginMs;
    this.clearTimers();
    this.renewDueAt = this.now() + this.renewEveryMs;
    // Not started until the timer says so. (Compared by a flag, not by the clock: the timer runs
    // on the monotonic clock and may fire a millisecond before Date.now() reaches renewDueAt.)
    this.renewStartedAt = null;
    this.failedWrites = 0;
    this.renewTimer = setTimeout(() => {
      this.renewStartedAt = this.now();
      this.renewing = this.renew();
    }, this.renewEveryMs);
    this.deadlineTimer = setTimeout(() => {
      if (this.state === 'held' && this.now() >= this.heldUntil) this.lose(this.expired());
    }, Math.max(0, this.heldUntil - this.now()) + 1);
  }

  /** The loss error, saying whether the process started the renewal late or the store answered late. */
  private expired(): ChartlogError {
    const t = this.now();
    const started = this.renewStartedAt;
    const why = [
      started === null
        ? `the renewal due ${((t - this.renewDueAt) / 1000).toFixed(1)} s ago never started (this process was too busy to run its timer)`
        : `the renewal started ${(Math.max(0, started - this.renewDueAt) / 1000).toFixed(1)} s after it was due`,
      ...(this.failedWrites === 0 ? [] : [`${this.failedWrites} call${this.failedWrites === 1 ? '' : 's'} to the store failed`]),
      ...(this.storeCallSince === null ? [] : [`its write to the store had been waiting ${((t - this.storeCallSince) / 1000).toFixed(1)} s for an answer`]),
    ].join('; ');
    return new ChartlogError('lease', `could not renew the writer lease of source ${this.o.source} before it expired: ${why}`, { hint: LOST_HINT });
  }

  private async renew(): Promise<void> {
    let lastWarn = -Infinity;
    while (this.state === 'held' && this.record && this.version) {
      const t = this.now();
      if (t >= this.heldUntil) {
        this.lose(this.expired());
        return;
      }
      const next: LeaseRecord = { ...this.record, renewedAt: iso(t), expiresAt: iso(t + this.ttlMs), renewals: this.record.renewals + 1 };
      const body = encodeRecord(next);
      try {
        this.storeCallSince = t;
        const v = await this.lane.putIfVersion(this.key, body, this.version).finally(() => (this.storeCallSince = null));
        if (this.state !== 'held') return;
        if (v !== null) {
          this.hold(next, v, t);
          return;
        }
        const current = await this.lane.getVersioned(this.key);
        if (this.state !== 'held') return;
        const rec = current ? decodeRecord(current.bytes, this.key) : null;
        if (current && rec && rec.owner === this.owner && rec.epoch === this.record.epoch && !rec.released) {
          // Our own earlier write whose answer was lost (or this very one): continue from it.
          if (Buffer.from(current.bytes).equals(body)) {
            this.hold(next, current.version, t);
            return;
          }
          this.record = rec;
          this.version = current.version;
          continue;
        }
        this.lose(takenOver(this.o.source, rec));
        return;
      } catch (err) {
        const e = toChartlogError(err);
        this.failedWrites++;
        if (!e.retriable) {
          this.lose(new ChartlogError('lease', `renewing the writer lease of source ${this.o.source} failed: ${e.message}`, { hint: e.hint ?? LOST_HINT, cause: e }));
          return;
        }
        if (this.now() - lastWarn >= 5000) {
          lastWarn = this.now();
          this.log.warn({ err: e, expiresInMs: this.heldUntil - this.now() }, 'could not renew the writer lease; retrying until it would expire');
        }
        // Soon again, so a write whose answer was lost is found (next attempt: null, re-read).
        await sleep(Math.min(this.pollMs, Math.max(0, this.heldUntil - this.now())));
      }
    }
  }

  private lose(err: ChartlogError): void {
    if (this.state !== 'held') return;
    this.state = 'lost';
    this.lostError = err;
    this.clearTimers();
    this.log.error({ err, epoch: this.record?.epoch }, 'writer lease lost: stopping before anything else is written');
    this.lostController.abort(err);
    void this.closeLane();
  }

  private async closeLane(): Promise<void> {
    if (!this.laneOpen) return;
    this.laneOpen = false;
    await this.lane.close().catch(() => undefined);
  }

  private clearTimers(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.renewTimer = this.deadlineTimer = null;
  }
}

/** This machine's boot id and this process's PID namespace (Linux), for holderIsGone. */
const LOCAL: { bootId?: string; pidNamespace?: string } = (() => {
  try {
    return { bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), pidNamespace: readlinkSync('/proc/self/ns/pid') };
  } catch {
    return {};
  }
})();

const LOST_HINT =
  'another chartlog process writes this archive now (two `chartlog run` with one configuration), or this one or its store was slower than storage.leaseTtlMs allows (the message says which: raise storage.leaseTtlMs, or give the process CPU and the store I/O); this process stopped without writing more. Nothing acknowledged is lost; run one chartlog per source';

function takenOver(source: string, rec: LeaseRecord | null): ChartlogError {
  const who = rec ? `host ${rec.host}, pid ${rec.pid}, epoch ${rec.epoch}${rec.released ? ', released' : ''}` : 'nobody: the lease object is gone';
  return new ChartlogError('lease', `the writer lease of source ${source} was taken over (now: ${who})`, { hint: LOST_HINT });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function encodeRecord(rec: LeaseRecord): Buffer {
  return Buffer.from(`${JSON.stringify(rec, null, 2)}\n`, 'utf8');
}

export function decodeRecord(bytes: Uint8Array, key: string): LeaseRecord {
  try {
    const r = JSON.parse(Buffer.from(bytes).toString('utf8')) as LeaseRecord;
    if (r.version !== 1 || typeof r.owner !== 'string' || !Number.isSafeInteger(r.epoch) || Number.isNaN(Date.parse(r.expiresAt))) throw new Error('unexpected fields');
    return r;
  } catch (err) {
    throw new ChartlogError('integrity', `${key} is not a readable writer lease`, {
      cause: err,
      hint: `when no chartlog process writes this source, delete ${key}; the next chartlog creates it anew`,
    });
  }
}

/** The lease record in the store, or null (for messages: who holds it). */
export async function readLease(store: ObjectStore, source: string): Promise<LeaseRecord | null> {
  const current = await store.getVersioned(leaseKey(source));
  return current ? decodeRecord(current.bytes, leaseKey(source)) : null;
}
