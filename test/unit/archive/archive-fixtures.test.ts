import assert from 'node:assert/strict';
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runChartlog } from '../../support/chartlog-process.js';

/**
 * Archives written by earlier chartlog versions, each a base snapshot and a stream of changes in
 * a flush part (see each one's make-fixture.ts). Whatever the writer does now, this code must
 * still restore them exactly:
 * - test/fixtures/archive-v3/: before issue 15's archive-size changes (sealed format 3 with
 *   9-byte references, segments and snapshots deflated at level 6, flush-part sections at level 1);
 * - test/fixtures/archive-v4/: before the block seal (sealed format 4, row seals everywhere);
 * - test/fixtures/archive-v5/: the block seal as first released (its base snapshot in sealed
 *   format 5, whose block ordinal was an encoder counter no reader checked: docs/formats.md);
 *   `--keep-sealed` re-seals its base rows per row, in format 4.
 */
const FIXTURES = [
  { name: 'archive-v3', version: 0x03 },
  { name: 'archive-v4', version: 0x04 },
  { name: 'archive-v5', version: 0x04 },
] as const;
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-fixture-'));
after(() => rmSync(work, { recursive: true, force: true }));

for (const { name: fixtureName, version } of FIXTURES) {
  const fixture = join(import.meta.dirname, '..', '..', 'fixtures', fixtureName);

  function copyFixture(name: string): string {
    const dir = join(work, `${fixtureName}-${name}`);
    cpSync(join(fixture, 'backup'), join(dir, 'backup'), { recursive: true });
    cpSync(join(fixture, 'keys'), join(dir, 'keys'), { recursive: true });
    chmodSync(join(dir, 'keys'), 0o700);
    chmodSync(join(dir, 'keys', 'keyring.json'), 0o600);
    const config = join(dir, 'chartlog.yaml');
    writeFileSync(
      config,
      [
        'sources:',
        '  - { name: clinic, type: postgres, url: "postgres://nobody@127.0.0.1:1/none", tables: [public.patients] }',
        'bus: { type: embedded }',
        `storage: { url: "file://${join(dir, 'backup')}" }`,
        'phi:',
        `  keyring: "file://${join(dir, 'keys', 'keyring.json')}"`,
        '  columns: { public.patients: [full_name, ssn, birth_date, address] }',
        '',
      ].join('\n'),
    );
    return config;
  }

  test(`${fixtureName}: an archive written by that version restores exactly: the pinned output, equal to the source`, async () => {
    const config = copyFixture('opened');
    const out = join(work, `${fixtureName}-opened-out`);
    const r = await runChartlog(['restore', '--config', config, '--source', 'clinic', '--to', 'latest', '--out', out, '--format', 'jsonl']);
    assert.equal(r.code, 0, r.stderr);
    const got = readFileSync(join(out, 'public.patients.jsonl'), 'utf8');
    assert.equal(got, readFileSync(join(fixture, 'expected', 'public.patients.jsonl'), 'utf8'));
    assert.equal(readFileSync(join(out, 'public.patients.schema.json'), 'utf8'), readFileSync(join(fixture, 'expected', 'public.patients.schema.json'), 'utf8'));
    // And the pinned output is the source's final state (as text), value by value.
    const source = JSON.parse(readFileSync(join(fixture, 'source-rows.json'), 'utf8')) as Record<string, string | null>[];
    const rows = got.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(rows.length, source.length);
    const byId = new Map(rows.map((row) => [String(row.id), row]));
    for (const s of source) {
      const row = byId.get(s.id!);
      assert.ok(row, `row ${s.id} restored`);
      for (const [k, v] of Object.entries(s)) assert.equal(row[k] === null ? null : String(row[k]), v, `row ${s.id} column ${k}`);
    }
  });

  test(`${fixtureName}: the archive verifies, and passes through --keep-sealed as format-${version} row seals and 9-byte references`, async () => {
    const config = copyFixture('sealed');
    const v = await runChartlog(['verify', '--config', config, '--json']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    const out = join(work, `${fixtureName}-sealed-out`);
    const r = await runChartlog(['restore', '--config', config, '--source', 'clinic', '--to', 'latest', '--out', out, '--format', 'jsonl', '--keep-sealed']);
    assert.equal(r.code, 0, r.stderr);
    const rows = readFileSync(join(out, 'public.patients.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(rows.length, 41);
    const text = JSON.stringify(rows);
    for (const canary of ['Synthetic Patient', 'Canary', 'Testville', '900-0']) assert.ok(!text.includes(canary), `no ${canary} in a --keep-sealed restore`);
    // Row 1 (no NULL PHI): the row seal in its first sealed column, references in the three others.
    const one = rows.find((row) => row.id === '1')!;
    assert.equal(Buffer.from(one.full_name as string, 'base64')[0], version);
    for (const c of ['ssn', 'birth_date', 'address']) {
      const ref = Buffer.from(one[c] as string, 'base64');
      assert.deepEqual([ref.length, ref[0]], [9, 0x13], `${c} holds a 9-byte reference`);
    }
  });
}
