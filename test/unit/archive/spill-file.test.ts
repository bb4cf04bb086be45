import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { readSpill, SpillKey, SpillWriter } from '../../../src/archive/spill-file.js';

const CANARY = 'CANARY-SSN-123-45-6789';

async function readAll(path: string, key: SpillKey): Promise<string[]> {
  const out: string[] = [];
  for await (const records of readSpill(path, key)) for (const r of records) out.push(r.toString('utf8'));
  return out;
}

test('spill files give back every record in order, across chunks; mode 0600; no plaintext on disk', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-spill-unit-'));
  try {
    const key = new SpillKey();
    const path = join(dir, 'a.spill');
    const w = new SpillWriter(path, key);
    const records = Array.from({ length: 30_000 }, (_, i) => `${CANARY}-${i}-${'x'.repeat(i % 97)}`);
    for (const r of records) await w.add(Buffer.from(r));
    await w.close();
    assert.ok(w.bytes > 2 * 1024 * 1024, 'several chunks');
    assert.deepEqual(await readAll(path, key), records);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(readFileSync(path).includes(Buffer.from('CANARY-SSN-')), false, 'no canary in the file');
    // Negative control: the same search finds the canary in a file written in clear.
    const plain = join(dir, 'plain');
    writeFileSync(plain, records.join('\n'));
    assert.equal(readFileSync(plain).includes(Buffer.from('CANARY-SSN-')), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a changed, cut or foreign-key spill file is refused, never read as other records', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-spill-unit-'));
  try {
    const key = new SpillKey();
    const path = join(dir, 'a.spill');
    const w = new SpillWriter(path, key);
    for (let i = 0; i < 1000; i++) await w.add(Buffer.from(`record ${i}`));
    await w.close();
    const bytes = readFileSync(path);
    const refused = (err: unknown) => err instanceof ChartlogError && /was changed or cut/.test(err.message);
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 5]! ^= 1;
    writeFileSync(path, flipped);
    await assert.rejects(readAll(path, key), refused);
    writeFileSync(path, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(readAll(path, key), refused);
    writeFileSync(path, bytes);
    await assert.rejects(readAll(path, new SpillKey()), refused);
    assert.equal((await readAll(path, key)).length, 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a smaller chunk size (a sort run) gives back the same records, a reader holding one small chunk at a time', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-spill-unit-'));
  try {
    const key = new SpillKey();
    const path = join(dir, 'run.spill');
    const w = new SpillWriter(path, key, 64 * 1024);
    const records = Array.from({ length: 5_000 }, (_, i) => `${CANARY}-${i}-${'y'.repeat(i % 89)}`);
    for (const r of records) await w.add(Buffer.from(r));
    await w.close();
    let chunks = 0;
    let largest = 0;
    const back: string[] = [];
    for await (const batch of readSpill(path, key)) {
      chunks++;
      largest = Math.max(largest, batch.reduce((n, r) => n + r.length + 4, 0));
      for (const r of batch) back.push(r.toString('utf8'));
    }
    assert.deepEqual(back, records);
    assert.ok(chunks >= 5, `several chunks (${chunks})`);
    assert.ok(largest < 64 * 1024 + 200, `each chunk about 64 KiB (${largest})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
