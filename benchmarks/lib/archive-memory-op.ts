/**
 * One archive operation, alone in its process, for benchmarks/archive-memory.bench.ts: its peak
 * resident set (VmHWM) is then the operation's. The chartlog tree it runs is a directory given
 * on the command line (this worktree, or a checkout of the baseline), so before and after are
 * measured the same way in one run.
 *
 *   node --import tsx benchmarks/lib/archive-memory-op.ts <close|synthesise|verify> <store dir> <chartlog root> [hour]
 *
 * Prints one JSON line: { op, ms, vmHwmMiB, ... }.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as LoggerModule from '../../src/core/logger.js';
import type * as FsStoreModule from '../../src/storage/fs-object-store.js';
import type * as SchemaStoreModule from '../../src/codec/schema-store.js';
import type * as EnvelopeReaderModule from '../../src/archive/codec-envelope-reader.js';
import type * as HourCloserModule from '../../src/compactor/hour-closer.js';
import type * as SynthesiserModule from '../../src/compactor/snapshot-synthesiser.js';
import type * as VerifyModule from '../../src/restore/verify.js';
import type * as ArchiveIndexModule from '../../src/archive/archive-index.js';

const [op, dir, root, hour] = process.argv.slice(2);
if (!op || !dir || !root) {
  console.error('usage: archive-memory-op.ts <close|synthesise|verify> <store dir> <chartlog root> [hour]');
  process.exit(2);
}
const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(root, path)).href)) as T;

const { configureLogger } = await load<typeof LoggerModule>('src/core/logger.ts');
configureLogger({ level: 'warn', format: 'json' });
const { FsObjectStore } = await load<typeof FsStoreModule>('src/storage/fs-object-store.ts');
const { SchemaStore } = await load<typeof SchemaStoreModule>('src/codec/schema-store.ts');
const { CodecEnvelopeReader } = await load<typeof EnvelopeReaderModule>('src/archive/codec-envelope-reader.ts');
const store = new FsObjectStore(dir);
const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: 'clinic', store }));

const started = performance.now();
let detail: Record<string, unknown> = {};
if (op === 'close') {
  const { HourCloser } = await load<typeof HourCloserModule>('src/compactor/hour-closer.ts');
  const closer = new HourCloser(store, 'clinic', envelopes);
  const m = await closer.close(hour!);
  detail = { events: m?.events, transactions: m?.transactions, segments: m?.objects.length, spilledSegments: (closer as { spilledSegments?: number }).spilledSegments };
} else if (op === 'synthesise') {
  const { synthesiseSnapshot } = await load<typeof SynthesiserModule>('src/compactor/snapshot-synthesiser.ts');
  const r = await synthesiseSnapshot({ store, source: 'clinic', connector: 'postgres', db: 'app' });
  if (r.status !== 'written') throw new Error(`synthesis: ${r.status}`);
  detail = { rows: r.rows, changes: r.changes, spilled: (r as { spilled?: string[] }).spilled ?? [] };
} else if (op === 'verify') {
  const { verifyArchive } = await load<typeof VerifyModule>('src/restore/verify.ts');
  const { readArchiveIndex } = await load<typeof ArchiveIndexModule>('src/archive/archive-index.ts');
  const r = await verifyArchive(store, await readArchiveIndex(store, 'clinic'), envelopes);
  if (!r.ok) throw new Error(`verify: ${JSON.stringify(r.problems.slice(0, 3))}`);
  detail = { events: r.checked.events, transactions: r.checked.transactions, objects: r.checked.objects };
} else {
  console.error(`unknown operation ${op}`);
  process.exit(2);
}
const ms = Math.round(performance.now() - started);
const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
console.log(JSON.stringify({ op, ms, vmHwmMiB: Math.round(Number(hwm) / 1024), ...detail }));
