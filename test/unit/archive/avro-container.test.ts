import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import avro from 'avsc';
import { createDeflateRaw } from 'node:zlib';
import { AvroContainerWriter, encodeLong, MAX_INFLATED_BLOCK_BYTES, openAvroContainer, readAvroContainer } from '../../../src/archive/avro-container.js';

const type = avro.Type.forSchema({
  type: 'record',
  name: 'Visit',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'note', type: ['null', 'string'] },
  ],
});
const records = Array.from({ length: 250 }, (_, i) => ({ id: i * 1_000_003, note: i % 3 === 0 ? null : `visit ${i} ✓` }));

async function container(codec: 'null' | 'deflate'): Promise<Buffer> {
  const w = new AvroContainerWriter(JSON.stringify(type.schema()), { codec, metadata: { 'chartlog.table': 'public.visits' } });
  await w.addBlock(records.slice(0, 100).map((r) => type.toBuffer(r)));
  await w.addBlock([]);
  await w.addBlock(records.slice(100).map((r) => type.toBuffer(r)));
  assert.equal(w.recordCount, records.length);
  return w.toBuffer();
}

async function readWithAvsc(buf: Buffer): Promise<unknown[]> {
  const out: unknown[] = [];
  const decoder = new avro.streams.BlockDecoder();
  await new Promise<void>((resolve, reject) => {
    decoder.on('data', (v: unknown) => out.push(v)).on('end', resolve).on('error', reject);
    Readable.from([buf]).pipe(decoder);
  });
  return out;
}

for (const codec of ['null', 'deflate'] as const) {
  test(`a ${codec} container is read back record for record by avsc, an independent reader`, async () => {
    const decoded = await readWithAvsc(await container(codec));
    assert.deepEqual(decoded.map((v) => ({ ...(v as object) })), records);
  });

  test(`our reader returns the blocks, metadata and bodies (${codec})`, async () => {
    const { header, blocks } = readAvroContainer(await container(codec));
    assert.equal(header.codec, codec);
    assert.equal(header.metadata['chartlog.table'], 'public.visits');
    assert.deepEqual(blocks.map((b) => b.count), [100, 150]);
    const out: unknown[] = [];
    for (const b of blocks) {
      let pos = 0;
      for (let i = 0; i < b.count; i++) {
        const r = type.decode(b.data, pos);
        out.push(r.value);
        pos = r.offset;
      }
      assert.equal(pos, b.data.length);
    }
    assert.deepEqual(out.map((v) => ({ ...(v as object) })), records);
  });

  test(`blocksAhead (inflated on the thread pool, one block ahead) gives the same blocks as blocks (${codec})`, async () => {
    const file = await container(codec);
    const ahead: { count: number; data: Buffer }[] = [];
    for await (const b of openAvroContainer(file).blocksAhead()) ahead.push(b);
    const sync = [...openAvroContainer(file).blocks];
    assert.deepEqual(ahead.map((b) => b.count), [100, 150]);
    assert.deepEqual(ahead.map((b) => b.data.toString('hex')), sync.map((b) => b.data.toString('hex')));
  });
}

test('damage is reported as an integrity error, never as other records', async () => {
  const good = await container('deflate');
  const truncated = good.subarray(0, good.length - 5);
  assert.throws(() => readAvroContainer(truncated, 'part.avro'), { code: 'integrity', message: /part\.avro/ });
  const badMagic = Buffer.from(good);
  badMagic[0] = 0;
  assert.throws(() => readAvroContainer(badMagic), { code: 'integrity', message: /bad magic/ });
  const badSync = Buffer.from(good);
  badSync[badSync.length - 1] = badSync[badSync.length - 1]! ^ 0xff;
  assert.throws(() => readAvroContainer(badSync), { code: 'integrity', message: /sync marker/ });
});

test('longs are zig-zag varints as the spec gives them', () => {
  assert.deepEqual([...encodeLong(0)], [0]);
  assert.deepEqual([...encodeLong(-1)], [1]);
  assert.deepEqual([...encodeLong(1)], [2]);
  assert.deepEqual([...encodeLong(64)], [0x80, 0x01]);
  assert.deepEqual([...encodeLong(-65)], [0x81, 0x01]);
});

/** Raw deflate of `bytes` zero bytes, made a MiB at a time (the test never holds the inflated form). */
async function deflatedZeros(bytes: number): Promise<Buffer> {
  const z = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  z.on('data', (b: Buffer) => out.push(b));
  const done = new Promise<void>((resolve, reject) => z.on('end', resolve).on('error', reject));
  const mib = Buffer.alloc(1024 * 1024);
  for (let left = bytes; left > 0; left -= mib.length) {
    if (!z.write(left >= mib.length ? mib : mib.subarray(0, left))) await new Promise((r) => z.once('drain', r));
  }
  z.end();
  await done;
  return Buffer.concat(out);
}

/** A container whose one block is `payload` (deflated), claiming `count` records: a crafted part. */
function craftedContainer(payload: Buffer, count = 1): Buffer {
  const sync = Buffer.alloc(16, 7);
  const header = new AvroContainerWriter(JSON.stringify(type.schema()), { sync, metadata: { 'chartlog.fingerprint': '00' } }).toBuffer();
  return Buffer.concat([header, encodeLong(count), encodeLong(payload.length), payload, sync]);
}

test('a crafted block that inflates past the bound is refused with an integrity error naming the object (decompression bomb)', async () => {
  // ≈ 260 KiB that would inflate to the bound plus one MiB.
  const bomb = craftedContainer(await deflatedZeros(MAX_INFLATED_BLOCK_BYTES + 1024 * 1024));
  assert.ok(bomb.length < 1024 * 1024, 'small on disk');
  const before = process.memoryUsage().arrayBuffers;
  assert.throws(() => [...openAvroContainer(bomb, 'parts/x/bomb.avro').blocks], {
    code: 'integrity',
    message: /parts\/x\/bomb\.avro: a block of \d+ bytes inflates past 268435456 bytes, the bound per block; refusing it/,
  });
  assert.throws(() => readAvroContainer(bomb, 'bomb.avro'), { code: 'integrity', message: /bound per block/ });
  assert.ok(process.memoryUsage().arrayBuffers - before < MAX_INFLATED_BLOCK_BYTES, 'not inflated past the bound');
  // Control: the same kind of block at the bound itself is read.
  const atBound = craftedContainer(await deflatedZeros(8 * 1024 * 1024));
  assert.equal([...openAvroContainer(atBound, 'ok.avro', { maxBlockBytes: 8 * 1024 * 1024 }).blocks][0]!.data.length, 8 * 1024 * 1024);
  assert.throws(() => [...openAvroContainer(atBound, 'small.avro', { maxBlockBytes: 8 * 1024 * 1024 - 1 }).blocks], { code: 'integrity', message: /bound per block/ });
});

test('blocksAhead refuses a block past the bound too, and reads one at the bound (the thread-pool inflate keeps the bound)', async () => {
  const drain = async (blocks: AsyncIterable<{ data: Buffer }>): Promise<number[]> => {
    const sizes: number[] = [];
    for await (const b of blocks) sizes.push(b.data.length);
    return sizes;
  };
  const atBound = craftedContainer(await deflatedZeros(8 * 1024 * 1024));
  assert.deepEqual(await drain(openAvroContainer(atBound, 'ok.avro', { maxBlockBytes: 8 * 1024 * 1024 }).blocksAhead()), [8 * 1024 * 1024]);
  await assert.rejects(drain(openAvroContainer(atBound, 'parts/x/small.avro', { maxBlockBytes: 8 * 1024 * 1024 - 1 }).blocksAhead()), {
    code: 'integrity',
    message: /parts\/x\/small\.avro: a block of \d+ bytes inflates past 8388607 bytes, the bound per block; refusing it/,
  });
  await assert.rejects(drain(openAvroContainer(craftedContainer(Buffer.from('not deflate at all')), 'bad.avro').blocksAhead()), { code: 'integrity', message: /bad\.avro: a block does not decompress/ });
});
