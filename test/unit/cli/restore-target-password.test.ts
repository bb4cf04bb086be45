import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { targetUrl } from '../../../src/cli/target-url.js';

const dir = mkdtempSync(join(tmpdir(), 'chartlog-target-pw-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function passwordFile(name: string, content: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

test('the password comes from the environment or a private file, never needs the command line', () => {
  assert.equal(new URL(targetUrl('postgres://restorer@db:5432/clinic', { env: 'p@ss/w:rd#1' })).password, encodeURIComponent('p@ss/w:rd#1'));
  const file = passwordFile('ok', 'from-file\n', 0o600);
  assert.equal(new URL(targetUrl('mysql://restorer@db/clinic', { file })).password, 'from-file');
  assert.equal(targetUrl('postgres://restorer@db/clinic', {}), 'postgres://restorer@db/clinic');
});

test('refused with the fix, exit 2: ambiguous, group-readable, empty, or no user', () => {
  const open = passwordFile('open', 'x\n', 0o644);
  const empty = passwordFile('empty', '\n', 0o600);
  const ok = passwordFile('ok2', 'x', 0o600);
  const refusals: [() => unknown, RegExp][] = [
    [() => targetUrl('postgres://u@db/c', { env: 'a', file: ok }), /both give a password/],
    [() => targetUrl('postgres://u:inline@db/c', { env: 'a' }), /remove the password from --target/],
    [() => targetUrl('postgres://u@db/c', { file: open }), /chmod 600/],
    [() => targetUrl('postgres://u@db/c', { file: empty }), /empty/],
    [() => targetUrl('postgres://u@db/c', { file: join(dir, 'missing') }), /cannot be read \(ENOENT\)/],
    [() => targetUrl('postgres://db/c', { env: 'a' }), /no user name/],
  ];
  for (const [call, message] of refusals) {
    assert.throws(call, (err: { code?: string; message: string; hint?: string }) => {
      assert.equal(err.code, 'usage');
      assert.match(`${err.message} ${err.hint ?? ''}`, message);
      return true;
    });
  }
});
