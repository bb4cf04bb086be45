/**
 * Which AEAD seals PHI fastest (issue 17): µs per operation, sealing 4 PHI values of 30 bytes
 * each with a fresh random nonce per operation, one thread, no Avro.
 *
 *   node --import tsx benchmarks/seal-options.bench.ts [rows per rep, default 50000] [reps, default 5, at least 3]
 *
 * Options: node:crypto AES-256-GCM and sodium-native XChaCha20-Poly1305 (and sodium-native
 * AES-256-GCM when the package exposes it and the CPU has AES-NI: crypto_aead_aes256gcm_is_available),
 * each per value (4 AEAD operations per row, AAD = place + key, 64 bytes) and per row (the 4
 * values length-prefixed into one message, one AEAD operation, AAD = table + column set + key +
 * position). Time is this process's CPU time (one thread). Writes benchmarks/results/seal-options.json; the figure is µs per row (4 values),
 * and the notes give µs per AEAD operation.
 */
import { createCipheriv, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import sodium from 'sodium-native';
import { BenchRun, measurement, median } from './lib/bench-report.js';

const ROWS = Number(process.argv[2] ?? 50_000);
const REPS = Math.max(3, Number(process.argv[3] ?? 5));
const VALUES = 4;
const VALUE_BYTES = 30;

const key = Buffer.alloc(32);
randomFillSync(key);
const values: Buffer[] = Array.from({ length: VALUES }, (_v, i) => Buffer.alloc(VALUE_BYTES, 0x41 + i));
const valueAad = Buffer.alloc(64, 7);
const rowAad = Buffer.alloc(96, 9);
const rowPlain = Buffer.concat(values.map((v) => Buffer.concat([Buffer.from([v.length, 0, 0, 0]), v])));

function aesNode(plain: Buffer, aad: Buffer, nonce: Buffer, out: Buffer): void {
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
  c.setAAD(aad);
  const body = c.update(plain);
  c.final();
  body.copy(out, 0);
  c.getAuthTag().copy(out, body.length);
}

function xchacha(plain: Buffer, aad: Buffer, nonce: Buffer, out: Buffer): void {
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(0, plain.length + 16), plain, aad, null, nonce, key);
}

type Aead = (plain: Buffer, aad: Buffer, nonce: Buffer, out: Buffer) => void;

/**
 * CPU seconds of this (one-thread) process for ROWS rows — steadier than wall clock when other
 * processes share the cores — each sealed as `perRow ? 1 : VALUES` operations with a fresh nonce each. */
function time(aead: Aead, nonceBytes: number, perRow: boolean): number {
  const pool = Buffer.alloc(nonceBytes * 4096);
  let at = pool.length;
  const nonce = Buffer.alloc(nonceBytes);
  const out = Buffer.alloc(rowPlain.length + 16);
  const next = (): Buffer => {
    if (at === pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    pool.copy(nonce, 0, at, (at += nonceBytes));
    return nonce;
  };
  const c0 = process.cpuUsage();
  for (let r = 0; r < ROWS; r++) {
    if (perRow) aead(rowPlain, rowAad, next(), out);
    else for (let v = 0; v < VALUES; v++) aead(values[v]!, valueAad, next(), out);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

const sodiumAes = (sodium as unknown as Record<string, unknown>).crypto_aead_aes256gcm_is_available as (() => boolean) | undefined;
const aesNiInSodium = typeof sodiumAes === 'function' && sodiumAes();

const options: { name: string; aead: Aead; nonce: number }[] = [
  { name: 'node:crypto AES-256-GCM', aead: aesNode, nonce: 12 },
  { name: 'sodium-native XChaCha20-Poly1305', aead: xchacha, nonce: 24 },
];

const run = new BenchRun('seal-options', 'PHI sealing options: µs per row of 4 × 30-byte values (per value: 4 AEAD operations; per row: 1)', `node --import tsx benchmarks/seal-options.bench.ts ${ROWS} ${REPS}`, {
  rowsPerRep: ROWS,
  reps: REPS,
  valuesPerRow: VALUES,
  valueBytes: VALUE_BYTES,
  nonce: 'fresh random per operation (pool refilled by randomFillSync)',
});
const sodiumVersion = (JSON.parse(readFileSync(new URL('../node_modules/sodium-native/package.json', import.meta.url), 'utf8')) as { version: string }).version;
run.version('sodium-native', sodiumVersion);

const perOp: string[] = [];
for (const o of options) {
  for (const perRow of [false, true]) {
    time(o.aead, o.nonce, perRow); // warm-up
    const reps: number[] = [];
    for (let i = 0; i < REPS; i++) reps.push((time(o.aead, o.nonce, perRow) * 1e6) / ROWS);
    const m = run.add(measurement(`${o.name}, ${perRow ? 'per row (1 op)' : 'per value (4 ops)'}`, 'µs/row', 'lower', 'detail', reps.map((x) => Math.round(x * 1000) / 1000)));
    perOp.push(`${m.name}: ${(median(m.reps) / (perRow ? 1 : VALUES)).toFixed(3)} µs/op`);
  }
}
run.note(perOp.join('; '));
run.note(
  aesNiInSodium
    ? 'sodium-native exposes AES-256-GCM and the CPU supports it'
    : `sodium-native ${sodiumVersion} exposes no AES-256-GCM (crypto_aead_aes256gcm_* is absent from the package), so AES-256-GCM is measured through node:crypto only; the CPU has AES-NI and VAES (/proc/cpuinfo)`,
);
run.write();
