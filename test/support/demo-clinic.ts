/**
 * The synthetic clinic of `npm run demo` (scripts/demo.ts), shared with the tests that need the
 * same schema (`chartlog phi classify`). Every PHI value carries a canary (DEMO_CANARIES), so a
 * scan of any output or stored object can tell whether a value leaked.
 */

/** The clinic's tables, created in the current database (PostgreSQL). */
export const DEMO_CLINIC_SQL = `
  CREATE TABLE patients (id bigserial PRIMARY KEY, full_name text NOT NULL, ssn text, birth_date date, address text, created_at timestamptz DEFAULT now());
  CREATE TABLE encounters (id bigserial PRIMARY KEY, patient_id bigint REFERENCES patients(id) ON DELETE CASCADE, seen_at timestamptz NOT NULL DEFAULT now(), reason text);
  CREATE TABLE lab_results (id bigserial PRIMARY KEY, encounter_id bigint REFERENCES encounters(id) ON DELETE CASCADE, test text, value numeric(12,4), unit text, taken_at timestamptz DEFAULT now());
  INSERT INTO patients (full_name, ssn, birth_date, address)
    SELECT 'DEMO-PATIENT-' || g, 'DEMO-SSN-' || lpad(g::text, 9, '0'), date '1950-01-01' + g, g || ' Canary Lane'
    FROM generate_series(1, 500) g;
  INSERT INTO encounters (patient_id, reason) SELECT 1 + (g % 500), 'follow-up ' || g FROM generate_series(1, 1500) g;
  INSERT INTO lab_results (encounter_id, test, value, unit) SELECT g, 'HbA1c', 4 + (g % 50) / 10.0, '%' FROM generate_series(1, 1500) g;
`;

/** Substrings of the clinic's PHI values (names, SSNs, addresses). */
export const DEMO_CANARIES: readonly string[] = ['DEMO-SSN-', 'DEMO-PATIENT-', 'Canary Lane'];

/** The clinic's PHI columns, as the demo's configuration classifies them. */
export const DEMO_PHI_COLUMNS: readonly string[] = ['full_name', 'ssn', 'birth_date', 'address'];
