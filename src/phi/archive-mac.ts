import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ChartlogError, nullIfNotFound } from '../core/errors.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { Keyring, WrappedKey } from './keyring/keyring.js';

/**
 * The archive-MAC key of one source and the HMAC that authenticates the archive's JSON objects
 * (hour manifests, snapshot manifests, schemas, the checkpoint): someone who can write to the
 * bucket but does not hold the keyring cannot alter, plant or re-hash them unnoticed.
 *
 * The key is 256 random bits, created once per source and stored at `<source>/keys/archive-mac.json`
 * only wrapped by the keyring (the same KEK that wraps the data keys, with key context
 * `archive-mac`, so a wrapped data key can never be passed off as it). It is never in clear in
 * the store, a log or an error.
 *
 * The MAC of an object is HMAC-SHA256(key, "chartlog-archive-mac-v1" 0x00 objectKey 0x00
 * canonicalJson(object without its top-level `mac` field)): the whole JSON is covered, fields
 * added later included, and the object's name is bound so a valid object copied to another name
 * (another hour, another snapshot id) fails. The key object records what the archive already
 * held when the key was made (`adopted`): those objects, written before MACs existed, stay
 * readable because their exact sha256 is authenticated here. See docs/formats.md.
 */

/** The top-level field every authenticated object carries. */
export const MAC_FIELD = 'mac';
export const MAC_VERSION = 1;
const MAC_DOMAIN = 'chartlog-archive-mac-v1';
const KEY_CONTEXT_ID = 'archive-mac';

export interface MacField {
  version: 1;
  algorithm: 'HMAC-SHA256';
  /** 64 lowercase hex digits. */
  value: string;
}

/** What the archive held when its MAC key was created: objects written before MACs existed. */
export interface MacAdoption {
  /** The newest hour manifest then (older ones hang off it by the sha256 chain), or null. */
  head: { hour: string; sha256: string } | null;
  /** Object key → sha256 of its exact bytes: the checkpoint, snapshot manifests and schemas then. */
  objects: Record<string, string>;
}

interface StoredMacKey {
  format: 1;
  source: string;
  keyId: typeof KEY_CONTEXT_ID;
  createdAt: string;
  algorithm: 'HMAC-SHA256';
  wrapped: WrappedKey;
  adopted: MacAdoption;
  mac?: MacField;
}

/**
 * JSON with object keys sorted (UTF-16 code-unit order) and no whitespace: RFC 8785 (JCS) for
 * the values chartlog writes (strings, safe integers, booleans, null, arrays, objects).
 * `undefined` members are dropped as JSON.stringify drops them; anything JSON cannot carry
 * (a non-finite number, a bigint, a function) is refused rather than written ambiguously.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ChartlogError('internal', 'canonical JSON cannot carry a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value as object)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  throw new ChartlogError('internal', `canonical JSON cannot carry a ${typeof value}`);
}

/** The bytes that are MAC'd for `object` stored at `objectKey` (its own `mac` field left out). */
export function macInput(objectKey: string, object: Record<string, unknown>): Buffer {
  const { [MAC_FIELD]: _mac, ...body } = object;
  return Buffer.concat([Buffer.from(MAC_DOMAIN), Buffer.of(0), Buffer.from(objectKey), Buffer.of(0), Buffer.from(canonicalJson(body))]);
}

export type MacCheck = 'valid' | 'adopted' | 'missing' | 'invalid';

/** The MAC key of one source (unwrapped) and what it adopted. */
export class ArchiveMac {
  private constructor(
    readonly source: string,
    private readonly key: Buffer,
    readonly adopted: MacAdoption,
  ) {}

  /** Object key of the wrapped MAC key. */
  static keyObjectKey(source: string): string {
    return `${source}/keys/${KEY_CONTEXT_ID}.json`;
  }

  /**
   * The source's MAC key, or null when the archive has none (written only by a chartlog before
   * archive MACs, and not written since). Fails with 'integrity' when the key object is altered.
   */
  static async load(store: ObjectStore, keyring: Keyring, source: string): Promise<ArchiveMac | null> {
    const objectKey = ArchiveMac.keyObjectKey(source);
    const bytes = await nullIfNotFound(store.get(objectKey));
    if (!bytes) return null;
    let stored: StoredMacKey;
    try {
      stored = JSON.parse(Buffer.from(bytes).toString('utf8')) as StoredMacKey;
    } catch {
      throw new ChartlogError('integrity', `${objectKey} is not valid JSON`, { hint: 'restore keys/ from an intact copy of the archive' });
    }
    if (stored.format !== 1 || stored.source !== source || stored.keyId !== KEY_CONTEXT_ID || !stored.wrapped || !stored.adopted) {
      throw new ChartlogError('integrity', `${objectKey} is not the archive-MAC key of source ${source}`, { hint: 'restore keys/ from an intact copy of the archive' });
    }
    const material = await keyring.unwrapKey(stored.wrapped, { source, keyId: KEY_CONTEXT_ID });
    const mac = new ArchiveMac(source, Buffer.from(material), stored.adopted);
    // The adoption list is authenticated by the key it sits beside.
    if (mac.check(objectKey, stored as unknown as Record<string, unknown>) !== 'valid') {
      throw new ChartlogError('integrity', `${objectKey}: its MAC does not match (the key object was altered)`, {
        hint: 'restore keys/ from an intact copy of the archive',
      });
    }
    return mac;
  }

  /**
   * Creates the source's MAC key (create-if-absent) with `adopt()`'s record of what the archive
   * holds now; when another process created it first, that one is loaded.
   */
  static async loadOrCreate(store: ObjectStore, keyring: Keyring, source: string, adopt: () => Promise<MacAdoption>): Promise<ArchiveMac> {
    const existing = await ArchiveMac.load(store, keyring, source);
    if (existing) return existing;
    const material = randomBytes(32);
    const adopted = await adopt();
    const mac = new ArchiveMac(source, material, adopted);
    const objectKey = ArchiveMac.keyObjectKey(source);
    const stored: StoredMacKey = {
      format: 1,
      source,
      keyId: KEY_CONTEXT_ID,
      createdAt: new Date().toISOString(),
      algorithm: 'HMAC-SHA256',
      wrapped: await keyring.wrapKey(new Uint8Array(material), { source, keyId: KEY_CONTEXT_ID }),
      adopted,
    };
    const created = await store.putIfAbsent(objectKey, Buffer.from(`${JSON.stringify(mac.sign(objectKey, stored), null, 2)}\n`), { contentType: 'application/json', retain: true });
    if (created) return mac;
    const winner = await ArchiveMac.load(store, keyring, source);
    if (!winner) throw new ChartlogError('storage', `${objectKey} exists and then did not`, { retriable: true });
    return winner;
  }

  /** `object` with its MAC for `objectKey` as the last field (replacing one it had). */
  sign<T extends object>(objectKey: string, object: T): T & { mac: MacField } {
    // What a reader sees is the JSON text: sign exactly what JSON keeps.
    const plain = JSON.parse(JSON.stringify(object)) as Record<string, unknown>;
    delete plain[MAC_FIELD];
    return { ...(plain as T), mac: { version: MAC_VERSION, algorithm: 'HMAC-SHA256', value: this.compute(objectKey, plain) } };
  }

  /**
   * Checks a parsed object stored at `objectKey` whose exact bytes hash to `sha256`:
   * 'valid' (its MAC matches), 'adopted' (no MAC, but the key object adopted these very bytes),
   * 'missing' (no MAC and not adopted) or 'invalid' (a MAC that does not match, or of an unknown version).
   */
  check(objectKey: string, object: Record<string, unknown>, sha256?: string): MacCheck {
    const field = object[MAC_FIELD] as Partial<MacField> | undefined;
    if (field === undefined) return sha256 !== undefined && this.adopted.objects[objectKey] === sha256 ? 'adopted' : 'missing';
    if (typeof field !== 'object' || field === null || field.version !== MAC_VERSION || field.algorithm !== 'HMAC-SHA256' || typeof field.value !== 'string') return 'invalid';
    const want = Buffer.from(this.compute(objectKey, object), 'hex');
    const got = Buffer.from(field.value, 'hex');
    return got.length === want.length && timingSafeEqual(got, want) ? 'valid' : 'invalid';
  }

  private compute(objectKey: string, object: Record<string, unknown>): string {
    return createHmac('sha256', this.key).update(macInput(objectKey, object)).digest('hex');
  }
}

/** sha256 of bytes, lowercase hex (what `MacAdoption.objects` records). */
export function sha256OfBytes(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The MAC key as writers use it: loaded, or created on the first object signed (so a source
 * that writes nothing never gets one), once per process.
 */
export class ArchiveSigner {
  private loading: Promise<ArchiveMac> | undefined;

  constructor(
    private readonly store: ObjectStore,
    /** Also the data keys' (snapshot synthesis re-seals block-sealed rows per row: PhiOpener.keepSealed). */
    readonly keyring: Keyring,
    readonly source: string,
    private readonly adopt: () => Promise<MacAdoption>,
  ) {}

  /** The key, created when the archive has none yet. */
  key(): Promise<ArchiveMac> {
    if (!this.loading) {
      this.loading = ArchiveMac.loadOrCreate(this.store, this.keyring, this.source, this.adopt);
      this.loading.catch(() => (this.loading = undefined));
    }
    return this.loading;
  }

  async sign<T extends object>(objectKey: string, object: T): Promise<T & { mac: MacField }> {
    return (await this.key()).sign(objectKey, object);
  }
}
