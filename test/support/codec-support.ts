import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AvroCodec, type AvroCodecOptions } from '../../src/codec/avro-codec.js';
import type { TableSchema } from '../../src/core/table-schema.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import { createLogger, type Logger } from '../../src/core/logger.js';
import { ColumnPolicy, type PhiPolicyConfig } from '../../src/phi/column-policy.js';
import { KeyManager } from '../../src/phi/key-manager.js';
import type { CryptoPool } from '../../src/phi/crypto-pool.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import type { Keyring } from '../../src/phi/keyring/keyring.js';
import type { SealAlgorithm } from '../../src/phi/sealer.js';
import { MemoryObjectStore } from './memory-object-store.js';

export const quietLog: Logger = createLogger({ level: 'silent', format: 'json', destination: process.stderr });

let sharedKeyring: FileKeyring | undefined;

/** One keyring file per test process, in a private temp dir. */
export function testKeyring(): FileKeyring {
  sharedKeyring ??= FileKeyring.create(join(mkdtempSync(join(tmpdir(), 'chartlog-keyring-')), 'keyring.json'));
  return sharedKeyring;
}

/** A patients table with two PHI-able text columns, for sealing tests. */
export const ssnPhonePatients: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'ssn', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'phone', sourceType: 'text', type: { kind: 'string' }, nullable: true },
  ],
};

export interface CodecRig {
  store: MemoryObjectStore;
  codec: AvroCodec;
  keys: KeyManager;
  /** A codec that knows nothing but the object store: a later reader of the archive. */
  reader(options?: { withKeys?: boolean; keyring?: Keyring; onOpen?: AvroCodecOptions['onOpen']; cryptoPool?: CryptoPool }): AvroCodec;
}

export function codecRig(
  options: { source?: string; connector?: string; policy?: PhiPolicyConfig; log?: Logger; keyring?: Keyring; cryptoPool?: CryptoPool; poolFrom?: number; algorithm?: SealAlgorithm } = {},
): CodecRig {
  const source = options.source ?? 'clinic';
  const log = options.log ?? quietLog;
  const store = new MemoryObjectStore();
  const keyring = options.keyring ?? testKeyring();
  const keys = new KeyManager({ source, store, keyring, log, ...(options.algorithm ? { algorithm: options.algorithm } : {}) });
  const codec = new AvroCodec({
    source,
    connector: options.connector ?? 'postgres',
    db: 'app',
    schemas: new SchemaStore({ source, store, log }),
    ...(options.policy ? { policy: new ColumnPolicy(options.policy) } : {}),
    keys,
    ...(options.cryptoPool ? { cryptoPool: options.cryptoPool, poolFrom: options.poolFrom ?? 1 } : {}),
  });
  return {
    store,
    codec,
    keys,
    reader: (r = {}) =>
      new AvroCodec({
        source,
        connector: options.connector ?? 'postgres',
        schemas: new SchemaStore({ source, store, log }),
        ...(r.withKeys ? { keys: new KeyManager({ source, store, keyring: r.keyring ?? keyring, log }) } : {}),
        ...(r.onOpen ? { onOpen: r.onOpen } : {}),
        ...(r.cryptoPool ? { cryptoPool: r.cryptoPool, poolFrom: 1 } : {}),
      }),
  };
}
