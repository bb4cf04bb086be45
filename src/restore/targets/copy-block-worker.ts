import { parentPort } from 'node:worker_threads';
import { ChartlogError } from '../../core/errors.js';
import type { ColumnSchema, Row } from '../../core/table-schema.js';
import { AvroReader } from '../../codec/avro-binary.js';
import { compileTable, type CompiledTable } from '../../codec/compiled-table.js';
import { readBlockRecord } from '../../codec/envelope-reader.js';
import type { RegisteredSchema } from '../../codec/schema-store.js';
import { PhiOpener } from '../../phi/phi-opener.js';
import type { DataKey } from '../../phi/sealer.js';
import { keyOf } from '../../archive/table-merge.js';
import { CopyTextBuffer, writeCopyRow } from './copy-text-buffer.js';
import type { SourceEngine } from './restore-target.js';

/**
 * The body of a COPY thread (copy-block-threads.ts): turns base snapshot container blocks into
 * COPY text — records read where they lie, PHI opened in place, rows written as COPY lines — and
 * hands back the bytes, with the rows the merge must see (held keys) as rows.
 *
 * Data keys: a thread asks the calling thread for each key id its values name, the first time it
 * meets it in a table; the calling thread unwraps it with the keyring (the KEK never comes here)
 * and sends the data key. Keys are zeroed and dropped when the table ends. Nothing here logs;
 * an error goes back as code, message and hint, which name tables and columns, never values.
 */

/** What a table's rows need, sent with its first block to each thread. */
export interface CopyTableSpec {
  readonly source: string;
  readonly open: boolean;
  readonly columns: readonly ColumnSchema[];
  readonly sealed: readonly boolean[];
  readonly engine: SourceEngine;
  /** Keys whose rows go back as rows (TableBlocks.held); empty: none. */
  readonly held: readonly string[];
  /** "schema.table", for messages. */
  readonly name: string;
}

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
  readonly spec: CopyTableSpec;
  readonly held: ReadonlySet<string>;
  readonly compiled: Map<string, CompiledTable>;
  readonly opener: PhiOpener;
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
  if (m.registered) job.compiled.set(m.fingerprint, compileTable(job.spec.source, m.registered));
  const j = job;
  j.queue = j.queue.then(() => render(m.job, j, m)).catch((err: unknown) => reply({ type: 'error', job: m.job, seq: m.seq, error: describe(err, j.spec.name) }));
});

function startJob(id: number, spec: CopyTableSpec): Job {
  const waiting: Job['waiting'] = new Map();
  const keys: DataKey[] = [];
  const job: Job = {
    spec,
    held: new Set(spec.held),
    compiled: new Map(),
    waiting,
    keys,
    queue: Promise.resolve(),
    opener: new PhiOpener({
      source: spec.source,
      keys: {
        get: (idHex) =>
          new Promise<DataKey>((resolve, reject) => {
            waiting.set(idHex, { resolve, reject });
            reply({ type: 'key', job: id, idHex });
          }),
      },
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
  for (const k of job.keys) k.key.fill(0);
}

async function render(id: number, job: Job, m: Extract<CopyRequest, { type: 'block' }>): Promise<void> {
  const compiled = job.compiled.get(m.fingerprint);
  if (!compiled) throw new ChartlogError('internal', `a COPY thread has no table version ${m.fingerprint}`);
  const { columns, sealed, engine, open } = job.spec;
  const opening = open && compiled.sealedColumns.length > 0;
  const held = job.held.size > 0 ? job.held : null;
  const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  const r = new AvroReader(data, 0);
  const out = new CopyTextBuffer(data.length);
  const heldRows: Row[] = [];
  let records = 0;
  let rows = 0;
  while (r.pos < r.end) {
    const d = readBlockRecord(compiled, r, opening);
    records++;
    if (opening) {
      const loading = job.opener.open(compiled, d.before, d.after, d.position, d.op !== 'r');
      if (loading) await loading;
    } else if (compiled.sealedColumns.length > 0 && d.op === 'r') {
      // --keep-sealed: a block-sealed row (format 5) leaves re-sealed per row (PhiOpener.keepSealed).
      const loading = job.opener.keepSealed(compiled, d.after, d.position);
      if (loading) await loading;
    }
    const row = d.after;
    if (!row) continue;
    if (held && held.has(keyOf(compiled.table, row))) {
      heldRows.push(ownBytes(row));
      continue;
    }
    writeCopyRow(out, row, columns, sealed, engine);
    rows++;
  }
  if (records !== m.count) {
    throw new ChartlogError('integrity', `a base snapshot block of ${job.spec.name} holds ${records} records where its header says ${m.count}`, {
      hint: 'the object is damaged; run `chartlog verify`',
    });
  }
  const bytes = out.take();
  port!.postMessage({ type: 'chunk', job: id, seq: m.seq, bytes, rows, held: heldRows } satisfies CopyReply, [bytes.buffer as ArrayBuffer]);
}

/** A held row without views into the block (a view would carry the whole block across). */
function ownBytes(row: Row): Row {
  const copy: Record<string, Row[string]> = {};
  for (const k of Object.keys(row)) {
    const v = row[k]!;
    if (k === '__proto__') Object.defineProperty(copy, k, { value: v instanceof Uint8Array ? v.slice() : v, enumerable: true, writable: true, configurable: true });
    else copy[k] = v instanceof Uint8Array ? v.slice() : v;
  }
  return copy;
}

function reply(m: CopyReply): void {
  port!.postMessage(m);
}

/** An error as the calling thread raises it again: a damaged block's decoder error is still a refusal, never a bug. */
function describe(err: unknown, table: string): WorkerError {
  if (err instanceof ChartlogError) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  return {
    code: 'integrity',
    message: `reading the base snapshot of ${table} failed: ${err instanceof Error ? err.message : 'unknown error'}; an object may be damaged`,
    hint: 'run `chartlog verify`, and restore damaged objects from a copy of the archive',
  };
}
