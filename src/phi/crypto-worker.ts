import { parentPort } from 'node:worker_threads';
import { openJobs, sealJobs, type CryptoJobBatch } from './crypto-jobs.js';

/**
 * The body of a PHI crypto thread (crypto-pool.ts): seals or opens each request's jobs into its
 * output buffer and hands the buffer back. It holds no state between requests; data keys come
 * with each request and are dropped with it. A failure is reported by its message, which
 * node:crypto and the sealer write without values (the caller repeats a failed open itself to
 * raise the error naming the column).
 */
export interface CryptoRequest extends CryptoJobBatch {
  readonly id: number;
  readonly kind: 'seal' | 'open';
  readonly out: Uint8Array;
}

export type CryptoReply = { readonly id: number; readonly out: Uint8Array } | { readonly id: number; readonly error: string };

parentPort?.on('message', (r: CryptoRequest) => {
  try {
    if (r.kind === 'seal') sealJobs(r, r.out);
    else openJobs(r, r.out, () => 'a sealed value');
    parentPort!.postMessage({ id: r.id, out: r.out } satisfies CryptoReply, [r.out.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: r.id, error: err instanceof Error ? err.message : 'unknown error' } satisfies CryptoReply);
  }
});
