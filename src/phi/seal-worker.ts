import { parentPort } from 'node:worker_threads';
import { sealJobs, type SealJobBatch } from './seal-jobs.js';

/**
 * The body of a sealing thread (seal-pool.ts): seals each request's jobs into its output buffer
 * and hands the buffer back. It holds no state between requests; data keys come with each
 * request and are dropped with it. A failure is reported by its message, which node:crypto and
 * the sealer write without values.
 */
export interface SealRequest extends SealJobBatch {
  readonly id: number;
  readonly out: Uint8Array;
}

export type SealReply = { readonly id: number; readonly out: Uint8Array } | { readonly id: number; readonly error: string };

parentPort?.on('message', (r: SealRequest) => {
  try {
    sealJobs(r, r.out);
    parentPort!.postMessage({ id: r.id, out: r.out } satisfies SealReply, [r.out.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: r.id, error: err instanceof Error ? err.message : 'unknown error' } satisfies SealReply);
  }
});
