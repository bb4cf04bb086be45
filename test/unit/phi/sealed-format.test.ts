import assert from 'node:assert/strict';
import { createDecipheriv } from 'node:crypto';
import { test } from 'node:test';
import type { CellValue } from '../../../src/core/table-schema.js';
import { additionalData, keyAad, placeAad, type SealContext } from '../../../src/phi/aad.js';
import sodium from 'sodium-native';
import type { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { openValue, positionBytes, SealArena, sealValue, type DataKey, type SealAlgorithm } from '../../../src/phi/sealer.js';

/**
 * Known answers pinning the sealed format and its AAD, so a faster sealer can never drift from
 * what archives already hold: version | key id | nonce | ciphertext | tag, AES-256-GCM, AAD =
 * length-prefixed label, source, schema, table, column, then the key parts. The vectors were
 * made with the sealer as first written (one Buffer.concat AAD, one randomBytes nonce per value)
 * and fixed nonces.
 */

const dek: DataKey = {
  id: Uint8Array.from(Buffer.from('0190f00dcafe0000aabbccddeeff0011', 'hex')),
  idHex: '0190f00dcafe0000aabbccddeeff0011',
  key: Uint8Array.from(Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex')),
};

interface Vector {
  name: string;
  value: CellValue;
  ctx: SealContext;
  aad: string;
  sealed: string;
}

const vectors: Vector[] = [
  {
    name: 'string, bigint key',
    value: 'CANARY-SSN-123-45-6789',
    ctx: { source: 'clinic', schema: 'public', table: 'patients', column: 'ssn', key: [{ value: 7n }] },
    aad: '0f00000063686172746c6f672d7068692d763106000000636c696e6963060000007075626c69630800000070617469656e74730300000073736e0f000000010000000106000000040100000037',
    sealed: '010190f00dcafe0000aabbccddeeff001101010101010101010101010172d5e53568c6292895063e354b341cf5fa5cbcf6a5b63beac4e33e96ceb6ab612a221e26bc55098e46f9d9',
  },
  {
    name: 'non-ASCII string, composite key with a missing and a sealed part',
    value: 'Zoë Ünïcode 𝄞',
    ctx: { source: 'clinic', schema: 'app', table: 'visits', column: 'note', key: [{ value: 'A-1' }, undefined, { sealed: Uint8Array.of(1, 2, 3) }] },
    aad: '0f00000063686172746c6f672d7068692d763106000000636c696e69630300000061707006000000766973697473040000006e6f7465110000000100000001080000000503000000412d3101000000000c000000010000000203000000010203',
    sealed: '010190f00dcafe0000aabbccddeeff00110202020202020202020202029e3b19bbb9835e9860a561645dba7570738dca4c64c9fc6f2a1256132d1132fc48bd95cc9eaf83bc',
  },
  {
    name: 'bigint, no key',
    value: 12345678901234567890n,
    ctx: { source: 's', schema: 'public', table: 't', column: 'c', key: [] },
    aad: '0f00000063686172746c6f672d7068692d76310100000073060000007075626c696301000000740100000063',
    sealed: '010190f00dcafe0000aabbccddeeff0011030303030303030303030303ea5f3cd60ba36025ea683049f59364362865c2c5eccf0488b226cda740385fe02d9d0ccb53693c3017',
  },
  {
    name: 'array, number key',
    value: [1.5, null, [true, Uint8Array.of(9)]],
    ctx: { source: 'clinic', schema: 'public', table: 'patients', column: 'tags', key: [{ value: 42 }] },
    aad: '0f00000063686172746c6f672d7068692d763106000000636c696e6963060000007075626c69630800000070617469656e7473040000007461677312000000010000000109000000030000000000004540',
    sealed: '010190f00dcafe0000aabbccddeeff00110404040404040404040404046384ce882956919dca055b6bddc2a10796590d64708f66ed172f359f2227f7aea2c605fa45821f6ff1c623',
  },
];

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Opens with node:crypto directly, the AAD given whole: the format as a reader outside chartlog sees it. */
function referenceOpen(sealed: Uint8Array, aadHex: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', dek.key, sealed.subarray(17, 29), { authTagLength: 16 });
  d.setAAD(Buffer.from(aadHex, 'hex'));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(29, sealed.length - 16)), d.final()]);
}

test('the AAD of each context is byte for byte the pinned one', () => {
  for (const v of vectors) {
    assert.equal(hex(additionalData(v.ctx)), v.aad, v.name);
    const c = v.ctx;
    assert.equal(hex(placeAad(c.source, c.schema, c.table, c.column)) + hex(keyAad(c.key)), v.aad, v.name);
  }
});

test('values sealed by the first sealer (archives already written) open to the same value', () => {
  for (const v of vectors) assert.deepStrictEqual(openValue(dek, Buffer.from(v.sealed, 'hex'), v.ctx), v.value, v.name);
});

const AT = Position.of('00000000016b3a10', 2);

/**
 * Opens a format-2 value the way a reader outside chartlog would, from docs/formats.md alone:
 * header = version | key id | u8 n | commit | u32le seq; AAD = header ‖ the pinned AAD.
 */
function referenceOpenV2(sealed: Uint8Array, aadHex: string, algorithm: SealAlgorithm, key: Uint8Array): Buffer {
  const n = sealed[17]!;
  const headerEnd = 18 + n + 4;
  const nonce = algorithm === 'AES-256-GCM' ? 12 : 24;
  const aad = Buffer.concat([sealed.subarray(0, headerEnd), Buffer.from(aadHex, 'hex')]);
  const body = sealed.subarray(headerEnd + nonce);
  if (algorithm === 'XChaCha20-Poly1305') {
    const out = Buffer.alloc(body.length - 16);
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, body, aad, sealed.subarray(headerEnd, headerEnd + nonce), key);
    return out;
  }
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(headerEnd, headerEnd + nonce), { authTagLength: 16 });
  d.setAAD(aad);
  d.setAuthTag(body.subarray(body.length - 16));
  return Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]);
}

for (const algorithm of ['XChaCha20-Poly1305', 'AES-256-GCM'] as const) {
  test(`${algorithm}: values sealed now (format 2) open with the reference reader, the pinned AAD and the header; the layout is as documented`, () => {
    const k: DataKey = { ...dek, algorithm };
    for (const v of vectors) {
      const plaintext = referenceOpen(Buffer.from(v.sealed, 'hex'), v.aad);
      const c = v.ctx;
      const arena = new SealArena();
      const pos = positionBytes(AT);
      for (const sealed of [sealValue(k, v.value, v.ctx, AT), arena.seal(k, v.value, placeAad(c.source, c.schema, c.table, c.column), keyAad(c.key), pos)]) {
        assert.equal(hex(sealed.subarray(0, 17)), `02${dek.idHex}`, `${v.name}: version and key id`);
        assert.equal(hex(sealed.subarray(17, 17 + 21)), `10${Buffer.from('00000000016b3a10').toString('hex')}02000000`, `${v.name}: position`);
        assert.equal(sealed.length, 17 + 21 + (algorithm === 'AES-256-GCM' ? 12 : 24) + plaintext.length + 16, v.name);
        assert.deepEqual(referenceOpenV2(sealed, v.aad, algorithm, dek.key), plaintext, v.name);
        assert.deepStrictEqual(openValue(k, sealed, v.ctx), v.value, v.name);
      }
    }
  });
}

test('a format-1 value does not open under a key that records XChaCha20-Poly1305 (an algorithm is never guessed)', () => {
  const v = vectors[0]!;
  assert.throws(() => openValue({ ...dek, algorithm: 'XChaCha20-Poly1305' }, Buffer.from(v.sealed, 'hex'), v.ctx), (e: ChartlogError) => e.code === 'integrity');
  assert.deepStrictEqual(openValue({ ...dek, algorithm: 'AES-256-GCM' }, Buffer.from(v.sealed, 'hex'), v.ctx), v.value, 'negative control');
});

test('every sealed value gets its own nonce', () => {
  const arena = new SealArena();
  const v = vectors[0]!;
  const c = v.ctx;
  const place = placeAad(c.source, c.schema, c.table, c.column);
  const key = keyAad(c.key);
  const pos = positionBytes(AT);
  const k: DataKey = { ...dek, algorithm: 'XChaCha20-Poly1305' };
  const nonceAt = 17 + pos.length;
  const nonces = new Set<string>();
  // More than one refill of the nonce pool (4096 nonces) and of the arena (16 KiB).
  for (let i = 0; i < 10_000; i++) {
    if (i % 100 === 0) arena.reset();
    nonces.add(hex(arena.seal(k, v.value, place, key, pos).subarray(nonceAt, nonceAt + 24)));
  }
  for (let i = 0; i < 100; i++) nonces.add(hex(sealValue(dek, v.value, v.ctx, AT).subarray(nonceAt, nonceAt + 12)));
  assert.equal(nonces.size, 10_100);
});

test('a view handed out by the arena keeps its bytes until the arena is reset', () => {
  const arena = new SealArena();
  const v = vectors[1]!;
  const c = v.ctx;
  const place = placeAad(c.source, c.schema, c.table, c.column);
  const pos = positionBytes(AT);
  const first = arena.seal(dek, v.value, place, keyAad(c.key), pos);
  const copy = Buffer.from(first);
  // Enough further values to outgrow the arena's buffer.
  for (let i = 0; i < 1000; i++) arena.seal(dek, 'x'.repeat(100), place, keyAad(c.key), pos);
  assert.deepEqual(Buffer.from(first), copy);
  assert.deepStrictEqual(openValue(dek, first, v.ctx), v.value);
});
