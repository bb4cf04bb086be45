import { randomBytes } from 'node:crypto';
import { ChartlogError } from '../core/errors.js';
import { logger as rootLogger, type Logger } from '../core/logger.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { Keyring, WrappedKey } from './keyring/keyring.js';
import { KEY_ID_BYTES, SEAL_ALGORITHMS, type DataKey, type SealAlgorithm } from './sealer.js';

/**
 * Data keys (DEKs) of one source: makes, wraps, stores, rotates and finds them.
 *
 * - A DEK is 256 random bits. Its id is 16 bytes: 6 bytes of creation time in ms, then 10
 *   random, so ids (and their object names) sort by age.
 * - Wrapped by the keyring's KEK, it is stored at `<source>/keys/<id hex>.json` (putIfAbsent)
 *   before any value is sealed with it; the KEK is never stored.
 * - Rotation: a new DEK when the current one is older than maxAgeHours or has sealed
 *   maxValues values, when `rotate()` is called, and at every start (a restarted process
 *   cannot know how much the previous one sealed). A process also adopts a newer DEK that
 *   another process (`chartlog keys rotate`) stored, checking every refreshIntervalMs.
 * - Opening looks keys up by the id in the sealed value and keeps them unwrapped in memory.
 *
 * Key material is never logged or put in an error: messages name key ids only.
 */

export interface KeyManagerOptions {
  source: string;
  store: ObjectStore;
  keyring: Keyring;
  rotation?: { maxAgeHours: number; maxValues: number };
  /**
   * The AEAD new data keys seal with (phi.algorithm), recorded in each key's object; default
   * XChaCha20-Poly1305. Keys already stored keep the algorithm they record.
   */
  algorithm?: SealAlgorithm;
  /** How often `current()` looks for a newer DEK stored by another process. Default 60 s. */
  refreshIntervalMs?: number;
  /** Clock in ms, for tests. */
  now?: () => number;
  log?: Logger;
}

/** The stored form of a wrapped DEK. */
export interface StoredDataKey {
  format: 1;
  source: string;
  keyId: string;
  createdAt: string;
  /** The AEAD the key seals with; keys made before issue 17 all record AES-256-GCM. */
  algorithm: SealAlgorithm;
  wrapped: WrappedKey;
}

interface CurrentKey {
  key: DataKey;
  createdAtMs: number;
  sealed: number;
}

const KEY_ID_HEX = /^[0-9a-f]{32}$/;

/** The AEAD a `phi.algorithm` setting names. */
export function sealAlgorithmOf(setting: 'xchacha20-poly1305' | 'aes-256-gcm'): SealAlgorithm {
  return setting === 'aes-256-gcm' ? 'AES-256-GCM' : 'XChaCha20-Poly1305';
}

export class KeyManager {
  private readonly source: string;
  private readonly store: ObjectStore;
  private readonly keyring: Keyring;
  private readonly maxAgeMs: number;
  private readonly maxValues: number;
  private readonly refreshIntervalMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly algorithm: SealAlgorithm;
  private readonly cache = new Map<string, Promise<DataKey>>();
  private active: CurrentKey | undefined;
  private lastRefresh = 0;
  private lastIdMs = 0;
  private pending: Promise<DataKey> | undefined;

  constructor(options: KeyManagerOptions) {
    this.source = options.source;
    this.store = options.store;
    this.keyring = options.keyring;
    this.maxAgeMs = (options.rotation?.maxAgeHours ?? 24) * 3_600_000;
    // Random 96-bit GCM nonces stay safe for 2^32 seals per key (NIST SP 800-38D); never more.
    this.maxValues = Math.min(options.rotation?.maxValues ?? 100_000_000, 2 ** 32);
    this.refreshIntervalMs = options.refreshIntervalMs ?? 60_000;
    this.algorithm = options.algorithm ?? 'XChaCha20-Poly1305';
    this.now = options.now ?? Date.now;
    this.log = (options.log ?? rootLogger()).child({ component: 'key-manager', source: options.source });
  }

  /** Object-store key of a wrapped DEK. */
  keyPath(keyIdHex: string): string {
    return `${this.source}/keys/${keyIdHex}.json`;
  }

  /** True when the current DEK may not seal another value (absent, too old or used up). */
  needsRotation(): boolean {
    const a = this.active;
    return a === undefined || a.sealed >= this.maxValues || this.now() - a.createdAtMs >= this.maxAgeMs;
  }

  /**
   * The DEK to seal with now, rotating first when due. Call it before each batch; `sealWith`
   * then counts values against the limit.
   */
  async current(): Promise<DataKey> {
    if (this.pending) return this.pending;
    if (!this.needsRotation() && this.now() - this.lastRefresh < this.refreshIntervalMs) return this.active!.key;
    this.pending = this.refreshOrRotate().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** The current DEK for sealing `count` more values, or null when `current()` must be awaited first. */
  sealWith(count = 1): DataKey | null {
    const a = this.active;
    if (!a || this.needsRotation()) return null;
    a.sealed += count;
    return a.key;
  }

  /** Starts a new DEK generation now (`chartlog keys rotate`). */
  async rotate(): Promise<DataKey> {
    const key = await this.createKey();
    this.lastRefresh = this.now();
    return key;
  }

  /** The DEK with this id (for opening), unwrapped through the keyring and cached. */
  async get(keyIdHex: string): Promise<DataKey> {
    if (!KEY_ID_HEX.test(keyIdHex)) throw new ChartlogError('integrity', `"${keyIdHex}" is not a data key id`);
    let p = this.cache.get(keyIdHex);
    if (!p) {
      p = this.load(keyIdHex);
      this.cache.set(keyIdHex, p);
      p.catch(() => this.cache.delete(keyIdHex));
    }
    return p;
  }

  /** Ids of every stored DEK of this source, oldest first. */
  async listKeyIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const o of this.store.listAll(`${this.source}/keys/`)) {
      const m = /\/([0-9a-f]{32})\.json$/.exec(o.key);
      if (m) ids.push(m[1]!);
    }
    return ids.sort();
  }

  private async refreshOrRotate(): Promise<DataKey> {
    if (this.active && !this.needsRotation()) {
      this.lastRefresh = this.now();
      const ids = await this.listKeyIds();
      const newest = ids[ids.length - 1];
      if (newest !== undefined && newest > this.active.key.idHex) {
        try {
          const key = await this.get(newest);
          this.active = { key, createdAtMs: Number(BigInt(`0x${newest.slice(0, 12)}`)), sealed: 0 };
          this.log.info({ keyId: newest }, 'adopted a newer data key');
        } catch (err) {
          // Sealing goes on with the current key rather than stopping the stream.
          this.log.warn({ keyId: newest, err }, 'cannot adopt a newer data key; keeping the current one');
        }
      }
      if (!this.needsRotation()) return this.active.key;
    }
    const key = await this.createKey();
    this.lastRefresh = this.now();
    return key;
  }

  private async createKey(): Promise<DataKey> {
    // Strictly increasing per process, so the newest key always has the greatest id.
    const createdAtMs = this.now();
    const idMs = Math.max(createdAtMs, this.lastIdMs + 1);
    this.lastIdMs = idMs;
    const id = new Uint8Array(KEY_ID_BYTES);
    new DataView(id.buffer).setBigUint64(0, BigInt(idMs) << 16n);
    id.set(randomBytes(KEY_ID_BYTES - 6), 6);
    const idHex = Buffer.from(id).toString('hex');
    const material = new Uint8Array(randomBytes(32));
    const wrapped = await this.keyring.wrapKey(material, { source: this.source, keyId: idHex });
    const stored: StoredDataKey = {
      format: 1,
      source: this.source,
      keyId: idHex,
      createdAt: new Date(createdAtMs).toISOString(),
      algorithm: this.algorithm,
      wrapped,
    };
    const created = await this.store.putIfAbsent(this.keyPath(idHex), Buffer.from(JSON.stringify(stored, null, 2)), {
      contentType: 'application/json',
    });
    if (!created) throw new ChartlogError('internal', `data key id ${idHex} collided with a stored key`);
    const key: DataKey = Object.freeze({ id, idHex, key: material, algorithm: this.algorithm });
    this.cache.set(idHex, Promise.resolve(key));
    this.active = { key, createdAtMs, sealed: 0 };
    this.log.info({ keyId: idHex, kek: wrapped.kekId, algorithm: this.algorithm }, 'new data key');
    return key;
  }

  private async load(idHex: string): Promise<DataKey> {
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(this.keyPath(idHex));
    } catch (err) {
      if (err instanceof ChartlogError && err.code === 'not_found') {
        throw new ChartlogError('not_found', `data key ${idHex} of source ${this.source} is not in ${this.store.description}`, {
          hint: `the object ${this.keyPath(idHex)} is missing; restore keys/ from a copy of the archive`,
        });
      }
      throw err;
    }
    let stored: StoredDataKey;
    try {
      stored = JSON.parse(Buffer.from(bytes).toString('utf8')) as StoredDataKey;
    } catch {
      throw new ChartlogError('integrity', `data key object ${this.keyPath(idHex)} is not valid JSON`);
    }
    if (stored.keyId !== idHex || stored.source !== this.source) {
      throw new ChartlogError('integrity', `data key object ${this.keyPath(idHex)} names another key or source`);
    }
    // Checked before unwrapping: a key whose algorithm this version does not know is refused, never guessed.
    if (!(SEAL_ALGORITHMS as readonly string[]).includes(stored.algorithm)) {
      throw new ChartlogError('integrity', `data key object ${this.keyPath(idHex)}: algorithm "${String(stored.algorithm)}" is not one of ${SEAL_ALGORITHMS.join(', ')}`, {
        hint: 'the object is damaged, or was written by a newer chartlog: open this archive with that version',
      });
    }
    const material = await this.keyring.unwrapKey(stored.wrapped, { source: this.source, keyId: idHex });
    return Object.freeze({ id: new Uint8Array(Buffer.from(idHex, 'hex')), idHex, key: material, algorithm: stored.algorithm });
  }
}
