import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChartlogError } from '../../../src/core/errors.js';
import type { TableSchema } from '../../../src/core/table-schema.js';
import { checkPhiNames, closestName, editDistance, NameIndex, sourcesToConsult, type PhiNameCheck, type PhiNamesConfig } from '../../../src/phi/phi-names.js';

const table = (qualified: string, columns: string[]): TableSchema => {
  const [schema, name] = qualified.split('.') as [string, string];
  return { schema, table: name, primaryKey: [], columns: columns.map((c) => ({ name: c, sourceType: 'text', type: { kind: 'string' }, nullable: true })) };
};

const patients = table('public.patients', ['id', 'full_name', 'ssn', 'note']);
const visits = table('public.visits', ['id', 'patient_id', 'reason']);
const phi = (p: Partial<PhiNamesConfig>): PhiNamesConfig => ({ columns: {}, strict: [], publicColumns: {}, ...p });
const clinic = { name: 'clinic' };

/** The check's error, asserted to be a configuration error (exit 2). */
function refusal(check: PhiNameCheck): ChartlogError {
  let caught: unknown;
  try {
    checkPhiNames(check);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, 'the check refused');
  const e = caught as ChartlogError;
  assert.equal(e.code, 'config');
  assert.equal(e.exitCode, 2);
  assert.equal(e.retriable, false);
  return e;
}

// --- the rule ---------------------------------------------------------------------------------

test('the rule: an exact name wins; else the single case-insensitive one; several are ambiguous; else none', () => {
  const idx = new NameIndex(['ssn', 'Note', 'note', 'full_name']);
  assert.deepEqual(idx.match('ssn'), { kind: 'exact', name: 'ssn' });
  assert.deepEqual(idx.match('SSN'), { kind: 'folded', name: 'ssn' });
  assert.deepEqual(idx.match('Full_Name'), { kind: 'folded', name: 'full_name' });
  assert.deepEqual(idx.match('note'), { kind: 'exact', name: 'note' }, 'an exact match beats case-insensitive candidates');
  assert.deepEqual(idx.match('NOTE'), { kind: 'ambiguous', candidates: ['Note', 'note'] });
  assert.deepEqual(idx.match('snn'), { kind: 'none' });
  assert.deepEqual(idx.caseVariantsOf('note'), ['Note']);
});

test('the rule applies to "schema.table" names as a whole', () => {
  const idx = new NameIndex(['public.patients', 'Clinic.Visits']);
  assert.deepEqual(idx.match('public.Patients'), { kind: 'folded', name: 'public.patients' });
  assert.deepEqual(idx.match('clinic.visits'), { kind: 'folded', name: 'Clinic.Visits' });
  assert.deepEqual(idx.match('public.patient'), { kind: 'none' });
});

test('edit distance and the closest name (case ignored; nothing offered when nothing is close)', () => {
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('snn', 'ssn'), 1);
  assert.equal(closestName('SNN', ['id', 'full_name', 'ssn', 'note']), 'ssn');
  assert.equal(closestName('public.patinets', ['public.visits', 'public.patients']), 'public.patients');
  assert.equal(closestName('Fullname', ['id', 'full_name']), 'full_name');
  assert.equal(closestName('mother_maiden_name', ['id', 'ssn']), null);
  assert.equal(closestName('x', []), null);
});

// --- the start-time check -----------------------------------------------------------------------

test('names that match exactly or by case pass the check; publicColumns and strict included', () => {
  checkPhiNames({
    phi: phi({ columns: { 'public.patients': ['full_name', 'SSN'] }, strict: ['public.patients'], publicColumns: { 'public.patients': ['ID', 'note'] } }),
    source: clinic,
    captured: [patients, visits],
  });
  checkPhiNames({ phi: phi({ columns: { 'public.Patients': ['ssn'] }, strict: ['PUBLIC.PATIENTS'] }), source: clinic, captured: [patients] });
  checkPhiNames({ phi: phi({}), source: clinic, captured: [] });
});

test('a misspelt PHI column: exit 2 naming the configuration path and value, the hint giving the closest column', () => {
  const e = refusal({ phi: phi({ columns: { 'public.patients': ['SNN'] } }), source: clinic, captured: [patients, visits] });
  assert.match(e.message, /phi\.columns\."public\.patients"\[0\] = "SNN": table public\.patients of source clinic has no column "SNN"/);
  assert.match(e.message, /a PHI name that matches nothing seals nothing/);
  assert.match(e.hint ?? '', /phi\.columns\."public\.patients"\[0\]: did you mean "ssn"\?/);
  assert.match(e.describe(), /\n {2}fix: phi\.columns/);
});

test('a misspelt column far from every column: the hint lists the columns instead', () => {
  const e = refusal({ phi: phi({ columns: { 'public.patients': ['mothers_maiden_name'] } }), source: clinic, captured: [patients] });
  assert.match(e.hint ?? '', /no column of public\.patients is close to it; its columns are id, full_name, ssn, note/);
});

test('a misspelt publicColumns column and a misspelt table under phi.strict are found too', () => {
  const e = refusal({
    phi: phi({ columns: { 'public.patients': ['ssn'] }, strict: ['public.patients', 'public.visit'], publicColumns: { 'public.patients': ['id', 'nots'] } }),
    source: clinic,
    captured: [patients, visits],
  });
  assert.match(e.message, /phi\.publicColumns\."public\.patients"\[1\] = "nots": table public\.patients of source clinic has no column "nots"/);
  assert.match(e.message, /phi\.strict\[1\] = "public\.visit": no table public\.visit is captured by source clinic/);
  assert.match(e.hint ?? '', /phi\.publicColumns\."public\.patients"\[1\]: did you mean "note"\?/);
  assert.match(e.hint ?? '', /phi\.strict\[1\]: did you mean "public\.visits"\?/);
  assert.match(e.message, /^the PHI configuration does not match the tables source clinic captures \(2 problems;/, 'every problem at once');
});

test('a strict table whose columns are all classified may name a column still to come (no PHI can pass: strict fails closed)', () => {
  const r = checkPhiNames({
    phi: phi({ columns: { 'public.patients': ['full_name', 'ssn', 'birth_date'] }, strict: ['public.patients'], publicColumns: { 'public.patients': ['id', 'note', 'flag'] } }),
    source: clinic,
    captured: [patients],
  });
  assert.deepEqual(r.pending, [
    'phi.columns."public.patients"[2] = "birth_date": strict table public.patients has no column "birth_date" yet; the name applies once it exists',
    'phi.publicColumns."public.patients"[2] = "flag": strict table public.patients has no column "flag" yet; the name applies once it exists',
  ]);
  assert.deepEqual(checkPhiNames({ phi: phi({ columns: { 'public.patients': ['ssn'] } }), source: clinic, captured: [patients] }).pending, []);
});

test('a misspelt column of a strict table that leaves a real column unclassified is an error, suggesting the unclassified one', () => {
  const e = refusal({
    phi: phi({ columns: { 'public.patients': ['full_name', 'SNN'] }, strict: ['public.patients'], publicColumns: { 'public.patients': ['id', 'note', 'flag'] } }),
    source: clinic,
    captured: [patients],
  });
  assert.match(e.message, /phi\.columns\."public\.patients"\[1\] = "SNN": table public\.patients of source clinic has no column "SNN" \(and column "ssn" of this strict table is not classified\)/);
  assert.match(e.message, /phi\.publicColumns\."public\.patients"\[2\] = "flag"/, 'every unmatched name of that table is listed');
  assert.match(e.hint ?? '', /phi\.columns\."public\.patients"\[1\]: did you mean "ssn"\?/);
});

test('on a strict table, a PHI name close to a column reviewed as not PHI is refused, not kept for later', () => {
  const e = refusal({
    phi: phi({ columns: { 'public.patients': ['full_name', 'SNN'] }, strict: ['public.patients'], publicColumns: { 'public.patients': ['id', 'ssn', 'note'] } }),
    source: clinic,
    captured: [patients],
  });
  assert.match(e.message, /phi\.columns\."public\.patients"\[1\] = "SNN": table public\.patients of source clinic has no column "SNN" \(column "ssn", close to it, is classified as not PHI\)/);
  assert.match(e.hint ?? '', /did you mean "ssn"\?/);
});

test('a misspelt PHI table: exit 2, the closest captured table suggested, and sources[].tables mentioned', () => {
  const e = refusal({ phi: phi({ columns: { 'public.patinets': ['ssn'] } }), source: clinic, captured: [patients, visits] });
  assert.match(e.message, /phi\.columns\."public\.patinets": no table public\.patinets is captured by source clinic/);
  assert.match(e.hint ?? '', /phi\.columns\."public\.patinets": did you mean "public\.patients"\? If it is spelt right, add it to sources\[\]\.tables/);
});

test('a table that exists but is not captured (not in sources[].tables) is refused like a misspelt one', () => {
  const e = refusal({ phi: phi({ columns: { 'public.visits': ['reason'] } }), source: { name: 'clinic', tables: ['public.patients'] }, captured: [patients] });
  assert.match(e.message, /no table public\.visits is captured by source clinic/);
  assert.match(e.hint ?? '', /add it to sources\[\]\.tables/);
});

test('a table the source lists but does not capture (it does not exist or cannot be read)', () => {
  const e = refusal({ phi: phi({ columns: { 'public.visits': ['reason'] } }), source: { name: 'clinic', tables: ['public.patients', 'public.visits'] }, captured: [patients] });
  assert.match(e.message, /source clinic lists public\.visits in sources\[\]\.tables, but captures no table of that name/);
});

test('ambiguous names are refused: two tables or two columns that differ only in case, none exact', () => {
  const upper = table('public.Patients', ['id']);
  const t = refusal({ phi: phi({ columns: { 'public.PATIENTS': ['id'] } }), source: clinic, captured: [patients, upper] });
  assert.match(t.message, /phi\.columns\."public\.PATIENTS": source clinic captures several tables that differ from "public\.PATIENTS" only in case \("public\.patients", "public\.Patients"\)/);
  const quoted = table('public.patients', ['id', 'ssn', 'Ssn']);
  const c = refusal({ phi: phi({ columns: { 'public.patients': ['SSN'] } }), source: clinic, captured: [quoted] });
  assert.match(c.message, /phi\.columns\."public\.patients"\[0\] = "SSN": table public\.patients has several columns that differ from it only in case \("ssn", "Ssn"\)/);
  // Exact names are not ambiguous.
  checkPhiNames({ phi: phi({ columns: { 'public.patients': ['ssn', 'Ssn'], 'public.Patients': ['id'] } }), source: clinic, captured: [quoted, upper] });
});

test('two spellings of one table in one list are refused (whose columns would apply?)', () => {
  const e = refusal({ phi: phi({ columns: { 'public.patients': ['ssn'], 'public.Patients': ['full_name'] } }), source: clinic, captured: [patients] });
  assert.match(e.message, /phi\.columns\."public\.patients" and phi\.columns\."public\.Patients" name the same table public\.patients/);
});

test('publicColumns written exactly for one of two tables that differ only in case: the other needs its own entry', () => {
  const upper = table('public.Patients', ['id', 'note']);
  const e = refusal({ phi: phi({ columns: { 'public.patients': ['ssn'] }, publicColumns: { 'public.patients': ['note'] } }), source: clinic, captured: [patients, upper] });
  assert.match(e.message, /phi\.publicColumns\."public\.patients" names table public\.patients, and source clinic also captures public\.Patients/);
  assert.match(e.hint ?? '', /give public\.Patients an entry of its own under phi\.publicColumns/);
  checkPhiNames({ phi: phi({ columns: { 'public.patients': ['ssn'] }, publicColumns: { 'public.patients': ['note'], 'public.Patients': [] } }), source: clinic, captured: [patients, upper] });
});

// --- several sources ----------------------------------------------------------------------------

test('several sources: a table another source lists is left to that source; one no source lists must be captured somewhere', () => {
  const others = [{ name: 'lab', tables: ['lab.results'] }];
  checkPhiNames({ phi: phi({ columns: { 'lab.results': ['mrn'] } }), source: clinic, captured: [patients], others });
  const e = refusal({ phi: phi({ columns: { 'lab.reslts': ['mrn'] } }), source: { name: 'clinic', tables: ['public.patients'] }, captured: [patients], others });
  assert.match(e.message, /no table lab\.reslts is captured by any configured source \(clinic, lab\)/);
});

test('several sources capturing every table: the others are consulted only for names this source lacks and no source lists', () => {
  const others = [{ name: 'lab' }];
  const base = { phi: phi({ columns: { 'public.patients': ['ssn'], 'lab.results': ['mrn'] } }), source: clinic, captured: [patients], others };
  assert.deepEqual(sourcesToConsult(base), ['lab']);
  assert.deepEqual(sourcesToConsult({ ...base, phi: phi({ columns: { 'public.patients': ['ssn'] } }) }), [], 'nothing to ask when every name is here');
  checkPhiNames({ ...base, othersCaptured: new Map([['lab', [table('lab.results', ['mrn'])]]]) });
  const e = refusal({ ...base, othersCaptured: new Map([['lab', [table('lab.result', ['mrn'])]]]) });
  assert.match(e.message, /no table lab\.results is captured by any configured source \(clinic, lab\)/);
  assert.match(e.hint ?? '', /did you mean "lab\.result"\?/, 'the closest name across the sources read');
});

test('several sources: a PHI column configured for a table this source captures must exist in it', () => {
  const e = refusal({ phi: phi({ columns: { 'public.patients': ['snn'] } }), source: clinic, captured: [patients], others: [{ name: 'lab' }] });
  assert.match(e.message, /phi\.columns\."public\.patients"\[0\] = "snn"/);
});

test('messages carry names only: no row value can reach them (the check never sees rows)', () => {
  const e = refusal({ phi: phi({ columns: { 'public.patients': ['SNN'] } }), source: clinic, captured: [patients] });
  assert.doesNotMatch(e.describe(), /CANARY/);
});
