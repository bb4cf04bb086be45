import type { Worker } from 'node:worker_threads';
import { ChartlogError, type ErrorCode } from '../../core/errors.js';
import { startWorker } from '../../core/worker-thread.js';
import type { Row } from '../../core/table-schema.js';
import type { RegisteredSchema } from '../../codec/schema-store.js';
import type { BaseBatch } from '../../archive/table-merge.js';
import type { TableBlocks } from '../../archive/streaming-replay.js';
import type { CopyReply, CopyRequest, WorkerError } from './copy-block-worker.js';
import { copyTableSpec, type CopyTableSpec } from './copy-block-renderer.js';
import type { TablePlan } from './restore-target.js';

/** One block's COPY text, in block order. */
export interface RenderedBlock {
  readonly bytes: Buffer;
  /** Rows in `bytes`. */
  readonly rows: number;
  /** Base rows the merge must see (TableBlocks.held), with their table version; null: none. */
  readonly held: BaseBatch | null;
}

interface Thread {
  readonly worker: Worker;
  /** Blocks sent and not answered yet. */
  outstanding: number;
  failed: Error | null;
}

/** Blocks in flight per thread: one being rendered, one waiting, so a thread never idles on the calling thread. */
const IN_FLIGHT_PER_THREAD = 2;

/**
 * Threads that turn a table's base snapshot blocks into COPY text (copy-block-worker.ts), so
 * decoding, opening PHI and writing COPY lines — nearly all of a restore's work per row — run
 * on every core while the calling thread only reads blocks and streams the text into COPY.
 * Blocks go to the least busy thread and come back in block order; at most
 * IN_FLIGHT_PER_THREAD blocks per thread are out at once, so memory holds a few blocks and
 * their text whatever the table's size. A thread that fails fails the table (the target rolls
 * it back): nothing is decided on a thread alone, and nothing is retried half-written.
 */
export class CopyBlockThreads {
  private readonly threads: Thread[];
  private readonly pending = new Map<string, { resolve: (r: RenderedBlock) => void; reject: (e: Error) => void; thread: Thread; fingerprint: string }>();
  private readonly jobs = new Map<number, { blocks: TableBlocks; schemaOf: Map<string, RegisteredSchema> }>();
  private nextJob = 0;

  constructor(count: number) {
    this.threads = Array.from({ length: Math.max(1, count) }, () => this.spawn());
  }

  /** The table's blocks as COPY text, in block order; `plan` says the columns and which stay sealed. */
  async *render(t: TableBlocks, plan: TablePlan): AsyncGenerator<RenderedBlock> {
    const job = this.nextJob++;
    const schemaOf = new Map<string, RegisteredSchema>();
    this.jobs.set(job, { blocks: t, schemaOf });
    const spec: CopyTableSpec = copyTableSpec(t, plan);
    const told = new Map<Thread, Set<string>>();
    const results = new Map<number, Promise<RenderedBlock>>();
    const limit = IN_FLIGHT_PER_THREAD * this.threads.length;
    const blocks = t.blocks[Symbol.asyncIterator]();
    let sent = 0;
    let taken = 0;
    let more = true;
    try {
      for (;;) {
        while (more && sent - taken < limit) {
          const next = await blocks.next();
          if (next.done) {
            more = false;
            break;
          }
          const { fingerprint, count, data } = next.value;
          let registered = schemaOf.get(fingerprint);
          if (!registered) schemaOf.set(fingerprint, (registered = await t.registered(fingerprint)));
          const thread = this.leastBusy();
          let versions = told.get(thread);
          const first = !versions;
          if (!versions) told.set(thread, (versions = new Set()));
          const newVersion = !versions.has(fingerprint);
          versions.add(fingerprint);
          // The block moves to the thread. An inflated block owns its memory and moves as it is; a
          // view of a larger buffer (a block stored uncompressed is a view of its file) moves as a copy.
          const owned = data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
          const copy = owned ? new Uint8Array(data.buffer as ArrayBuffer, 0, data.byteLength) : new Uint8Array(data);
          const request: CopyRequest = { type: 'block', job, seq: sent, count, data: copy, fingerprint, ...(first ? { spec } : {}), ...(newVersion ? { registered } : {}) };
          const done = this.send(thread, request, [copy.buffer]);
          done.catch(() => undefined); // awaited in order below: not an unhandled rejection meanwhile
          results.set(sent++, done);
        }
        if (taken === sent) return;
        const r = await results.get(taken)!;
        results.delete(taken++);
        yield r;
      }
    } finally {
      this.jobs.delete(job);
      // Zeroes the data keys the threads hold for this table, and drops its state.
      for (const thread of told.keys()) if (!thread.failed) thread.worker.postMessage({ type: 'end', job } satisfies CopyRequest);
      await blocks.return?.(undefined);
    }
  }

  /** Stops the threads. */
  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }

  private leastBusy(): Thread {
    const alive = this.threads.filter((t) => !t.failed);
    if (alive.length === 0) throw new ChartlogError('internal', 'every restore COPY thread failed', { hint: 'see the log; run the restore again' });
    return alive.reduce((a, b) => (b.outstanding < a.outstanding ? b : a));
  }

  private send(thread: Thread, request: Extract<CopyRequest, { type: 'block' }>, transfer: ArrayBuffer[]): Promise<RenderedBlock> {
    return new Promise<RenderedBlock>((resolve, reject) => {
      this.pending.set(`${request.job}:${request.seq}`, { resolve, reject, thread, fingerprint: request.fingerprint });
      thread.outstanding++;
      thread.worker.ref();
      thread.worker.postMessage(request, transfer);
    });
  }

  private spawn(): Thread {
    const worker = startWorker(import.meta.url, 'copy-block-worker');
    const thread: Thread = { worker, outstanding: 0, failed: null };
    worker.on('message', (m: CopyReply) => {
      if (m.type === 'key') return this.giveKey(thread, m.job, m.idHex);
      const p = this.pending.get(`${m.job}:${m.seq}`);
      if (!p) return;
      this.pending.delete(`${m.job}:${m.seq}`);
      if (--thread.outstanding === 0) worker.unref();
      if (m.type === 'error') return p.reject(raise(m.error));
      // The rows held back are of the block's table version, resolved before the block was sent.
      const version = this.jobs.get(m.job)?.schemaOf.get(p.fingerprint)?.version.table;
      if (m.held.length > 0 && !version) return p.reject(new ChartlogError('internal', 'a COPY thread answered for a table no longer read'));
      const held = m.held.length > 0 ? { schema: version!, rows: m.held as Row[] } : null;
      p.resolve({ bytes: Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength), rows: m.rows, held });
    });
    const fail = (err: Error) => {
      if (thread.failed) return;
      thread.failed = err;
      for (const [id, p] of this.pending) {
        if (p.thread !== thread) continue;
        this.pending.delete(id);
        p.reject(new ChartlogError('internal', `a restore COPY thread failed: ${err.message}`, { cause: err, hint: 'nothing of this table is left in the target; run the restore again' }));
      }
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`it exited with code ${code}`)));
    worker.unref();
    return thread;
  }

  /** Unwraps a data key a thread's values name (on this thread, with the keyring) and sends it. */
  private giveKey(thread: Thread, job: number, idHex: string): void {
    const j = this.jobs.get(job);
    if (!j) return;
    j.blocks.dataKey(idHex).then(
      (key) => thread.worker.postMessage({ type: 'key', job, idHex, key: { id: key.id, idHex: key.idHex, key: key.key, ...(key.algorithm ? { algorithm: key.algorithm } : {}) } } satisfies CopyRequest),
      (err: unknown) => thread.worker.postMessage({ type: 'key', job, idHex, error: errorOf(err) } satisfies CopyRequest),
    );
  }
}

function errorOf(err: unknown): WorkerError {
  if (err instanceof ChartlogError) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  return { code: 'auth', message: `a data key could not be unwrapped: ${err instanceof Error ? err.message : 'unknown error'}` };
}

function raise(e: WorkerError): ChartlogError {
  return new ChartlogError(e.code as ErrorCode, e.message, e.hint ? { hint: e.hint } : {});
}
