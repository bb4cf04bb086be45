import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { runChartlog, type ChartlogResult } from '../support/chartlog-process.js';
import { DEMO_CANARIES, DEMO_CLINIC_SQL, DEMO_PHI_COLUMNS } from '../support/demo-clinic.js';
import { describeHits, scanTextForCanaries } from '../support/leak-scan.js';
import { mariadbEngine, postgresEngine, type Engine } from '../support/run-harness.js';

/**
 * Issue 13, item 2, `chartlog phi classify`, against real servers: on the demo clinic
 * (scripts/demo.ts's schema and data) it proposes full_name, ssn, birth_date and address as PHI,
 * with counts per detector, and prints none of the sampled values. A table whose column names
 * say nothing but whose values are SSN- and e-mail-shaped is proposed as PHI by its values
 * (PostgreSQL and MariaDB), and a key column that looks like PHI is flagged, not proposed.
 */

function configFor(engine: Engine, tables: string[], work: string): string {
  const file = join(work, 'chartlog.yaml');
  writeFileSync(
    file,
    [
      'sources:',
      `  - { name: clinic, type: ${engine.type}, url: "${engine.url}", tables: [${tables.join(', ')}] }`,
      `storage: { url: "file://${work}/backup" }`,
      `phi: { keyring: "file://${work}/keys/keyring.json" }`,
      'log: { level: warn, format: json }',
    ].join('\n'),
  );
  return file;
}

function assertNothingPrinted(r: ChartlogResult, values: readonly string[]): void {
  const hits = [...scanTextForCanaries('stdout', r.stdout, values), ...scanTextForCanaries('stderr', r.stderr, values)];
  assert.deepEqual(hits, [], `sampled values in the output:\n${describeHits(hits)}`);
}

interface JsonProposal {
  columns: Record<string, string[]>;
  publicColumns: Record<string, string[]>;
  flaggedKeys: { table: string; column: string }[];
  detectors: Record<string, number>;
  tables: { table: string; sampledRows: number; columns: { column: string; sampled: number; counts: Record<string, number> }[] }[];
}

test('postgres: on the demo clinic, phi classify proposes full_name, ssn, birth_date, address as PHI and prints no value', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  const work = mkdtempSync(join(tmpdir(), 'chartlog-classify-'));
  try {
    await engine.exec(DEMO_CLINIC_SQL);
    const config = configFor(engine, ['public.patients', 'public.encounters', 'public.lab_results'], work);
    const r = await runChartlog(['phi', 'classify', '--config', config, '--sample', '50']);
    assert.equal(r.code, 0, r.stderr);
    // Not the canaries only: no sampled value of any column may appear.
    assertNothingPrinted(r, [...DEMO_CANARIES, 'follow-up', 'HbA1c', '1950-01-', '4.1000']);
    const proposal = parse(r.stdout) as { columns: Record<string, string[] | null>; publicColumns: Record<string, string[]> };
    assert.deepEqual([...(proposal.columns['public.patients'] ?? [])].sort(), [...DEMO_PHI_COLUMNS].sort());
    assert.deepEqual(proposal.publicColumns['public.patients'], ['id', 'created_at']);
    assert.deepEqual(proposal.columns['public.lab_results'], [], 'no PHI in lab results');
    assert.deepEqual(proposal.publicColumns['public.lab_results'], ['id', 'encounter_id', 'test', 'value', 'unit', 'taken_at']);
    assert.deepEqual(proposal.columns['public.encounters'], ['reason'], 'free text is proposed as PHI');
    assert.match(r.stdout, /^# Columns per detector: person-name 1, national-id 1, phone 0, email 0, birth-date 1, address 1, mrn 0, free-text 1\.$/m);
    assert.match(r.stdout, /- address {2}# address \(name, values 50\/50\)/, 'the demo address values are street-shaped: counted, not shown');
    assert.match(r.stdout, /3 tables, 150 sampled rows \(at most 50 per table\)/);

    const j = await runChartlog(['phi', 'classify', '--config', config, '--sample', '50', '--json']);
    assert.equal(j.code, 0, j.stderr);
    assertNothingPrinted(j, [...DEMO_CANARIES, 'follow-up', 'HbA1c', '1950-01-']);
    const json = JSON.parse(j.stdout) as JsonProposal;
    assert.deepEqual([...json.columns['public.patients']!].sort(), [...DEMO_PHI_COLUMNS].sort());
    const fullName = json.tables.find((t) => t.table === 'public.patients')!.columns.find((c) => c.column === 'full_name')!;
    assert.equal(fullName.sampled, 50, 'the values were read (and still not printed)');

    const bad = await runChartlog(['phi', 'classify', '--config', config, '--sample', 'lots']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--sample: expected a whole number/);
  } finally {
    await engine.close();
    rmSync(work, { recursive: true, force: true });
  }
});

for (const [kind, make] of [['postgres', postgresEngine], ['mariadb', mariadbEngine]] as const) {
  test(`${kind}: phi classify finds PHI by values under neutral names, and flags a key column that looks like PHI`, { timeout: 120_000 }, async () => {
    const engine = await make();
    const work = mkdtempSync(join(tmpdir(), 'chartlog-classify-'));
    try {
      await engine.exec(`CREATE TABLE intake (ref VARCHAR(20) PRIMARY KEY, field_a VARCHAR(40), field_b VARCHAR(80), field_c VARCHAR(40), qty INT)`);
      await engine.exec(`CREATE TABLE registry (mrn VARCHAR(20) PRIMARY KEY, ward VARCHAR(20))`);
      const ssns: string[] = [];
      const mails: string[] = [];
      for (let i = 0; i < 30; i++) {
        const ssn = `${String(100 + i)}-${String(10 + i)}-${String(1000 + i)}`;
        const mail = `canary.patient${i}@example.org`;
        ssns.push(ssn);
        mails.push(mail);
        await engine.exec(`INSERT INTO intake VALUES ('R${i}', '${ssn}', '${mail}', 'code-${i}', ${i})`);
        await engine.exec(`INSERT INTO registry VALUES ('MRN-${String(100000 + i)}', 'W${i % 3}')`);
      }
      const q = engine.qualified;
      const config = configFor(engine, [q('intake'), q('registry')], work);
      const r = await runChartlog(['phi', 'classify', '--config', config, '--sample', '20']);
      assert.equal(r.code, 0, r.stderr);
      assertNothingPrinted(r, [...ssns, ...mails, 'canary.patient', 'MRN-1000', 'code-']);
      const proposal = parse(r.stdout) as { columns: Record<string, string[]>; publicColumns: Record<string, string[]> };
      assert.deepEqual(proposal.columns[q('intake')], ['field_a', 'field_b']);
      assert.deepEqual(proposal.publicColumns[q('intake')], ['ref', 'field_c', 'qty']);
      assert.match(r.stdout, /- field_a {2}# national-id \(values 20\/20\)/);
      assert.match(r.stdout, /- field_b {2}# email \(values 20\/20\)/);
      // The key mrn looks like PHI: flagged in a comment, in neither list.
      assert.deepEqual(proposal.columns[q('registry')], []);
      assert.deepEqual(proposal.publicColumns[q('registry')], ['ward']);
      assert.match(r.stdout, new RegExp(`# FLAGGED: key column that looks like PHI: ${q('registry').replace('.', '\\.')}\\.mrn`));
      assert.match(r.stdout, /# - mrn {2}# FLAGGED key column: mrn \(name, values 20\/20\)/);
    } finally {
      await engine.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
}
