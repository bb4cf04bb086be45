import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ChangeBatch, ChangeEvent } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { Row, TableSchema } from '../../../src/core/table-schema.js';
import { readArchiveIndex } from '../../../src/archive/archive-index.js';
import { ArchiveReader } from '../../../src/archive/archive-reader.js';
import { AvroContainerWriter, openAvroContainer } from '../../../src/archive/avro-container.js';
import { CodecEnvelopeReader } from '../../../src/archive/codec-envelope-reader.js';
import { sha256Hex } from '../../../src/archive/manifest.js';
import type { SnapshotManifest } from '../../../src/archive/snapshot-manifest.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import { writeSnapshot } from '../../../src/compactor/snapshot-builder.js';
import { blockOrdinalOf, BLOCK_SEAL_ROWS, type BlockOrdinals } from '../../../src/phi/block-seal.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import { FsObjectStore } from '../../../src/storage/fs-object-store.js';
import { codecRig } from '../../support/codec-support.js';
import { patient, patientsV1, phiPolicy, T0 } from '../../support/snapshot-archive.js';

/**
 * The block seal's ordinal (sealed format 5, docs/formats.md): each table's block seals are
 * numbered in row order by the snapshot's writer and checked, in order, by the reader of every
 * base (ArchiveReader.snapshotRecordBatches and snapshotBlocks: restore and its COPY threads,
 * replicate, synthesis, --keep-sealed) and by verify. A container block swapped, repeated or
 * dropped inside a part — the part's sha256 recomputed in the manifest, as a writer to the bucket
 * could — is refused naming the object; the untouched base opens value by value; a base written
 * before the check (test/fixtures/archive-v5/) carries unchecked ordinals and still reads.
 */

const source = 'clinic';
const ROWS = 2 * BLOCK_SEAL_ROWS + 50;
const TABLE = 'public.patients';

async function baseArchive() {
  const rig = codecRig({ policy: phiPolicy });
  const schemas = new SchemaStore({ source, store: rig.store });
  const envelopes = new CodecEnvelopeReader(schemas);
  const encoder = {
    encode: (b: ChangeBatch) => rig.codec.encodeBatch(b),
    encodeBase: (b: ChangeBatch, o: BlockOrdinals) => rig.codec.encodeBaseSnapshot(b, o),
    fingerprintOf: (_s: string, t: TableSchema) => rig.codec.fingerprintOf(t),
  };
  const position = Position.of('0000000000000001');
  // Chunks of 5,000 rows: blocks of 4,096, 904 and 3,242 rows, the second chunk encoded while the first is written.
  async function* batches(): AsyncIterable<ChangeBatch> {
    let seq = 0;
    for (let i = 1; i <= ROWS; i += 5000) {
      const events: ChangeEvent[] = [];
      for (let id = i; id < Math.min(i + 5000, ROWS + 1); id++) events.push({ op: 'r', schema: patientsV1, before: null, after: patient(id), position: Position.of(position.commit, seq++) });
      yield { source, txId: null, position, commitTsUs: T0, snapshot: true, schemaChanges: i === 1 ? [patientsV1] : [], events };
    }
  }
  const manifest = await writeSnapshot({ store: rig.store, source, batches: batches(), encoder, schemas: envelopes });
  return { rig, envelopes, manifest };
}

type Archive = Awaited<ReturnType<typeof baseArchive>>;

/** The part's container blocks as record bodies, split where the records end. */
async function blocksOf(a: Archive, key: string, fingerprint: string): Promise<{ bodies: Buffer[][]; rebuild: (order: number[]) => Promise<Buffer> }> {
  const bytes = a.rig.store.objects.get(key)!.body;
  const { header, blocks } = openAvroContainer(bytes, key);
  const split = await a.envelopes.splitterFor(source, fingerprint);
  const bodies: Buffer[][] = [];
  for (const b of blocks) {
    const records: Buffer[] = [];
    for (let at = 0; at < b.data.length; ) {
      const end = split(b.data, at).end;
      records.push(b.data.subarray(at, end));
      at = end;
    }
    bodies.push(records);
  }
  const rebuild = async (order: number[]): Promise<Buffer> => {
    const w = new AvroContainerWriter(header.schema, { sync: header.sync, metadata: header.metadata });
    for (const i of order) await w.addBlock(bodies[i]!);
    return w.toBuffer();
  };
  return { bodies, rebuild };
}

/** The archive with the base's part rewritten with its container blocks in `order`, its sha256 recomputed in the manifest (unsigned). */
async function tampered(order: number[]): Promise<Archive & { key: string }> {
  const a = await baseArchive();
  const part = a.manifest.tables[TABLE]!.parts[0]!;
  const body = await (await blocksOf(a, part.key, part.fingerprint)).rebuild(order);
  a.rig.store.objects.set(part.key, { body, lastModified: new Date() });
  const manifestKey = `${source}/snapshots/${a.manifest.id}/manifest.json`;
  const m = JSON.parse(a.rig.store.objects.get(manifestKey)!.body.toString('utf8')) as SnapshotManifest;
  const p = m.tables[TABLE]!.parts[0]!;
  p.sha256 = sha256Hex(body);
  p.bytes = body.length;
  a.rig.store.objects.set(manifestKey, { body: Buffer.from(JSON.stringify(m)), lastModified: new Date() });
  return { ...a, manifest: m, key: part.key };
}

/** Every row of the base through both readers of a base, PHI opened. */
async function readBase(a: Archive): Promise<{ viaRecords: Row[]; viaBlocks: number }> {
  const index = await readArchiveIndex(a.rig.store, source);
  const reader = new ArchiveReader(a.rig.store, index, a.envelopes);
  const codec = a.rig.reader({ withKeys: true });
  const viaRecords: Row[] = [];
  for await (const batch of reader.snapshotRecordBatches(index.snapshots[0]!, TABLE)) {
    for (const d of await codec.decodeMany(batch.map((r) => r.message), { open: true })) viaRecords.push(d.event.after!);
  }
  let viaBlocks = 0;
  for await (const b of reader.snapshotBlocks(index.snapshots[0]!, TABLE)) viaBlocks += b.count;
  return { viaRecords, viaBlocks };
}

const refusedAt = (key: string, block: number) => (e: unknown) =>
  e instanceof ChartlogError && e.code === 'integrity' && e.message.startsWith(`${key}, container block ${block}: `) && /reordered, repeated or dropped/.test(e.message);

test('a base written now: each container block starts with a block seal whose checked ordinal is its index; the base opens value by value', async () => {
  const a = await baseArchive();
  const parts = a.manifest.tables[TABLE]!.parts;
  assert.equal(parts.length, 1);
  const { bodies } = await blocksOf(a, parts[0]!.key, parts[0]!.fingerprint);
  assert.deepEqual(
    bodies.map((b) => b.length),
    [4096, 904, 3242],
  );
  const finder = await a.envelopes.blockSealFinder(source, parts[0]!.fingerprint);
  const ordinals = bodies.map((b) => blockOrdinalOf(finder(Buffer.concat(b))!));
  assert.deepEqual(ordinals, [0, 1, 2].map((ordinal) => ({ ordinal, checked: true })));
  const { viaRecords, viaBlocks } = await readBase(a);
  assert.equal(viaBlocks, ROWS);
  assert.equal(viaRecords.length, ROWS);
  for (const row of viaRecords) {
    const want = patient(Number(row.id as bigint));
    for (const c of ['full_name', 'ssn', 'note']) assert.equal(row[c], want[c], `row ${String(row.id)} ${c}`);
  }
});

for (const [what, order, at] of [
  ['two blocks swapped', [1, 0, 2], 0],
  ['a block repeated', [0, 0, 1, 2], 1],
  ['a block dropped', [0, 2], 1],
  ['the last block moved first', [2, 0, 1], 0],
] as const) {
  test(`${what} inside a part (its sha256 recomputed): refused by both readers of a base and reported by verify, naming the part`, async () => {
    const a = await tampered([...order]);
    const index = await readArchiveIndex(a.rig.store, source);
    const reader = new ArchiveReader(a.rig.store, index, a.envelopes);
    await assert.rejects(async () => {
      for await (const _ of reader.snapshotRecordBatches(index.snapshots[0]!, TABLE));
    }, refusedAt(a.key, at));
    await assert.rejects(async () => {
      for await (const _ of reader.snapshotBlocks(index.snapshots[0]!, TABLE));
    }, refusedAt(a.key, at));
    const report = await verifyArchive(a.rig.store, index, a.envelopes);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.problems.map((p) => p.kind),
      ['order'],
    );
    assert.ok(report.problems[0]!.message.startsWith(`${a.key}, container block ${at}: `), report.problems[0]!.message);
  });
}

test('the same rebuild in the original order (the planted cases above are the only change) reads and verifies', async () => {
  const a = await tampered([0, 1, 2]);
  const { viaRecords } = await readBase(a);
  assert.equal(viaRecords.length, ROWS);
  const index = await readArchiveIndex(a.rig.store, source);
  assert.deepEqual((await verifyArchive(a.rig.store, index, a.envelopes)).problems, []);
});

test('test/fixtures/archive-v5/ (written before the check): its base is block-sealed with unchecked ordinals, and reads', async () => {
  const root = join(import.meta.dirname, '..', '..', 'fixtures', 'archive-v5', 'backup');
  const store = new FsObjectStore(root);
  const envelopes = new CodecEnvelopeReader(new SchemaStore({ source, store }));
  const index = await readArchiveIndex(store, source);
  const snapshot = index.snapshots[0]!;
  const part = snapshot.tables[TABLE]!.parts[0]!;
  assert.ok(readdirSync(join(root, source, 'snapshots', snapshot.id, TABLE)).length >= 1);
  const finder = await envelopes.blockSealFinder(source, part.fingerprint);
  const seals = [...openAvroContainer(await store.get(part.key), part.key).blocks].map((b) => finder(b.data));
  assert.ok(seals.length > 0 && seals.every((s) => s !== null), 'every container block of the fixture starts with a block seal');
  assert.ok(seals.every((s) => !blockOrdinalOf(s!).checked), 'ordinals written before the check');
  let rows = 0;
  for await (const b of new ArchiveReader(store, index, envelopes).snapshotRecordBatches(snapshot, TABLE)) rows += b.length;
  assert.equal(rows, snapshot.tables[TABLE]!.rows);
});
