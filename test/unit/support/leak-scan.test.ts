import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { keyAad } from '../../../src/phi/aad.js';
import { BlockPlaces, sealBlock } from '../../../src/phi/block-seal.js';
import { positionBytes } from '../../../src/phi/sealer.js';
import { AvroContainerWriter } from '../../../src/archive/avro-container.js';
import { encodeFlushPart } from '../../../src/archive/flush-part.js';
import { Position } from '../../../src/core/position.js';
import { describeHits, scanForCanaries, scanTextForCanaries } from '../../support/leak-scan.js';

/**
 * Negative controls for the leak scanner every "no plaintext" test relies on: each planted
 * canary must be found, in each place a stored object can hide it, and a store without one must
 * scan clean. The first test also shows why the scanner exists: a byte search of a deflated
 * part does not see the SSN inside it.
 */
const SSN = 'CANARY-SSN-123-45-6789';

function zigzagLength(length: number): Buffer {
  let n = length * 2;
  const len: number[] = [];
  while (n > 0x7f) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return Buffer.from(len);
}

function avroString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  // zig-zag varint length, then the bytes: a record body of one string field
  let n = b.length * 2;
  const len: number[] = [];
  while (n > 0x7f) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return Buffer.concat([Buffer.from(len), b]);
}

async function partWith(values: string[]): Promise<Buffer> {
  const w = new AvroContainerWriter(JSON.stringify({ type: 'record', name: 'r', fields: [{ name: 'ssn', type: 'string' }] }));
  await w.addBlock(values.map(avroString));
  return w.toBuffer();
}

test('an SSN in clear inside a deflated part: invisible to a byte search, found by the scanner', async () => {
  const part = await partWith(Array.from({ length: 50 }, (_, i) => `${SSN}-${i}`));
  assert.equal(part.includes(SSN), false, 'deflate hides the plaintext from a byte search (why the old checks could not fail)');
  const hits = scanForCanaries([{ key: 'clinic/parts/x.avro', bytes: part }], ['CANARY-SSN-']);
  assert.ok(hits.some((h) => h.where === 'container block 0' && h.form === 'utf8'), describeHits(hits));
  assert.ok(!describeHits(hits).includes(SSN), 'a hit names the object, never the value');
});

test('an SSN in clear inside a section of a flush part (a deflated container inside a container): found by the scanner', async () => {
  const section = await partWith(Array.from({ length: 50 }, (_, i) => `${SSN}-${i}`));
  const first = Position.parse('0000000000000001.00000000');
  const part = await encodeFlushPart([
    { table: 'public.visits', fingerprint: '00000000000000a1', records: 0, bytes: 0, first, last: first, container: await partWith([]) },
    { table: 'public.patients', fingerprint: '00000000000000a1', records: 50, bytes: section.length, first, last: first, container: section },
  ], Buffer.alloc(16, 1));
  assert.equal(part.includes(SSN), false);
  const hits = scanForCanaries([{ key: 'clinic/parts/2026-11-24/05/~flush/x.avro', bytes: part }], ['CANARY-SSN-']);
  assert.ok(hits.some((h) => h.where === 'section 1 container block 0' && h.form === 'utf8'), describeHits(hits) || 'not found');
});

test('canaries are found in every encoding a stored object can hide them in', () => {
  const planted: [string, Uint8Array, string][] = [
    ['escaped in JSON', Buffer.from(JSON.stringify({ note: 'x' }).replace('x', SSN.replace('C', '\\u0043'))), 'json'],
    ['a JSON key', Buffer.from(JSON.stringify({ [SSN]: 1 })), 'json'],
    ['gzip', gzipSync(Buffer.from(`a log line ${SSN}\n`)), 'gzip'],
    ['UTF-16', Buffer.from(`xx${SSN}yy`, 'utf16le'), 'bytes'],
    ['hex', Buffer.from(Buffer.from(`z${SSN}`).toString('hex')), 'bytes'],
    ...[0, 1, 2].map((k): [string, Uint8Array, string] => [`base64 at offset ${k}`, Buffer.from(Buffer.from('abc'.slice(0, k) + SSN + 'tail').toString('base64')), 'bytes']),
  ];
  for (const [what, bytes, where] of planted) {
    const hits = scanForCanaries([{ key: what, bytes }], ['CANARY-SSN-']);
    assert.ok(hits.some((h) => h.where === where), `${what}: ${describeHits(hits) || 'not found'}`);
  }
  assert.equal(scanTextForCanaries('log', `{"msg":"row","ssn":"${SSN}"}`, ['CANARY-SSN-']).length > 0, true);
});

test('sealed bytes and unrelated objects scan clean', async () => {
  const objects = [
    { key: 'part', bytes: await partWith(Array.from({ length: 50 }, () => randomBytes(40).toString('latin1'))) },
    { key: 'manifest.json', bytes: Buffer.from(JSON.stringify({ hour: '2026-12-02T17', objects: [{ key: 'a', sha256: 'f'.repeat(64) }] })) },
    { key: 'blob', bytes: randomBytes(4096) },
  ];
  assert.deepEqual(scanForCanaries(objects, ['CANARY-SSN-', 'CANARY-NAME-']), []);
});

test('a block seal (format 5) scans clean; one whose deflated body was left unencrypted is found', async () => {
  const places = new BlockPlaces('clinic', 'public', 'patients', '70ae58d44f60f26e', ['ssn']);
  const dek = { id: new Uint8Array(16).fill(7), idHex: '07'.repeat(16), key: new Uint8Array(32).fill(9), algorithm: 'XChaCha20-Poly1305' as const };
  const rows = Array.from({ length: 50 }, (_x, i) => ({ key: keyAad([{ value: BigInt(i) }]), cells: [`${SSN}-${i}`] }));
  const sealed = sealBlock(dek, positionBytes(Position.of('00000000016b3a10', 0)), 0, places, rows, 1)!;
  const partOf = async (seal: Uint8Array) => {
    const w = new AvroContainerWriter(JSON.stringify({ type: 'record', name: 'r', fields: [{ name: 'ssn', type: 'bytes' }] }));
    await w.addBlock([Buffer.concat([zigzagLength(seal.length), seal])]);
    return w.toBuffer();
  };
  assert.deepEqual(scanForCanaries([{ key: 'clinic/snapshots/x/part-00000.avro', bytes: await partOf(sealed.seal) }], ['CANARY-SSN-']), []);
  // Planted: the same header and nonce, the deflated body stored as it is instead of encrypted.
  const body = deflateRawSync(Buffer.from(rows.map((r) => r.cells[0]).join('\n')));
  const planted = Buffer.concat([sealed.seal.subarray(0, 48 + 24), body, Buffer.alloc(16)]);
  const hits = scanForCanaries([{ key: 'clinic/snapshots/x/part-00000.avro', bytes: await partOf(planted) }], ['CANARY-SSN-']);
  assert.ok(hits.some((h) => h.where.endsWith('block seal body')), describeHits(hits) || 'the planted body was not found');
});

test('a damaged container fails the scan instead of passing it', async () => {
  const part = await partWith([SSN]);
  part[part.length - 1]! ^= 0xff; // the block's sync marker
  assert.throws(() => scanForCanaries([{ key: 'damaged', bytes: part }], ['CANARY-SSN-']), { code: 'integrity' });
});
