import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TransactionBuffer } from '../../../src/core/transaction-buffer.js';

const canary = (i: number) => Buffer.from(`CANARY-SSN-123-45-6789 message ${i} ${'x'.repeat(i % 300)}`);

async function drainAll(b: TransactionBuffer): Promise<string[]> {
  const out: string[] = [];
  for await (const m of b.drain()) out.push(Buffer.from(m).toString());
  return out;
}

describe('TransactionBuffer', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chartlog-spill-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('below the threshold keeps messages in memory and gives them back in order', async () => {
    const b = new TransactionBuffer({ spillThresholdBytes: 64 * 1024 * 1024, spillDir: dir });
    for (let i = 0; i < 1000; i++) await b.add(canary(i));
    assert.equal(b.spilled, false);
    assert.equal(b.size, 1000);
    const got = await drainAll(b);
    assert.deepStrictEqual(got, Array.from({ length: 1000 }, (_, i) => canary(i).toString()));
    assert.equal(b.size, 0);
    assert.deepStrictEqual(await readdir(dir), []);
  });

  it('past the threshold spills to an encrypted 0600 file, replays in order, then deletes it', async () => {
    const b = new TransactionBuffer({ spillThresholdBytes: 100_000, spillDir: dir });
    const n = 20_000; // about 3.5 MB: several 1 MiB frames
    for (let i = 0; i < n; i++) await b.add(canary(i));
    await b.add(new Uint8Array(0));
    await b.add(Buffer.alloc(1_500_000, 7)); // bigger than a chunk
    assert.equal(b.spilled, true);
    const files = await readdir(dir);
    assert.equal(files.length, 1);
    const onDisk = await readFile(join(dir, files[0]!));
    assert.ok(onDisk.length > 3_000_000);
    assert.ok(!onDisk.includes('CANARY-SSN'), 'no plaintext row data on disk');
    const got = await drainAll(b);
    assert.equal(got.length, n + 2);
    for (let i = 0; i < n; i++) assert.equal(got[i], canary(i).toString());
    assert.equal(got[n], '');
    assert.equal(got[n + 1]!.length, 1_500_000);
    assert.deepStrictEqual(await readdir(dir), [], 'spill file removed after replay');
  });

  it('tryAdd takes what fits the open chunk at once and refuses the rest, which add then takes; order and spilling as with add', async () => {
    const b = new TransactionBuffer({ spillThresholdBytes: 100_000, spillDir: dir });
    assert.equal(b.tryAdd(canary(0)), false, 'no chunk is open yet');
    await b.add(canary(0));
    let refused = 0;
    const n = 20_000; // several 1 MiB chunks, spilled
    for (let i = 1; i < n; i++) {
      if (b.tryAdd(canary(i))) continue;
      refused++;
      await b.add(canary(i));
    }
    assert.ok(refused >= 3 && refused < 10, `a refusal per closed chunk, not per message (${refused})`);
    assert.equal(b.size, n);
    assert.equal(b.spilled, true);
    const got = await drainAll(b);
    assert.deepStrictEqual(got, Array.from({ length: n }, (_, i) => canary(i).toString()));
    assert.deepStrictEqual(await readdir(dir), []);
  });

  it('discard removes a spill file without replaying it', async () => {
    const b = new TransactionBuffer({ spillThresholdBytes: 10, spillDir: dir });
    for (let i = 0; i < 10_000; i++) await b.add(canary(i)); // past one 1 MiB chunk: the threshold is checked per chunk
    assert.equal(b.spilled, true);
    await b.discard();
    assert.deepStrictEqual(await readdir(dir), []);
    assert.equal(b.size, 0);
  });
});
