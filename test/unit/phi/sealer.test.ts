import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { ChartlogError } from '../../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import type { CellValue } from '../../../src/core/table-schema.js';
import { deserializeCell, serializeCell } from '../../../src/phi/cell-serialization.js';
import type { SealContext } from '../../../src/phi/aad.js';
import { openValue, sealValue, sealedKeyId, sealedPosition, type DataKey, type SealAlgorithm } from '../../../src/phi/sealer.js';
import type { OpenAuditEntry } from '../../../src/phi/phi-opener.js';
import { codecRig, ssnPhonePatients as patients } from '../../support/codec-support.js';

function dek(algorithm: SealAlgorithm = 'XChaCha20-Poly1305'): DataKey {
  const id = new Uint8Array(randomBytes(16));
  return { id, idHex: Buffer.from(id).toString('hex'), key: new Uint8Array(randomBytes(32)), algorithm };
}

const ALGORITHMS: readonly SealAlgorithm[] = ['XChaCha20-Poly1305', 'AES-256-GCM'];
/** The source position values are sealed at (format 2 carries and authenticates it). */
const AT = Position.of('00000000016b3a10', 3);

const ctx: SealContext = { source: 'clinic', schema: 'public', table: 'patients', column: 'ssn', key: [{ value: 7n }] };

const cell: fc.Arbitrary<CellValue> = fc.letrec<{ v: CellValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.double(),
    fc.integer(),
    fc.bigInt(),
    fc.string({ unit: 'binary' }),
    fc.uint8Array(),
    fc.array(tie('v'), { maxLength: 4 }),
  ),
})).v;

function isIntegrity(canary?: string) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof ChartlogError, 'a ChartlogError');
    assert.equal(e.code, 'integrity');
    if (canary) assert.ok(!e.message.includes(canary) && !(e.hint ?? '').includes(canary), 'no value in the error');
    return true;
  };
}

test('serialisation of every JS form of the value model is exact and reversible', () => {
  fc.assert(fc.property(cell, (v) => assert.deepStrictEqual(deserializeCell(serializeCell(v)), v)), { numRuns: 500 });
  // The same text as string, bytes or bigint never collides.
  assert.notDeepEqual(serializeCell('1'), serializeCell(1n));
  assert.notDeepEqual(serializeCell(Buffer.from('1')), serializeCell('1'));
  assert.notDeepEqual(serializeCell(1), serializeCell(1n));
});

for (const algorithm of ALGORITHMS) {
test(`${algorithm}: seal/open round-trips every value; the layout is version 2 | key id | position | nonce | ciphertext | tag`, () => {
  const k = dek(algorithm);
  const nonce = algorithm === 'AES-256-GCM' ? 12 : 24;
  fc.assert(
    fc.property(cell, fc.nat({ max: 0xffffffff }), (v, seq) => {
      const at = Position.of('00000000016b3a10', seq);
      const sealed = sealValue(k, v, ctx, at);
      assert.equal(sealed[0], 2);
      assert.equal(sealedKeyId(sealed), k.idHex);
      assert.deepEqual(sealedPosition(sealed), at);
      assert.equal(sealed.length, 1 + 16 + (1 + 16 + 4) + nonce + serializeCell(v).length + 16);
      assert.deepStrictEqual(openValue(k, sealed, ctx), v);
    }),
    { numRuns: 300 },
  );
  const a = sealValue(k, 'same', ctx, AT);
  const b = sealValue(k, 'same', ctx, AT);
  assert.notDeepEqual(a, b, 'random nonce: equal values seal differently');
});

test(`${algorithm}: any flipped bit (the position in the header too) fails to open with an integrity error, never wrong plaintext`, () => {
  const k = dek(algorithm);
  const canary = 'CANARY-SSN-123-45-6789';
  const sealed = sealValue(k, canary, ctx, AT);
  assert.deepStrictEqual(openValue(k, sealed, ctx), canary, 'negative control: the untouched value opens');
  for (let bit = 0; bit < sealed.length * 8; bit++) {
    const t = new Uint8Array(sealed);
    t[bit >> 3]! ^= 1 << (bit & 7);
    assert.throws(() => openValue(k, t, ctx), isIntegrity(canary), `bit ${bit}`);
  }
  assert.throws(() => openValue(k, sealed.subarray(0, 20), ctx), isIntegrity(canary));
});

test(`${algorithm}: a value whose header names another source position fails to open`, () => {
  const k = dek(algorithm);
  const canary = 'CANARY-SSN-123-45-6789';
  const sealed = sealValue(k, canary, ctx, AT);
  // The same bytes but for the position: another seq, another commit of the same width.
  const movedSeq = Buffer.from(sealed);
  movedSeq[1 + 16 + 1 + 16] = 4;
  assert.deepEqual(sealedPosition(movedSeq), Position.of('00000000016b3a10', 4));
  assert.throws(() => openValue(k, movedSeq, ctx), isIntegrity(canary));
  const movedCommit = Buffer.from(sealed);
  movedCommit.write('00000000016b3a11', 1 + 16 + 1, 'latin1');
  assert.deepEqual(sealedPosition(movedCommit), Position.of('00000000016b3a11', 3));
  assert.throws(() => openValue(k, movedCommit, ctx), isIntegrity(canary));
});

test(`${algorithm}: a value opened in another row, column, table or source, or under another key or algorithm, fails`, () => {
  const k = dek(algorithm);
  const canary = 'CANARY-SSN-123-45-6789';
  const sealed = sealValue(k, canary, ctx, AT);
  assert.deepStrictEqual(openValue(k, sealed, ctx), canary, 'negative control: opens in its own place');
  const elsewhere: SealContext[] = [
    { ...ctx, key: [{ value: 8n }] },
    { ...ctx, key: [{ value: 7 }] },
    { ...ctx, key: [{ value: '7' }] },
    { ...ctx, key: [] },
    { ...ctx, column: 'phone' },
    { ...ctx, table: 'encounters' },
    { ...ctx, schema: 'app' },
    { ...ctx, source: 'clinic2' },
  ];
  for (const other of elsewhere) assert.throws(() => openValue(k, sealed, other), isIntegrity(canary), JSON.stringify(other, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  const sameIdOtherKey: DataKey = { ...k, key: new Uint8Array(randomBytes(32)) };
  assert.throws(() => openValue(sameIdOtherKey, sealed, ctx), isIntegrity(canary));
  const sameKeyOtherAlgorithm: DataKey = { ...k, algorithm: algorithm === 'AES-256-GCM' ? 'XChaCha20-Poly1305' : 'AES-256-GCM' };
  assert.throws(() => openValue(sameKeyOtherAlgorithm, sealed, ctx), isIntegrity(canary));
  assert.throws(() => openValue(dek(algorithm), sealed, ctx), (e: ChartlogError) => e.code === 'integrity' && e.message.includes(k.idHex));
});
}

async function twoSealedMessages() {
  const rig = codecRig({ policy: { columns: { 'public.patients': ['ssn', 'phone'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
  const commit = '0000000000000100';
  const messages = await rig.codec.encodeBatch({
    source: 'clinic',
    txId: '1',
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 1n,
    snapshot: false,
    events: [
      { op: 'c', schema: patients, before: null, after: { id: 1n, ssn: 'CANARY-SSN-111-11-1111', phone: 'CANARY-PHN-555-01-0001' }, position: Position.of(commit, 0) },
      { op: 'c', schema: patients, before: null, after: { id: 2n, ssn: 'CANARY-SSN-222-22-2222', phone: 'CANARY-PHN-555-02-0002' }, position: Position.of(commit, 1) },
    ],
  });
  const archive = rig.reader();
  const sealed = await Promise.all(messages.map((m) => archive.decode(m.value)));
  return { rig, messages: messages.map((m) => Buffer.from(m.value)), sealed: sealed.map((d) => d.event.after as Record<string, Uint8Array>) };
}

function replaceBytes(message: Buffer, from: Uint8Array, to: Uint8Array): Buffer {
  assert.equal(from.length, to.length);
  const at = message.indexOf(Buffer.from(from));
  assert.ok(at >= 0);
  const out = Buffer.from(message);
  out.set(to, at);
  return out;
}

test('in archived messages: a sealed value swapped between rows or between columns fails to open', async () => {
  const { rig, messages, sealed } = await twoSealedMessages();
  const audit: OpenAuditEntry[] = [];
  const opener = rig.reader({ withKeys: true, onOpen: (e) => audit.push(e) });
  const [m1, m2] = messages as [Buffer, Buffer];
  const [r1, r2] = sealed as [Record<string, Uint8Array>, Record<string, Uint8Array>];
  assert.equal((await opener.decode(m1, { open: true })).event.after!.ssn, 'CANARY-SSN-111-11-1111');
  assert.equal(audit.length, 1, 'every opening is audited');
  assert.deepEqual({ ...audit[0]!, keyIds: audit[0]!.keyIds.length }, { source: 'clinic', table: 'public.patients', position: Position.of('0000000000000100', 0), columns: ['ssn', 'phone'], keyIds: 1 });
  assert.ok(!JSON.stringify(audit).includes('CANARY'));

  const rowSwapped = replaceBytes(m1, r1.ssn!, r2.ssn!);
  await assert.rejects(opener.decode(rowSwapped, { open: true }), isIntegrity('CANARY'));

  // Format 3: phone holds a reference to the row seal ssn carries; pointed elsewhere, it fails.
  assert.equal(r1.phone!.length, 9);
  const referenceAltered = Buffer.from(m1);
  referenceAltered[m1.indexOf(Buffer.from(r1.phone!)) + 3]! ^= 0x01;
  await assert.rejects(opener.decode(referenceAltered, { open: true }), isIntegrity('CANARY'));

  const flipped = Buffer.from(m2);
  const at = flipped.indexOf(Buffer.from(r2.ssn!)) + 70;
  flipped[at]! ^= 0x10;
  await assert.rejects(opener.decode(flipped, { open: true }), isIntegrity('CANARY'));
  // Opening needs the keyring; an archive reader without one is told so.
  await assert.rejects(rig.reader().decode(m1, { open: true }), (e: ChartlogError) => e.code === 'auth' && /phi\.keyring/.test(e.hint ?? ''));
  // Without opening, tampered archives still decode: PHI is just bytes to an archive reader.
  assert.equal((await rig.reader().decode(flipped)).event.after!.id, 2n);
});

test('in archived messages: opening with another keyring fails with a clear error', async () => {
  const { rig, messages } = await twoSealedMessages();
  const { FileKeyring } = await import('../../../src/phi/keyring/file-keyring.js');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const otherKeyring = FileKeyring.create(join(mkdtempSync(join(tmpdir(), 'chartlog-other-')), 'keyring.json'));
  const wrong = rig.reader({ withKeys: true, keyring: otherKeyring });
  await assert.rejects(wrong.decode(messages[0]!, { open: true }), (e: ChartlogError) => {
    assert.ok(e.code === 'integrity' || e.code === 'auth');
    assert.match(e.message, /data key [0-9a-f]{32}/);
    assert.ok(!e.message.includes('CANARY'));
    return true;
  });
});

for (const algorithm of ALGORITHMS) {
  test(`${algorithm}: values of every size open right one after another (the sealer's reused scratch buffers: small, beyond 64 KiB, small again)`, () => {
    const k = dek(algorithm);
    const sizes = [3, 40, 5000, 70_000, 12, 66_000, 40, 200_000, 3];
    const values = sizes.map((n, i) => `canary-${i}-`.padEnd(n, String.fromCharCode(97 + i)));
    // Sealed all first, then opened in an order that changes sizes at every step.
    const sealed = values.map((v) => sealValue(k, v, ctx, AT));
    for (const i of [0, 3, 1, 5, 4, 7, 8, 2, 6, 0]) assert.equal(openValue(k, sealed[i]!, ctx), values[i]);
    // And a value that fails authentication between them leaves the next ones opening right.
    const bad = Uint8Array.from(sealed[3]!);
    bad[bad.length - 1]! ^= 1;
    assert.throws(() => openValue(k, bad, ctx), isIntegrity());
    assert.equal(openValue(k, sealed[1]!, ctx), values[1]);
  });
}
