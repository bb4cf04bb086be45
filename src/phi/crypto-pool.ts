import type { Worker } from 'node:worker_threads';
import { startWorker } from '../core/worker-thread.js';
import { logger } from '../core/logger.js';
import { openJobs, sealJobs, type CryptoJobBatch } from './crypto-jobs.js';
import type { CryptoReply, CryptoRequest } from './crypto-worker.js';

/** What a thread answered when it could not do a request (a job failed, not the thread). */
class JobFailed extends Error {}

/**
 * Seals and opens batches of PHI values (crypto-jobs.ts) on worker threads, so AES-GCM — one
 * cipher setup per value, the largest cost of both the pipeline and restore — runs beside the
 * thread that reads, writes and decodes Avro. Requests go to the threads in turn.
 *
 * A thread never decides an outcome on its own. Opening requests are copied to it, so when a
 * thread dies the calling thread opens the batch from its own bytes, and a job that fails on a
 * thread (an open that does not authenticate) is done again here, raising the error that names
 * the column. Sealing requests move to the thread without a copy (they are the size of the
 * messages); when a thread dies the caller is told and encodes the batch again. After a thread fails before its first answer the
 * pool does everything on the calling thread, with one warning. Threads do not keep the
 * process alive while idle, and end after `idleMs` without work.
 */
export class CryptoPool {
  private readonly workers: (Worker | null)[];
  private readonly pending = new Map<number, { resolve: (out: Uint8Array) => void; reject: (err: Error) => void; worker: Worker }>();
  private readonly idleTimers = new Map<Worker, NodeJS.Timeout>();
  private nextId = 0;
  private turn = 0;
  /** Set once a thread failed before answering: everything is done on the calling thread. */
  private inline = false;
  private closed = false;
  /** Batches done on a thread, and on the calling thread (after a failure, or once closed). */
  readonly stats = { onThread: 0, inline: 0 };

  constructor(
    readonly threads = 1,
    private readonly idleMs = 10_000,
  ) {
    this.workers = Array.from({ length: Math.max(1, threads) }, () => null);
  }

  /**
   * Seals every job into its hole of `out`; resolves with the sealed buffer. `out`'s whole
   * ArrayBuffer and the batch's buffers move to the thread and back without a copy, so the
   * caller must own them and use only the result. Resolves null when the thread failed: the
   * bytes are gone with it and the caller encodes the batch again (it still has its rows).
   */
  async seal(batch: CryptoJobBatch, out: Uint8Array): Promise<Uint8Array | null> {
    if (batch.jobs.length === 0) return out;
    if (this.inline || this.closed) {
      sealJobs(batch, out);
      this.stats.inline++;
      return out;
    }
    return this.onThread('seal', batch, out, true);
  }

  /** Opens every job into a buffer of `outLength` bytes; `where(i)` names job i's column in errors. */
  async open(batch: CryptoJobBatch, outLength: number, where: (job: number) => string): Promise<Uint8Array> {
    const out = new Uint8Array(outLength);
    if (batch.jobs.length === 0) return out;
    const done = await this.onThread('open', batch, out);
    if (done) return done;
    openJobs(batch, out, where);
    this.stats.inline++;
    return out;
  }

  /**
   * Starts the threads now rather than at the first request (they end after `idleMs` unused, as
   * after any request): a thread's start (its module loaded and compiled: a few hundred ms from
   * source under load) then overlaps what the caller does before its first batch (a replica's
   * start: reading the archive's index, inspecting the target) instead of delaying that batch.
   */
  warm(): void {
    if (this.inline || this.closed) return;
    for (let slot = 0; slot < this.workers.length; slot++) {
      if (this.workers[slot]) continue;
      const worker = (this.workers[slot] = this.spawn(slot));
      this.idle(worker, slot);
    }
  }

  /** Stops the threads; later batches are done on the calling thread. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.idleTimers.values()) clearTimeout(t);
    await Promise.all(this.workers.map((w) => w?.terminate()));
    this.workers.fill(null);
  }

  /** The request's output from a thread, or null when the calling thread must do it. */
  private async onThread(kind: CryptoRequest['kind'], batch: CryptoJobBatch, out: Uint8Array, transfer = false): Promise<Uint8Array | null> {
    if (this.inline || this.closed) return null;
    try {
      const done = await this.request(kind, batch, out, transfer);
      this.stats.onThread++;
      return done;
    } catch (err) {
      if (!(err instanceof JobFailed)) logger().warn({ err }, 'a PHI crypto thread failed; this batch is done on the main thread');
      return null;
    }
  }

  private request(kind: CryptoRequest['kind'], batch: CryptoJobBatch, out: Uint8Array, transfer: boolean): Promise<Uint8Array> {
    const slot = this.turn++ % this.workers.length;
    const worker = (this.workers[slot] ??= this.spawn(slot));
    const id = this.nextId++;
    const request: CryptoRequest = { id, kind, keys: batch.keys, jobs: batch.jobs, data: batch.data, out };
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker });
      clearTimeout(this.idleTimers.get(worker));
      worker.ref();
      worker.postMessage(request, transfer ? [out.buffer as ArrayBuffer, batch.jobs.buffer as ArrayBuffer, batch.data.buffer as ArrayBuffer] : []);
    });
  }

  private spawn(slot: number): Worker {
    const worker = startCryptoWorker();
    // Until a thread has answered once, its failure means threads do not work here at all.
    let answered = false;
    let failed = false;
    worker.on('message', (reply: CryptoReply) => {
      answered = true;
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (![...this.pending.values()].some((q) => q.worker === worker)) this.idle(worker, slot);
      if ('error' in reply) p.reject(new JobFailed(reply.error));
      else p.resolve(reply.out);
    });
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      clearTimeout(this.idleTimers.get(worker));
      this.idleTimers.delete(worker);
      if (this.workers[slot] === worker) this.workers[slot] = null;
      if (!answered && !this.closed) {
        this.inline = true;
        logger().warn({ err }, 'the PHI crypto thread could not start; sealing and opening run on the main thread (slower)');
      }
      for (const [id, p] of this.pending) {
        if (p.worker !== worker) continue;
        this.pending.delete(id);
        p.reject(err);
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`PHI crypto thread exited with code ${code}`)));
    worker.unref();
    return worker;
  }

  /** Lets an idle thread go: it no longer holds the process, and ends after `idleMs`. */
  private idle(worker: Worker, slot: number): void {
    worker.unref();
    const timer = setTimeout(() => {
      this.idleTimers.delete(worker);
      if (this.workers[slot] === worker) this.workers[slot] = null;
      void worker.terminate();
    }, this.idleMs);
    timer.unref();
    this.idleTimers.set(worker, timer);
  }
}

/** The crypto thread (crypto-worker.ts). */
function startCryptoWorker(): Worker {
  return startWorker(import.meta.url, 'crypto-worker', WORKER_LIMITS);
}

/**
 * Each sealed value costs the thread a cipher object whose OpenSSL context lives outside the
 * JS heap until a scavenge collects the object. V8 sizes scavenges by the JS heap alone, so with
 * the default young generation (up to 3 × 16 MiB) tens of thousands of dead contexts waited for
 * one: the thread's share of a 1M-row transaction's peak RSS was ~95 MiB
 * (benchmarks/memory.bench.ts, MariaDB diagnosis `phi.cryptoThreads 0`). A small young
 * generation collects them every few thousand values; a scavenge of mostly garbage is cheap.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 2 };
