import { sealedLength, sealInto, type DataKey } from './sealer.js';

/**
 * A batch of values to seal later, all at once, into places already reserved in an output
 * buffer: how the codec hands sealing to a worker thread (seal-pool.ts). The codec writes each
 * message with a hole of `sealedLength(plaintext)` bytes where a sealed value goes and records
 * a job; `sealJobs` fills every hole. The job list and its bytes are plain arrays and buffers,
 * so they cross to a worker by transfer, without copying.
 *
 * Job i is JOB_FIELDS int32s: data key index, then offset and length in `data` of the
 * plaintext, the AAD's place half and its key half, then the offset of the hole in `out`.
 */
export const JOB_FIELDS = 8;

export interface SealJobBatch {
  /** Data keys the jobs name by index: [id, key] pairs. */
  readonly keys: readonly { readonly id: Uint8Array; readonly key: Uint8Array }[];
  readonly jobs: Int32Array;
  readonly data: Uint8Array;
}

/** Collects jobs; `take()` hands them over and starts afresh. */
export class SealJobBuilder {
  private keys: DataKey[] = [];
  private jobs = new Int32Array(JOB_FIELDS * 256);
  private data = new Uint8Array(64 * 1024);
  private dataPos = 0;
  /** Jobs recorded so far. */
  count = 0;

  /**
   * Records a value to seal under `dek` with the AAD `place` + `key` into `out` at `outAt`,
   * and returns the sealed length the caller must reserve there. Copies the bytes: the caller
   * may reuse its buffers at once.
   */
  add(dek: DataKey, plaintext: Uint8Array, place: Uint8Array, key: Uint8Array, outAt: number): number {
    let k = this.keys.indexOf(dek);
    if (k < 0) k = this.keys.push(dek) - 1;
    if ((this.count + 1) * JOB_FIELDS > this.jobs.length) {
      const next = new Int32Array(this.jobs.length * 2);
      next.set(this.jobs);
      this.jobs = next;
    }
    const j = this.count * JOB_FIELDS;
    this.jobs[j] = k;
    this.jobs[j + 1] = this.put(plaintext);
    this.jobs[j + 2] = plaintext.length;
    this.jobs[j + 3] = this.put(place);
    this.jobs[j + 4] = place.length;
    this.jobs[j + 5] = this.put(key);
    this.jobs[j + 6] = key.length;
    this.jobs[j + 7] = outAt;
    this.count++;
    return sealedLength(plaintext.length);
  }

  /** Forgets jobs after the first `count` (an event written another way after all). */
  truncate(count: number): void {
    this.count = Math.min(this.count, count);
  }

  /** The recorded jobs as a batch of their own (fresh buffers, transferable), and a fresh start. */
  take(): SealJobBatch {
    const batch: SealJobBatch = {
      keys: this.keys.map((d) => ({ id: d.id, key: d.key })),
      jobs: this.jobs.slice(0, this.count * JOB_FIELDS),
      data: this.data.slice(0, this.dataPos),
    };
    this.keys = [];
    this.count = 0;
    this.dataPos = 0;
    return batch;
  }

  private put(b: Uint8Array): number {
    if (this.dataPos + b.length > this.data.length) {
      const next = new Uint8Array(Math.max(this.data.length * 2, this.dataPos + b.length));
      next.set(this.data.subarray(0, this.dataPos));
      this.data = next;
    }
    const at = this.dataPos;
    this.data.set(b, at);
    this.dataPos += b.length;
    return at;
  }
}

/** Seals every job of `batch` into its hole in `out`, each with a fresh random nonce. */
export function sealJobs(batch: SealJobBatch, out: Uint8Array): void {
  const keys = batch.keys.map((k) => ({ id: k.id, idHex: '', key: k.key }));
  const { jobs, data } = batch;
  for (let j = 0; j < jobs.length; j += JOB_FIELDS) {
    const dek = keys[jobs[j]!]!;
    const at = (o: number) => data.subarray(jobs[j + o]!, jobs[j + o]! + jobs[j + o + 1]!);
    const outAt = jobs[j + 7]!;
    const plaintext = at(1);
    const end = sealInto(dek, plaintext, at(3), at(5), out, outAt);
    if (end !== outAt + sealedLength(plaintext.length)) throw new Error('sealed value does not fit its reserved place');
  }
}
