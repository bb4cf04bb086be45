import { sealRowBody } from './row-seal.js';
import { openPartsTransient, sealedLength, sealInto, type DataKey, type SealAlgorithm } from './sealer.js';

/**
 * Many PHI values to seal or open at once, in a form that crosses to a worker thread
 * (crypto-pool.ts) as plain arrays and buffers.
 *
 * Sealing: the codec writes each message with a hole of `sealedLength(dek, pos, plaintext)` bytes where
 * a sealed value goes and records a job; `sealJobs` fills every hole. Opening: the codec
 * records each sealed value; `openJobs` writes the plaintexts one after another.
 *
 * Job i is JOB_FIELDS int32s: data key index, then offset and length in `data` of the input
 * (plaintext to seal, or sealed bytes to open), of the AAD's place half, of its key half and
 * of the source position (`positionBytes`; empty when opening: a sealed value carries its
 * own), then the offset of the output in `out`.
 */
export const JOB_FIELDS = 10;

export interface CryptoJobBatch {
  /** Data keys the jobs name by index. */
  readonly keys: readonly { readonly id: Uint8Array; readonly key: Uint8Array; readonly algorithm?: SealAlgorithm }[];
  readonly jobs: Int32Array;
  readonly data: Uint8Array;
}

/** Collects jobs; `take()` hands them over and starts afresh. */
export class CryptoJobBuilder {
  private keys: DataKey[] = [];
  private jobs = new Int32Array(JOB_FIELDS * 256);
  private data = new Uint8Array(64 * 1024);
  private dataPos = 0;
  /** The position bytes last copied into `data` (an event's values share them): stored once. */
  private lastPos: Uint8Array | null = null;
  private lastPosAt = 0;
  /** Likewise the AAD key half last copied (a row's sealed columns share it). */
  private lastKey: Uint8Array | null = null;
  private lastKeyAt = 0;
  /** Where each AAD place half (one per column of a table version, the same object every row) is in `data`. */
  private places = new Map<Uint8Array, number>();
  /** Jobs recorded so far. */
  count = 0;

  /**
   * Records `input` to seal or open under `dek` with the AAD `place` + `key` (sealing: at the
   * position `pos`), its output going to `out` at `outAt`. Copies the bytes: the caller may
   * reuse its buffers at once.
   */
  add(dek: DataKey, input: Uint8Array, place: Uint8Array, key: Uint8Array, pos: Uint8Array, outAt: number): void {
    let k = this.keys.indexOf(dek);
    if (k < 0) k = this.keys.push(dek) - 1;
    if ((this.count + 1) * JOB_FIELDS > this.jobs.length) {
      const next = new Int32Array(this.jobs.length * 2);
      next.set(this.jobs);
      this.jobs = next;
    }
    const j = this.count * JOB_FIELDS;
    this.jobs[j] = k;
    this.jobs[j + 1] = this.put(input);
    this.jobs[j + 2] = input.length;
    let placeAt = this.places.get(place);
    if (placeAt === undefined) this.places.set(place, (placeAt = this.put(place)));
    this.jobs[j + 3] = placeAt;
    this.jobs[j + 4] = place.length;
    this.jobs[j + 5] = key === this.lastKey ? this.lastKeyAt : (this.lastKeyAt = this.put((this.lastKey = key)));
    this.jobs[j + 6] = key.length;
    this.jobs[j + 7] = pos === this.lastPos ? this.lastPosAt : (this.lastPosAt = this.put((this.lastPos = pos)));
    this.jobs[j + 8] = pos.length;
    this.jobs[j + 9] = outAt;
    this.count++;
  }

  /** Forgets jobs after the first `count` (an event written another way after all). */
  truncate(count: number): void {
    this.count = Math.min(this.count, count);
    this.lastPos = null;
    this.lastKey = null;
  }

  /** The recorded jobs as a batch of their own (fresh buffers), and a fresh start. */
  take(): CryptoJobBatch {
    const batch: CryptoJobBatch = {
      keys: this.keys.map((d) => ({ id: d.id, key: d.key, ...(d.algorithm ? { algorithm: d.algorithm } : {}) })),
      jobs: this.jobs.slice(0, this.count * JOB_FIELDS),
      data: this.data.slice(0, this.dataPos),
    };
    this.keys = [];
    this.count = 0;
    this.dataPos = 0;
    this.lastPos = null;
    this.lastKey = null;
    this.places = new Map();
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

/** Calls `fn` for every job with its key, input, AAD halves, position and output offset. */
function eachJob(batch: CryptoJobBatch, fn: (i: number, dek: DataKey, input: Uint8Array, place: Uint8Array, key: Uint8Array, pos: Uint8Array, outAt: number) => void): void {
  const keys: DataKey[] = batch.keys.map((k) => ({ id: k.id, idHex: Buffer.from(k.id).toString('hex'), key: k.key, ...(k.algorithm ? { algorithm: k.algorithm } : {}) }));
  const { jobs, data } = batch;
  const slice = (j: number, o: number) => data.subarray(jobs[j + o]!, jobs[j + o]! + jobs[j + o + 1]!);
  // The AAD halves and the position are shared by many jobs (stored once, see CryptoJobBuilder):
  // one view each while consecutive jobs name the same bytes, not one per job.
  // Each place half (one per column) is stored once per batch: one view each, found by offset.
  const places = new Map<number, Uint8Array>();
  const key = new SharedView(data);
  const pos = new SharedView(data);
  for (let j = 0; j < jobs.length; j += JOB_FIELDS) {
    const placeAt = jobs[j + 3]!;
    let place = places.get(placeAt);
    if (place === undefined || place.length !== jobs[j + 4]!) places.set(placeAt, (place = slice(j, 3)));
    fn(j / JOB_FIELDS, keys[jobs[j]!]!, slice(j, 1), place, key.at(jobs[j + 5]!, jobs[j + 6]!), pos.at(jobs[j + 7]!, jobs[j + 8]!), jobs[j + 9]!);
  }
}

/** A view of `data` remade only when the offset or length asked for changes. */
class SharedView {
  private from = -1;
  private length = -1;
  private view: Uint8Array;

  constructor(private readonly data: Uint8Array) {
    this.view = data.subarray(0, 0);
  }

  at(from: number, length: number): Uint8Array {
    if (from !== this.from || length !== this.length) {
      this.view = this.data.subarray(from, from + length);
      this.from = from;
      this.length = length;
    }
    return this.view;
  }
}

/**
 * Seals every job of `batch` into its hole in `out`, each with a fresh random nonce. A job
 * without a position is a row seal (format 3) whose header and nonce are in its hole already.
 */
export function sealJobs(batch: CryptoJobBatch, out: Uint8Array): void {
  eachJob(batch, (_i, dek, plaintext, place, key, pos, outAt) => {
    if (pos.length === 0) {
      sealRowBody(dek, plaintext, place, key, out, outAt);
      return;
    }
    const end = sealInto(dek, plaintext, place, key, pos, out, outAt);
    if (end !== outAt + sealedLength(dek, pos, plaintext.length)) throw new Error('a sealed value does not fit its reserved place');
  });
}

/**
 * Opens every job of `batch` into `out` at its offset; `where(i)` names job i's column in the
 * error a failed authentication raises (ChartlogError 'integrity', as `openPartsTransient`).
 */
export function openJobs(batch: CryptoJobBatch, out: Uint8Array, where: (job: number) => string): void {
  eachJob(batch, (i, dek, sealed, place, key, _pos, outAt) => {
    const plain = openPartsTransient(dek, sealed, place, key, where(i));
    out.set(plain, outAt);
    plain.fill(0);
  });
}
