import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import type { ChartlogError } from '../../../src/core/errors.js';
import { FileKeyring } from '../../../src/phi/keyring/file-keyring.js';
import { openKeyring } from '../../../src/phi/keyring/open-keyring.js';

const dir = (): string => mkdtempSync(join(tmpdir(), 'chartlog-fk-'));
const ctx = { source: 'clinic', keyId: 'ab'.repeat(16) };

function noKeyMaterial(path: string) {
  const keks: string[] = JSON.parse(readFileSync(path, 'utf8')).keks.map((k: { key: string }) => k.key);
  return (e: ChartlogError): boolean => {
    for (const k of keks) assert.ok(!e.message.includes(k) && !(e.hint ?? '').includes(k) && !(e.stack ?? '').includes(k));
    return true;
  };
}

test('keys init creates a 0600 keyring and refuses to overwrite it', () => {
  const path = join(dir(), 'keyring.json');
  const kr = FileKeyring.create(path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(kr.kekIds(), { ids: ['kek-0001'], current: 'kek-0001' });
  assert.throws(() => FileKeyring.create(path), (e: ChartlogError) => e.code === 'already_exists' && /keys rotate --kek/.test(e.hint ?? ''));
});

test('a group- or world-readable keyring is refused with the chmod that fixes it', () => {
  const path = join(dir(), 'keyring.json');
  FileKeyring.create(path);
  for (const mode of [0o640, 0o604, 0o644]) {
    chmodSync(path, mode);
    assert.throws(() => openKeyring(pathToFileURL(path).href), (e: ChartlogError) => {
      assert.equal(e.code, 'config');
      assert.match(e.message, new RegExp(mode.toString(8)));
      assert.equal(e.hint, `run: chmod 600 ${path}`);
      return noKeyMaterial(path)(e);
    });
  }
  chmodSync(path, 0o600);
  assert.ok(openKeyring(pathToFileURL(path).href));
});

test('a keyring inside the backup root is refused', () => {
  const root = dir();
  assert.throws(() => FileKeyring.create(join(root, 'keys', 'keyring.json'), { backupRoot: root }), (e: ChartlogError) => e.code === 'config' && /inside the backup root/.test(e.message));
  const outside = join(dir(), 'keyring.json');
  FileKeyring.create(outside, { backupRoot: root });
  assert.throws(() => openKeyring(pathToFileURL(outside).href, { backupRoot: join(outside, '..') }), (e: ChartlogError) => e.code === 'config');
  // A symlink does not hide that the keyring lives inside the root.
  const link = join(dir(), 'link');
  symlinkSync(root, link);
  assert.throws(() => FileKeyring.create(join(link, 'keyring.json'), { backupRoot: root }), (e: ChartlogError) => e.code === 'config');
});

test('wrap/unwrap round-trips; context, tampering and unknown KEKs fail without key material in the error', async () => {
  const path = join(dir(), 'keyring.json');
  const kr = FileKeyring.create(path);
  const dek = new Uint8Array(32).fill(7);
  const wrapped = await kr.wrapKey(dek, ctx);
  assert.ok(!wrapped.ciphertext.includes(Buffer.from(dek).toString('base64')));
  assert.deepEqual(await kr.unwrapKey(wrapped, ctx), dek);
  await assert.rejects(kr.unwrapKey(wrapped, { ...ctx, source: 'other' }), (e: ChartlogError) => e.code === 'integrity' && noKeyMaterial(path)(e));
  const bad = Buffer.from(wrapped.ciphertext, 'base64');
  bad[20]! ^= 1;
  await assert.rejects(kr.unwrapKey({ ...wrapped, ciphertext: bad.toString('base64') }, ctx), (e: ChartlogError) => e.code === 'integrity');
  await assert.rejects(kr.unwrapKey({ ...wrapped, kekId: 'kek-0099' }, ctx), (e: ChartlogError) => e.code === 'auth' && /kek-0099/.test(e.message));
});

test('a new KEK version wraps new keys; old versions stay to unwrap old ones; the file stays 0600', async () => {
  const path = join(dir(), 'keyring.json');
  const v1 = FileKeyring.create(path);
  const dek = new Uint8Array(32).fill(9);
  const old = await v1.wrapKey(dek, ctx);
  const v2 = v1.addKek();
  assert.deepEqual(v2.kekIds(), { ids: ['kek-0001', 'kek-0002'], current: 'kek-0002' });
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const reopened = FileKeyring.open(path);
  assert.deepEqual(await reopened.unwrapKey(old, ctx), dek);
  const fresh = await reopened.wrapKey(dek, ctx);
  assert.equal(fresh.kekId, 'kek-0002');
  // A process that read the file before the new KEK was added still unwraps keys it wrapped.
  assert.deepEqual(await v1.unwrapKey(fresh, ctx), dek);
});
