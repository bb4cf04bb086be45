import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { classificationJson, classifyTable, renderClassificationYaml, yamlName } from '../../../src/phi/phi-classifier.js';

const col = (name: string, kind: 'string' | 'int' | 'date' = 'string') => ({ name, sourceType: kind === 'string' ? 'text' : kind, type: { kind }, nullable: true });

const people: TableSchema = {
  schema: 'public',
  table: 'people',
  primaryKey: ['mrn'],
  columns: [col('mrn'), col('full_name'), col('x1'), col('x2'), col('dob', 'date'), col('visits', 'int'), col('ward'), col('yes')],
};
// Synthetic rows: invented names, the fictional 555-01xx range, example.org.
const rows = Array.from({ length: 10 }, (_, i) => ({
  mrn: `MRN-${100000 + i}`,
  full_name: `Jane Roe${i}`,
  x1: `${200 + i}-4${i}-67${10 + i}`,
  x2: i < 3 ? `(555) 010-01${10 + i}` : 'n/a',
  dob: `1980-01-${String(10 + i)}`,
  visits: String(i),
  ward: `W${i}`,
  yes: null,
}));

test('a table is classified by names and sampled values; a key that looks like PHI is flagged', () => {
  const f = classifyTable(people, rows);
  const by = Object.fromEntries(f.columns.map((c) => [c.column, c]));
  assert.equal(f.sampledRows, 10);
  assert.equal(by.mrn!.proposal, 'key-flagged');
  assert.deepEqual(by.mrn!.byName, ['mrn']);
  assert.equal(by.full_name!.proposal, 'phi');
  assert.deepEqual(by.x1!.byValue, ['national-id']);
  assert.deepEqual(by.x1!.counts, { 'national-id': 10 });
  assert.deepEqual(by.x2!.byValue, ['phone'], '3 of 10 phone-shaped: above a fifth');
  assert.equal(by.dob!.proposal, 'phi', 'a date column is judged by its name');
  assert.equal(by.dob!.sampled, 0, 'date values are not searched');
  assert.equal(by.visits!.proposal, 'public');
  assert.equal(by.ward!.proposal, 'public');
  assert.equal(by.yes!.sampled, 0, 'nulls are not sampled values');
});

test('the YAML parses into phi.columns / phi.publicColumns, counts per detector, and holds no sampled value', () => {
  const f = classifyTable(people, rows);
  const text = renderClassificationYaml([f], { sources: ['clinic (postgres)'], sample: 10 });
  const doc = parse(text) as { columns: Record<string, string[]>; publicColumns: Record<string, string[]> };
  assert.deepEqual(doc.columns['public.people'], ['full_name', 'x1', 'x2', 'dob']);
  assert.deepEqual(doc.publicColumns['public.people'], ['visits', 'ward', 'yes'], 'a reserved word is quoted, so it stays a string');
  assert.match(text, /"yes"/);
  assert.match(text, /# Columns per detector: person-name 1, national-id 1, phone 1, email 0, birth-date 1, address 0, mrn 1, free-text 0\./);
  assert.match(text, /- x1 {2}# national-id \(values 10\/10\)/);
  assert.match(text, /# FLAGGED: key column that looks like PHI: public\.people\.mrn/);
  for (const r of rows) for (const v of Object.values(r)) if (v !== null && v.length > 2) assert.ok(!text.includes(v), `value ${JSON.stringify(v)} printed`);
  // Negative control for the loop above: it does catch a value that is printed.
  assert.ok(`${text}Jane Roe3`.includes(rows[3]!.full_name));
  const json = JSON.stringify(classificationJson([f], { sources: ['clinic (postgres)'], sample: 10 }));
  for (const r of rows) for (const v of Object.values(r)) if (v !== null && v.length > 2) assert.ok(!json.includes(v), `value ${JSON.stringify(v)} in JSON`);
});

test('YAML names: plain when safe, quoted otherwise', () => {
  assert.equal(yamlName('public.patients'), 'public.patients');
  assert.equal(yamlName('mother maiden'), '"mother maiden"');
  assert.equal(yamlName('No'), '"No"');
  assert.equal(yamlName('1st'), '"1st"');
});
