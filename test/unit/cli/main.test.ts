import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

// The CLI runs as a real process: exit codes and what reaches stdout/stderr are the contract.
const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'chartlog.js');

function chartlog(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, CHARTLOG_SOURCE_CLINIC_PASSWORD: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const config = (dir: string, type: string) => {
  const file = join(dir, `${type}.yaml`);
  writeFileSync(
    file,
    `sources:\n  - name: clinic\n    type: ${type}\n    url: postgres://cdc:topsecret@127.0.0.1:5499/app\nstorage:\n  url: file://${dir}/backup\nphi:\n  keyring: file:///etc/chartlog/keyring.json\n`,
  );
  return file;
};

test('--help lists the commands and exits 0', () => {
  const r = chartlog(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: chartlog/);
  assert.match(r.stdout, /config/);
});

test('--version prints the package version', () => {
  const r = chartlog(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

test('config check prints the resolved configuration with secrets masked', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-cli-'));
  const r = chartlog(['config', 'check', '--config', config(dir, 'postgres')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /flushIntervalMs: 1000/);
  assert.ok(!r.stdout.includes('topsecret'));
});

test('config check exits 2 on a wrong field, names it, and writes nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-cli-'));
  const file = config(dir, 'postgress');
  const r = chartlog(['config', 'check', '--config', file]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /sources\[0\]\.type: expected "postgres" \| "mysql", got "postgress"/);
  assert.ok(!r.stderr.includes('topsecret'));
  assert.deepEqual(readdirSync(dir), ['postgress.yaml']);
});

test('unknown commands and missing options exit 2', () => {
  assert.equal(chartlog(['restore-everything']).code, 2);
  const r = chartlog(['config', 'check']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--config/);
});
