import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countValueDetections, detectColumnName, detectValue, nameWords, valueVerdict } from '../../../src/phi/phi-detectors.js';

// Synthetic values only: invented people, the 555-01xx fictional phone range, example.org.

test('column names split into words however they are written', () => {
  assert.deepEqual(nameWords('patientFullName'), ['patient', 'full', 'name']);
  assert.deepEqual(nameWords('FULL_NAME'), ['full', 'name']);
  assert.deepEqual(nameWords('SSNLast4'), ['ssn', 'last4']);
  assert.deepEqual(nameWords('e-mail address'), ['e', 'mail', 'address']);
});

test('column names that look like PHI, per detector', () => {
  const cases: [string, string, string[]][] = [
    ['full_name', 'public.patients', ['person-name']],
    ['LastName', 'public.contacts', ['person-name']],
    ['mother_maiden_name', 'public.patients', ['person-name']],
    ['ssn', 'public.patients', ['national-id']],
    ['social_security_no', 'x.y', ['national-id']],
    ['nhs_number', 'x.y', ['national-id']],
    ['home_phone', 'x.y', ['phone']],
    ['mobileNumber', 'x.y', ['phone']],
    ['email', 'x.y', ['email']],
    ['contact_e_mail', 'x.y', ['email']],
    ['birth_date', 'public.patients', ['birth-date']],
    ['DOB', 'x.y', ['birth-date']],
    ['date_of_birth', 'x.y', ['birth-date']],
    ['address', 'public.patients', ['address']],
    ['street_line_1', 'x.y', ['address']],
    ['postal_code', 'x.y', ['address']],
    ['mrn', 'x.y', ['mrn']],
    ['medical_record_number', 'x.y', ['mrn']],
    ['clinical_notes', 'x.y', ['free-text']],
    ['reason', 'public.encounters', ['free-text']],
    ['name', 'public.patients', ['person-name']],
  ];
  for (const [column, table, expected] of cases) assert.deepEqual(detectColumnName(column, table), expected, `${table}.${column}`);
});

test('column names that do not look like PHI', () => {
  for (const [column, table] of [
    ['id', 'public.patients'],
    ['created_at', 'public.patients'],
    ['patient_id', 'public.encounters'],
    ['seen_at', 'public.encounters'],
    ['test', 'public.lab_results'],
    ['value', 'public.lab_results'],
    ['unit', 'public.lab_results'],
    ['visits_count', 'public.patients'],
    ['cell_count', 'public.lab_results'],
    ['name', 'public.departments'],
    ['addressable', 'x.y'],
    ['emails_sent', 'x.y'],
  ]) {
    assert.deepEqual(detectColumnName(column!, table!), [], `${table}.${column}`);
  }
});

test('values that look like PHI, per detector', () => {
  const cases: [string, string][] = [
    ['123-45-6789', 'national-id'],
    ['123 45 6789', 'national-id'],
    ['jane.roe@example.org', 'email'],
    ['(555) 010-0199', 'phone'],
    ['+1 555 010 0123', 'phone'],
    ['555-010-0188', 'phone'],
    ['MRN-00123456', 'mrn'],
    ['mr:1234567', 'mrn'],
    ['42 Elm Street', 'address'],
    ['1600 North Maple Ave, Springfield', 'address'],
    ['PO Box 1234', 'address'],
    ['Jane Roe', 'person-name'],
    ["Mary-Ann O'Neil", 'person-name'],
    ['Roe, Jane', 'person-name'],
    ['John Q. Public', 'person-name'],
    ['Patient reports chest pain radiating to the left arm since Tuesday', 'free-text'],
  ];
  for (const [value, detector] of cases) assert.ok(detectValue(value).includes(detector as never), `${detector}: ${JSON.stringify(detectValue(value))}`);
});

test('values that do not look like PHI (negatives)', () => {
  for (const value of [
    '', '   ', '42', '3.14', 'HbA1c', '%', 'follow-up 12', 'true', '2024-05-01', '2024-05-01 10:00:00+00', '12:30:00',
    '000-12-3456', '666-12-3456', '912-12-3456', '123-00-4567', '123-45-0000', // not valid SSNs
    '123456789', // bare digits: could be anything (an SSN is detected with its separators)
    '5550100199', // a phone number without separators reads as an integer
    'not an email@', 'a@b', 'DEMO-SSN-000000011', 'DEMO-PATIENT-7', '7 Canary Lane',
    '{"a":1}', 'mg/dL', 'ward 7', 'b8a3c2e4-1f0a-4c6e-9d2b-3e5f7a9c1d0e', '192.168.0.1', '1 day 02:00:00',
  ]) {
    const hits = detectValue(value).filter((d) => !(value === '7 Canary Lane' && d === 'address'));
    assert.deepEqual(hits, [], `${JSON.stringify(value)} → ${JSON.stringify(hits)}`);
  }
  // A street address with a known street word is one: the demo's canary address is caught.
  assert.deepEqual(detectValue('7 Canary Lane'), ['address']);
});

test('counts per detector over a sample, and the share that makes a column look like PHI', () => {
  const { sampled, counts } = countValueDetections(['123-45-6789', '234-56-7890', null, '', 'n/a', 'unknown', 'x', 'y', 'z', 'w', 'v']);
  assert.equal(sampled, 9, 'nulls and empty strings are not sampled values');
  assert.deepEqual(counts, { 'national-id': 2 });
  assert.deepEqual(valueVerdict(sampled, counts), ['national-id'], '2 of 9 SSN-shaped: above a fifth');
  assert.deepEqual(valueVerdict(20, { 'national-id': 3 }), [], '3 of 20: below a fifth');
  assert.deepEqual(valueVerdict(10, { 'person-name': 4 }), [], 'names need half');
  assert.deepEqual(valueVerdict(10, { 'person-name': 5 }), ['person-name']);
  assert.deepEqual(valueVerdict(0, {}), []);
});
