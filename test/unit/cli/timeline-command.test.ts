import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

// `chartlog timeline` as a real process over a file:// store holding only replica state objects.
const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'chartlog.js');

function chartlog(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('timeline lists replicas from state/replicas/, marks a stale one, --json too; --stale-after is checked (exit 2)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-timeline-'));
  const file = join(dir, 'chartlog.yaml');
  writeFileSync(file, `sources:\n  - name: clinic\n    type: postgres\n    url: postgres://cdc@127.0.0.1:5499/app\nstorage:\n  url: file://${dir}/backup\nphi:\n  keyring: file:///etc/chartlog/keyring.json\n`);
  mkdirSync(join(dir, 'backup', 'clinic', 'state', 'replicas'), { recursive: true });
  const state = (name: string, agoMs: number) => ({
    version: 1, name, source: 'clinic', target: { kind: 'mysql', host: 'reports', port: 3306, database: 'clinic' }, phi: 'sealed', status: 'running',
    position: '00000016a1000040.ffffffff', commitTime: '2026-11-24T03:40:02.000120Z', lagSeconds: 1.1, lagTransactions: 9, intervalSeconds: 60,
    updatedAt: new Date(Date.now() - agoMs).toISOString(),
  });
  writeFileSync(join(dir, 'backup', 'clinic', 'state', 'replicas', 'old-copy.json'), JSON.stringify(state('old-copy', 3 * 3_600_000)));
  writeFileSync(join(dir, 'backup', 'clinic', 'state', 'replicas', 'live.json'), JSON.stringify(state('live', 10_000)));

  const text = chartlog(['timeline', '--config', file]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^ {2}replicas \(2\)$/m);
  assert.match(text.stdout, /^ {4}live {6}running at 00000016a1000040\.ffffffff .* lag 1\.1 s, 9 tx {2}phi sealed {2}mysql reports:3306\/clinic/m);
  assert.match(text.stdout, /^ {4}old-copy {2}STALE /m);
  assert.match(text.stdout, /not updated for 3 h/);

  const json = chartlog(['timeline', '--config', file, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const replicas = (JSON.parse(json.stdout) as { replicas: { name: string; stale: boolean }[] }[])[0]!.replicas;
  assert.deepEqual(replicas.map((r) => [r.name, r.stale]), [['live', false], ['old-copy', true]]);
  // A longer limit: nothing stale.
  const lenient = chartlog(['timeline', '--config', file, '--json', '--stale-after', '600']);
  assert.deepEqual((JSON.parse(lenient.stdout) as { replicas: { stale: boolean }[] }[])[0]!.replicas.map((r) => r.stale), [false, false]);

  const bad = chartlog(['timeline', '--config', file, '--stale-after', '0']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--stale-after 0: expected a positive number of minutes/);
});
