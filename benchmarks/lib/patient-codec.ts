/**
 * The codec benchmarks' input and codec (benchmarks/codec.bench.ts, benchmarks/codec-profile.ts):
 * a 12-column patient row with 4 PHI columns (the row shape of lib/patient-workload.ts), built in
 * memory as batches of 100 insert events, and an AvroCodec over an in-memory store that holds only
 * the schema and data-key objects — so the two measure the same thing and an A/B run with the
 * profiler compares like with like.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { AvroCodec } from '../../src/codec/avro-codec.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import type { Logger } from '../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { TableSchema } from '../../src/core/table-schema.js';
import { ColumnPolicy } from '../../src/phi/column-policy.js';
import type { CryptoPool } from '../../src/phi/crypto-pool.js';
import type { KeyManager } from '../../src/phi/key-manager.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import type { ObjectStore } from '../../src/storage/object-store.js';

export const PATIENTS: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'mrn', sourceType: 'character varying(20)', type: { kind: 'string', length: 20 }, nullable: false },
    { name: 'full_name', sourceType: 'text', type: { kind: 'string' }, nullable: false },
    { name: 'ssn', sourceType: 'character(11)', type: { kind: 'string', length: 11 }, nullable: true },
    { name: 'birth_date', sourceType: 'date', type: { kind: 'date' }, nullable: true },
    { name: 'address', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'ward', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'admitted_at', sourceType: 'timestamp with time zone', type: { kind: 'timestamptz' }, nullable: true },
    { name: 'balance', sourceType: 'numeric(12,2)', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
    { name: 'active', sourceType: 'boolean', type: { kind: 'boolean' }, nullable: false },
    { name: 'visits', sourceType: 'integer', type: { kind: 'int', bits: 32 }, nullable: false },
    { name: 'external_id', sourceType: 'uuid', type: { kind: 'uuid' }, nullable: true },
  ],
};

/** The sealed columns. */
export const PATIENT_PHI = ['full_name', 'ssn', 'birth_date', 'address'];

/** Events per batch (one source transaction each). */
export const BATCH_EVENTS = 100;

/** `rows` synthetic patient inserts (values deterministic in the row number), as batches of BATCH_EVENTS. */
export function patientBatches(rows: number): ChangeBatch[] {
  const out: ChangeBatch[] = [];
  for (let b = 0; b < rows / BATCH_EVENTS; b++) {
    const commit = (0x100000 + b).toString(16).padStart(16, '0');
    const events: ChangeEvent[] = [];
    for (let i = 0; i < BATCH_EVENTS; i++) {
      const n = b * BATCH_EVENTS + i;
      events.push({
        op: 'c',
        schema: PATIENTS,
        before: null,
        after: {
          id: BigInt(n),
          mrn: `MRN${String(n).padStart(10, '0')}`,
          full_name: `Synthetic Patient ${n}`,
          ssn: `900-${String(n % 100).padStart(2, '0')}-${String(n % 10000).padStart(4, '0')}`,
          birth_date: `19${String(40 + (n % 60)).padStart(2, '0')}-0${1 + (n % 9)}-1${n % 10}`,
          address: `${n} Synthetic Street, Testville`,
          ward: `ward-${n % 12}`,
          admitted_at: `2026-11-24 0${n % 10}:12:34.${String(n % 1000000).padStart(6, '0').replace(/0+$/, '') || '5'}+00`,
          balance: `${n % 100000}.${String(n % 100).padStart(2, '0')}`,
          active: n % 2 === 0,
          visits: n % 500,
          external_id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
        },
        position: Position.of(commit, i),
      });
    }
    out.push({ source: 'clinic', txId: String(b), position: Position.of(commit, COMMIT_SEQ), commitTsUs: 1_795_000_000_000_000n + BigInt(b), snapshot: false, events });
  }
  return out;
}

/** A fresh file keyring in a temporary folder. */
export function benchKeyring(): FileKeyring {
  return FileKeyring.create(join(mkdtempSync(join(os.tmpdir(), 'chartlog-bench-')), 'keyring.json'));
}

/** A codec of source `clinic` (PostgreSQL, db `app`): with `sealing`, PATIENT_PHI sealed under `keys`; with a `cryptoPool`, PHI sealed and opened on its thread. */
export function patientCodec(options: { store: ObjectStore; log: Logger; sealing: boolean; keys?: KeyManager; cryptoPool?: CryptoPool }): AvroCodec {
  const { store, log, sealing, keys, cryptoPool } = options;
  return new AvroCodec({
    ...(cryptoPool ? { cryptoPool } : {}),
    source: 'clinic',
    connector: 'postgres',
    db: 'app',
    schemas: new SchemaStore({ source: 'clinic', store, log }),
    ...(sealing ? { policy: new ColumnPolicy({ columns: { 'public.patients': PATIENT_PHI }, strict: [], publicColumns: {}, unclassified: 'clear' }) } : {}),
    ...(keys ? { keys } : {}),
  });
}
