import { Worker } from 'node:worker_threads';
import { logger } from '../core/logger.js';
import { sealJobs, type SealJobBatch } from './seal-jobs.js';
import type { SealReply, SealRequest } from './seal-worker.js';

/**
 * Seals job batches (seal-jobs.ts) on worker threads, so AES-GCM — one cipher setup per PHI
 * value, the largest cost of the pipeline — runs beside the thread that reads the source and
 * writes Avro. Requests go to the threads in turn; each is answered in order of its own.
 *
 * A thread that fails or cannot start never fails the pipeline: the batch it held is sealed
 * here instead, from the caller's own bytes (requests are copied to the thread, not
 * transferred), and after a thread fails before its first answer the pool seals everything
 * here, with one warning. Threads do not keep the process alive while idle, and end after `idleMs` without
 * work (a new one starts with the next batch).
 */
export class SealPool {
  private readonly workers: (Worker | null)[];
  private readonly pending = new Map<number, { resolve: (out: Uint8Array) => void; reject: (err: Error) => void; worker: Worker }>();
  private nextId = 0;
  private turn = 0;
  /** Set once a thread failed to start: everything is sealed on the calling thread. */
  private inline = false;
  private closed = false;
  /** Batches sealed on a thread, and on the calling thread (below the threshold, or after a failure). */
  readonly stats = { onThread: 0, inline: 0 };

  private readonly idleTimers = new Map<Worker, NodeJS.Timeout>();

  constructor(
    readonly threads = 1,
    private readonly idleMs = 10_000,
  ) {
    this.workers = Array.from({ length: Math.max(1, threads) }, () => null);
  }

  /** Seals every job into its hole of `out`; resolves with the sealed buffer (`out` or its copy). */
  async seal(batch: SealJobBatch, out: Uint8Array): Promise<Uint8Array> {
    if (batch.jobs.length === 0) return out;
    if (!this.inline && !this.closed) {
      try {
        const sealed = await this.onThread(batch, out);
        this.stats.onThread++;
        return sealed;
      } catch (err) {
        logger().warn({ err }, 'a sealing thread failed; this batch is sealed on the main thread');
      }
    }
    sealJobs(batch, out);
    this.stats.inline++;
    return out;
  }

  /** Stops the threads; later batches are sealed on the calling thread. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w?.terminate()));
    this.workers.fill(null);
  }

  private onThread(batch: SealJobBatch, out: Uint8Array): Promise<Uint8Array> {
    const slot = this.turn++ % this.workers.length;
    const worker = (this.workers[slot] ??= this.spawn(slot));
    const id = this.nextId++;
    const request: SealRequest = { id, keys: batch.keys, jobs: batch.jobs, data: batch.data, out };
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker });
      clearTimeout(this.idleTimers.get(worker));
      worker.ref();
      worker.postMessage(request);
    });
  }

  private spawn(slot: number): Worker {
    const worker = startSealWorker();
    // Until a thread has answered once, its failure means threads do not work here at all.
    let answered = false;
    worker.on('message', (reply: SealReply) => {
      answered = true;
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (![...this.pending.values()].some((q) => q.worker === worker)) this.idle(worker, slot);
      if ('error' in reply) p.reject(new Error(`sealing thread: ${reply.error}`));
      else p.resolve(reply.out);
    });
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      clearTimeout(this.idleTimers.get(worker));
      this.idleTimers.delete(worker);
      if (this.workers[slot] === worker) this.workers[slot] = null;
      if (!answered) {
        this.inline = true;
        logger().warn({ err }, 'the sealing thread could not start; PHI is sealed on the main thread (slower)');
      }
      for (const [id, p] of this.pending) {
        if (p.worker !== worker) continue;
        this.pending.delete(id);
        p.reject(err);
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`sealing thread exited with code ${code}`)));
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

/**
 * The sealing thread. From sources (a checkout run through tsx: tests, benchmarks, the bin in
 * a checkout) the thread first registers the same TypeScript loader; from dist it is plain JS.
 */
function startSealWorker(): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./seal-worker.js', here));
  const entry = new URL('./seal-worker.ts', here).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`, { eval: true });
}
