import { ChartlogError } from '../core/errors.js';
import { logger as rootLogger, type Logger } from '../core/logger.js';
import type { ObjectStore } from '../storage/object-store.js';
import { MAC_FIELD, sha256OfBytes, type ArchiveMac, type ArchiveSigner } from '../phi/archive-mac.js';
import { checkTableAttribute } from './table-attribute-check.js';
import type { SqlEngine } from './sql-type.js';
import { fromAvroSchema, type AvroSchemaJson, type StoredTableVersion } from './avro-schema.js';
import { parsingCanonicalForm } from './parsing-canonical-form.js';
import { fingerprintHex, rabinFingerprint64 } from './rabin-fingerprint.js';

/** One stored writer schema and what it says about its table version. */
export interface RegisteredSchema {
  /** CRC-64-AVRO of the schema's Parsing Canonical Form. */
  readonly fingerprint: bigint;
  /** The same, 16 hex digits: the object name and the form used in messages. */
  readonly fingerprintHex: string;
  readonly schema: AvroSchemaJson;
  /** The exact JSON text stored (and, with Kafka, published to the schema-history topic). */
  readonly text: string;
  readonly version: StoredTableVersion;
}

export interface SchemaStoreOptions {
  source: string;
  store: ObjectStore;
  log?: Logger;
  /**
   * Called once per schema this process registers, after it is durable in the object store
   * (the Kafka schema-history topic hooks in here).
   */
  onRegistered?: (schema: RegisteredSchema) => Promise<void>;
  /** Writers: schema objects are stored with an archive MAC (the text published stays without). */
  signer?: ArchiveSigner;
  /**
   * Readers of an archive that has a MAC key: a schema loaded from the store must carry a valid
   * MAC (or be one the key adopted), else it is refused ('integrity', naming the object).
   */
  mac?: ArchiveMac;
  /** Readers: the source's engine, so every archived source type is checked against its allow-list. */
  engine?: SqlEngine;
}

/**
 * Writer schemas of one source, by fingerprint, kept at `<source>/schemas/<fingerprint>.json`
 * (putIfAbsent: a schema is immutable and named after its content) and cached in memory.
 * Readers of old data resolve old fingerprints here; a schema loaded from the store is checked
 * against the fingerprint it was asked for.
 */
export class SchemaStore {
  readonly source: string;
  private readonly store: ObjectStore;
  private readonly log: Logger;
  private readonly onRegistered: SchemaStoreOptions['onRegistered'];
  private readonly byFingerprint = new Map<bigint, Promise<RegisteredSchema>>();
  private readonly signer: ArchiveSigner | undefined;
  private readonly mac: ArchiveMac | undefined;
  private readonly engine: SqlEngine | undefined;
  /** Fingerprints this process wrote to the store first (putIfAbsent created them). */
  private readonly createdHere = new Set<bigint>();

  constructor(options: SchemaStoreOptions) {
    this.source = options.source;
    this.signer = options.signer;
    this.mac = options.mac;
    this.engine = options.engine;
    this.store = options.store;
    this.onRegistered = options.onRegistered;
    this.log = (options.log ?? rootLogger()).child({ component: 'schema-store', source: options.source });
  }

  /** Object-store key of a schema. */
  schemaPath(fingerprint: bigint): string {
    return `${this.source}/schemas/${fingerprintHex(fingerprint)}.json`;
  }

  /** Makes a schema durable (once) and returns it with its fingerprint. */
  async register(schema: AvroSchemaJson): Promise<RegisteredSchema> {
    const registered = SchemaStore.describe(schema);
    const known = this.byFingerprint.get(registered.fingerprint);
    if (known) return known;
    const p = (async () => {
      const path = this.schemaPath(registered.fingerprint);
      const body = this.signer ? JSON.stringify(await this.signer.sign(path, registered.schema)) : registered.text;
      const created = await this.store.putIfAbsent(path, Buffer.from(body), {
        contentType: 'application/json',
        retain: true,
      });
      if (created) {
        this.createdHere.add(registered.fingerprint);
        this.log.info(
          { fingerprint: registered.fingerprintHex, table: `${registered.version.table.schema}.${registered.version.table.table}` },
          'stored new table schema version',
        );
      }
      if (this.onRegistered) await this.onRegistered(registered);
      return registered;
    })();
    this.byFingerprint.set(registered.fingerprint, p);
    p.catch(() => this.byFingerprint.delete(registered.fingerprint));
    return p;
  }

  /**
   * Whether this process stored the schema first (a version new to the archive), rather than
   * finding it already stored (a version seen before a restart, or by a resync).
   */
  storedHere(fingerprint: bigint): boolean {
    return this.createdHere.has(fingerprint);
  }

  /** Adds a schema known from elsewhere (a schema-history topic) to the cache, checking it. */
  add(text: string): RegisteredSchema {
    const registered = SchemaStore.parse(text);
    if (!this.byFingerprint.has(registered.fingerprint)) this.byFingerprint.set(registered.fingerprint, Promise.resolve(registered));
    return registered;
  }

  /** The schema with this fingerprint, from the cache or the object store. */
  async resolve(fingerprint: bigint): Promise<RegisteredSchema> {
    let p = this.byFingerprint.get(fingerprint);
    if (!p) {
      p = this.load(fingerprint);
      this.byFingerprint.set(fingerprint, p);
      p.catch(() => this.byFingerprint.delete(fingerprint));
    }
    return p;
  }

  /** Fingerprints of every stored schema of this source. */
  async listFingerprints(): Promise<bigint[]> {
    const out: bigint[] = [];
    for await (const o of this.store.listAll(`${this.source}/schemas/`)) {
      const m = /\/([0-9a-f]{16})\.json$/.exec(o.key);
      if (m) out.push(BigInt(`0x${m[1]}`));
    }
    return out;
  }

  private async load(fingerprint: bigint): Promise<RegisteredSchema> {
    const path = this.schemaPath(fingerprint);
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(path);
    } catch (err) {
      if (err instanceof ChartlogError && err.code === 'not_found') {
        throw new ChartlogError('not_found', `schema ${fingerprintHex(fingerprint)} of source ${this.source} is not in ${this.store.description}`, {
          hint: `the object ${path} is missing; restore schemas/ from a copy of the archive`,
        });
      }
      throw err;
    }
    const registered = SchemaStore.parse(Buffer.from(bytes).toString('utf8'), path, this.mac ? { mac: this.mac, sha256: sha256OfBytes(bytes) } : undefined, this.engine);
    if (registered.fingerprint !== fingerprint) {
      throw new ChartlogError('integrity', `schema object ${path} has fingerprint ${registered.fingerprintHex}`, {
        hint: 'the schema object was altered; restore it from a copy of the archive',
      });
    }
    return registered;
  }

  /** Fingerprint and table version of a schema (no I/O). */
  static describe(schema: AvroSchemaJson): RegisteredSchema {
    const fingerprint = rabinFingerprint64(parsingCanonicalForm(schema));
    return Object.freeze({
      fingerprint,
      fingerprintHex: fingerprintHex(fingerprint),
      schema,
      text: JSON.stringify(schema),
      version: fromAvroSchema(schema),
    });
  }

  /**
   * A stored or published schema, checked: its `chartlog.table` attribute strictly (names, type
   * names, lengths: what reaches a restore target's DDL) and, with `auth`, its archive MAC. A
   * stored object's MAC is dropped from the schema: `text` is the schema as published.
   */
  static parse(text: string, where = 'a stored schema', auth?: { mac: ArchiveMac; sha256: string }, engine?: SqlEngine): RegisteredSchema {
    let schema: AvroSchemaJson;
    try {
      schema = JSON.parse(text) as AvroSchemaJson;
    } catch {
      throw new ChartlogError('integrity', `${where} is not valid JSON`, { hint: 'restore schemas/ from a copy of the archive' });
    }
    if (auth) {
      const check = auth.mac.check(where, schema as Record<string, unknown>, auth.sha256);
      if (check !== 'valid' && check !== 'adopted') {
        throw new ChartlogError('integrity', `schema object ${where}: ${check === 'invalid' ? 'its MAC does not match (altered)' : "no MAC, and the archive's key did not adopt it"}`, {
          hint: 'restore schemas/ from an intact copy of the archive (docs/operations.md, "Archive authentication")',
        });
      }
    }
    if (MAC_FIELD in schema) {
      const { [MAC_FIELD]: _mac, ...plain } = schema;
      schema = plain as AvroSchemaJson;
      text = JSON.stringify(schema);
    }
    checkTableAttribute(schema, where, engine);
    return { ...SchemaStore.describe(schema), text };
  }
}
