import type { Config } from '../config/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { AvroCodec } from '../codec/avro-codec.js';
import { SchemaStore } from '../codec/schema-store.js';
import { CodecEnvelopeReader } from './codec-envelope-reader.js';
import { CryptoPool } from '../phi/crypto-pool.js';
import { KeyManager } from '../phi/key-manager.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';
import type { ArchiveMac } from '../phi/archive-mac.js';

export interface ArchiveCodec {
  schemas: SchemaStore;
  codec: AvroCodec;
  envelopes: CodecEnvelopeReader;
  /** True when PHI can be opened (the keyring was given). */
  canOpen: boolean;
  /** The data keys, when PHI can be opened (restore hands them to its COPY threads one by one, as they are named). */
  keys: KeyManager | undefined;
  /** The crypto threads `codec` opens PHI on (open and phi.cryptoThreads > 0), for a caller that starts them early (CryptoPool.warm). */
  cryptoPool: CryptoPool | undefined;
}

/**
 * What reading a source's archive needs. With `open`, the keyring is opened (and must be the
 * one that sealed the archive); without it, PHI stays sealed bytes and no key is touched.
 */
export function openArchiveCodec(
  config: Readonly<Config>,
  source: { name: string; type: string },
  store: ObjectStore,
  open: boolean,
  /** The archive's MAC key (archive-auth.ts): every schema read must carry a valid MAC. */
  mac?: ArchiveMac | null,
): ArchiveCodec {
  const schemas = new SchemaStore({ source: source.name, store, ...(mac ? { mac } : {}), engine: source.type === 'mysql' ? 'mysql' : 'postgres' });
  // Also for an authenticated archive read sealed (--keep-sealed, whose keyring is open already
  // for the MAC key): a block-sealed base snapshot's rows leave re-sealed per row (PhiOpener.keepSealed).
  const keys = open || mac
    ? new KeyManager({ source: source.name, store, keyring: openKeyring(config.phi.keyring, { backupRoot: backupRootOf(config.storage.url) }) })
    : undefined;
  // Opening PHI is most of a restore's work: a crypto thread does it beside the Avro decoding.
  const cryptoPool = open && config.phi.cryptoThreads > 0 ? new CryptoPool(config.phi.cryptoThreads) : undefined;
  return {
    schemas,
    codec: new AvroCodec({ source: source.name, connector: source.type, schemas, keys, ...(cryptoPool ? { cryptoPool } : {}) }),
    envelopes: new CodecEnvelopeReader(schemas),
    canOpen: open,
    keys,
    cryptoPool,
  };
}
