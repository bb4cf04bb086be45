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
import { createLogger } from '../src/core/logger.js';
import { CryptoPool } from '../src/phi/crypto-pool.js';
import { KeyManager } from '../src/phi/key-manager.js';
import type { SealAlgorithm } from '../src/phi/sealer.js';
import { MemoryObjectStore } from '../test/support/memory-object-store.js';
import { benchKeyring, patientBatches, PATIENTS as table, patientCodec } from './lib/patient-codec.js';

const ROWS = Number(process.argv[3] ?? 50000);
const REPS = Number(process.argv[4] ?? 3);
const mode = process.argv[2]!;
const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
const keyring = benchKeyring();
const store = new MemoryObjectStore();
const keys = new KeyManager({ source: 'clinic', store, keyring, log, algorithm: (process.env.ALG as SealAlgorithm | undefined) ?? 'XChaCha20-Poly1305' });
const pool = mode.endsWith('T') ? new CryptoPool(1) : undefined;
const mk = (sealing: boolean, p?: CryptoPool) => patientCodec({ store, log, sealing, keys, ...(p ? { cryptoPool: p } : {}) });
const input = patientBatches(ROWS);
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
