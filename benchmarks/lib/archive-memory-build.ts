/**
 * Builds the archive benchmarks/archive-memory.bench.ts measures, on a file:// store: a base
 * snapshot of N patient rows (5 columns, 2 sealed) and one open hour of N/2 changes (updates of
 * existing patients, a third with an unchanged sealed value, and inserts; 100 changes per
 * transaction) written as the compactor writes them (flush parts of about 4 MiB) with the
 * checkpoint after them, the hour left to close.
 *
 *   node --import tsx benchmarks/lib/archive-memory-build.ts <store dir> <rows> [changes per transaction, default 100]
 *
 * Prints one JSON line: { hour, rows, changes, transactions, ms, snapshotMs, snapshotVmHwmMiB } (the
 * last two: time and peak RSS of writing the base snapshot).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { configureLogger, createLogger } from '../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import { freezeTableSchema, UNCHANGED, type Row, type TableSchema } from '../../src/core/table-schema.js';
import { AvroCodec } from '../../src/codec/avro-codec.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import type { BusBatch } from '../../src/codec/bus-message.js';
import { ColumnPolicy } from '../../src/phi/column-policy.js';
import { KeyManager } from '../../src/phi/key-manager.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { CodecEnvelopeReader } from '../../src/archive/codec-envelope-reader.js';
import { writeCheckpoint } from '../../src/archive/checkpoint.js';
import { hourOf } from '../../src/archive/layout.js';
import { writeSnapshot } from '../../src/compactor/snapshot-builder.js';
import { PartWriter } from '../../src/compactor/part-writer.js';

const [dir, rowsArg, txArg] = process.argv.slice(2);
const ROWS = Number(rowsArg);
// Changes per transaction: 100 by default; 1 makes as many transactions as changes (what verify's log grows with).
const PER_TX = Number(txArg ?? 100);
if (!dir || !Number.isInteger(ROWS) || ROWS < 10 || !Number.isInteger(PER_TX) || PER_TX < 1) {
  console.error('usage: archive-memory-build.ts <store dir> <rows ≥ 10> [changes per transaction ≥ 1, default 100]');
  process.exit(2);
}
configureLogger({ level: 'warn', format: 'json' });
const started = Date.now();
const source = 'clinic';
const store = new FsObjectStore(dir);
const log = createLogger({ level: 'silent', format: 'json', destination: process.stderr });
const keyring = FileKeyring.create(join(mkdtempSync(join(tmpdir(), 'chartlog-bench-keyring-')), 'keyring.json'));
const schemas = new SchemaStore({ source, store, log });
const codec = new AvroCodec({
  source,
  connector: 'postgres',
  db: 'app',
  schemas,
  policy: new ColumnPolicy({ columns: { 'public.patients': ['full_name', 'ssn'] }, strict: [], publicColumns: { 'public.patients': ['id', 'note', 'visits'] }, unclassified: 'clear' }),
  keys: new KeyManager({ source, store, keyring, log }),
});
const envelopes = new CodecEnvelopeReader(schemas);

const col = (name: string, kind: 'int' | 'string', bits?: number) => ({
  name,
  sourceType: kind === 'int' ? (bits === 64 ? 'bigint' : 'integer') : 'text',
  type: bits ? { kind, bits } : { kind },
  nullable: name !== 'id',
});
const patients: TableSchema = freezeTableSchema({
  schema: 'public',
  table: 'patients',
  columns: [col('id', 'int', 64), col('full_name', 'string'), col('ssn', 'string'), col('note', 'string'), col('visits', 'int', 32)],
  primaryKey: ['id'],
});
const patient = (id: number, visits = 0): Row => ({ id: BigInt(id), full_name: `NAME-${id}`, ssn: `SSN-${String(id).padStart(9, '0')}`, note: `note for patient ${id}`, visits }) as Row;

const T0 = BigInt(Date.parse('2026-11-20T05:00:00Z')) * 1000n;
const commitOf = (n: number) => n.toString(16).padStart(16, '0');
const snapshotPosition = Position.of(commitOf(1));

async function* snapshot(): AsyncIterable<ChangeBatch> {
  let seq = 0;
  for (let i = 1; i <= ROWS; i += 5000) {
    const events: ChangeEvent[] = [];
    for (let id = i; id < Math.min(i + 5000, ROWS + 1); id++) events.push({ op: 'r', schema: patients, before: null, after: patient(id), position: Position.of(snapshotPosition.commit, seq++) });
    yield { source, txId: null, position: snapshotPosition, commitTsUs: T0, snapshot: true, ...(i === 1 ? { schemaChanges: [patients] } : {}), events };
  }
}
const encoder = { encode: (b: ChangeBatch) => codec.encodeBatch(b), fingerprintOf: (_s: string, t: TableSchema) => codec.fingerprintOf(t) };
await writeSnapshot({ store, source, batches: snapshot(), encoder, schemas: envelopes });
await writeCheckpoint(store, { source, position: snapshotPosition, commitTsUs: T0, snapshotId: Position.format(snapshotPosition) });
// The base snapshot's writer (writeSnapshot, as `chartlog run` uses it) fed by a generator, not a source database.
const snapshotVmHwmMiB = vmHwmMiB();
const snapshotMs = Date.now() - started;

// The hour: N/2 changes, 100 per transaction, all within 2026-11-20T06.
const CHANGES = Math.floor(ROWS / 2);
const writer = new PartWriter(store, source, envelopes);
let previous: Position | null = snapshotPosition;
let n = 1;
let nextId = ROWS + 1;
let pending = 0;
let last: { position: Position; commitTsUs: bigint } | null = null;
const hourStart = T0 + 3_600_000_000n;
for (let done = 0; done < CHANGES; ) {
  n++;
  const events: ChangeEvent[] = [];
  for (let i = 0; i < PER_TX && done < CHANGES; i++, done++) {
    const position = Position.of(commitOf(n), i);
    if (done % 4 === 3) {
      events.push({ op: 'c', schema: patients, before: null, after: patient(nextId++), position });
    } else {
      // Spread over the table; a third keep their sealed name unchanged (PostgreSQL TOAST).
      const id = 1 + ((done * 7919) % ROWS);
      const after = { ...patient(id, done), ...(done % 3 === 0 ? { full_name: UNCHANGED } : {}) } as Row;
      events.push({ op: 'u', schema: patients, before: null, after, position });
    }
  }
  const position = Position.of(commitOf(n), COMMIT_SEQ);
  const commitTsUs = hourStart + BigInt(Math.floor((Number(done) / CHANGES) * 3_000_000_000));
  const batch: ChangeBatch = { source, txId: `tx${n}`, position, commitTsUs, snapshot: false, events };
  const bus: BusBatch = { source, position, previous, txId: batch.txId, commitTsUs, messages: await codec.encodeBatch(batch) };
  previous = position;
  writer.add(bus);
  last = { position, commitTsUs };
  pending += events.length;
  // About what a compactor's early flush (segments.maxPartBytes, 4 MiB) holds.
  if (pending >= 20_000) {
    await writer.flush();
    pending = 0;
  }
}
await writer.flush();
await writeCheckpoint(store, { source, position: last!.position, commitTsUs: last!.commitTsUs, snapshotId: Position.format(snapshotPosition) });
console.log(JSON.stringify({ hour: hourOf(hourStart), rows: ROWS, changes: CHANGES, transactions: n - 1, ms: Date.now() - started, snapshotMs, snapshotVmHwmMiB }));

function vmHwmMiB(): number {
  return Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) / 1024);
}
