import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import type { CellValue } from '../../src/core/table-schema.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { replayArchive } from '../../src/archive/replay.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { requireEnv, testServices } from './env.js';

/**
 * `chartlog run` as a real process against a real source database, with a synthetic-patient
 * workload and a way to wait until the archive, replayed, equals the source. Shared by the
 * end-to-end tests of the backup (crashes, store outages).
 */

const bin = join(import.meta.dirname, '..', '..', 'bin', 'chartlog.js');
export const CANARY = 'CANARY-SSN-';
/** The canaries of the workload's PHI columns (full_name, ssn), for leak scans. */
export const PHI_CANARIES = [CANARY, 'CANARY-NAME-'];

export interface Engine {
  type: 'postgres' | 'mysql';
  qualified: (t: string) => string;
  url: string;
  /** Database name (also the MySQL schema name). */
  db: string;
  exec(sql: string): Promise<void>;
  query(sql: string): Promise<Record<string, unknown>[]>;
  rows(table: string): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export async function postgresEngine(): Promise<Engine> {
  const base = requireEnv('CHARTLOG_TEST_PG_URL');
  const db = `run_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  const url = base.replace(/\/[^/]*$/, `/${db}`);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    type: 'postgres',
    qualified: (t) => `public.${t}`,
    url,
    db,
    exec: async (sql) => void (await client.query(sql)),
    query: async (sql) => (await client.query(sql)).rows,
    rows: async (t) => (await client.query(`SELECT * FROM ${t} ORDER BY id`)).rows,
    close: async () => {
      await client.end();
      // The slot holds WAL until dropped; the database can go only after it.
      // A killed reader's walsender may hold the slot for a moment after the kill.
      for (let i = 0; i < 50; i++) {
        const { rows } = await admin.query(`SELECT slot_name, active FROM pg_replication_slots WHERE database = $1`, [db]);
        if (rows.length === 0) break;
        for (const r of rows) if (!r.active) await admin.query(`SELECT pg_drop_replication_slot($1)`, [r.slot_name]).catch(() => undefined);
        await sleep(100);
      }
      await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    },
  };
}

export async function mariadbEngine(): Promise<Engine> {
  const base = requireEnv('CHARTLOG_TEST_MARIADB_URL');
  const db = `run_${randomBytes(4).toString('hex')}`;
  const conn = await mysql.createConnection({ uri: base, multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true });
  await conn.query(`CREATE DATABASE ${db}; USE ${db}`);
  return {
    type: 'mysql',
    qualified: (t) => `${db}.${t}`,
    url: `${base.replace(/\/$/, '')}/${db}`,
    db,
    exec: async (sql) => void (await conn.query(sql)),
    query: async (sql) => (await conn.query(sql))[0] as Record<string, unknown>[],
    rows: async (t) => (await conn.query(`SELECT * FROM ${t} ORDER BY id`))[0] as Record<string, unknown>[],
    close: async () => {
      await conn.query(`DROP DATABASE IF EXISTS ${db}`).catch(() => undefined);
      await conn.end();
    },
  };
}

export type StoreKind = 'file' | 's3';

// The seedable PRNG a Workload draws from, defined once in prng.ts (restore-fidelity.test.ts
// uses it too); re-exported so that the run tests take it with the rest of the harness.
export { prng } from './prng.js';

/** Values compared as text: both sides render bigint, number, boolean and strings alike. */
export function norm(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? '1' : '0';
  return String(v);
}

/** The two tables of the workload; patients holds PHI in full_name and ssn. */
export async function createClinicTables(engine: Engine): Promise<void> {
  await engine.exec(`CREATE TABLE patients (id BIGINT PRIMARY KEY, full_name VARCHAR(200), ssn VARCHAR(40), note VARCHAR(200), visits_count INT NOT NULL DEFAULT 0)`);
  await engine.exec(`CREATE TABLE visits (id BIGINT PRIMARY KEY, patient_id BIGINT, reason VARCHAR(200))`);
  await engine.exec(`INSERT INTO patients (id, full_name, ssn, note) VALUES (1, 'CANARY-NAME-1', '${CANARY}0001', 'seed')`);
}

/** Random inserts, updates and deletes of synthetic patients, one transaction per call. */
export class Workload {
  private nextPatient = 2;
  private nextVisit = 1;
  private readonly live = new Set<number>([1]);
  hasFlag = false;

  constructor(
    private readonly engine: Engine,
    private readonly rand: () => number,
  ) {}

  async transaction(): Promise<void> {
    const r = this.rand();
    const pick = () => [...this.live][Math.floor(this.rand() * this.live.size)]!;
    if (r < 0.45 || this.live.size < 3) {
      const id = this.nextPatient++;
      this.live.add(id);
      await this.engine.exec(`INSERT INTO patients (id, full_name, ssn, note) VALUES (${id}, 'CANARY-NAME-${id}', '${CANARY}${String(id).padStart(4, '0')}', 'n${id}')`);
      await this.engine.exec(`INSERT INTO visits (id, patient_id, reason) VALUES (${this.nextVisit++}, ${id}, 'intake')`);
    } else if (r < 0.8) {
      const flag = this.hasFlag ? `, flag = ${this.rand() < 0.5 ? 'TRUE' : 'FALSE'}` : '';
      await this.engine.exec(`UPDATE patients SET note = 'u${Math.floor(this.rand() * 1e6)}', visits_count = visits_count + 1${flag} WHERE id = ${pick()}`);
    } else {
      const id = pick();
      this.live.delete(id);
      await this.engine.exec(`DELETE FROM patients WHERE id = ${id}`);
    }
  }

  async addFlagColumn(): Promise<void> {
    await this.engine.exec(`ALTER TABLE patients ADD COLUMN flag BOOLEAN`);
    this.hasFlag = true;
  }
}

/** A working directory, keyring, configuration and log for one `chartlog run` under test. */
export class RunHarness {
  readonly work = mkdtempSync(join(tmpdir(), 'chartlog-run-'));
  readonly configFile = join(this.work, 'chartlog.yaml');
  readonly logFile = join(this.work, 'chartlog.log');
  readonly config: Readonly<Config>;
  readonly store: ObjectStore;
  readonly env: NodeJS.ProcessEnv;
  private readonly log: WriteStream;
  /** Slots are cluster-wide: one base per test database, so tests never meet each other's. `chartlog run` names its slot `<base>_<archive id>`: match it with starts_with(slot_name, slotName). */
  readonly slotName: string;
  private child: ChildProcess | null = null;
  private starts = 0;

  constructor(
    readonly engine: Engine,
    readonly storeKind: StoreKind,
    options: {
      flushIntervalMs?: number;
      leaseTtlMs?: number;
      /** The lines under `phi:` after the keyring, given the two tables' qualified names. Default: PHI full_name and ssn, patients strict. */
      phi?: (patients: string, visits: string) => string[];
      /** More settings of the source, written inside its `{ … }` (e.g. `tls: { mode: disable }`). */
      sourceExtra?: string;
      /** More settings inside the source's `mysql: { … }` (e.g. `spillThresholdBytes: 65536`). */
      mysql?: string;
      /** Tables captured besides patients and visits (qualified names). */
      extraTables?: readonly string[];
      /** More settings inside the source's `postgres: { … }` (e.g. `insertOnlyTables: [public.t]`). */
      postgresExtra?: string;
      /** The captured tables (qualified names); default: the two workload tables. */
      tables?: readonly string[];
    } = {},
  ) {
    this.slotName = `chartlog_${engine.db}`;
    const keyring = join(this.work, 'keys', 'keyring.json');
    mkdirSync(join(this.work, 'keys'), { mode: 0o700 });
    FileKeyring.create(keyring);
    const patients = engine.qualified('patients');
    const visits = engine.qualified('visits');
    let storage: string;
    const lease = options.leaseTtlMs !== undefined ? `, leaseTtlMs: ${options.leaseTtlMs}` : '';
    this.env = { ...process.env };
    if (storeKind === 's3') {
      const s3 = testServices().s3;
      storage = `storage: { url: "s3://${s3.bucket}/run-${randomBytes(4).toString('hex')}", s3: { endpoint: "${s3.endpoint}", region: ${s3.region}, forcePathStyle: true }${lease} }`;
      this.env.CHARTLOG_S3_ACCESS_KEY_ID = s3.accessKeyId;
      this.env.CHARTLOG_S3_SECRET_ACCESS_KEY = s3.secretAccessKey;
    } else {
      storage = `storage: { url: "file://${this.work}/backup"${lease} }`;
    }
    const text = [
      'sources:',
      `  - { name: clinic, type: ${engine.type}, url: "${engine.url}", tables: [${[...(options.tables ?? [patients, visits]), ...(options.extraTables ?? [])].join(', ')}], postgres: { slotName: ${this.slotName}, publicationName: ${this.slotName}${options.postgresExtra ? `, ${options.postgresExtra}` : ''} }, mysql: { serverId: ${40000 + Math.floor(Math.random() * 10000)}${options.mysql ? `, ${options.mysql}` : ''} }${options.sourceExtra ? `, ${options.sourceExtra}` : ''} }`,
      storage,
      `segments: { flushIntervalMs: ${options.flushIntervalMs ?? 200} }`,
      'phi:',
      `  keyring: "file://${keyring}"`,
      ...(options.phi?.(patients, visits) ?? [`columns: { ${patients}: [full_name, ssn] }`, `strict: [${patients}]`, `publicColumns: { ${patients}: [id, note, visits_count, flag] }`]).map((l) => `  ${l}`),
      'log: { level: info, format: json }',
    ].join('\n');
    writeFileSync(this.configFile, text);
    this.config = parseConfig(text, this.configFile, this.env);
    this.store = openObjectStore(this.config.storage);
    // The stream opens its file asynchronously: create it now, so that reading the log right
    // after start() never meets a file that does not exist yet (a flaky ENOENT otherwise).
    writeFileSync(this.logFile, '', { flag: 'a' });
    this.log = createWriteStream(this.logFile, { flags: 'a' });
  }

  /** Starts `chartlog run` (with `args` after `--config`) and waits until its pipeline streams (past snapshot and start-up). */
  // 60 s: start-up compiles chartlog through tsx and may take a snapshot, on a CI machine that
  // runs another test file beside this one.
  async start(args: readonly string[] = [], timeoutMs = 60_000): Promise<void> {
    const child = spawn(process.execPath, [bin, 'run', '--config', this.configFile, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    child.stdout!.pipe(this.log, { end: false });
    child.stderr!.pipe(this.log, { end: false });
    this.child = child;
    this.starts++;
    const streaming = () => (readFileSync(this.logFile, 'utf8').match(/"msg":"pipeline streaming"/g) ?? []).length;
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline && streaming() < this.starts && child.exitCode === null; ) await sleep(50);
    assert.equal(streaming(), this.starts, `run ${this.starts} did not start streaming (see ${this.logFile})`);
  }

  /**
   * Another `chartlog run` with the same configuration, beside the harness's own (two writers
   * on one archive); its output goes to its own log file. Does not wait for anything.
   */
  spawnRun(logFile: string): ChildProcess {
    writeFileSync(logFile, '', { flag: 'a' });
    const out = createWriteStream(logFile, { flags: 'a' });
    const child = spawn(process.execPath, [bin, 'run', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    child.once('exit', () => setTimeout(() => out.end(), 100));
    return child;
  }

  /** `chartlog <args> --config F` to its end: exit code and output (stdout and stderr). */
  async runToEnd(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
    const child = spawn(process.execPath, [bin, ...args, '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    return { code, output };
  }

  /**
   * Sends `signal` to the running `chartlog run` without waiting for anything (SIGSTOP/SIGCONT:
   * freezing it while a test looks at the archive). False when none is running.
   */
  signal(signal: NodeJS.Signals): boolean {
    const c = this.child;
    return c !== null && c.exitCode === null && c.kill(signal);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    const c = this.child;
    if (!c || c.exitCode !== null) return c?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
    c.kill(signal);
    const code = await exited;
    this.child = null;
    return code;
  }

  logText(): string {
    return readFileSync(this.logFile, 'utf8');
  }

  /**
   * Polls until the archive, replayed to its latest state, equals the source table by table;
   * returns '' on success or the last difference seen.
   */
  async converge(timeoutMs = 60_000): Promise<string> {
    const archive = openArchiveCodec(this.config, this.config.sources[0]!, this.store, true);
    let lastDiff = 'not compared yet';
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
      await sleep(500);
      let result;
      try {
        result = await replayArchive({ store: this.store, source: 'clinic', codec: archive.codec, schemas: archive.schemas, envelopes: archive.envelopes, to: { kind: 'latest' }, open: true });
      } catch (err) {
        lastDiff = `replay failed: ${(err as Error).message}`;
        continue;
      }
      lastDiff = '';
      for (const table of ['patients', 'visits']) {
        const expected = (await this.engine.rows(table)).map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, norm(v)])));
        const state = result.tables.get(this.engine.qualified(table));
        const actual = [...(state?.allRows() ?? [])]
          .map((row) => Object.fromEntries(Object.keys(expected[0] ?? row).map((k) => [k, norm(row[k] as CellValue | undefined)])))
          .sort((a, b) => Number(a.id) - Number(b.id));
        if (JSON.stringify(actual) !== JSON.stringify(expected)) {
          lastDiff = `${table}: archive has ${actual.length} rows, source ${expected.length}`;
          break;
        }
      }
      if (!lastDiff) return '';
    }
    return lastDiff;
  }

  /** Every stored object's bytes, for leak scans. */
  async storedObjects(): Promise<{ key: string; bytes: Uint8Array }[]> {
    const out: { key: string; bytes: Uint8Array }[] = [];
    for await (const o of this.store.listAll('clinic/')) out.push({ key: o.key, bytes: await this.store.get(o.key) });
    return out;
  }

  async close(): Promise<void> {
    await this.kill();
    this.log.end();
    if (this.storeKind === 's3') for await (const o of this.store.listAll('clinic/')) await this.store.delete(o.key);
    await this.store.close();
    if (!process.env.KEEP) rmSync(this.work, { recursive: true, force: true });
  }
}

/** Files under a directory, recursively (leak scans of a file:// store). */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}
