import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { CellValue } from '../../../src/core/table-schema.js';
import { keyAad } from '../../../src/phi/aad.js';
import { BLOCK_REFERENCE as BLOCK_REFERENCE_BYTE, BlockPlaces, isBlockReference, isBlockSeal, MAX_BLOCK_BODY_BYTES, OpenedBlock, OpenedBlocks, openBlockRow, referencedRow, sealBlock, type BlockRow } from '../../../src/phi/block-seal.js';
import { positionBytes, sealedKeyId, sealedPosition, type DataKey, type SealAlgorithm } from '../../../src/phi/sealer.js';

/**
 * Format 5, the block seal (docs/formats.md "Sealed values"): rows of a block sealed together open
 * to exactly their values under both algorithms (random blocks); a pinned seal opens as written;
 * every move of a reference or seal (another row, column, block, table, table version, position)
 * and every altered byte is refused with 'integrity' naming the column and holding no value.
 */

const dekOf = (algorithm: SealAlgorithm): DataKey => ({
  id: Uint8Array.from(Buffer.from('0190f00dcafe0000aabbccddeeff0011', 'hex')),
  idHex: '0190f00dcafe0000aabbccddeeff0011',
  key: Uint8Array.from(Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex')),
  algorithm,
});
const COLUMNS = ['full_name', 'ssn', 'birth_date', 'address'];
const WHERE = COLUMNS.map((c) => `clinic public.patients.${c}`);
const places = new BlockPlaces('clinic', 'public', 'patients', '70ae58d44f60f26e', COLUMNS);
const POS = positionBytes(Position.of('00000000016b3a10', 0xffffffff));

const integrity = (e: unknown): boolean => {
  assert.ok(e instanceof ChartlogError, String(e));
  assert.equal(e.code, 'integrity');
  assert.ok(!`${e.message} ${e.hint ?? ''}`.includes('CANARY'), 'no value in the error');
  return true;
};

/** A deterministic pseudo-random source, so a failing case can be replayed from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomValue(r: () => number, i: number): CellValue {
  const k = Math.floor(r() * 8);
  if (k === 0) return null;
  if (k === 1) return BigInt(Math.floor(r() * 1e9)) * 1000003n;
  if (k === 2) return Uint8Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256));
  if (k === 3) return r() * 1e6 - 5e5;
  if (k === 4) return r() < 0.5;
  if (k === 5) return '';
  return `CANARY ${i} Zoë ${'x'.repeat(Math.floor(r() * 300))} 患者`;
}

function randomRows(r: () => number, n: number): BlockRow[] {
  return Array.from({ length: n }, (_x, i) => ({ key: keyAad([{ value: BigInt(1000 + i) }]), cells: COLUMNS.map(() => randomValue(r, i)) }));
}

/** Opens every row of a sealed block as a reader does (seal first, then references) and returns their values. */
function openAll(dek: DataKey, cells: CellValue[][], rows: readonly BlockRow[], p = places): CellValue[][] {
  const blocks = new OpenedBlocks();
  const seal = cells[0]!.find(isBlockSeal)!;
  blocks.add(OpenedBlock.open(dek, seal, p, 'clinic public.patients'));
  return cells.map((row, i) => {
    const out: CellValue[] = [...row];
    const ref = row.find((v) => isBlockReference(v) || isBlockSeal(v));
    if (!ref) return out;
    openBlockRow(blocks.of(ref as Uint8Array, WHERE[0]!), row, rows[i]!.key, WHERE, (c, v) => (out[c] = v));
    return out;
  });
}

for (const algorithm of ['XChaCha20-Poly1305', 'AES-256-GCM'] as const) {
  test(`${algorithm}: random blocks open to exactly their values; NULLs stay in clear, the carrier row holds the seal`, () => {
    const dek = dekOf(algorithm);
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed);
      const rows = randomRows(r, 1 + Math.floor(r() * 300));
      const sealed = sealBlock(dek, POS, seed, places, rows, COLUMNS.length);
      if (rows.every((row) => row.cells.every((v) => v === null))) {
        assert.equal(sealed, null);
        continue;
      }
      assert.ok(sealed, `seed ${seed}`);
      assert.equal(sealedKeyId(sealed.seal), dek.idHex);
      assert.deepEqual(sealedPosition(sealed.seal), Position.of('00000000016b3a10', 0xffffffff));
      for (let i = 0; i < rows.length; i++) {
        for (let c = 0; c < COLUMNS.length; c++) {
          const v: CellValue = sealed.cells[i]![c]!;
          if (rows[i]!.cells[c] === null && !isBlockSeal(v)) assert.equal(v, null, `seed ${seed} row ${i} column ${c}: NULL in clear`);
          else assert.ok(isBlockReference(v) || isBlockSeal(v), `seed ${seed} row ${i} column ${c}: sealed`);
        }
      }
      assert.equal(sealed.cells.flat().filter(isBlockSeal).length, 1, 'one seal a block, in its first row');
      assert.ok(sealed.cells[0]!.some(isBlockSeal));
      const opened = openAll(dek, sealed.cells, rows);
      for (let i = 0; i < rows.length; i++) assert.deepEqual(opened[i], rows[i]!.cells, `seed ${seed} row ${i}`);
      assert.ok(!Buffer.from(sealed.seal).includes('CANARY'), 'no plaintext in the seal');
    }
  });

  test(`${algorithm}: a reference moved to another row, block or column, a missing or added one, another table, version or position: refused naming the column`, () => {
    const dek = dekOf(algorithm);
    const rows: BlockRow[] = [0, 1, 2].map((i) => ({ key: keyAad([{ value: BigInt(i) }]), cells: [`CANARY name ${i}`, `CANARY-SSN-${i}`, i === 2 ? null : `19${i}0-01-01`, `CANARY street ${i}`] }));
    const a = sealBlock(dek, POS, 0, places, rows, 4)!;
    const b = sealBlock(dek, POS, 1, places, rows, 4)!;
    const block = OpenedBlock.open(dek, a.seal, places, 'clinic public.patients');
    const open = (cells: CellValue[], key: Uint8Array) => openBlockRow(block, cells, key, WHERE, () => undefined);
    // As written, each row opens.
    for (let i = 1; i < 3; i++) open(a.cells[i]!, rows[i]!.key);
    // Row 1's references in row 2 (a swap of rows): its key is not the one sealed at that place.
    assert.throws(() => open(a.cells[1]!, rows[2]!.key), (e) => integrity(e) && /another row's values/.test((e as Error).message));
    // One reference of row 2 naming row 1.
    assert.throws(() => open([a.cells[2]![0]!, a.cells[1]![1]!, null, a.cells[2]![3]!], rows[2]!.key), (e) => integrity(e) && (e as Error).message.startsWith(WHERE[1]!));
    // A reference in a column the block holds no value of for that row (row 2's birth_date is NULL).
    assert.throws(() => open([a.cells[2]![0]!, a.cells[2]![1]!, a.cells[2]![1]!, a.cells[2]![3]!], rows[2]!.key), (e) => integrity(e) && (e as Error).message.startsWith(WHERE[2]!));
    // A reference removed (the value would silently become NULL).
    assert.throws(() => open([a.cells[2]![0]!, null, null, a.cells[2]![3]!], rows[2]!.key), (e) => integrity(e) && (e as Error).message.startsWith(WHERE[1]!));
    // A reference into another block (b: same rows, same key, another seal instance).
    assert.throws(() => open(b.cells[1]!, rows[1]!.key), (e) => integrity(e) && /another block/.test((e as Error).message));
    // The seal moved to a row that does not carry it.
    assert.throws(() => open([a.cells[0]![0]!, a.cells[1]![1]!, a.cells[1]![2]!, a.cells[1]![3]!], rows[1]!.key), integrity);
    // The seal opened as another table's, another table version's, or another source's: authentication fails.
    for (const p of [
      new BlockPlaces('clinic', 'public', 'visits', '70ae58d44f60f26e', COLUMNS),
      new BlockPlaces('clinic', 'public', 'patients', '70ae58d44f60f26f', COLUMNS),
      new BlockPlaces('other', 'public', 'patients', '70ae58d44f60f26e', COLUMNS),
      new BlockPlaces('clinic', 'public', 'patients', '70ae58d44f60f26e', ['full_name', 'ssn', 'address', 'birth_date']),
    ]) {
      assert.throws(() => OpenedBlock.open(dek, a.seal, p, 'clinic public.patients'), integrity);
    }
    // Another position, block ordinal or row count in the header, or any other flipped byte.
    for (let i = 0; i < a.seal.length; i++) {
      const t = a.seal.slice();
      t[i]! ^= 0x01;
      assert.throws(() => OpenedBlock.open(dek, t, places, 'clinic public.patients'), integrity, `byte ${i}`);
    }
    for (let n = 0; n < a.seal.length; n += 7) assert.throws(() => OpenedBlock.open(dek, a.seal.subarray(0, n), places, 'clinic public.patients'), integrity, `truncated to ${n}`);
    // A reader that meets a reference before its seal refuses it.
    assert.throws(() => new OpenedBlocks().of(a.cells[1]![0] as Uint8Array, WHERE[0]!), (e) => integrity(e) && (e as Error).message.startsWith(WHERE[0]!));
  });
}

test('a block whose PHI inflates past the bound is refused at sealing', () => {
  const dek = dekOf('XChaCha20-Poly1305');
  const big = 'CANARY '.repeat(Math.ceil(MAX_BLOCK_BODY_BYTES / 7 / 4) + 1);
  const rows = Array.from({ length: 5 }, (_x, i) => ({ key: keyAad([{ value: BigInt(i) }]), cells: [big, null, null, null] }));
  assert.throws(() => sealBlock(dek, POS, 0, places, rows, 4), (e) => e instanceof ChartlogError && /block of PHI over/.test(e.message));
});

/**
 * Made by this file's sealer when format 5 was introduced (block ordinal 3, two rows: keys 7 and
 * 8, NULLs in clear): today's reader must open them as they are.
 */
const VECTOR_V5: Record<SealAlgorithm, string> = {
  'XChaCha20-Poly1305':
    '050190f00dcafe0000aabbccddeeff00111030303030303030303031366233613130ffffffff010f03000000020000001e235ab7759dd92aaf1b440434b1979a6ecf194319bda8dbcdd0c1c3bdc2744979deb4da393328dcfdf046f40c3dc876c4784fe70857f77860179c1363b46e79a868dfe7775dee1c530b561860c91d846999ef102d6a18b7eb8bda63599b8e3b442bd10cecce7647c40c338f2ddf559813ad0182b25f5dd44aea108b19233c7645351e7fe7c77398050ea6dcecce',
  'AES-256-GCM':
    '050190f00dcafe0000aabbccddeeff00111030303030303030303031366233613130ffffffff010f030000000200000083e6d5dcaa03f00116d117956f46ae2fc98da133eba7d3debbc8cf98fdf53c7a5e13ba8b548783b88cb699a14ee991621bc205ad1ac5efb9dadd16f3b88fe4d33a5994363d1ee2c95adcf4688651f90c02eb0ef427d5891d702f0ee3a49bdf0846b5b5565b4b9d24cd34900e2adf24da39bc9dbeb47bccd36701751ab930d70683f9',
};

for (const algorithm of ['XChaCha20-Poly1305', 'AES-256-GCM'] as const) {
  test(`${algorithm}: the pinned block seal opens to its rows; its header names key, position, set, ordinal and rows`, () => {
    const dek = dekOf(algorithm);
    const seal = Uint8Array.from(Buffer.from(VECTOR_V5[algorithm], 'hex'));
    assert.ok(isBlockSeal(seal));
    assert.equal(sealedKeyId(seal), dek.idHex);
    assert.deepEqual(sealedPosition(seal), Position.of('00000000016b3a10', 0xffffffff));
    const block = OpenedBlock.open(dek, seal, places, 'clinic public.patients');
    assert.deepEqual([block.ordinal, block.rows, [...block.set]], [3, 2, [1, 0b1111]]);
    const ref = (row: number) => Uint8Array.of(0x15, ...seal.subarray(48, 48 + 8), row); // the nonce follows the 48-byte header
    const got: CellValue[][] = [Array<CellValue>(4).fill(null), Array<CellValue>(4).fill(null)];
    openBlockRow(block, [seal, ref(0), null, ref(0)], keyAad([{ value: 7n }]), WHERE, (c, v) => (got[0]![c] = v));
    openBlockRow(block, [null, ref(1), ref(1), null], keyAad([{ value: 8n }]), WHERE, (c, v) => (got[1]![c] = v));
    // NULLs are in clear, not in the block: nothing is set for them.
    assert.deepEqual(got[0], ['CANARY Zoë Ünïcode 𝄞', 'CANARY-SSN-123-45-6789', null, 12345678901234567890n]);
    assert.deepEqual(got[1], [null, 'CANARY-SSN-987', '1970-01-01', null]);
  });
}

test('referencedRow reads every row index a reference can carry (the two-byte fast forms included), and -1 for malformed ones', () => {
  const ref = (...tail: number[]) => Uint8Array.from([BLOCK_REFERENCE_BYTE, 1, 2, 3, 4, 5, 6, 7, 8, ...tail]);
  const leb = (n: number): number[] => {
    const out: number[] = [];
    for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
    out.push(n);
    return out;
  };
  for (const n of [0, 1, 127, 128, 129, 4095, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 + 5, 2 ** 34]) assert.equal(referencedRow(ref(...leb(n))), n, `row ${n}`);
  for (let n = 0; n < 20_000; n += 7) assert.equal(referencedRow(ref(...leb(n))), n);
  // Malformed: no row bytes, a continuation with nothing after it, bytes after the last one.
  assert.equal(referencedRow(ref()), -1);
  assert.equal(referencedRow(ref(0x80)), -1);
  assert.equal(referencedRow(ref(0x81, 0x80)), -1);
  assert.equal(referencedRow(ref(5, 1)), -1);
  assert.equal(referencedRow(ref(0x85, 1, 2)), -1);
});
