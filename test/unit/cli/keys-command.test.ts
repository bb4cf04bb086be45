import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { registerKeysCommand } from '../../../src/cli/keys-command.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

process.env.CHARTLOG_LOG_LEVEL = 'silent';

function setup(keyringInsideRoot = false) {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-keys-cmd-'));
  const root = join(dir, 'backups');
  mkdirSync(root);
  const keyring = keyringInsideRoot ? join(root, 'keyring.json') : join(dir, 'secret', 'keyring.json');
  mkdirSync(join(dir, 'secret'));
  const config = join(dir, 'chartlog.yaml');
  writeFileSync(
    config,
    [
      'sources:',
      '  - { name: clinic, type: postgres, url: "postgres://cdc@127.0.0.1:5499/app" }',
      '  - { name: billing, type: mysql, url: "mysql://cdc@127.0.0.1:3407/app" }',
      'storage: { url: "file://' + root + '" }',
      'phi:',
      '  keyring: "file://' + keyring + '"',
      '  columns: { public.patients: [ssn] }',
    ].join('\n'),
  );
  const store = new MemoryObjectStore();
  const out: string[] = [];
  const run = async (...args: string[]) => {
    const program = new Command('chartlog').exitOverride();
    registerKeysCommand(program, { openObjectStore: () => store, print: (l) => out.push(l) });
    for (const c of program.commands) c.exitOverride().commands.forEach((s) => s.exitOverride());
    await program.parseAsync(args, { from: 'user' });
  };
  return { config, keyring, store, out, run };
}

const keyIds = (store: MemoryObjectStore, source: string) => [...store.objects.keys()].filter((k) => k.startsWith(`${source}/keys/`)).sort();

test('keys init creates a 0600 keyring and a first data key per source, and is safe to run again', async () => {
  const s = setup();
  await s.run('keys', 'init', '--config', s.config);
  assert.equal(statSync(s.keyring).mode & 0o777, 0o600);
  assert.equal(keyIds(s.store, 'clinic').length, 1);
  assert.equal(keyIds(s.store, 'billing').length, 1);
  const kek = JSON.parse(readFileSync(s.keyring, 'utf8')).keks[0].key as string;
  assert.ok(s.out.every((l) => !l.includes(kek)), 'no key material printed');
  assert.ok(s.out.some((l) => /created .*keyring\.json \(mode 0600/.test(l)));
  const before = readFileSync(s.keyring, 'utf8');
  await s.run('keys', 'init', '--config', s.config);
  assert.equal(readFileSync(s.keyring, 'utf8'), before, 'existing keyring kept');
  assert.equal(keyIds(s.store, 'clinic').length, 1, 'no second first key');
});

test('keys rotate starts a new data-key generation; --kek adds a KEK version and old keys still unwrap', async () => {
  const s = setup();
  await s.run('keys', 'init', '--config', s.config);
  await s.run('keys', 'rotate', '--config', s.config, '--source', 'clinic');
  assert.equal(keyIds(s.store, 'clinic').length, 2);
  assert.equal(keyIds(s.store, 'billing').length, 1);
  await s.run('keys', 'rotate', '--config', s.config, '--kek');
  assert.deepEqual(JSON.parse(readFileSync(s.keyring, 'utf8')).keks.map((k: { id: string }) => k.id), ['kek-0001', 'kek-0002']);
  const newest = JSON.parse(Buffer.from(s.store.objects.get(keyIds(s.store, 'billing').at(-1)!)!.body).toString());
  assert.equal(newest.wrapped.kekId, 'kek-0002');
  const { KeyManager } = await import('../../../src/phi/key-manager.js');
  const { FileKeyring } = await import('../../../src/phi/keyring/file-keyring.js');
  const m = new KeyManager({ source: 'clinic', store: s.store, keyring: FileKeyring.open(s.keyring) });
  for (const id of await m.listKeyIds()) assert.equal((await m.get(id)).key.length, 32);
});

test('bad usage and unsafe keyrings are refused with the fix', async () => {
  const s = setup();
  await s.run('keys', 'init', '--config', s.config);
  await assert.rejects(s.run('keys', 'rotate', '--config', s.config, '--source', 'nope'), (e: ChartlogError) => e instanceof ChartlogError && e.exitCode === 2);
  (await import('node:fs')).chmodSync(s.keyring, 0o644);
  await assert.rejects(s.run('keys', 'rotate', '--config', s.config), (e: ChartlogError) => e.code === 'config' && e.hint === `run: chmod 600 ${s.keyring}`);
  const inside = setup(true);
  await assert.rejects(inside.run('keys', 'init', '--config', inside.config), (e: ChartlogError) => e.exitCode === 2 && /keyring/.test(e.message));
  assert.equal(inside.store.objects.size, 0, 'nothing written');
});
