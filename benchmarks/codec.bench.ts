/**
 * Codec throughput: encode+seal and decode+open of a 12-column patient row with 4 PHI columns
 * (AES-256-GCM per PHI value, Avro single-object encoding), in batches of 100 events.
 *
 *   node --import tsx benchmarks/codec.bench.ts [rows per rep, default 50000] [reps, default 5]
 *
 * Prints rows/s per operation (median of the reps, and the range) and writes
 * benchmarks/results/codec.json with the machine and versions. The in-memory object store only
 * holds the schema and data-key objects: this measures the codec and sealer, not storage.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { AvroCodec } from '../src/codec/avro-codec.js';
import { SchemaStore } from '../src/codec/schema-store.js';
import type { ChangeBatch, ChangeEvent } from '../src/core/change-event.js';
import { createLogger } from '../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../src/core/position.js';
import type { TableSchema } from '../src/core/table-schema.js';
import { ColumnPolicy } from '../src/phi/column-policy.js';
import { KeyManager } from '../src/phi/key-manager.js';
import { FileKeyring } from '../src/phi/keyring/file-keyring.js';
import { MemoryObjectStore } from '../test/support/memory-object-store.js';

const ROWS = Number(process.argv[2] ?? 50_000);
const REPS = Math.max(3, Number(process.argv[3] ?? 5));
const BATCH = 100;

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

/** Runs `fn`, returning rows/s by wall clock and by this process's CPU time (steadier when other processes share the cores). */
async function measure(rows: number, fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: rows / (Number(process.hrtime.bigint() - t0) / 1e9), cpu: rows / ((c.user + c.system) / 1e6) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  const log = createLogger({ level: 'warn', format: 'json', destination: process.stderr });
  const keyring = FileKeyring.create(join(mkdtempSync(join(os.tmpdir(), 'chartlog-bench-')), 'keyring.json'));
  const input = batches();
  const names = ['encode+seal', 'decode+open', 'encode (no PHI sealed)', 'decode (sealed, not opened)'];
  const results: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const cpuResults: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const record = (name: string, r: { wall: number; cpu: number }): void => {
    results[name]!.push(r.wall);
    cpuResults[name]!.push(r.cpu);
  };
  let messageBytes = 0;

  for (let rep = 0; rep < REPS; rep++) {
    const store = new MemoryObjectStore();
    const keys = new KeyManager({ source: 'clinic', store, keyring, log });
    const mk = (sealing: boolean, withKeys: boolean) =>
      new AvroCodec({
        source: 'clinic',
        connector: 'postgres',
        db: 'app',
        schemas: new SchemaStore({ source: 'clinic', store, log }),
        ...(sealing ? { policy: new ColumnPolicy({ columns: { 'public.patients': PHI }, strict: [], publicColumns: {} }) } : {}),
        ...(withKeys ? { keys } : {}),
      });

    const sealer = mk(true, true);
    await sealer.fingerprintOf(table);
    await keys.current();
    const sealed: Uint8Array[] = [];
    record('encode+seal', await measure(ROWS, async () => {
      for (const b of input) for (const m of await sealer.encodeBatch(b)) sealed.push(m.value);
    }));
    messageBytes = sealed.reduce((n, m) => n + m.length, 0) / sealed.length;

    const opener = mk(false, true);
    await opener.decode(sealed[0]!, { open: true });
    record('decode+open', await measure(ROWS, async () => {
      for (const m of sealed) await opener.decode(m, { open: true });
    }));

    const archive = mk(false, false);
    await archive.decode(sealed[0]!);
    record('decode (sealed, not opened)', await measure(ROWS, async () => {
      for (const m of sealed) await archive.decode(m);
    }));

    const plain = mk(false, false);
    await plain.fingerprintOf(table);
    record('encode (no PHI sealed)', await measure(ROWS, async () => {
      for (const b of input) await plain.encodeBatch(b);
    }));
  }

  const pkg = (name: string): string => (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
  const summary = Object.fromEntries(
    Object.entries(results).map(([k, xs]) => [
      k,
      {
        medianRowsPerSec: Math.round(median(xs)),
        minRowsPerSec: Math.round(Math.min(...xs)),
        maxRowsPerSec: Math.round(Math.max(...xs)),
        reps: xs.map(Math.round),
        medianRowsPerCpuSec: Math.round(median(cpuResults[k]!)),
      },
    ]),
  );
  for (const [k, v] of Object.entries(summary)) {
    console.log(`${k.padEnd(28)} median ${String(v.medianRowsPerSec).padStart(8)} rows/s  (range ${v.minRowsPerSec}–${v.maxRowsPerSec}); ${v.medianRowsPerCpuSec} rows per CPU-second`);
  }
  console.log(`message size: ${Math.round(messageBytes)} bytes/row (sealed); load average (1 min) ${loadBefore[0]!.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)} on ${os.cpus().length} cores`);
  const report = {
    benchmark: 'codec',
    date: new Date().toISOString(),
    workload: { rowsPerRep: ROWS, reps: REPS, batchEvents: BATCH, columns: table.columns.length, phiColumns: PHI, op: 'c (insert, after image only)', meanMessageBytes: Math.round(messageBytes) },
    results: summary,
    machine: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()}`,
      arch: os.arch(),
      // Other processes share the machine; the load average says how much they did.
      loadAverage1mBefore: Number(loadBefore[0]!.toFixed(2)),
      loadAverage1mAfter: Number(os.loadavg()[0]!.toFixed(2)),
    },
    versions: { node: process.version, openssl: process.versions.openssl, avsc: pkg('avsc'), chartlog: (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version },
    command: 'node --import tsx benchmarks/codec.bench.ts',
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/codec.json', import.meta.url), JSON.stringify(report, null, 2) + '\n');
  console.log('wrote benchmarks/results/codec.json');
}

await main();
