/**
 * Detectors of what looks like PHI, as pure functions: from a column's name (and its table's),
 * and from single values. `chartlog phi classify` runs them on a source's catalog and a small
 * sample of values to propose a classification; the stream's PHI guard (phi-guard.ts) runs the
 * value detectors on a few values of columns that are not sealed. Nothing here keeps or returns
 * a value: a detector answers with its id only.
 *
 * The patterns lean towards PHI (a false positive costs a review, a false negative a leak), but
 * the value detectors that the guard uses on live traffic (`GUARD_DETECTORS`) are the ones whose
 * shapes are specific (SSN, e-mail, phone, MRN, street address), so a clear column warns only on
 * values that really look like identifiers.
 */

/** What a detector recognises (HIPAA identifiers and free text that may hold them). */
export type PhiDetector = 'person-name' | 'national-id' | 'phone' | 'email' | 'birth-date' | 'address' | 'mrn' | 'free-text';

export const PHI_DETECTORS: readonly PhiDetector[] = ['person-name', 'national-id', 'phone', 'email', 'birth-date', 'address', 'mrn', 'free-text'];

/** The value detectors specific enough to run on live traffic (phi-guard.ts). */
export const GUARD_DETECTORS: readonly PhiDetector[] = ['national-id', 'email', 'phone', 'mrn', 'address'];

/** A column name split into lower-case words: `patientFullName`, `full_name`, `Full-Name` → [patient, full, name]. */
export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');
}

/** Tables whose rows are people: a bare `name` column there is a person's name. */
const PERSON_TABLES = /(patient|person|people|member|contact|guardian|relative|kin|employee|staff|user|client|subscriber|provider|doctor|physician|nurse|customer|resident|donor|insured)/;

/** Word sequences of column names, per detector. Each entry is matched as consecutive words. */
const NAME_PATTERNS: readonly [PhiDetector, readonly (readonly string[])[]][] = [
  ['person-name', [['full', 'name'], ['fullname'], ['first', 'name'], ['firstname'], ['last', 'name'], ['lastname'], ['given', 'name'], ['givenname'], ['family', 'name'], ['familyname'], ['middle', 'name'], ['maiden', 'name'], ['maiden'], ['surname'], ['forename'], ['patient', 'name'], ['legal', 'name'], ['nickname'], ['next', 'of', 'kin']]],
  ['national-id', [['ssn'], ['social', 'security'], ['sin'], ['nin'], ['national', 'id'], ['national', 'identifier'], ['nhs', 'number'], ['nhs', 'no'], ['passport'], ['tax', 'id'], ['tin'], ['driver', 'license'], ['drivers', 'license'], ['licence', 'number'], ['license', 'number'], ['medicare'], ['medicaid'], ['insurance', 'number'], ['insurance', 'id'], ['policy', 'number'], ['member', 'id'], ['health', 'card']]],
  ['phone', [['phone'], ['telephone'], ['tel'], ['mobile'], ['cell', 'phone'], ['cellphone'], ['fax'], ['phone', 'number']]],
  ['email', [['email'], ['e', 'mail'], ['mail', 'address'], ['emailaddress']]],
  ['birth-date', [['dob'], ['birth', 'date'], ['birthdate'], ['date', 'of', 'birth'], ['birthday'], ['born'], ['birth']]],
  ['address', [['address'], ['addr'], ['street'], ['address', 'line'], ['zip'], ['zipcode'], ['zip', 'code'], ['postal', 'code'], ['postcode'], ['home', 'address']]],
  ['mrn', [['mrn'], ['medical', 'record'], ['medical', 'record', 'number'], ['record', 'number'], ['chart', 'number'], ['patient', 'number'], ['patient', 'no'], ['hospital', 'number'], ['encounter', 'number']]],
  ['free-text', [['note'], ['notes'], ['comment'], ['comments'], ['remark'], ['remarks'], ['narrative'], ['reason'], ['complaint'], ['history'], ['description'], ['memo'], ['free', 'text'], ['observation'], ['observations'], ['summary'], ['diagnosis'], ['instructions']]],
];

function containsRun(words: readonly string[], run: readonly string[]): boolean {
  outer: for (let i = 0; i + run.length <= words.length; i++) {
    for (let j = 0; j < run.length; j++) if (words[i + j] !== run[j]) continue outer;
    return true;
  }
  return false;
}

/**
 * The detectors a column's name triggers, given its table's name ("schema.table" or "table").
 * A bare `name` counts as a person's name only in a table of people (patients, contacts…).
 */
export function detectColumnName(column: string, table = ''): PhiDetector[] {
  const words = nameWords(column);
  const out: PhiDetector[] = [];
  for (const [detector, runs] of NAME_PATTERNS) if (runs.some((r) => containsRun(words, r))) out.push(detector);
  if (!out.includes('person-name') && words.length === 1 && words[0] === 'name' && PERSON_TABLES.test(table.toLowerCase())) out.push('person-name');
  return out;
}

// ---- values -------------------------------------------------------------------------------

const SSN = /^(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}$/;
const EMAIL = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$/;
/** Digits with the separators phone numbers are written with; checked for 10–15 digits below. */
const PHONE = /^\+?\(?\d[\d ().-]{6,22}\d$/;
const MRN = /^(MRN|MR|MED|PT|PAT)[-:# ]?\d{5,12}$/i;
const STREET =
  /^\d{1,6}[A-Za-z]?,? +([A-Za-z0-9'.-]+ +){0,5}(street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|close|crescent|parkway|pkwy|highway|hwy|square|sq|circle|cir|trail)\b\.?/i;
const PO_BOX = /^p\.? ?o\.? box \d+/i;
/** One part of a person's name: Jane, O'Neil, Mary-Ann. */
const NAME_PART = "(?:[A-Z]')?[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?";
/** "Given Family", "Given M. Family", "Given Middle Family", "Family, Given". */
const PERSON = new RegExp(`^${NAME_PART},? +(?:[A-Z]\\.? +|${NAME_PART} +)?${NAME_PART}$`);
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})/;

/**
 * The detectors one value triggers. `birth-date` is never detected from a value alone (any date
 * could be one): a column is a birth date by its name. Free text is prose: eight words or more.
 */
export function detectValue(value: string): PhiDetector[] {
  const v = value.trim();
  if (v === '' || v.length > 10_000) return v.length > 10_000 ? ['free-text'] : [];
  const out: PhiDetector[] = [];
  if (SSN.test(v)) out.push('national-id');
  if (EMAIL.test(v)) out.push('email');
  if (PHONE.test(v) && !SSN.test(v) && !ISO_DATE.test(v)) {
    const digits = v.replace(/\D/g, '').length;
    // A separator or a leading + says "written as a phone number", not a bare integer.
    if (digits >= 10 && digits <= 15 && /[ ().+-]/.test(v)) out.push('phone');
  }
  if (MRN.test(v)) out.push('mrn');
  if (STREET.test(v) || PO_BOX.test(v)) out.push('address');
  if (PERSON.test(v)) out.push('person-name');
  if (v.split(/\s+/).length >= 8) out.push('free-text');
  return out;
}

/** How many sampled values each detector matched. */
export type DetectorCounts = Partial<Record<PhiDetector, number>>;

/** Counts the value detectors over a column's sampled values (nulls and empty strings skipped). */
export function countValueDetections(values: Iterable<string | null>): { sampled: number; counts: DetectorCounts } {
  let sampled = 0;
  const counts: DetectorCounts = {};
  for (const v of values) {
    if (v === null || v.trim() === '') continue;
    sampled++;
    for (const d of detectValue(v)) counts[d] = (counts[d] ?? 0) + 1;
  }
  return { sampled, counts };
}

/**
 * Whether value counts make a column look like PHI: the specific shapes (SSN, e-mail, phone,
 * MRN, address) at a fifth of the sampled values or more; names and free text, which ordinary
 * labels resemble more often, at half or more.
 */
export function valueVerdict(sampled: number, counts: DetectorCounts): PhiDetector[] {
  if (sampled === 0) return [];
  const out: PhiDetector[] = [];
  for (const d of PHI_DETECTORS) {
    const n = counts[d] ?? 0;
    const share = GUARD_DETECTORS.includes(d) ? 0.2 : 0.5;
    if (n > 0 && n >= share * sampled) out.push(d);
  }
  return out;
}
