import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import { freezeTableSchema, UNCHANGED, type Row, type TableSchema } from '../../src/core/table-schema.js';
import type { BusBatch } from '../../src/codec/bus-message.js';
import { writeCheckpoint } from '../../src/archive/checkpoint.js';
import { CodecEnvelopeReader } from '../../src/archive/codec-envelope-reader.js';
import { Compactor } from '../../src/compactor/compactor.js';
import { writeSnapshot } from '../../src/compactor/snapshot-builder.js';
import { SchemaStore } from '../../src/codec/schema-store.js';
import { codecRig, type CodecRig } from './codec-support.js';

/**
 * A real archive in memory, written by the real codec (PHI sealed) and compactor: a source
 * snapshot, then transactions over several hours with inserts, updates (some with unchanged
 * values, also of sealed columns), deletes, a keyless table with duplicate rows, a TRUNCATE,
 * an ALTER (second table version) and a commit clock that steps back once.
 */

export const CANARY = 'CANARY-SSN-';
export const HOUR_US = 3_600_000_000n;
export const T0 = BigInt(Date.parse('2026-11-20T05:00:00Z')) * 1000n;

const col = (name: string, kind: 'int' | 'string' | 'boolean', bits?: number) => ({
  name,
  sourceType: kind === 'int' ? (bits === 64 ? 'bigint' : 'integer') : kind === 'boolean' ? 'boolean' : 'text',
  type: bits ? { kind, bits } : { kind },
  nullable: name !== 'id',
});

export const patientsV1: TableSchema = freezeTableSchema({
  schema: 'public',
  table: 'patients',
  columns: [col('id', 'int', 64), col('full_name', 'string'), col('ssn', 'string'), col('note', 'string'), col('visits', 'int', 32)],
  primaryKey: ['id'],
});
export const patientsV2: TableSchema = freezeTableSchema({ ...patientsV1, columns: [...patientsV1.columns.map((c) => ({ ...c, type: { ...c.type } })), col('flag', 'boolean')] });
/** No primary key: rows are matched by their whole image; duplicates are kept. */
export const audit: TableSchema = freezeTableSchema({ schema: 'public', table: 'audit', columns: [col('who', 'string'), col('what', 'string')], primaryKey: [] });
export const visits: TableSchema = freezeTableSchema({ schema: 'public', table: 'visits', columns: [col('id', 'int', 64), col('reason', 'string')], primaryKey: ['id'] });

export const phiPolicy = { columns: { 'public.patients': ['full_name', 'ssn'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const };

export interface TestArchive {
  rig: CodecRig;
  /** Every transaction committed, in order: position and commit time. */
  transactions: { position: Position; commitTsUs: bigint }[];
  snapshotPosition: Position;
  /** Streams more transactions on top (same compactor state kept in the store). */
  more(n: number, hour: number): Promise<void>;
}

const commitOf = (n: number) => n.toString(16).padStart(16, '0');

export function patient(id: number, extra: Partial<Record<string, unknown>> = {}): Row {
  return { id: BigInt(id), full_name: `CANARY-NAME-${id}`, ssn: `${CANARY}${String(id).padStart(4, '0')}`, note: `n${id}`, visits: 0, ...extra } as Row;
}

/** Builds the archive; `patientsRows` rows in the source snapshot. */
export async function buildArchive(options: { patientsRows?: number; hours?: number; perHour?: number } = {}): Promise<TestArchive> {
  const rig = codecRig({ policy: phiPolicy });
  const source = 'clinic';
  const envelopes = new CodecEnvelopeReader(new SchemaStore({ source, store: rig.store }));
  const encoder = { encode: (b: ChangeBatch) => rig.codec.encodeBatch(b), fingerprintOf: (_s: string, t: TableSchema) => rig.codec.fingerprintOf(t) };

  const snapshotPosition = Position.of(commitOf(1));
  const rowsN = options.patientsRows ?? 20;
  async function* snapshot(): AsyncIterable<ChangeBatch> {
    let seq = 0;
    const ev = (schema: TableSchema, after: Row): ChangeEvent => ({ op: 'r', schema, before: null, after, position: Position.of(snapshotPosition.commit, seq++) });
    const base = { source, txId: null, position: snapshotPosition, commitTsUs: T0, snapshot: true } as const;
    for (let i = 1; i <= rowsN; i += 5000) {
      const events: ChangeEvent[] = [];
      for (let id = i; id < Math.min(i + 5000, rowsN + 1); id++) events.push(ev(patientsV1, patient(id)));
      yield { ...base, schemaChanges: i === 1 ? [patientsV1, audit, visits] : [], events };
    }
    yield { ...base, events: [ev(audit, { who: 'CANARY-NAME-dr', what: 'login' }), ev(audit, { who: 'CANARY-NAME-dr', what: 'login' })] };
  }
  await writeSnapshot({ store: rig.store, source, batches: snapshot(), encoder, schemas: envelopes });
  await writeCheckpoint(rig.store, { source, position: snapshotPosition, commitTsUs: T0, snapshotId: Position.format(snapshotPosition) });

  let clockMs = Number(T0 / 1000n);
  const compactor = new Compactor(rig.store, source, envelopes, { flushIntervalMs: 1, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, now: () => clockMs }, async () => {});
  await compactor.start();

  const transactions: TestArchive['transactions'] = [];
  let n = 1;
  let previous: Position | null = snapshotPosition;
  let nextId = rowsN + 1;
  let schema = patientsV1;
  const live = new Set<number>(Array.from({ length: rowsN }, (_, i) => i + 1));
  let step = 0;

  const commit = async (events: Omit<ChangeEvent, 'position'>[], commitTsUs: bigint) => {
    n++;
    const position = Position.of(commitOf(n), COMMIT_SEQ);
    const batch: ChangeBatch = { source, txId: `tx${n}`, position, commitTsUs, snapshot: false, events: events.map((e, seq) => ({ ...e, position: Position.of(commitOf(n), seq) })) };
    const bus: BusBatch = { source, position, previous, txId: batch.txId, commitTsUs, messages: await rig.codec.encodeBatch(batch) };
    previous = position;
    clockMs = Number(commitTsUs / 1000n);
    compactor.add(bus);
    await compactor.flush();
    await compactor.closeFinishedHours();
    transactions.push({ position, commitTsUs });
  };

  const more = async (count: number, hour: number) => {
    for (let i = 0; i < count; i++) {
      step++;
      // The clock steps back once: commit order and commit time disagree by a little.
      const ts = T0 + BigInt(hour) * HOUR_US + BigInt(i) * 1_000_000n + (step === 7 ? -5_000_000n : 0n);
      const pick = () => [...live][(step * 7919) % live.size]!;
      const kind = step % 9;
      if (step === 12) {
        schema = patientsV2;
        const id = nextId++;
        live.add(id);
        await commit([{ op: 'c', schema, before: null, after: patient(id, { flag: true }) }], ts);
      } else if (step === 15) {
        await commit([{ op: 't', schema: visits, before: null, after: null }], ts);
      } else if (kind <= 2) {
        const id = nextId++;
        live.add(id);
        const extra = schema === patientsV2 ? { flag: null } : {};
        await commit(
          [
            { op: 'c', schema, before: null, after: patient(id, extra) },
            { op: 'c', schema: visits, before: null, after: { id: BigInt(step), reason: 'intake' } },
          ],
          ts,
        );
      } else if (kind <= 5) {
        const id = pick();
        // PostgreSQL-style: default replica identity, unchanged TOAST values (a sealed one too).
        const after: Record<string, unknown> = { id: BigInt(id), full_name: UNCHANGED, ssn: `${CANARY}u${step}`, note: kind === 4 ? UNCHANGED : `u${step}`, visits: step };
        if (schema === patientsV2) after.flag = step % 2 === 0;
        await commit([{ op: 'u', schema, before: null, after: after as Row }], ts);
      } else if (kind === 6) {
        await commit([{ op: 'c', schema: audit, before: null, after: { who: 'CANARY-NAME-dr', what: `read ${step}` } }], ts);
      } else if (kind === 7 && live.size > 3) {
        const id = pick();
        live.delete(id);
        await commit([{ op: 'd', schema, before: { id: BigInt(id) }, after: null }], ts);
      } else {
        await commit([{ op: 'd', schema: audit, before: { who: 'CANARY-NAME-dr', what: 'login' }, after: null }], ts);
      }
    }
  };
  for (let h = 0; h < (options.hours ?? 3); h++) await more(options.perHour ?? 8, h);
  return { rig, transactions, snapshotPosition, more };
}
