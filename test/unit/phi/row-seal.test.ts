import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { ChartlogError } from '../../../src/core/errors.js';
import type { CellValue, Row } from '../../../src/core/table-schema.js';
import { keyAad, placeAad } from '../../../src/phi/aad.js';
import { BlockPlaces } from '../../../src/phi/block-seal.js';
import { KeyManager } from '../../../src/phi/key-manager.js';
import { PhiOpener, type OpenAuditEntry, type SealedTable } from '../../../src/phi/phi-opener.js';
import { carryForward, isRowSeal, isRowSealReference, openRowSeal, referenceTo, RowPlaces, RowPlaintext, rowSealLength, sealRowBody, writeRowSealHeader } from '../../../src/phi/row-seal.js';
import { positionBytes, sealedKeyId, sealedPosition, type DataKey, type SealAlgorithm } from '../../../src/phi/sealer.js';
import { codecRig, quietLog, ssnPhonePatients as patients, testKeyring } from '../../support/codec-support.js';

/**
 * Sealed formats 3 and 4, the row seal (docs/formats.md "Sealed values"): pinned vectors under both
 * algorithms, every tamper of a seal's bytes and every truncation refused, and the row-level
 * rules the opener enforces (references, merged snapshot rows, per-column opening, audit).
 */

const dekOf = (algorithm: SealAlgorithm): DataKey => ({
  id: Uint8Array.from(Buffer.from('0190f00dcafe0000aabbccddeeff0011', 'hex')),
  idHex: '0190f00dcafe0000aabbccddeeff0011',
  key: Uint8Array.from(Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex')),
  algorithm,
});
const places = new RowPlaces('clinic', 'public', 'patients', ['full_name', 'ssn', 'birth_date', 'address']);
const KEY = keyAad([{ value: 7n }]);
const EXPECTED = new Map<number, CellValue>([
  [0, 'CANARY Zoë Ünïcode 𝄞'],
  [1, 'CANARY-SSN-123-45-6789'],
  [3, 12345678901234567890n],
]);

/** Made by this file's sealer when format 3 was introduced: today's opener must open them as they are. */
const VECTORS: Record<SealAlgorithm, string> = {
  'XChaCha20-Poly1305':
    '030190f00dcafe0000aabbccddeeff0011103030303030303030303136623361313003000000010b2a7b18d15a6e21643d1fefc2f5d8d04572089f8a4561df8141a4bbb0614dfe0e285c271df176190495a2ee5206c1c307ca33190e0bbc55346c339d1cbbd39aa51e0e43a31d0b2720baa18f5baba56dcad3c5d976ee8edd56e849f57dd88613cb2e8074031d44fdf635fa03e5a2ef75795a05bd1883cafe261f0fad7b05e4',
  'AES-256-GCM':
    '030190f00dcafe0000aabbccddeeff0011103030303030303030303136623361313003000000010b2ed33ae5190d75203ded7df729d8162c36b890487c5958f451710ce6683708da4f6480ae7e45c978ea5a6cd32779ca109c972908983c6d2fbbc659891f30fe53ce1020c80fc9e8e0518622e5c5c6112f38ac33e921e32dfb33a6af0d9a64a6ad071f2404aa550bcea99b972ae5812f77e246',
};

/**
 * Format 4 (issue 15, archive size): the same values and header as VECTORS, the plaintext without
 * the cells' u32 lengths. Made by this file's sealer when format 4 was introduced.
 */
const VECTORS_V4: Record<SealAlgorithm, string> = {
  'XChaCha20-Poly1305':
    '040190f00dcafe0000aabbccddeeff0011103030303030303030303136623361313003000000010ba15b70d146235cf05e932f27af5dd6ee46a9ce24d266c9021cf2b6b6ee076508afe00cb3241c7bc2aafc0c12f477b760917288f1e2b1cec39e2617183d24ada2a518ca836b0198f99b641bd885ca46cf74600ea33ec4df6e514c60a9121cd22a12a0136ab13671b1823d152262b3e5d021d2',
  'AES-256-GCM':
    '040190f00dcafe0000aabbccddeeff0011103030303030303030303136623361313003000000010b1acaa276fd5ea4aab4fac1d5bbf0813c05fd05a952bd3561b897a49d9121d1cbebc58c740d7405fe24684c7e1ca5f17efbe910a00cdd262a250a7885107cc91d80cfbadbb426cd907f5441d7afcbc2f9fe9df47f1d7e40b15f42eb2b5bb2cbdda02ad0572f6d',
};

function seal(dek: DataKey, values: Map<number, CellValue>, pos = Position.of('00000000016b3a10', 3)): Uint8Array {
  const rp = new RowPlaintext();
  rp.reset(4);
  for (const [i, v] of values) rp.add(i, v);
  const p = positionBytes(pos);
  const out = new Uint8Array(rowSealLength(dek, p, rp.set, rp.length));
  writeRowSealHeader(dek, p, rp.set, out, 0);
  assert.equal(sealRowBody(dek, rp.plaintext, places.of(rp.set), KEY, out, 0), out.length);
  return out;
}

const integrity = (e: unknown): boolean => {
  assert.ok(e instanceof ChartlogError);
  assert.equal(e.code, 'integrity');
  assert.ok(!`${e.message} ${e.hint ?? ''}`.includes('CANARY'), 'no value in the error');
  return true;
};

for (const algorithm of ['XChaCha20-Poly1305', 'AES-256-GCM'] as const) {
  test(`${algorithm}: the pinned row seal opens to its values; its header names key, position and set`, () => {
    const dek = dekOf(algorithm);
    const v = Uint8Array.from(Buffer.from(VECTORS[algorithm], 'hex'));
    assert.ok(isRowSeal(v));
    assert.equal(sealedKeyId(v), dek.idHex);
    assert.deepEqual(sealedPosition(v), Position.of('00000000016b3a10', 3));
    assert.deepEqual(openRowSeal(dek, v, places, KEY, 'clinic public.patients'), EXPECTED);
    // Pinned AAD place: label, source, schema, table, then the set's column names.
    const lp = (...parts: string[]) => Buffer.concat(parts.flatMap((p) => [Buffer.from([p.length, 0, 0, 0]), Buffer.from(p)]));
    assert.deepEqual(Buffer.from(places.of(Uint8Array.of(1, 0b1011))), lp('chartlog-phi-row-v3', 'clinic', 'public', 'patients', 'full_name', 'ssn', 'address'));
  });

  test(`${algorithm}: the pinned format-4 row seal opens to the same values, 4 bytes a value shorter; relabelled as the other format, neither opens`, () => {
    const dek = dekOf(algorithm);
    const v4 = Uint8Array.from(Buffer.from(VECTORS_V4[algorithm], 'hex'));
    const v3 = Uint8Array.from(Buffer.from(VECTORS[algorithm], 'hex'));
    assert.ok(isRowSeal(v4));
    assert.equal(v4[0], 4);
    assert.equal(sealedKeyId(v4), dek.idHex);
    assert.deepEqual(sealedPosition(v4), Position.of('00000000016b3a10', 3));
    assert.deepEqual(openRowSeal(dek, v4, places, KEY, 'clinic public.patients'), EXPECTED);
    assert.equal(v3.length - v4.length, 3 * 4, 'three length-prefixed values, a u32 length less each');
    // The version byte is in the AAD: a format-3 seal relabelled 4 (or the reverse) fails authentication.
    const relabel = (v: Uint8Array, b: number) => Uint8Array.of(b, ...v.subarray(1));
    assert.throws(() => openRowSeal(dek, relabel(v3, 4), places, KEY, 'clinic public.patients'), integrity);
    assert.throws(() => openRowSeal(dek, relabel(v4, 3), places, KEY, 'clinic public.patients'), integrity);
    // What the writer makes now is format 4.
    assert.equal(seal(dek, EXPECTED)[0], 4);
  });

  test(`${algorithm}: format 4 round-trips every kind of cell: empty and BOM strings, bytes, bigint, number, booleans, arrays`, () => {
    const dek = dekOf(algorithm);
    const kinds: CellValue[][] = [
      ['', '\uFEFFCANARY', Uint8Array.of(0, 1, 255), -12345678901234567890n],
      [Uint8Array.of(), 3.5, true, ['CANARY', null, [1n, Uint8Array.of(7)], false]],
      [-0, 'x'.repeat(300), Number.NaN, 'CANARY 𝄞'],
    ];
    for (const vals of kinds) {
      const m = new Map<number, CellValue>(vals.map((v, i) => [i, v]));
      assert.deepEqual(openRowSeal(dek, seal(dek, m), places, KEY, 'clinic public.patients'), m);
    }
  });

  test(`${algorithm}: round trip; every flipped byte and every truncation of a row seal is 'integrity', naming the table`, () => {
    const dek = dekOf(algorithm);
    const v = seal(dek, EXPECTED);
    assert.deepEqual(openRowSeal(dek, v, places, KEY, 'clinic public.patients'), EXPECTED, 'negative control: intact, it opens');
    for (let i = 0; i < v.length; i++) {
      const bad = v.slice();
      bad[i]! ^= 0x01;
      assert.throws(() => openRowSeal(dek, bad, places, KEY, 'clinic public.patients'), (e: ChartlogError) => integrity(e) && e.message.startsWith('clinic public.patients'), `byte ${i}`);
    }
    for (let n = 0; n < v.length; n++) assert.throws(() => openRowSeal(dek, v.subarray(0, n), places, KEY, 'clinic public.patients'), integrity, `truncated to ${n}`);
    // Moved: another primary key, another table, another column set's names.
    assert.throws(() => openRowSeal(dek, v, places, keyAad([{ value: 8n }]), 'w'), integrity);
    assert.throws(() => openRowSeal(dek, v, new RowPlaces('clinic', 'public', 'visits', ['full_name', 'ssn', 'birth_date', 'address']), KEY, 'w'), integrity);
    assert.throws(() => openRowSeal(dek, v, new RowPlaces('clinic', 'public', 'patients', ['full_name', 'ssn', 'address', 'birth_date']), KEY, 'w'), integrity);
    assert.throws(() => openRowSeal(dek, v, new RowPlaces('other', 'public', 'patients', ['full_name', 'ssn', 'birth_date', 'address']), KEY, 'w'), integrity);
  });
}

/** The codec's sealed table for ssnPhonePatients, as compileTable makes it. */
const table: SealedTable = {
  name: 'public.patients',
  where: 'clinic public.patients',
  rowPlaces: new RowPlaces('clinic', 'public', 'patients', ['ssn', 'phone']),
  blockPlaces: new BlockPlaces('clinic', 'public', 'patients', '0000000000000000', ['ssn', 'phone']),
  sealed: ['ssn', 'phone'].map((c) => ({ name: c, sealedKey: false, place: placeAad('clinic', 'public', 'patients', c), where: `clinic public.patients.${c}` })),
  sealedColumns: ['ssn', 'phone'],
  key: [{ name: 'id', sealed: false }],
  needsPlainKeyAad: false,
  needsFullKeyAad: true,
};
const policy = { columns: { 'public.patients': ['ssn', 'phone'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const };
const COMMIT = '00000000016b3a10';

async function sealedRows(): Promise<{ opener: (o?: Partial<ConstructorParameters<typeof PhiOpener>[0]>) => PhiOpener; rows: Row[] }> {
  const rig = codecRig({ policy });
  const messages = await rig.codec.encodeBatch({
    source: 'clinic',
    txId: null,
    position: Position.of(COMMIT, COMMIT_SEQ),
    commitTsUs: 1n,
    snapshot: false,
    events: [
      { op: 'c', schema: patients, before: null, after: { id: 1n, ssn: 'CANARY-SSN-1', phone: 'CANARY-PHONE-1' }, position: Position.of(COMMIT, 0) },
      { op: 'u', schema: patients, before: null, after: { id: 1n, ssn: 'CANARY-SSN-2', phone: 'CANARY-PHONE-2' }, position: Position.of(COMMIT, 1) },
    ],
  });
  const rows = await Promise.all(messages.map(async (m) => ({ ...(await rig.reader().decode(m.value)).event.after! })));
  const keys = new KeyManager({ source: 'clinic', store: rig.store, keyring: testKeyring(), log: quietLog });
  return { rows, opener: (o = {}) => new PhiOpener({ source: 'clinic', keys, ...o }) };
}

const at = (seq: number) => Position.of(COMMIT, seq);

test('a change event: seal in ssn, reference in phone; a removed, altered, duplicated or misplaced reference or seal is refused naming the table', async () => {
  const { rows, opener } = await sealedRows();
  const [r0] = rows as [Row];
  assert.ok(isRowSeal(r0.ssn) && isRowSealReference(r0.phone));
  const good = { ...r0 };
  await opener().open(table, null, good, at(0), true);
  assert.deepEqual(good, { id: 1n, ssn: 'CANARY-SSN-1', phone: 'CANARY-PHONE-1' }, 'negative control');
  const refused = async (row: Row, what: string, pos = at(0)) => {
    const copy = { ...row };
    await assert.rejects(async () => opener().open(table, null, copy, pos, true), (e: ChartlogError) => integrity(e) && /public\.patients/.test(e.message), what);
    assert.ok(!Object.values(copy).some((v) => typeof v === 'string' && v.startsWith('CANARY')), `${what}: nothing opened`);
  };
  await refused({ ...r0, phone: null }, 'reference removed (NULL)');
  const altered = (r0.phone as Uint8Array).slice();
  altered[4]! ^= 1;
  await refused({ ...r0, phone: altered }, 'reference altered');
  await refused({ ...r0, phone: r0.ssn! }, 'the seal in two columns of a change');
  await refused({ ...r0, ssn: r0.phone!, phone: r0.ssn! }, 'seal and reference swapped');
  await refused({ ...r0, ssn: null }, 'seal removed, reference left');
  await refused(r0, 'the row seal of seq 0 in the change at seq 1', at(1));
});

test('a merged snapshot row (unchanged value from an earlier image) opens each column from its own row seal; without carryForward it fails closed', async () => {
  const { rows, opener } = await sealedRows();
  const [r0, r1] = rows as [Row, Row];
  // Image 1 changed ssn only; phone was unchanged and comes from image 0, whose seal ssn carried.
  const merged: Row = { id: 1n, ssn: r1.ssn!, phone: carryForward(r0, 'phone')! };
  assert.ok(isRowSeal(merged.phone) && merged.phone !== r0.phone);
  const m = { ...merged };
  await opener().open(table, null, m, at(5), false);
  assert.deepEqual(m, { id: 1n, ssn: 'CANARY-SSN-2', phone: 'CANARY-PHONE-1' });
  // Negative control: the bare reference (no carryForward) lost its seal.
  await assert.rejects(async () => opener().open(table, null, { id: 1n, ssn: r1.ssn!, phone: r0.phone! }, at(5), false), integrity);
  // A snapshot cannot hold a seal from after its own transaction.
  await assert.rejects(async () => opener().open(table, null, { ...merged }, Position.of('00000000016b3a00', 0), false), integrity);
});

test('per-column opening: only the asked columns open, the others keep a copy of the row seal (openable later); the audit names only the opened columns', async () => {
  const { rows, opener } = await sealedRows();
  const [r0] = rows as [Row];
  const audit: OpenAuditEntry[] = [];
  const partial = { ...r0 };
  await opener({ columns: (t) => (t === 'public.patients' ? new Set(['phone']) : undefined), onOpen: (e) => audit.push(e) }).open(table, null, partial, at(0), true);
  assert.equal(partial.phone, 'CANARY-PHONE-1');
  assert.ok(isRowSeal(partial.ssn), 'ssn stays sealed');
  assert.deepEqual(audit.map((e) => e.columns), [['phone']]);
  assert.ok(!JSON.stringify(audit, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes('CANARY'));
  const rest = { ...partial };
  await opener().open(table, null, rest, at(0), false);
  assert.equal(rest.ssn, 'CANARY-SSN-1');
  // The other way round: ssn (the seal's own column) opened, phone keeps a copy of the seal.
  const other = { ...r0 };
  await opener({ columns: () => new Set(['ssn']) }).open(table, null, other, at(0), true);
  assert.equal(other.ssn, 'CANARY-SSN-1');
  assert.ok(isRowSeal(other.phone));
  assert.deepEqual(referenceTo(other.phone as Uint8Array), r0.phone);
});
