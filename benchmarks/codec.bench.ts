/**
 * Codec throughput: encode+seal and decode+open of a 12-column patient row with 4 PHI columns
 * (sealed format 3, one AEAD operation per row image over its PHI values, Avro single-object encoding), in batches
 * of 100 events, under both data-key algorithms in the same run: XChaCha20-Poly1305 (libsodium,
 * the default) and AES-256-GCM (node:crypto, phi.algorithm: aes-256-gcm — what every value
 * cost before issue 17).
 *
 *   node --import tsx benchmarks/codec.bench.ts [rows per rep, default 50000] [reps, default 5, at least 3]
 *
 * Writes benchmarks/results/codec.json (benchmarks/lib/bench-report.ts). The in-memory object
 * store only holds the schema and data-key objects: this measures the codec and sealer, not
 * storage. There is no native tool to compare with, so the baseline is the crypto lower bound:
 * Node's own AES-256-GCM sealing the same 4 values per row (a fresh random nonce each, an AAD of
 * the same length), with no Avro, no value mapping and no sealed-value layout.
 *
 * Each is measured on one thread, then as the pipeline and restore run it with the crypto thread
 * (phi.cryptoThreads 1): batches encoded one ahead with their PHI sealed on the thread, and
 * groups of 2048 messages decoded one ahead with their PHI opened on it.
 */
import { createCipheriv, randomFillSync } from 'node:crypto';
import os from 'node:os';
import { createLogger } from '../src/core/logger.js';
import type { BusMessage } from '../src/codec/bus-message.js';
import type { DecodedChange } from '../src/codec/avro-codec.js';
import { CryptoPool } from '../src/phi/crypto-pool.js';
import { KeyManager } from '../src/phi/key-manager.js';
import type { SealAlgorithm } from '../src/phi/sealer.js';
import sodium from 'sodium-native';
import { placeAad, keyAad } from '../src/phi/aad.js';
import { serializeCell } from '../src/phi/cell-serialization.js';
import type { ChangeBatch } from '../src/core/change-event.js';
import { MemoryObjectStore } from '../test/support/memory-object-store.js';
import { BenchRun, goal, measurement, median, ratio } from './lib/bench-report.js';
import { BATCH_EVENTS as BATCH, benchKeyring, PATIENT_PHI as PHI, patientBatches, PATIENTS as table, patientCodec } from './lib/patient-codec.js';
const ROWS = Number(process.argv[2] ?? 50_000);
const REPS = Math.max(3, Number(process.argv[3] ?? 5));

/** Runs `fn`, returning rows/s by wall clock and by this process's CPU time (steadier when other processes share the cores). */
async function measure(rows: number, fn: () => Promise<void> | void): Promise<{ wall: number; cpu: number }> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: rows / (Number(process.hrtime.bigint() - t0) / 1e9), cpu: rows / ((c.user + c.system) / 1e6) };
}

/**
 * The crypto lower bound: for each row, the 4 PHI values' serialised bytes sealed with Node's
 * AES-256-GCM under one key, each with a fresh random 12-byte nonce (drawn from a pool filled by
 * randomFillSync) and the AAD the codec binds (place + primary key), precomputed. What is left
 * is createCipheriv, setAAD, update, final and getAuthTag per value.
 */
function rawSealInputs(input: ChangeBatch[]): { plain: Uint8Array[]; aad: Uint8Array[] } {
  const plain: Uint8Array[] = [];
  const aad: Uint8Array[] = [];
  const places = PHI.map((c) => placeAad('clinic', table.schema, table.table, c));
  for (const b of input) {
    for (const e of b.events) {
      const key = keyAad([{ value: e.after!.id! }]);
      PHI.forEach((c, i) => {
        plain.push(serializeCell(e.after![c]!));
        aad.push(Buffer.concat([places[i]!, key]));
      });
    }
  }
  return { plain, aad };
}

/** The same lower bound with libsodium's XChaCha20-Poly1305 (24-byte random nonce each). */
function rawSealXChaCha(key: Uint8Array, plain: readonly Uint8Array[], aad: readonly Uint8Array[]): number {
  const nonces = Buffer.alloc(24 * 4096);
  const out = Buffer.alloc(4096);
  let at = nonces.length;
  let bytes = 0;
  for (let i = 0; i < plain.length; i++) {
    if (at === nonces.length) {
      randomFillSync(nonces);
      at = 0;
    }
    const p = plain[i]!;
    bytes += sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(0, p.length + 16), p, aad[i]!, null, nonces.subarray(at, (at += 24)), key);
  }
  return bytes;
}

function rawSeal(key: Uint8Array, plain: readonly Uint8Array[], aad: readonly Uint8Array[]): number {
  const nonces = Buffer.alloc(12 * 4096);
  const iv = Buffer.alloc(12);
  let at = nonces.length;
  let bytes = 0;
  for (let i = 0; i < plain.length; i++) {
    if (at === nonces.length) {
      randomFillSync(nonces);
      at = 0;
    }
    nonces.copy(iv, 0, at, (at += 12));
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    cipher.setAAD(aad[i]!);
    bytes += cipher.update(plain[i]!).length + cipher.final().length + cipher.getAuthTag().length;
  }
  return bytes;
}

const ALGORITHMS: readonly SealAlgorithm[] = ['XChaCha20-Poly1305', 'AES-256-GCM'];
const SEAL = (a: SealAlgorithm) => `encode+seal (${a})`;
const OPEN = (a: SealAlgorithm) => `decode+open (${a})`;
const SEAL_T = (a: SealAlgorithm) => `encode+seal, PHI sealed on the crypto thread (${a})`;
const OPEN_T = (a: SealAlgorithm) => `decode+open, PHI opened on the crypto thread (${a})`;
const GROUP = 2048;
const PLAIN = 'encode unsealed';
const ARCHIVE = 'decode not opened';
const RAW = 'raw AES-256-GCM seal, 4 values (node:crypto, no Avro)';
const RAW_X = 'raw XChaCha20-Poly1305 seal, 4 values (libsodium, no Avro)';

async function main(): Promise<void> {
  const run = new BenchRun('codec', 'Codec and PHI sealing throughput (12 columns, 4 PHI; one thread, and with the crypto thread)', `node --import tsx benchmarks/codec.bench.ts ${ROWS} ${REPS}`, {
    rowsPerRep: ROWS,
    reps: REPS,
    batchEvents: BATCH,
    columns: table.columns.length,
    phiColumns: PHI,
    op: 'c (insert, after image only)',
  });
  const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
  const keyring = benchKeyring();
  const input = patientBatches(ROWS);
  const raw = rawSealInputs(input);
  const names = [...ALGORITHMS.flatMap((a) => [SEAL(a), OPEN(a), SEAL_T(a), OPEN_T(a)]), PLAIN, ARCHIVE, RAW, RAW_X];
  const pool = new CryptoPool(1);
  const wall: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const record = (name: string, r: { wall: number; cpu: number }): void => {
    wall[name]!.push(r.wall);
    cpu[name]!.push(r.cpu);
  };
  const messageBytes: Record<string, number> = {};

  for (let rep = 0; rep < REPS; rep++) {
   let rawKey: Uint8Array | undefined;
   for (const algorithm of ALGORITHMS) {
    const store = new MemoryObjectStore();
    const keys = new KeyManager({ source: 'clinic', store, keyring, log, algorithm });
    const mk = (sealing: boolean, withKeys: boolean, cryptoPool?: CryptoPool) =>
      patientCodec({ store, log, sealing, ...(withKeys ? { keys } : {}), ...(cryptoPool ? { cryptoPool } : {}) });

    const sealer = mk(true, true);
    await sealer.fingerprintOf(table);
    rawKey ??= (await keys.current()).key;
    const sealed: Uint8Array[] = [];
    record(SEAL(algorithm), await measure(ROWS, async () => {
      for (const b of input) for (const m of await sealer.encodeBatch(b)) sealed.push(m.value);
    }));
    messageBytes[algorithm] = sealed.reduce((n, m) => n + m.length, 0) / sealed.length;

    const opener = mk(false, true);
    await opener.decode(sealed[0]!, { open: true });
    record(OPEN(algorithm), await measure(ROWS, async () => {
      for (const m of sealed) await opener.decode(m, { open: true });
    }));

    // One batch ahead, as the pipeline does (core/publish-ahead.ts).
    const threaded = mk(true, true, pool);
    await threaded.fingerprintOf(table);
    let threadedCount = 0;
    record(SEAL_T(algorithm), await measure(ROWS, async () => {
      let ahead: Promise<BusMessage[]> | null = null;
      for (const b of input) {
        const next = threaded.encodeBatch(b);
        if (ahead) threadedCount += (await ahead).length;
        ahead = next;
      }
      if (ahead) threadedCount += (await ahead).length;
    }));
    if (threadedCount !== ROWS) throw new Error(`encoded ${threadedCount} of ${ROWS} rows on the crypto thread`);

    // One group ahead, as restore does (restore/replay.ts).
    const threadedOpener = mk(false, true, pool);
    await threadedOpener.decode(sealed[0]!, { open: true });
    let openedCount = 0;
    record(OPEN_T(algorithm), await measure(ROWS, async () => {
      let ahead: Promise<DecodedChange[]> | null = null;
      for (let i = 0; i < sealed.length; i += GROUP) {
        const next = threadedOpener.decodeMany(sealed.slice(i, i + GROUP), { open: true });
        if (ahead) openedCount += (await ahead).length;
        ahead = next;
      }
      if (ahead) openedCount += (await ahead).length;
    }));
    if (openedCount !== ROWS) throw new Error(`opened ${openedCount} of ${ROWS} rows on the crypto thread`);

    if (algorithm !== ALGORITHMS[0]) continue;
    const archive = mk(false, false);
    await archive.decode(sealed[0]!);
    record(ARCHIVE, await measure(ROWS, async () => {
      for (const m of sealed) await archive.decode(m);
    }));

    const plain = mk(false, false);
    await plain.fingerprintOf(table);
    record(PLAIN, await measure(ROWS, async () => {
      for (const b of input) await plain.encodeBatch(b);
    }));

   }
    record(RAW, await measure(ROWS, () => {
      rawSeal(rawKey!, raw.plain, raw.aad);
    }));
    record(RAW_X, await measure(ROWS, () => {
      rawSealXChaCha(rawKey!, raw.plain, raw.aad);
    }));
  }

  const by: Record<string, { seal: ReturnType<typeof measurement>; open: ReturnType<typeof measurement>; sealT: ReturnType<typeof measurement>; openT: ReturnType<typeof measurement> }> = {};
  for (const a of ALGORITHMS) {
    by[a] = {
      seal: run.add(measurement(SEAL(a), 'rows/s', 'higher', 'chartlog', wall[SEAL(a)]!)),
      open: run.add(measurement(OPEN(a), 'rows/s', 'higher', 'chartlog', wall[OPEN(a)]!)),
      sealT: run.add(measurement(SEAL_T(a), 'rows/s', 'higher', 'chartlog', wall[SEAL_T(a)]!)),
      openT: run.add(measurement(OPEN_T(a), 'rows/s', 'higher', 'chartlog', wall[OPEN_T(a)]!)),
    };
  }
  run.add(measurement(PLAIN, 'rows/s', 'higher', 'detail', wall[PLAIN]!));
  run.add(measurement(ARCHIVE, 'rows/s', 'higher', 'detail', wall[ARCHIVE]!));
  const base = run.add(measurement(RAW, 'rows/s', 'higher', 'baseline', wall[RAW]!));
  const baseX = run.add(measurement(RAW_X, 'rows/s', 'higher', 'baseline', wall[RAW_X]!));
  const x = by['XChaCha20-Poly1305']!;
  const aes = by['AES-256-GCM']!;
  run.addRatio(ratio(x.seal, aes.seal, undefined, 'encode+seal: XChaCha20-Poly1305 / AES-256-GCM (the pre-issue-17 cost), same run, one thread'));
  run.addRatio(ratio(x.open, aes.open, undefined, 'decode+open: XChaCha20-Poly1305 / AES-256-GCM, same run, one thread'));
  run.addRatio(ratio(x.sealT, aes.sealT, undefined, 'encode+seal with the crypto thread: XChaCha20-Poly1305 / AES-256-GCM'));
  run.addRatio(ratio(x.openT, aes.openT, undefined, 'decode+open with the crypto thread: XChaCha20-Poly1305 / AES-256-GCM'));
  run.addRatio(ratio(x.seal, baseX, undefined, 'encode+seal (XChaCha20-Poly1305) / raw XChaCha20-Poly1305 seal (share of the crypto lower bound)'));
  run.addRatio(ratio(aes.seal, base, undefined, 'encode+seal (AES-256-GCM) / raw AES-256-GCM seal'));
  const best = (m: { sealT: { median: number }; seal: { median: number } }) => Math.max(m.seal.median, m.sealT.median);
  const bestOpen = (m: { openT: { median: number }; open: { median: number } }) => Math.max(m.open.median, m.openT.median);
  run.addGoal(goal('encode+seal ≥ 250,000 rows/s with 4 PHI columns (issue 17), default algorithm, best of one thread / crypto thread', best(x), 'rows/s', best(x) >= 250_000));
  run.addGoal(goal('decode+open ≥ 250,000 rows/s with 4 PHI columns (issue 17), default algorithm, best of one thread / crypto thread', bestOpen(x), 'rows/s', bestOpen(x) >= 250_000));
  run.note(`rows per CPU-second of this process (steadier than wall clock on a shared machine): ${names.map((n) => `${n} ${Math.round(median(cpu[n]!))}`).join('; ')}`);
  run.note(`sealed message size per row: ${Object.entries(messageBytes).map(([a, n]) => `${a} ${Math.round(n)} bytes`).join(', ')} (format 1 wrote 461)`);
  run.note(`${os.availableParallelism()} cores: the crypto thread can at most double the one-thread figure, and the CPU figures above count both threads; load average before/after in machine (other processes share the cores)`);
  run.write();
  await pool.close();
}

await main();
