/**
 * Object-store write requests per flush (issue 15 item 5): the compactor's PartWriter writing one
 * flush part per flush (all tables and the transaction log in one object) against the writer of
 * chartlog before flush parts (one part per table and schema version, plus the transaction log),
 * on the same batches in the same run. Then the hour is closed and its segments checked: every
 * record written comes back once, from either archive.
 *
 *   node --import tsx benchmarks/part-requests.bench.ts [--tables 20,100] [--flushes 10] [--tx 60] [--reps 3]
 *
 * --tables: active tables (each run touches every one in every flush); --flushes: flushes per
 * run; --tx: transactions per flush (each changes 1–3 tables, and every table is changed in every
 * flush). In memory (test/support/memory-object-store.ts): requests are counted, not timed.
 */
import { parseArgs } from 'node:util';
import { COMMIT_SEQ, Position } from '../src/core/position.js';
import type { BusBatch } from '../src/codec/bus-message.js';
import type { ObjectStore } from '../src/storage/object-store.js';
import { singleObjectHeader } from '../src/codec/single-object.js';
import { PartWriter } from '../src/compactor/part-writer.js';
import { HourCloser } from '../src/compactor/hour-closer.js';
import { readArchiveIndex } from '../src/archive/archive-index.js';
import { ArchiveReader } from '../src/archive/archive-reader.js';
import { MemoryObjectStore } from '../test/support/memory-object-store.js';
import { LegacyPartWriter } from '../test/support/legacy-part-writer.js';
import { envelopes, T0, types } from '../test/support/fake-envelopes.js';
import { BenchRun, goal, measurement, ratio } from './lib/bench-report.js';

const { values } = parseArgs({
  options: {
    tables: { type: 'string', default: '20,100' },
    flushes: { type: 'string', default: '10' },
    tx: { type: 'string', default: '60' },
    reps: { type: 'string', default: '3' },
  },
});
const tableCounts = values.tables.split(',').map(Number);
const flushes = Number(values.flushes);
const txPerFlush = Number(values.tx);
const reps = Number(values.reps);

/** Counts write requests (PUTs) and read requests the way an S3 bill does. */
class CountingStore extends MemoryObjectStore {
  puts = 0;
  gets = 0;
  override async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    this.puts++;
    return super.putIfAbsent(key, body);
  }
  override async get(key: string): Promise<Uint8Array> {
    this.gets++;
    return super.get(key);
  }
  override async getRange(key: string, start: number, end: number): Promise<Uint8Array> {
    this.gets++;
    return super.getRange(key, start, end);
  }
}

/** The same workload for both writers: `flushes` flushes of `txPerFlush` transactions, every table changed in each. */
function workload(tables: number): BusBatch[][] {
  const out: BusBatch[][] = [];
  let n = 0;
  let previous: Position | null = null;
  for (let f = 0; f < flushes; f++) {
    const flush: BusBatch[] = [];
    for (let t = 0; t < txPerFlush; t++) {
      n++;
      const commit = n.toString(16).padStart(16, '0');
      // Round-robin, so every table is in every flush when txPerFlush × 2 ≥ tables.
      const touched = [...new Set([(t * 2) % tables, (t * 2 + 1) % tables, (n * 7) % tables])];
      const tsUs = T0 + BigInt(n) * 1000n;
      const messages = touched.map((table, seq) => {
        const position = Position.of(commit, seq);
        const body = types['00000000000000a1']!.toBuffer({ pos: Position.format(position), ts: Number(tsUs), v: `row ${n}/${seq}` });
        return { table: `public.t${String(table).padStart(3, '0')}`, fingerprint: '00000000000000a1', key: null, value: Buffer.concat([singleObjectHeader(0n), body]), position };
      });
      const batch: BusBatch = { source: 'clinic', position: Position.of(commit, COMMIT_SEQ), previous, txId: `tx${n}`, commitTsUs: tsUs, messages };
      previous = batch.position;
      flush.push(batch);
    }
    out.push(flush);
  }
  return out;
}

interface Writer {
  add(b: BusBatch): void;
  flush(): Promise<unknown>;
}

async function run(tables: number, make: (store: ObjectStore) => Writer): Promise<{ putsPerFlush: number; closePuts: number; records: number; expected: number; getsPerRestore: number }> {
  const store = new CountingStore();
  const w = make(store);
  const flushesOf = workload(tables);
  for (const f of flushesOf) {
    for (const b of f) w.add(b);
    await w.flush();
  }
  const putsPerFlush = store.puts / flushes;
  // Every table's records read back through the readers (open hour), before and after closing.
  const expected = flushesOf.flat().reduce((n, b) => n + b.messages.length, 0);
  const count = async (): Promise<number> => {
    const index = await readArchiveIndex(store, 'clinic');
    const reader = new ArchiveReader(store, index, envelopes);
    let records = 0;
    for (let t = 0; t < tables; t++) records += (await reader.tableRecords(`public.t${String(t).padStart(3, '0')}`, null)).length;
    return records;
  };
  const gets0 = store.gets;
  const open = await count();
  const getsPerRestore = store.gets - gets0;
  if (open !== expected) throw new Error(`open hour: ${open} records read, ${expected} written`);
  const before = store.puts;
  await new HourCloser(store, 'clinic', envelopes).close('2026-11-24T05');
  const closePuts = store.puts - before;
  const records = await count();
  return { putsPerFlush, closePuts, records, expected, getsPerRestore };
}

const bench = new BenchRun('part-requests', 'Object-store PUTs per flush: one flush part vs one part per table', `node --import tsx benchmarks/part-requests.bench.ts --tables ${values.tables} --flushes ${flushes} --tx ${txPerFlush} --reps ${reps}`, {
  tables: tableCounts,
  flushes,
  transactionsPerFlush: txPerFlush,
  reps,
  store: 'in memory (requests counted)',
});

for (const tables of tableCounts) {
  const ours: number[] = [];
  const theirs: number[] = [];
  const oursGets: number[] = [];
  const theirsGets: number[] = [];
  const oursClose: number[] = [];
  const theirsClose: number[] = [];
  for (let r = 0; r < reps; r++) {
    const a = await run(tables, (s) => new LegacyPartWriter(s, 'clinic', envelopes));
    const b = await run(tables, (s) => new PartWriter(s, 'clinic', envelopes));
    for (const x of [a, b]) if (x.records !== x.expected) throw new Error(`after closing: ${x.records} records read, ${x.expected} written`);
    theirs.push(a.putsPerFlush);
    ours.push(b.putsPerFlush);
    theirsGets.push(a.getsPerRestore);
    oursGets.push(b.getsPerRestore);
    theirsClose.push(a.closePuts);
    oursClose.push(b.closePuts);
  }
  const m = bench.add(measurement(`PUTs per flush, flush parts (${tables} active tables)`, 'PUTs', 'lower', 'chartlog', ours));
  const base = bench.add(measurement(`PUTs per flush, one part per table (before; ${tables} active tables)`, 'PUTs', 'lower', 'baseline', theirs));
  bench.addRatio(ratio(m, base, undefined, `PUTs per flush: per-table parts / flush parts (${tables} tables)`));
  bench.add(measurement(`PUTs closing the hour, flush parts (${tables} tables)`, 'PUTs', 'lower', 'detail', oursClose));
  bench.add(measurement(`PUTs closing the hour, per-table parts (${tables} tables)`, 'PUTs', 'lower', 'detail', theirsClose));
  bench.add(measurement(`GETs reading every table of the open hour, flush parts (${tables} tables)`, 'GETs', 'lower', 'detail', oursGets));
  bench.add(measurement(`GETs reading every table of the open hour, per-table parts (${tables} tables)`, 'GETs', 'lower', 'detail', theirsGets));
  // At one flush a second, an hour's PUTs are 3,600 × PUTs per flush, plus its segments and manifest.
  bench.addGoal(goal(`object-store writes per hour ≤ 3,600 + segments and manifest (${tables} active tables, 1 s flush)`, m.median * 3600, 'PUTs for parts', m.median * 3600 <= 3600));
}
bench.note('Every record written was read back once per table from the open hour and again from the closed hour\'s segments, for both writers (the run throws otherwise).');
bench.note('GETs of the open hour: a flush part is fetched whole once per table that has a section in it (plus one range request per part for its table of contents when the index is read); per-table parts are fetched once each.');
console.log(`wrote ${bench.write()}`);
