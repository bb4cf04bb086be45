import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyManager } from '../../../src/phi/key-manager.js';
import { quietLog, testKeyring } from '../../support/codec-support.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

function manager(store: MemoryObjectStore, clock: { t: number }, rotation = { maxAgeHours: 1, maxValues: 3 }) {
  return new KeyManager({ source: 'clinic', store, keyring: testKeyring(), rotation, now: () => clock.t, log: quietLog, refreshIntervalMs: 1000 });
}

test('a DEK is stored wrapped (never raw, never the KEK) before it is used', async () => {
  const store = new MemoryObjectStore();
  const clock = { t: 1_800_000_000_000 };
  const keys = manager(store, clock);
  const dek = await keys.current();
  assert.match(dek.idHex, /^[0-9a-f]{32}$/);
  const objects = [...store.objects.entries()];
  assert.deepEqual(objects.map(([k]) => k), [`clinic/keys/${dek.idHex}.json`]);
  const text = Buffer.from(objects[0]![1].body).toString('utf8');
  const stored = JSON.parse(text);
  assert.equal(stored.keyId, dek.idHex);
  assert.equal(stored.wrapped.provider, 'file');
  const raw = Buffer.from(dek.key);
  for (const form of [raw.toString('base64'), raw.toString('hex'), raw.toString('latin1')]) assert.ok(!text.includes(form), 'no raw DEK');
  const keyringFile = JSON.parse((await import('node:fs')).readFileSync(testKeyring().path, 'utf8'));
  for (const kek of keyringFile.keks) assert.ok(!text.includes(kek.key), 'no KEK');
  assert.ok(Buffer.from(objects[0]![1].body).indexOf(raw) < 0);
});

test('DEKs rotate by count and by age; old ones still open', async () => {
  const store = new MemoryObjectStore();
  const clock = { t: 1_800_000_000_000 };
  const keys = manager(store, clock);
  const first = await keys.current();
  assert.equal(keys.sealWith(2)?.idHex, first.idHex);
  assert.equal(keys.sealWith(1)?.idHex, first.idHex);
  assert.equal(keys.sealWith(1), null, 'maxValues reached');
  const second = await keys.current();
  assert.notEqual(second.idHex, first.idHex);
  clock.t += 3_600_000;
  assert.equal(keys.sealWith(1), null, 'maxAgeHours reached');
  const third = await keys.current();
  assert.notEqual(third.idHex, second.idHex);
  assert.ok(first.idHex < second.idHex && second.idHex < third.idHex, 'ids sort by age');
  const reader = manager(store, clock);
  assert.deepEqual((await reader.get(first.idHex)).key, first.key);
  assert.deepEqual(await reader.listKeyIds(), [first.idHex, second.idHex, third.idHex]);
});

test('a running process adopts the DEK generation that `keys rotate` started elsewhere', async () => {
  const store = new MemoryObjectStore();
  const clock = { t: 1_800_000_000_000 };
  const running = manager(store, clock, { maxAgeHours: 24, maxValues: 1000 });
  const before = await running.current();
  clock.t += 10;
  const rotated = await manager(store, clock).rotate();
  assert.equal((await running.current()).idHex, before.idHex, 'not yet: checked every refreshIntervalMs');
  clock.t += 1000;
  assert.equal((await running.current()).idHex, rotated.idHex);
});

test('a missing key object is a clear not_found error naming the key and where to restore it from', async () => {
  const keys = manager(new MemoryObjectStore(), { t: 0 });
  await assert.rejects(keys.get('0'.repeat(32)), (e: Error & { code?: string; hint?: string }) => e.code === 'not_found' && /keys\//.test(e.hint ?? ''));
  await assert.rejects(keys.get('../x'), (e: Error & { code?: string }) => e.code === 'integrity');
});

test('a newer data key the process cannot unwrap is not adopted: sealing goes on with the current key', async () => {
  const store = new MemoryObjectStore();
  const clock = { t: 1_800_000_000_000 };
  const running = manager(store, clock, { maxAgeHours: 24, maxValues: 1000 });
  const before = await running.current();
  const { FileKeyring } = await import('../../../src/phi/keyring/file-keyring.js');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const foreign = FileKeyring.create(join(mkdtempSync(join(tmpdir(), 'chartlog-foreign-')), 'keyring.json'));
  clock.t += 10;
  await new KeyManager({ source: 'clinic', store, keyring: foreign, now: () => clock.t, log: quietLog }).rotate();
  clock.t += 1000;
  assert.equal((await running.current()).idHex, before.idHex);
});
