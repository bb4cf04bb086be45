import { parentPort } from 'node:worker_threads';
import { ChartlogError } from '../../core/errors.js';
import type { Row } from '../../core/table-schema.js';
import type { RegisteredSchema } from '../../codec/schema-store.js';
import type { DataKey } from '../../phi/sealer.js';
import { CopyBlockRenderer, describeRenderError, type CopyTableSpec } from './copy-block-renderer.js';

/**
 * The body of a COPY thread (copy-block-threads.ts): turns base snapshot container blocks into
 * COPY text (copy-block-renderer.ts) and hands back the bytes, with the rows the merge must see
 * (held keys) as rows.
 *
 * Data keys: a thread asks the calling thread for each key id its values name, the first time it
 * meets it in a table; the calling thread unwraps it with the keyring (the KEK never comes here)
 * and sends the data key. Keys are zeroed and dropped when the table ends. Nothing here logs;
 * an error goes back as code, message and hint, which name tables and columns, never values.
 */

export type { CopyTableSpec } from './copy-block-renderer.js';

export type CopyRequest =
  | {
      readonly type: 'block';
      readonly job: number;
      readonly seq: number;
      readonly count: number;
      readonly data: Uint8Array;
      readonly fingerprint: string;
      /** The first block of a table on this thread. */
      readonly spec?: CopyTableSpec;
      /** The first block of this version on this thread. */
      readonly registered?: RegisteredSchema;
    }
  | { readonly type: 'key'; readonly job: number; readonly idHex: string; readonly key?: DataKey; readonly error?: WorkerError }
  | { readonly type: 'end'; readonly job: number };

export interface WorkerError {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
}

export type CopyReply =
  | { readonly type: 'chunk'; readonly job: number; readonly seq: number; readonly bytes: Uint8Array; readonly rows: number; readonly held: Row[] }
  | { readonly type: 'error'; readonly job: number; readonly seq: number; readonly error: WorkerError }
  | { readonly type: 'key'; readonly job: number; readonly idHex: string };

interface Job {
  readonly renderer: CopyBlockRenderer;
  readonly waiting: Map<string, { resolve: (k: DataKey) => void; reject: (e: Error) => void }>;
  /** Every data key received, zeroed when the table ends. */
  readonly keys: DataKey[];
  /** Blocks are rendered one after another (a block waiting for a key holds the next). */
  queue: Promise<void>;
}

const jobs = new Map<number, Job>();
const port = parentPort;

port?.on('message', (m: CopyRequest) => {
  if (m.type === 'key') return keyArrived(m);
  if (m.type === 'end') return endJob(m.job);
  let job = jobs.get(m.job);
  if (!job) {
    if (!m.spec) return reply({ type: 'error', job: m.job, seq: m.seq, error: { code: 'internal', message: 'a COPY thread got a block of a table it was not told about' } });
    job = startJob(m.job, m.spec);
  }
  if (m.registered) job.renderer.addVersion(m.fingerprint, m.registered);
  const j = job;
  j.queue = j.queue.then(() => render(m.job, j, m)).catch((err: unknown) => reply({ type: 'error', job: m.job, seq: m.seq, error: describe(err, j.renderer.spec.name) }));
});

function startJob(id: number, spec: CopyTableSpec): Job {
  const waiting: Job['waiting'] = new Map();
  const keys: DataKey[] = [];
  const job: Job = {
    waiting,
    keys,
    queue: Promise.resolve(),
    renderer: new CopyBlockRenderer(spec, {
      get: (idHex) =>
        new Promise<DataKey>((resolve, reject) => {
          waiting.set(idHex, { resolve, reject });
          reply({ type: 'key', job: id, idHex });
        }),
    }),
  };
  jobs.set(id, job);
  return job;
}

function keyArrived(m: Extract<CopyRequest, { type: 'key' }>): void {
  const job = jobs.get(m.job);
  const w = job?.waiting.get(m.idHex);
  if (!job || !w) return;
  job.waiting.delete(m.idHex);
  if (m.key) {
    job.keys.push(m.key);
    w.resolve(m.key);
  } else w.reject(new ChartlogError((m.error?.code ?? 'auth') as never, m.error?.message ?? 'no data key', m.error?.hint ? { hint: m.error.hint } : {}));
}

function endJob(id: number): void {
  const job = jobs.get(id);
  if (!job) return;
  jobs.delete(id);
  job.renderer.end();
  for (const k of job.keys) k.key.fill(0);
}

async function render(id: number, job: Job, m: Extract<CopyRequest, { type: 'block' }>): Promise<void> {
  const r = await job.renderer.render(m.fingerprint, m.count, Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
  port!.postMessage({ type: 'chunk', job: id, seq: m.seq, bytes: r.bytes, rows: r.rows, held: r.held } satisfies CopyReply, [r.bytes.buffer as ArrayBuffer]);
}

function reply(m: CopyReply): void {
  port!.postMessage(m);
}

/** An error as the calling thread raises it again: a damaged block's decoder error is still a refusal, never a bug. */
function describe(err: unknown, table: string): WorkerError {
  const e = describeRenderError(err, table);
  return { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
}
