import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArrayLiteral } from '../../connectors/postgres/type-parsers.js';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import type { CellValue, ColumnType, Row, TableSchema } from '../../src/core/table-schema.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { formatUs } from '../../src/archive/layout.js';
import { MysqlTarget } from '../../src/restore/targets/mysql-target.js';
import { PostgresTarget } from '../../src/restore/targets/postgres-target.js';
import type { RestoreTarget, TablePlan } from '../../src/restore/targets/restore-target.js';
import { ChartlogRun, runChartlog } from '../support/chartlog-process.js';
import { prng } from '../support/prng.js';
import { createMariadbDatabase, createPgDatabase, diffCaptures, type Captured, type TestDatabase } from '../support/restore-engines.js';
import { MARIADB_CASES, MARIADB_COLUMNS, MARIADB_SESSION, mariadbMatrixTable, PG_CASES, PG_COLUMNS, PG_TYPE_DDL, pgMatrixTable } from '../support/type-matrix.js';

/**
 * Randomised fidelity (issue 7): `chartlog run` captures a workload of inserts, updates,
 * deletes, DDL and TRUNCATE over a table with every type of the connectors' type matrices
 * (test/support/type-matrix.ts, the edge values postgres-types.test.ts and mysql-types.test.ts
 * check), the source's contents are captured at 6 moments, and `chartlog restore` to each moment
 * must give back exactly the capture — into a fresh database of the same engine, and as sql, csv
 * and jsonl files (loaded back and compared the same way). Values are compared as the server's
 * own text output, value by value.
 */

const MOMENTS = 6;
const TX_PER_MOMENT = 7;
const CANARY = 'CANARY-SSN-';

interface Matrix {
  /** Types the table needs, created before it. */
  ddl: readonly string[];
  /** The matrix table under a name (the workload's `matrix`, and `cases` holding the cases). */
  table: (name: string) => string;
  /** Columns of the matrix other than id. */
  columns: readonly string[];
  /** Edge values: one SQL tuple per case, columns in `columns` order. */
  cases: readonly (readonly string[])[];
  /** The DDL step of the workload. */
  addColumn: string;
  /** Session setup for the workload connection. */
  session: string[];
}

// The PostgreSQL type matrix of test/support/type-matrix.ts. Two changes: lb is '{7,8}' instead
// of '[0:1]={7,8}' — the value model keeps no array lower bounds (see table-schema.ts) — and a
// fifth case of multi-dimensional arrays (2-D numeric[], text[] and mood[], 3-D int4[]).
const withoutLowerBound = (sql: readonly string[]): string[] =>
  sql.map((v, i) => (PG_COLUMNS[i] === 'lb' && v === `'[0:1]={7,8}'` ? `'{7,8}'` : v));
/** The fifth case by column; every other column NULL. */
const MULTI_DIMENSIONAL: Readonly<Record<string, string>> = {
  i2: '2', i4: '2', i8: '2',
  na: `'{{1.10,NaN},{NULL,-Infinity}}'`,
  ta: `'{{"a,b","quo\\"ted"},{NULL,"NULL"},{"","{brace}"}}'`,
  md: `'{{{1},{NULL}},{{-2147483648},{2147483647}}}'`,
  lb: `'{1,2,3,4}'`,
  ea: `'{{sad,"happy, very"},{NULL,"quo\\"te"}}'`,
};
const PG: Matrix = {
  ddl: PG_TYPE_DDL,
  table: pgMatrixTable,
  columns: PG_COLUMNS,
  cases: [...PG_CASES.map((c) => withoutLowerBound(c.sql)), PG_COLUMNS.map((c) => MULTI_DIMENSIONAL[c] ?? 'NULL')],
  addColumn: 'ALTER TABLE matrix ADD COLUMN extra text',
  session: [],
};

// The MariaDB type matrix of test/support/type-matrix.ts, as it is.
const MY: Matrix = {
  ddl: [],
  table: mariadbMatrixTable,
  columns: MARIADB_COLUMNS,
  cases: MARIADB_CASES.map((c) => c.sql),
  addColumn: 'ALTER TABLE matrix ADD COLUMN extra VARCHAR(20)',
  session: [MARIADB_SESSION],
};

// ---- reading csv / jsonl back into the value model (independently of the writer) ----------

function parseCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let i = 0;
  while (i < text.length) {
    let field: string | null;
    if (text[i] === '"') {
      let s = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        s += text.slice(i, q);
        i = q + 1;
        if (text[i] === '"') {
          s += '"';
          i++;
        } else break;
      }
      field = s;
    } else {
      let j = i;
      while (j < text.length && text[j] !== ',' && text[j] !== '\n') j++;
      field = j === i ? null : text.slice(i, j);
      i = j;
    }
    row.push(field);
    if (text[i] === ',') i++;
    else {
      rows.push(row);
      row = [];
      i++;
    }
  }
  return rows;
}

function fromCsv(text: string | null, t: Readonly<ColumnType>, sealed: boolean): CellValue {
  if (text === null) return null;
  if (sealed || t.kind === 'bytes') return new Uint8Array(Buffer.from(text, 'base64'));
  switch (t.kind) {
    case 'boolean': return text === 'true';
    case 'int': return t.bits === 64 ? BigInt(text) : Number(text);
    case 'float': case 'year': return Number(text);
    case 'set': return text === '' ? [] : text.split(',');
    case 'array': return parseArrayLiteral(text, ',', (e) => fromCsv(e, t.element ?? { kind: 'text' }, false));
    default: return text;
  }
}

function fromJson(v: unknown, t: Readonly<ColumnType>, sealed: boolean): CellValue {
  if (v === null) return null;
  if (sealed || t.kind === 'bytes') return new Uint8Array(Buffer.from(v as string, 'base64'));
  switch (t.kind) {
    case 'int': return t.bits === 64 ? BigInt(v as string) : (v as number);
    case 'float': return typeof v === 'number' ? v : Number(v as string);
    // A nested list is one more level of the same array (PostgreSQL: any number of dimensions).
    case 'array': return (v as unknown[]).map((e) => (Array.isArray(e) ? fromJson(e, t, false) : fromJson(e, t.element ?? { kind: 'text' }, false)));
    default: return v as CellValue;
  }
}

interface SchemaFile {
  table: string;
  sourceEngine: 'postgres' | 'mysql';
  primaryKey: string[];
  columns: { name: string; sourceType: string; type: ColumnType; nullable: boolean; sealed: boolean }[];
}

/** The tables of a csv/jsonl restore directory, as plans and value-model rows. */
function readFileRestore(dir: string, format: 'csv' | 'jsonl'): { plan: TablePlan; rows: Row[] }[] {
  const out: { plan: TablePlan; rows: Row[] }[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.schema.json'))) {
    const s = JSON.parse(readFileSync(join(dir, f), 'utf8')) as SchemaFile;
    const dot = s.table.indexOf('.');
    const table: TableSchema = { schema: s.table.slice(0, dot), table: s.table.slice(dot + 1), primaryKey: s.primaryKey, columns: s.columns.map((c) => ({ name: c.name, sourceType: c.sourceType, type: c.type, nullable: c.nullable })) };
    const plan: TablePlan = { name: s.table, table, sealed: new Set(s.columns.filter((c) => c.sealed).map((c) => c.name)), sourceEngine: s.sourceEngine };
    const text = readFileSync(join(dir, f.replace(/\.schema\.json$/, `.${format}`)), 'utf8');
    let rows: Row[];
    if (format === 'csv') {
      const [header, ...lines] = parseCsv(text);
      assert.deepEqual(header, s.columns.map((c) => c.name), `${f}: csv header`);
      rows = lines.map((l) => Object.fromEntries(s.columns.map((c, i) => [c.name, fromCsv(l[i] ?? null, c.type, c.sealed)])));
    } else {
      rows = text.split('\n').filter((l) => l !== '').map((l) => {
        const o = JSON.parse(l) as Record<string, unknown>;
        return Object.fromEntries(s.columns.map((c) => [c.name, fromJson(o[c.name], c.type, c.sealed)]));
      });
    }
    out.push({ plan, rows });
  }
  return out;
}

async function loadInto(target: RestoreTarget, tables: { plan: TablePlan; rows: Row[] }[]): Promise<void> {
  try {
    await target.check(tables.map((t) => t.plan.table));
    await target.prepare(tables.map((t) => t.plan));
    for (const t of tables) await target.writeTable(t.plan, t.rows, () => undefined);
  } finally {
    await target.close();
  }
}

// ---- the test ------------------------------------------------------------------------------

for (const engine of ['postgres', 'mysql'] as const) {
  test(`${engine}: restore to each of ${MOMENTS} moments equals the source, into a database and as sql, csv and jsonl`, { timeout: 600_000 }, async () => {
    const matrix = engine === 'postgres' ? PG : MY;
    const created: TestDatabase[] = [];
    const newDb = async (prefix: string): Promise<TestDatabase> => {
      const db = engine === 'postgres' ? await createPgDatabase(prefix) : await createMariadbDatabase(prefix);
      created.push(db);
      return db;
    };
    const work = mkdtempSync(join(tmpdir(), 'chartlog-restore-'));
    const source = await newDb('rsrc');
    let run: ChartlogRun | null = null;
    after(async () => {
      await run?.close();
      for (const db of created) await db.drop();
      if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
    });
    const seed = Number(process.env.SEED ?? Date.now() % 100000);
    console.log(`# ${engine} seed ${seed}`);
    const rand = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

    for (const s of matrix.session) await source.exec(s);
    for (const d of matrix.ddl) await source.exec(d);
    await source.exec(matrix.table('matrix'));
    await source.exec(matrix.table('cases'));
    for (const [i, c] of matrix.cases.entries()) await source.exec(`INSERT INTO cases (id, ${matrix.columns.join(', ')}) VALUES (${i + 1}, ${c.join(', ')})`);
    await source.exec(`CREATE TABLE patients (id INT PRIMARY KEY, full_name VARCHAR(200), ssn VARCHAR(40), note VARCHAR(200))`);

    // Each column takes the value of a random case, read from the `cases` table by the server.
    const caseValue = (col: string): string => `(SELECT ${col} FROM cases WHERE id = ${1 + Math.floor(rand() * matrix.cases.length)})`;
    let nextId = 1;
    let nextPatient = 1;
    const live = new Set<number>();
    const patients = new Set<number>();
    let extra = false;
    const insertMatrix = (): string => {
      const id = nextId++;
      live.add(id);
      return `INSERT INTO matrix (id, ${matrix.columns.join(', ')}) SELECT ${id}, ${matrix.columns.map(caseValue).join(', ')}`;
    };
    for (let i = 0; i < 6; i++) await source.exec(insertMatrix());
    for (let i = 0; i < 3; i++) {
      const id = nextPatient++;
      patients.add(id);
      await source.exec(`INSERT INTO patients VALUES (${id}, 'CANARY-NAME-${id}', '${CANARY}${id}', 'seed')`);
    }

    const keyring = join(work, 'keys', 'keyring.json');
    mkdirSync(join(work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    const q = (t: string) => `${engine === 'postgres' ? 'public' : source.name}.${t}`;
    const configFile = join(work, 'chartlog.yaml');
    writeFileSync(configFile, [
      'sources:',
      `  - { name: clinic, type: ${engine}, url: "${source.url}", tables: [${q('matrix')}, ${q('patients')}], mysql: { serverId: ${50000 + Math.floor(Math.random() * 10000)} } }`,
      `storage: { url: "file://${work}/backup" }`,
      'segments: { flushIntervalMs: 200 }',
      'phi:',
      `  keyring: "file://${keyring}"`,
      `  columns: { ${q('patients')}: [full_name, ssn] }`,
      // The type matrix is reviewed as not PHI, so its values travel in clear through every
      // Avro mapping; its column added mid-stream (extra) is unclassified and sealed by default.
      `  publicColumns: { ${q('matrix')}: [id, ${matrix.columns.join(', ')}], ${q('patients')}: [id, note] }`,
      // Every table through the COPY threads where the target has them (the default spares
      // tables under 100k rows, and starts none below 4 cores), so the type matrix crosses them value by value.
      'restore: { copyThreads: 2, copyThreadsFromRows: 0 }',
      'log: { level: info, format: json }',
    ].join('\n'));
    run = new ChartlogRun(configFile, join(work, 'run.log'));
    await run.start();

    const statement = (): string => {
      const r = rand();
      if (r < 0.3 || live.size < 2) return insertMatrix();
      if (r < 0.6) {
        const cols = [...new Set([pick(matrix.columns), pick(matrix.columns), pick(matrix.columns)])];
        const sets = cols.map((c) => `${c} = ${caseValue(c)}`);
        if (extra && rand() < 0.5) sets.push(`extra = 'x${Math.floor(rand() * 1000)}'`);
        return `UPDATE matrix SET ${sets.join(', ')} WHERE id = ${pick([...live])}`;
      }
      if (r < 0.75) {
        const id = pick([...live]);
        live.delete(id);
        return `DELETE FROM matrix WHERE id = ${id}`;
      }
      if (r < 0.9 || patients.size < 2) {
        const id = nextPatient++;
        patients.add(id);
        return `INSERT INTO patients VALUES (${id}, 'CANARY-NAME-${id}', '${CANARY}${id}', ${rand() < 0.3 ? "''" : 'NULL'})`;
      }
      return `UPDATE patients SET note = 'n${Math.floor(rand() * 1000)}', ssn = '${CANARY}u${Math.floor(rand() * 1000)}' WHERE id = ${pick([...patients])}`;
    };
    const transaction = async (): Promise<void> => {
      const n = 1 + Math.floor(rand() * 3);
      await source.exec('BEGIN');
      for (let i = 0; i < n; i++) await source.exec(statement());
      await source.exec('COMMIT');
    };

    // Commit times on MariaDB binlogs have whole seconds: moments sit more than a second away
    // from every commit, so "at or before T" is unambiguous on both engines.
    const gap = engine === 'mysql' ? 1100 : 30;
    const moments: { us: bigint; iso: string; matrix: Captured; patients: Captured }[] = [];
    for (let m = 0; m < MOMENTS; m++) {
      for (let i = 0; i < TX_PER_MOMENT; i++) await transaction();
      if (m === 1) {
        await source.exec(matrix.addColumn);
        extra = true;
        await source.exec(insertMatrix()); // the new table version travels with the next row
      }
      if (m === 3) {
        await source.exec('TRUNCATE TABLE matrix');
        live.clear();
        await source.exec(insertMatrix());
      }
      await sleep(gap);
      const us = BigInt(Date.now()) * 1000n;
      moments.push({ us, iso: formatUs(us), matrix: await source.capture('matrix'), patients: await source.capture('patients') });
      await sleep(gap);
    }
    await transaction();
    const store = new FsObjectStore(`${work}/backup`);
    const last = moments[moments.length - 1]!.us;
    // Clock time, generous (was 200 polls, 20 s): a loaded CI machine runs another file beside this one.
    for (const deadline = Date.now() + 120_000; ; ) {
      const cp = await readCheckpoint(store, 'clinic');
      if (cp && cp.commitTsUs > last) break;
      assert.ok(Date.now() < deadline, 'the checkpoint did not pass the last moment within 120 s');
      await sleep(100);
    }
    await run.stop();

    const args = ['restore', '--config', configFile, '--source', 'clinic'];
    const where = (t: string, db: TestDatabase) => (db.type === 'postgres' ? `public.${t}` : t);
    for (const [i, m] of moments.entries()) {
      const label = `${engine} moment ${i} (${m.iso})`;
      const check = async (db: TestDatabase, how: string) => {
        for (const t of ['matrix', 'patients'] as const) {
          const diff = diffCaptures(await db.capture(where(t, db)), m[t], `${label} ${how} ${t}`);
          assert.equal(diff, null, diff ?? '');
        }
      };
      // Into a database.
      const target = await newDb('rtgt');
      const r = await runChartlog([...args, '--to', m.iso, '--target', target.url]);
      assert.equal(r.code, 0, `${label}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
      assert.match(r.stdout, /restored source clinic to position [0-9a-f-]+\.[0-9a-f]{8} \(commit \d{4}-\d{2}-\d{2}T[\d:.]+Z\)/);
      assert.match(r.stdout, /2 tables/);
      await check(target, 'database');
      if (i === 2) {
        // The position the summary printed names the same moment.
        const position = /to position ([0-9a-f-]+\.[0-9a-f]{8})/.exec(r.stdout)![1]!;
        const byPosition = await newDb('rpos');
        const p = await runChartlog([...args, '--to', position, '--target', byPosition.url]);
        assert.equal(p.code, 0, `${label}: restore to ${position} exited ${p.code}: ${p.stderr.slice(0, 2000)}`);
        assert.ok(p.stdout.includes(`to position ${position}`));
        await check(byPosition, `position ${position}`);
      }

      // As files, loaded back.
      for (const format of ['sql', 'csv', 'jsonl'] as const) {
        const dir = join(work, `out-${i}-${format}`);
        const f = await runChartlog([...args, '--to', m.iso, '--out', dir, '--format', format]);
        assert.equal(f.code, 0, `${label} ${format}: restore exited ${f.code}: ${f.stderr.slice(0, 2000)}`);
        const meta = JSON.parse(readFileSync(join(dir, 'restore.json'), 'utf8')) as { position: string };
        assert.ok(r.stdout.includes(meta.position), `${label} ${format}: same position as the database restore`);
        const loaded = await newDb('rfile');
        if (format === 'sql') {
          for (const file of readdirSync(dir).filter((n) => n.endsWith('.sql')).sort()) await loaded.exec(readFileSync(join(dir, file), 'utf8'));
        } else {
          await loadInto(engine === 'postgres' ? new PostgresTarget(loaded.url) : new MysqlTarget(loaded.url), readFileRestore(dir, format));
        }
        await check(loaded, format);
        await loaded.drop();
        created.splice(created.indexOf(loaded), 1);
      }
      await target.drop();
      created.splice(created.indexOf(target), 1);
    }
    // The moments differ from one another, so each restore proved its own moment.
    assert.ok(new Set(moments.map((m) => JSON.stringify(m.matrix))).size >= MOMENTS - 1, 'the workload changed the table between moments');
  });
}
