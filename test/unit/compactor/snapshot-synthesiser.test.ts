import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AvroCodec } from '../../../src/codec/avro-codec.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { Row } from '../../../src/core/table-schema.js';
import { CodecEnvelopeReader } from '../../../src/archive/codec-envelope-reader.js';
import { listSnapshots, snapshotManifestKey } from '../../../src/archive/snapshot-manifest.js';
import { synthesiseSnapshot } from '../../../src/compactor/snapshot-synthesiser.js';
import { sealedKeyId } from '../../../src/phi/sealer.js';
import { isRowSealReference } from '../../../src/phi/row-seal.js';
import { ArchiveReader } from '../../../src/archive/archive-reader.js';
import { readArchiveIndex, type ArchiveIndex } from '../../../src/archive/archive-index.js';
import { replayArchive, type RestorePoint } from '../../../src/archive/replay.js';
import { buildTimeline } from '../../../src/restore/timeline.js';
import { cellKey } from '../../../src/archive/table-state.js';
import { verifyArchive } from '../../../src/restore/verify.js';
import type { MemoryObjectStore } from '../../support/memory-object-store.js';
import { Compactor } from '../../../src/compactor/compactor.js';
import { writeSnapshot } from '../../../src/compactor/snapshot-builder.js';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { codecRig } from '../../support/codec-support.js';
import { audit, buildArchive, CANARY, HOUR_US, patient, patientsV1, T0 } from '../../support/snapshot-archive.js';

const SOURCE = 'clinic';
const synth = (store: MemoryObjectStore, upTo: 'durable' | 'closed' = 'durable') => synthesiseSnapshot({ store, source: SOURCE, connector: 'postgres', db: 'app', upTo, yieldEvery: 7 });

function readerOf(store: MemoryObjectStore, keys?: { withKeys: boolean; rig: Awaited<ReturnType<typeof buildArchive>>['rig'] }) {
  const schemas = new SchemaStore({ source: SOURCE, store });
  return { schemas, envelopes: new CodecEnvelopeReader(schemas), codec: keys ? keys.rig.reader({ withKeys: keys.withKeys }) : new AvroCodec({ source: SOURCE, connector: 'postgres', schemas }) };
}

/** Rows in a stable order of their whole image (a snapshot stores them by table version, then key). */
const byImage = (rows: Row[]): Row[] => {
  const key = (r: Row) => Object.keys(r).sort().map((k) => `${k}=${cellKey(r[k])}`).join(';');
  return [...rows].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
};

/** Every table's rows at a moment, PHI opened, replayed from the index given. */
async function stateAt(a: Awaited<ReturnType<typeof buildArchive>>, index: ArchiveIndex, to: RestorePoint): Promise<{ snapshot: string; tables: Record<string, Row[]>; versions: Record<string, string[]> }> {
  const r = readerOf(a.rig.store, { withKeys: true, rig: a.rig });
  const result = await replayArchive({ store: a.rig.store, source: SOURCE, codec: r.codec, schemas: r.schemas, envelopes: r.envelopes, to, open: true, index });
  return {
    snapshot: result.snapshot.id,
    tables: Object.fromEntries([...result.tables].map(([n, s]) => [n, [...s.allRows()]])),
    // The table version a restore writes with: the columns of the newest one read.
    versions: Object.fromEntries([...result.tables].map(([n, s]) => [n, s.schema.columns.map((c) => c.name)])),
  };
}

test('a synthesised snapshot is the replayed state at the durable cut, PHI still sealed, opened only with the keyring', async () => {
  const a = await buildArchive();
  const store = a.rig.store;
  // The keyring's wrapped data keys are not needed: take them away while synthesising.
  const keyObjects = [...store.objects].filter(([k]) => k.startsWith(`${SOURCE}/keys/`));
  assert.ok(keyObjects.length > 0);
  for (const [k] of keyObjects) store.objects.delete(k);
  const result = await synth(store);
  for (const [k, v] of keyObjects) store.objects.set(k, v);

  assert.equal(result.status, 'written');
  const last = a.transactions.at(-1)!;
  const m = result.snapshot!;
  assert.equal(m.origin, 'synthesised');
  assert.equal(m.position, Position.format(last.position), 'the cut is the checkpoint: open-hour parts included');
  assert.equal(m.id, m.position);
  assert.equal(result.base!.origin, 'source');
  const newest = a.transactions.reduce((mx, t) => (t.commitTsUs > mx ? t.commitTsUs : mx), 0n);
  assert.equal(m.commitTsUs, newest.toString(), 'commit time: the newest of every transaction it holds');

  // Value by value: the synthesised snapshot alone gives what replaying from the source snapshot gives.
  const index = await readArchiveIndex(store, SOURCE);
  assert.deepEqual(index.snapshots.map((s) => s.origin), ['source', 'synthesised']);
  const fromSource = await stateAt(a, { ...index, snapshots: index.snapshots.slice(0, 1) }, { kind: 'position', position: last.position });
  const fromSynth = await stateAt(a, index, { kind: 'latest' });
  assert.equal(fromSynth.snapshot, m.id);
  assert.deepStrictEqual(fromSynth.tables, fromSource.tables);
  assert.deepStrictEqual(fromSynth.versions, fromSource.versions);
  assert.ok(fromSynth.versions['public.patients']!.includes('flag'), 'ends on the current table version');
  assert.equal(m.tables['public.patients']!.parts.length, 2, 'one part per table version');
  assert.ok(fromSource.tables['public.patients']!.length > 20);
  assert.equal(fromSource.tables['public.visits']!.length > 0, true);
  assert.ok(fromSource.tables['public.patients']!.some((r) => r.flag !== undefined), 'rows of both table versions');

  // Read the snapshot's own records: sealed bytes, passed through unchanged, open with the keyring.
  const reader = new ArchiveReader(store, index, readerOf(store).envelopes);
  const plain = readerOf(store).codec;
  const opener = a.rig.reader({ withKeys: true });
  // Every sealed value the stream and the source snapshot stored, as hex.
  const streamed = new Set<string>();
  for (const table of ['public.patients', 'public.audit', 'public.visits']) {
    for (const r of [...(await reader.tableRecords(table, null)), ...(await reader.snapshotRecords(index.snapshots[0]!, table))]) {
      const d = await plain.decode(r.message);
      for (const row of [d.event.before, d.event.after]) for (const c of d.sealedColumns) if (row?.[c] instanceof Uint8Array) streamed.add(Buffer.from(row[c] as Uint8Array).toString('hex'));
    }
  }
  let sealedValues = 0;
  for (const table of ['public.patients', 'public.audit', 'public.visits']) {
    const records = await reader.snapshotRecords(m, table);
    assert.equal(records.length, fromSource.tables[table]!.length);
    const opened: Row[] = [];
    for (const r of records) {
      const d = await plain.decode(r.message);
      assert.equal(d.event.op, 'r');
      assert.equal(d.snapshot, true);
      assert.equal(d.event.position.commit, last.position.commit);
      for (const c of d.sealedColumns) {
        const v = d.event.after![c];
        if (v === null || v === undefined) continue;
        assert.ok(v instanceof Uint8Array && (sealedKeyId(v) !== null || isRowSealReference(v)), `${table}.${c} is sealed (a row seal or a reference to one)`);
        assert.ok(streamed.has(Buffer.from(v).toString('hex')), `${table}.${c}: the very bytes the stream sealed`);
        sealedValues++;
      }
      opened.push((await opener.decode(r.message, { open: true })).event.after!);
    }
    assert.deepStrictEqual(byImage(opened), byImage(fromSource.tables[table]!), `${table} opens to the replayed values`);
  }
  assert.ok(sealedValues > 40);
  for (const p of Object.values(m.tables).flatMap((t) => t.parts)) {
    assert.ok(!store.objects.get(p.key)!.body.includes(CANARY), `${p.key} holds PHI in clear`);
  }

  // verify and timeline accept it.
  const report = await verifyArchive(store, index, readerOf(store).envelopes);
  assert.deepEqual(report.problems, []);
  assert.equal(report.checked.snapshots, 2);
  assert.deepEqual(buildTimeline(index).snapshots.map((s) => s.origin), ['source', 'synthesised']);
});

test('restoring to any moment after a synthesised snapshot equals replaying from the first snapshot', async () => {
  const a = await buildArchive({ hours: 2 });
  const mid = await synth(a.rig.store);
  assert.equal(mid.status, 'written');
  await a.more(10, 3); // after the synthesised snapshot
  const index = await readArchiveIndex(a.rig.store, SOURCE);
  const onlyFirst = { ...index, snapshots: index.snapshots.slice(0, 1) };
  const moments = [...a.transactions.map((t) => t.commitTsUs), T0 + 10n * HOUR_US].flatMap((t) => [t, t + 1n]);
  let viaSynth = 0;
  let refused = 0;
  // The archive's clock steps back once (snapshot-archive.ts): a moment inside that step is
  // refused (replay.ts, nonMonotonicMoment), from either snapshot alike.
  const refusal = (err: unknown): { refused: string } => {
    if (err instanceof ChartlogError && err.code === 'usage' && /not monotonic/.test(err.message)) return { refused: err.message };
    throw err;
  };
  for (const us of moments) {
    if (us < T0) continue;
    const to: RestorePoint = { kind: 'time', us };
    const withSynth = await stateAt(a, index, to).catch(refusal);
    const fromFirst = await stateAt(a, onlyFirst, to).catch(refusal);
    if ('refused' in withSynth || 'refused' in fromFirst) {
      assert.deepStrictEqual(withSynth, fromFirst, `refused at ${us} from both snapshots`);
      refused++;
      continue;
    }
    assert.deepStrictEqual(withSynth.tables, fromFirst.tables, `state at ${us}`);
    assert.deepStrictEqual(withSynth.versions, fromFirst.versions, `table versions at ${us}`);
    if (withSynth.snapshot === mid.snapshot!.id) viaSynth++;
  }
  assert.ok(viaSynth > 10, `only ${viaSynth} moments used the synthesised snapshot`);
  assert.ok(refused > 0, 'a moment inside the step back was refused');
});

test('the same cut gives the same snapshot: idempotent, deterministic bytes, crash-safe (manifest last)', async () => {
  const a = await buildArchive({ hours: 2 });
  const store = a.rig.store;
  const first = await synth(store);
  assert.equal(first.status, 'written');
  const again = await synth(store);
  assert.equal(again.status, 'up-to-date');
  assert.equal(again.snapshot!.id, first.snapshot!.id);

  // A crash before the manifest: no snapshot is listed, and writing again gives the same bytes.
  const parts = Object.values(first.snapshot!.tables).flatMap((t) => t.parts);
  store.objects.delete(snapshotManifestKey(SOURCE, first.snapshot!.id));
  for (const p of parts) store.objects.get(p.key)!.body.fill(0); // torn garbage from the crashed attempt
  assert.equal((await listSnapshots(store, SOURCE)).length, 1);
  const redo = await synth(store);
  assert.equal(redo.status, 'written');
  assert.deepEqual(Object.values(redo.snapshot!.tables).flatMap((t) => t.parts), parts, 'same keys, sha256s, sizes and row counts');
  const report = await verifyArchive(store, await readArchiveIndex(store, SOURCE), readerOf(store).envelopes);
  assert.deepEqual(report.problems, []);
});

test('sealed-only cut, nothing new, and no base', async () => {
  const a = await buildArchive({ hours: 3 });
  const store = a.rig.store;
  const index = await readArchiveIndex(store, SOURCE);
  const lastClosed = index.hours.at(-1)!.manifest.lastPos!;
  const sealed = await synth(store, 'closed');
  assert.equal(sealed.status, 'written');
  assert.equal(sealed.snapshot!.position, lastClosed);
  assert.notEqual(lastClosed, Position.format(a.transactions.at(-1)!.position), 'the open hour is left out');
  assert.equal((await synth(store, 'closed')).status, 'up-to-date');
  assert.equal((await synth(store, 'durable')).status, 'written');
  assert.equal((await synth(store, 'durable')).status, 'up-to-date');

  for (const k of [...store.objects.keys()]) if (k.includes('/snapshots/')) store.objects.delete(k);
  assert.equal((await synth(store)).status, 'no-base');
});

for (const [name, policy, table, events] of [
  ['a table whose primary key is sealed', { 'public.patients': ['id', 'ssn'] }, patientsV1, [{ op: 'c', before: null, after: patient(2) }]],
  ['a keyless table with sealed columns, updated or deleted', { 'public.audit': ['who'] }, audit, [{ op: 'd', before: { who: 'CANARY-NAME-dr', what: 'login' }, after: null }]],
] as const) {
  test(`${name} is refused: its rows cannot be matched without the keyring`, async () => {
    const rig = codecRig({ policy: { columns: policy, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
    const store = rig.store;
    const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: SOURCE, store }));
    const position = Position.of('0000000000000001');
    const row = table === audit ? { who: 'CANARY-NAME-dr', what: 'login' } : patient(1);
    async function* one(): AsyncIterable<ChangeBatch> {
      yield { source: SOURCE, txId: null, position, commitTsUs: T0, snapshot: true, schemaChanges: [table], events: [{ op: 'r', schema: table, before: null, after: row, position: Position.of(position.commit, 0) }] };
    }
    await writeSnapshot({ store, source: SOURCE, batches: one(), encoder: { encode: (b) => rig.codec.encodeBatch(b), fingerprintOf: (_s, t) => rig.codec.fingerprintOf(t) }, schemas: envelopes });
    const next = Position.of('0000000000000002');
    const c = new Compactor(store, SOURCE, envelopes, { flushIntervalMs: 1, maxPartBytes: 1 << 20, closeGraceMs: 0, snapshotId: null, now: () => Number(T0 / 1000n) }, async () => {});
    await c.start();
    const batch: ChangeBatch = { source: SOURCE, txId: 't', position: next, commitTsUs: T0 + 1n, snapshot: false, events: events.map((e, i) => ({ ...e, schema: table, position: Position.of(next.commit, i) })) };
    c.add({ source: SOURCE, position: next, previous: position, txId: 't', commitTsUs: T0 + 1n, messages: await rig.codec.encodeBatch(batch) });
    await c.flush();
    await assert.rejects(
      synthesiseSnapshot({ store, source: SOURCE, connector: 'postgres' }),
      (err: unknown) => err instanceof ChartlogError && err.code === 'phi_policy' && /cannot be (replayed|matched)/.test(err.message) && /--from-source/.test(err.hint ?? '') && !err.message.includes('CANARY'),
    );
    assert.equal((await listSnapshots(store, SOURCE)).length, 1, 'nothing written');
  });
}

test('the codec passes sealed values through but refuses plaintext in a sealed column', async () => {
  const rig = codecRig({ policy: { columns: { 'public.patients': ['full_name', 'ssn'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
  const fingerprint = await rig.codec.fingerprintOf(patientsV1);
  const position = Position.of('0000000000000005');
  const [m] = await rig.codec.encodeBatch({ source: SOURCE, txId: null, position, commitTsUs: T0, snapshot: true, events: [{ op: 'r', schema: patientsV1, before: null, after: patient(3), position: Position.of(position.commit, 0) }] });
  const sealedRow = (await rig.reader().decode(m!.value)).event.after!;
  const plainCodec = rig.reader(); // no keys at all
  const again = await plainCodec.encodeSnapshotRead(fingerprint, sealedRow, { position: Position.of(position.commit, 0), commitTsUs: T0, tsUs: T0 });
  assert.deepStrictEqual((await rig.reader({ withKeys: true }).decode(again.value, { open: true })).event.after, patient(3));
  await assert.rejects(
    plainCodec.encodeSnapshotRead(fingerprint, { ...sealedRow, ssn: `${CANARY}0003` }, { position, commitTsUs: T0, tsUs: T0 }),
    (err: unknown) => err instanceof ChartlogError && /public\.patients\.ssn: a presealed row holds a value that is not sealed/.test(err.message) && !err.message.includes(CANARY),
  );
});

test('past a small memory budget, synthesis spills to sealed files and writes the same bytes as within it', async () => {
  const { mkdtemp, readdir, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const a = await buildArchive({ patientsRows: 2000, hours: 3, perHour: 200 });
  const store = a.rig.store;
  const kept = new Set(store.objects.keys());
  const spillDir = await mkdtemp(join(tmpdir(), 'chartlog-synth-test-'));
  try {
    const roomy = await synthesiseSnapshot({ store, source: SOURCE, connector: 'postgres', db: 'app', spillDir });
    assert.equal(roomy.status, 'written');
    assert.equal(roomy.spilled, undefined, 'the default budget holds this archive: nothing spills (the control for the spill below)');
    const objects = (): Map<string, Buffer> => new Map([...store.objects].filter(([k]) => !kept.has(k) && !k.endsWith('/manifest.json')).map(([k, o]) => [k, Buffer.from(o.body)]));
    const roomyObjects = objects();
    assert.ok(roomyObjects.size >= 3, 'parts were written');
    for (const k of [...store.objects.keys()]) if (!kept.has(k)) await store.delete(k);

    const tight = await synthesiseSnapshot({ store, source: SOURCE, connector: 'postgres', db: 'app', spillDir, memoryBudgetBytes: 16 * 1024 });
    assert.equal(tight.status, 'written');
    assert.ok(tight.spilled?.includes('public.patients'), `the patients table spilled: ${String(tight.spilled)}`);
    assert.equal(tight.rows, roomy.rows);
    assert.equal(tight.changes, roomy.changes);
    assert.deepEqual(tight.snapshot!.tables, roomy.snapshot!.tables, 'same parts, sha256s, sizes and row counts');
    assert.deepEqual(objects(), roomyObjects, 'byte for byte');
    assert.deepEqual(await readdir(spillDir), [], 'the spill directory is removed');
    const report = await verifyArchive(store, await readArchiveIndex(store, SOURCE), readerOf(store).envelopes);
    assert.deepEqual(report.problems, []);
  } finally {
    await rm(spillDir, { recursive: true, force: true });
  }
});
