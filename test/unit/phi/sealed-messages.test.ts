import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { AvroCodec } from '../../../src/codec/avro-codec.js';
import { SchemaStore } from '../../../src/codec/schema-store.js';
import type { ChangeEvent } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { Row, TableSchema } from '../../../src/core/table-schema.js';
import { KeyManager, sealAlgorithmOf } from '../../../src/phi/key-manager.js';
import { FileKeyring } from '../../../src/phi/keyring/file-keyring.js';
import { isRowSeal, isRowSealReference, refersTo, rowSealSet, setMembers } from '../../../src/phi/row-seal.js';
import { sealedKeyId, sealedPosition } from '../../../src/phi/sealer.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';
import { codecRig, quietLog, ssnPhonePatients as patients } from '../../support/codec-support.js';

/**
 * Sealed values in whole messages (docs/formats.md "Sealed values"): archives written by the
 * format-1 sealer still open; what the codec writes now (format 3, one row seal per row image)
 * round-trips under both algorithms; a row seal moved to another source, table, primary key or
 * source position does not open, with an error naming the table or column and holding no value.
 */

const policy = { columns: { 'public.patients': ['ssn', 'phone'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const };
const COMMIT = '00000000016b3a10';

function revive(_k: string, v: unknown): unknown {
  return typeof v === 'string' && /^-?\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v;
}

test('format-1 archive vectors (test/fixtures/sealed-v1, made by the old sealer) open to their rows with today\'s code', async () => {
  const fixture = JSON.parse(readFileSync(new URL('../../fixtures/sealed-v1/archive.json', import.meta.url), 'utf8'), revive) as {
    keyring: unknown;
    objects: Record<string, string>;
    messages: string[];
    expected: { op: string; before: Row | null; after: Row | null }[];
  };
  // The keyring file must be mode 0600 (a checkout gives 0644): a private copy.
  const path = join(mkdtempSync(join(tmpdir(), 'chartlog-v1-')), 'keyring.json');
  writeFileSync(path, JSON.stringify(fixture.keyring), { mode: 0o600 });
  const store = new MemoryObjectStore();
  for (const [k, v] of Object.entries(fixture.objects)) await store.put(k, Buffer.from(v, 'base64'));
  const reader = new AvroCodec({ source: 'clinic', connector: 'postgres', schemas: new SchemaStore({ source: 'clinic', store, log: quietLog }), keys: new KeyManager({ source: 'clinic', store, keyring: FileKeyring.open(path), log: quietLog }) });
  assert.equal(fixture.messages.length, 3);
  for (const [i, hex] of fixture.messages.entries()) {
    const message = Buffer.from(hex, 'hex');
    const sealed = await reader.decode(message);
    for (const c of ['ssn', 'phone']) {
      const v = sealed.event.after![c];
      if (v instanceof Uint8Array) assert.equal(v[0], 1, 'the fixture holds format-1 values');
    }
    const opened = await reader.decode(message, { open: true });
    assert.equal(opened.event.op, fixture.expected[i]!.op);
    assert.deepStrictEqual(opened.event.before, fixture.expected[i]!.before);
    assert.deepStrictEqual(opened.event.after, fixture.expected[i]!.after);
  }
  // Negative control: a flipped bit of a format-1 value in the fixture fails to open.
  const damaged = Buffer.from(fixture.messages[0]!, 'hex');
  const ssn = (await reader.decode(damaged)).event.after!.ssn as Uint8Array;
  damaged[damaged.indexOf(Buffer.from(ssn)) + ssn.length - 1]! ^= 1;
  await assert.rejects(reader.decode(damaged, { open: true }), (e: ChartlogError) => e.code === 'integrity');
});

const row = fc.record({
  id: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
  ssn: fc.oneof(fc.constant(null), fc.string({ unit: 'binary', maxLength: 40 })),
  phone: fc.oneof(fc.constant(null), fc.string({ maxLength: 20 })),
});

for (const algorithm of ['xchacha20-poly1305', 'aes-256-gcm'] as const) {
  test(`${algorithm}: property: any rows encode+seal then decode+open to themselves, one row seal per image carrying its event's position`, async () => {
    const rig = codecRig({ policy, algorithm: sealAlgorithmOf(algorithm) });
    const opener = rig.reader({ withKeys: true });
    await fc.assert(
      fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 5 }), fc.nat({ max: 0xfffff }), async (rows, tx) => {
        const commit = tx.toString(16).padStart(16, '0');
        const events: ChangeEvent[] = rows.map((r, i) => ({ op: 'c', schema: patients, before: null, after: r, position: Position.of(commit, i) }));
        const messages = await rig.codec.encodeBatch({ source: 'clinic', txId: null, position: Position.of(commit, COMMIT_SEQ), commitTsUs: 1n, snapshot: false, events });
        for (const [i, m] of messages.entries()) {
          const sealed = (await rig.reader().decode(m.value)).event.after!;
          // The first non-null sealed column carries the row seal, the others refer to it.
          const held = (['ssn', 'phone'] as const).filter((c) => rows[i]![c] !== null);
          for (const c of ['ssn', 'phone'] as const) if (!held.includes(c)) assert.equal(sealed[c], null);
          if (held.length > 0) {
            const seal = sealed[held[0]!];
            assert.ok(isRowSeal(seal));
            assert.deepEqual(sealedPosition(seal), Position.of(commit, i));
            assert.deepEqual(setMembers(rowSealSet(seal)), held.map((c) => (c === 'ssn' ? 0 : 1)));
            for (const c of held.slice(1)) assert.ok(isRowSealReference(sealed[c]) && refersTo(sealed[c] as Uint8Array, seal));
          }
          assert.deepStrictEqual({ ...(await opener.decode(m.value, { open: true })).event.after }, { ...rows[i] });
        }
      }),
      { numRuns: 40 },
    );
    const keyObject = JSON.parse(Buffer.from(await rig.store.get([...rig.store.objects.keys()].find((k) => k.includes('/keys/'))!)).toString()) as { algorithm: string };
    assert.equal(keyObject.algorithm, algorithm === 'aes-256-gcm' ? 'AES-256-GCM' : 'XChaCha20-Poly1305', 'the algorithm is recorded with the data key');
  });
}

function isIntegrityNaming(column: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof ChartlogError);
    assert.equal(e.code, 'integrity');
    assert.match(e.message, column);
    assert.ok(!`${e.message} ${e.hint ?? ''}`.includes('CANARY'), 'no value in the error');
    return true;
  };
}

/** Replaces the bytes `from` (found once in `message`) by `to`, of the same length. */
function swap(message: Uint8Array, from: Uint8Array, to: Uint8Array): Buffer {
  assert.equal(from.length, to.length, 'same length, so the Avro framing stays valid');
  const out = Buffer.from(message);
  const at = out.indexOf(Buffer.from(from));
  assert.ok(at >= 0);
  out.set(to, at);
  return out;
}

const visits: TableSchema = { ...patients, table: 'visits' };

test('a row seal moved to another position, primary key, table or source fails to open, naming the table or column; in place it opens', async () => {
  const rig = codecRig({ policy: { ...policy, columns: { 'public.patients': ['ssn', 'phone'], 'public.visits': ['ssn', 'phone'] } } });
  const ev = (schema: TableSchema, op: 'c' | 'u', id: bigint, ssn: string, seq: number, commit = COMMIT): ChangeEvent => ({
    op,
    schema,
    before: null,
    after: { id, ssn, phone: 'CANARY-PHONE-0000000' },
    position: Position.of(commit, seq),
  });
  const encode = async (events: ChangeEvent[], commit = COMMIT) =>
    (await rig.codec.encodeBatch({ source: 'clinic', txId: null, position: Position.of(commit, COMMIT_SEQ), commitTsUs: 1n, snapshot: false, events })).map((m) => m.value);
  // Same plaintext length everywhere, so a swapped value keeps the message well-formed.
  const [first, later, otherRow, otherTable] = await encode([
    ev(patients, 'c', 1n, 'CANARY-SSN-000000001', 0),
    ev(patients, 'u', 1n, 'CANARY-SSN-000000002', 1),
    ev(patients, 'c', 2n, 'CANARY-SSN-000000003', 2),
    ev(visits, 'c', 1n, 'CANARY-SSN-000000004', 3),
  ]);
  const [nextTx] = await encode([ev(patients, 'u', 1n, 'CANARY-SSN-000000005', 0, '00000000016b3a20')], '00000000016b3a20');
  const other = codecRig({ source: 'clinic2', policy });
  const [otherSource] = (await other.codec.encodeBatch({ source: 'clinic2', txId: null, position: Position.of(COMMIT, COMMIT_SEQ), commitTsUs: 1n, snapshot: false, events: [ev(patients, 'c', 1n, 'CANARY-SSN-000000007', 0)] })).map((m) => m.value);

  // Its data key too, as if both sources shared a store: opening must still refuse.
  for (const [k, o] of other.store.objects) if (k.includes('/keys/')) await rig.store.put(k.replace('clinic2/', 'clinic/'), o.body);
  const ssnOf = async (m: Uint8Array, r = rig) => (await r.reader().decode(m)).event.after!.ssn as Uint8Array;
  const phoneOf = async (m: Uint8Array, r = rig) => (await r.reader().decode(m)).event.after!.phone as Uint8Array;
  /** `first` with the row seal (ssn) and its reference (phone) of `donor`: a whole row's PHI moved. */
  const moved = async (donor: Uint8Array, r = rig) => swap(swap(first!, await ssnOf(first!), await ssnOf(donor, r)), await phoneOf(first!), await phoneOf(donor, r));
  const opener = rig.reader({ withKeys: true });
  // Negative control: every message opens where it was written.
  for (const m of [first!, later!, otherRow!, otherTable!, nextTx!]) await opener.decode(m, { open: true });
  assert.equal((await opener.decode(first!, { open: true })).event.after!.ssn, 'CANARY-SSN-000000001');

  const target = await ssnOf(first!);
  const cases: [string, Buffer][] = [
    ['a later event of the same row and transaction (source position: seq)', await moved(later!)],
    ['the same row in a later transaction (source position: commit)', await moved(nextTx!)],
    ['another primary key', await moved(otherRow!)],
    ['another table', await moved(otherTable!)],
    ['another source', await moved(otherSource!, other)],
    ["another row's seal, this row's reference", swap(first!, target, await ssnOf(otherRow!))],
  ];
  for (const [what, tampered] of cases) await assert.rejects(opener.decode(tampered, { open: true }), isIntegrityNaming(/public\.patients(\.ssn)?:|data key/), what);
  // The same through the crypto pool's batch opening path.
  const { CryptoPool } = await import('../../../src/phi/crypto-pool.js');
  const pool = new CryptoPool(1);
  try {
    const pooled = rig.reader({ withKeys: true, cryptoPool: pool });
    assert.equal((await pooled.decodeMany([first!, later!], { open: true }))[0]!.event.after!.id, 1n, 'negative control');
    for (const [what, tampered] of cases) await assert.rejects(pooled.decodeMany([later!, tampered], { open: true }), (e: ChartlogError) => e.code === 'integrity' && !e.message.includes('CANARY'), `pooled: ${what}`);
  } finally {
    await pool.close();
  }
  assert.ok(sealedKeyId(target));
});
