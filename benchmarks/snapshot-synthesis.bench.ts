/**
 * Snapshot synthesis throughput: a base snapshot of N patient rows (5 columns, 2 sealed) plus
 * M stored changes (inserts, updates with unchanged values, deletes, over 3 hours) replayed
 * and written back as a synthesised snapshot, without the keyring — in memory, then on a
 * file:// store (the same objects copied to a temp directory).
 *
 *   node --expose-gc --import tsx benchmarks/snapshot-synthesis.bench.ts [rows, default 100000] [changes per hour, default 2000] [reps, default 3]
 *
 * Prints rows/s (rows written to the new snapshot per second of the whole synthesis, index
 * and replay included; median of the reps), the peak extra memory, and the event-loop delay a
 * stream beside it would see; writes benchmarks/results/snapshot-synthesis.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { configureLogger } from '../src/core/logger.js';
import { snapshotsPrefix } from '../src/archive/snapshot-manifest.js';
import { synthesiseSnapshot } from '../src/compactor/snapshot-synthesiser.js';
import { FsObjectStore } from '../src/storage/fs-object-store.js';
import type { ObjectStore } from '../src/storage/object-store.js';
import { buildArchive } from '../test/support/snapshot-archive.js';

const ROWS = Number(process.argv[2] ?? 100_000);
const PER_HOUR = Number(process.argv[3] ?? 2000);
const REPS = Math.max(1, Number(process.argv[4] ?? 3));

configureLogger({ level: 'warn', format: 'json' });

interface Measured {
  ms: number[];
  rows: number;
  changes: number;
  rss: number;
  /** Peak heap + array buffers above what was in use before, sampled every 20 ms. */
  extraMiB: number;
  /** Event-loop delay while synthesising: what a stream beside it would wait at worst. */
  loopDelayMs: { p99: number; max: number };
}

async function measure(store: ObjectStore, keepIds: Set<string>): Promise<Measured> {
  const ms: number[] = [];
  let rows = 0;
  let changes = 0;
  let rss = 0;
  let extra = 0;
  const delay = monitorEventLoopDelay({ resolution: 5 });
  for (let rep = 0; rep < REPS; rep++) {
    for await (const o of store.listAll(snapshotsPrefix('clinic'))) if (!keepIds.has(o.key.split('/')[2]!)) await store.delete(o.key);
    global.gc?.();
    const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const before = used();
    const sampler = setInterval(() => (extra = Math.max(extra, used() - before)), 20);
    delay.enable();
    const r = await synthesiseSnapshot({ store, source: 'clinic', connector: 'postgres', db: 'app' });
    delay.disable();
    clearInterval(sampler);
    if (r.status !== 'written') throw new Error(`synthesis: ${r.status}`);
    ms.push(r.ms);
    rows = r.rows;
    changes = r.changes;
    rss = Math.max(rss, process.memoryUsage().rss);
  }
  return { ms, rows, changes, rss, extraMiB: Math.round(extra / 2 ** 20), loopDelayMs: { p99: Math.round(delay.percentile(99) / 1e6), max: Math.round(delay.max / 1e6) } };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const t0 = Date.now();
  const a = await buildArchive({ patientsRows: ROWS, hours: 3, perHour: PER_HOUR });
  console.log(`archive built in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${ROWS} snapshot rows, ${a.transactions.length} transactions`);
  const keep = new Set([...a.rig.store.objects.keys()].filter((k) => k.endsWith('/manifest.json') && k.includes('/snapshots/')).map((k) => k.split('/')[2]!));

  const memory = await measure(a.rig.store, keep);
  const dir = mkdtempSync(join(os.tmpdir(), 'chartlog-synth-bench-'));
  const fs = new FsObjectStore(dir);
  for (const [k, o] of a.rig.store.objects) if (!k.includes('/snapshots/') || keep.has(k.split('/')[2]!)) await fs.put(k, o.body);
  const file = await measure(fs, keep);
  rmSync(dir, { recursive: true, force: true });

  const results = Object.fromEntries(
    Object.entries({ memory, file }).map(([name, m]) => [
      name,
      {
        rows: m.rows,
        changesReplayed: m.changes,
        msMedian: median(m.ms),
        ms: m.ms,
        rowsPerSecond: Math.round(m.rows / (median(m.ms) / 1000)),
        maxRssMiB: Math.round(m.rss / 2 ** 20),
        peakExtraMemoryMiB: m.extraMiB,
        eventLoopDelayMs: m.loopDelayMs,
      },
    ]),
  );
  for (const [name, r] of Object.entries(results)) console.log(`${name.padEnd(6)} ${r.rows} rows, ${r.changesReplayed} changes: ${r.msMedian} ms median → ${r.rowsPerSecond} rows/s; +${r.peakExtraMemoryMiB} MiB peak; event loop delay p99 ${r.eventLoopDelayMs.p99} ms, max ${r.eventLoopDelayMs.max} ms`);
  const report = {
    benchmark: 'snapshot-synthesis',
    date: new Date().toISOString(),
    parameters: { snapshotRows: ROWS, changesPerHour: PER_HOUR, hours: 3, reps: REPS, sealedColumns: 2 },
    results,
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30) },
    versions: { node: process.version, chartlog: (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version },
    command: 'node --expose-gc --import tsx benchmarks/snapshot-synthesis.bench.ts',
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./results/snapshot-synthesis.json', import.meta.url), `${JSON.stringify(report, null, 2)}\n`);
  console.log('wrote benchmarks/results/snapshot-synthesis.json');
}

await main();
