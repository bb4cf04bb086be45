/**
 * One codec path at a time, for `node --cpu-prof` and for A/B runs of two commits (not in
 * `npm run bench`, writes no report): the row and batches of codec.bench.ts, XChaCha20-Poly1305
 * (ALG=AES-256-GCM for the other), printing rows per CPU-second (steadier than wall clock on a
 * shared machine) and wall rows/s per repetition.
 *
 *   node [--cpu-prof] --import tsx benchmarks/codec-profile.ts seal|open|plain|decode|sealT|openT [rows, default 50000] [reps, default 3]
 *
 * seal: encode+seal on one thread; open: decode+open; plain: encode, no PHI policy; decode:
 * decode not opened; sealT / openT: with the crypto thread, one batch (group of 2048) ahead.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { AvroCodec } from '../src/codec/avro-codec.js';
import { SchemaStore } from '../src/codec/schema-store.js';
import type { ChangeBatch, ChangeEvent } from '../src/core/change-event.js';
import { createLogger } from '../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../src/core/position.js';
import type { TableSchema } from '../src/core/table-schema.js';
import { ColumnPolicy } from '../src/phi/column-policy.js';
import { CryptoPool } from '../src/phi/crypto-pool.js';
import { KeyManager } from '../src/phi/key-manager.js';
import type { SealAlgorithm } from '../src/phi/sealer.js';
import { FileKeyring } from '../src/phi/keyring/file-keyring.js';
import { MemoryObjectStore } from '../test/support/memory-object-store.js';
const table: TableSchema = {
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
const PHI = ['full_name', 'ssn', 'birth_date', 'address'];

const ROWS = Number(process.argv[3] ?? 50000);
const REPS = Number(process.argv[4] ?? 3);
const BATCH = 100;
function batches(): ChangeBatch[] {
  const out: ChangeBatch[] = [];
  for (let b = 0; b < ROWS / BATCH; b++) {
    const commit = (0x100000 + b).toString(16).padStart(16, '0');
    const events: ChangeEvent[] = [];
    for (let i = 0; i < BATCH; i++) {
      const n = b * BATCH + i;
      events.push({
        op: 'c',
        schema: table,
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
const mode = process.argv[2]!;
const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
const keyring = FileKeyring.create(join(mkdtempSync(join(os.tmpdir(), 'chartlog-prof-')), 'keyring.json'));
const store = new MemoryObjectStore();
const keys = new KeyManager({ source: 'clinic', store, keyring, log, algorithm: (process.env.ALG as SealAlgorithm | undefined) ?? 'XChaCha20-Poly1305' });
const pool = mode.endsWith('T') ? new CryptoPool(1) : undefined;
const mk = (sealing: boolean, p?: CryptoPool) => new AvroCodec({ ...(p ? { cryptoPool: p } : {}), source: 'clinic', connector: 'postgres', db: 'app', schemas: new SchemaStore({ source: 'clinic', store, log }),
  ...(sealing ? { policy: new ColumnPolicy({ columns: { 'public.patients': PHI }, strict: [], publicColumns: {}, unclassified: 'clear' }) } : {}), keys });
const input = batches();
const sealer = mk(true);
await sealer.fingerprintOf(table);
const sealed: Uint8Array[] = [];
for (const b of input) for (const m of await sealer.encodeBatch(b)) sealed.push(m.value);
const cpu = async (name: string, fn: () => Promise<void>) => { const c0 = process.cpuUsage(); const t0 = performance.now(); await fn(); const c = process.cpuUsage(c0); console.log(name, Math.round(ROWS / ((c.user + c.system) / 1e6)), 'rows/cpu-s', Math.round(ROWS / ((performance.now() - t0) / 1000)), 'rows/s wall'); };
for (let r = 0; r < REPS; r++) {
  if (mode === 'seal') await cpu('seal', async () => { for (const b of input) await sealer.encodeBatch(b); });
  if (mode === 'plain') { const p = mk(false); await p.fingerprintOf(table); await cpu('plain', async () => { for (const b of input) await p.encodeBatch(b); }); }
  if (mode === 'open') { const o = mk(false); await cpu('open', async () => { for (const m of sealed) await o.decode(m, { open: true }); }); }
  if (mode === 'decode') { const o = mk(false); await cpu('decode', async () => { for (const m of sealed) await o.decode(m); }); }
  if (mode === 'sealT') { const t = mk(true, pool); await t.fingerprintOf(table); await cpu('sealT', async () => { let ahead: Promise<unknown> | null = null; for (const b of input) { const n = t.encodeBatch(b); if (ahead) await ahead; ahead = n; } await ahead; }); }
  if (mode === 'openT') { const t = mk(false, pool); await cpu('openT', async () => { let ahead: Promise<unknown> | null = null; for (let i = 0; i < sealed.length; i += 2048) { const n = t.decodeMany(sealed.slice(i, i + 2048), { open: true }); if (ahead) await ahead; ahead = n; } await ahead; }); }
}
await pool?.close();
