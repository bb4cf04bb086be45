/**
 * Bytes of a table re-snapshot (`chartlog resync`) of the benchmark patient table, written by two
 * chartlog checkouts one after the other on the same archive (the same rows, the same machine):
 * `--compare-bin` (e.g. main's bin/chartlog.js, which seals a resync per row, format 4) and this
 * checkout (block seal, format 5). Then `chartlog restore --to latest` (this checkout, from the
 * newer table base) is checked equal to the source value by value.
 *
 *   eval "$(bash scripts/services.sh env)"
 *   node --import tsx benchmarks/resync-base-size.ts --rows 20000 --compare-bin /work/main/bin/chartlog.js
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BackgroundRun, pgConnect, waitForAnyCheckpoint, writeBenchConfig } from './lib/chartlog-pg-rig.js';
import { PATIENT_COLUMNS, PATIENT_PHI_COLUMNS, pgInsertPatients, pgPatientDdl } from './lib/patient-workload.js';
import { chartlogBin } from '../test/support/chartlog-process.js';
import { createPgDatabase, diffCaptures } from '../test/support/restore-engines.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '20000' }, 'compare-bin': { type: 'string' } } });
const rows = Number(values.rows);
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-resync-size-'));
const source = await createPgDatabase('rsize');
try {
  const c = await pgConnect(source.url);
  await c.query(pgPatientDdl('patients'));
  for (let i = 1; i <= rows; i += 10_000) await c.query(pgInsertPatients('patients', i, Math.min(rows, i + 9_999)));
  await c.end();
  const setup = writeBenchConfig(work, 'clinic', source.url, 'public.patients', PATIENT_PHI_COLUMNS);
  const run = new BackgroundRun(setup, join(work, 'run.log'));
  await run.streaming(120_000);
  await waitForAnyCheckpoint(setup, 60_000, run);
  if ((await run.stop()) !== 0) throw new Error(`chartlog run failed; see ${run.logFile}`);
  const tableBases = join(setup.backupDir, 'clinic', 'table-snapshots');
  const bytesOf = (id: string) => readdirSync(join(tableBases, id, 'public.patients')).reduce((n, f) => n + statSync(join(tableBases, id, 'public.patients', f)).size, 0);
  const resync = (bin: string): { id: string; bytes: number; seconds: number } => {
    const before = new Set(existsSync(tableBases) ? readdirSync(tableBases) : []);
    const started = performance.now();
    const r = spawnSync(process.execPath, [bin, 'resync', '--config', setup.configFile, '--source', 'clinic', '--tables', 'public.patients'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`resync with ${bin} failed: ${r.stderr.slice(0, 2000)}`);
    const id = readdirSync(tableBases).find((d) => !before.has(d))!;
    return { id, bytes: bytesOf(id), seconds: Math.round(performance.now() - started) / 1000 };
  };
  const out: Record<string, unknown> = { rows };
  if (values['compare-bin']) out.compare = resync(values['compare-bin']);
  out.this = resync(chartlogBin);
  const target = await createPgDatabase('rsizet');
  try {
    const r = spawnSync(process.execPath, [chartlogBin, 'restore', '--config', setup.configFile, '--source', 'clinic', '--to', 'latest', '--target', target.url], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`restore failed: ${r.stderr.slice(0, 2000)}`);
    const order = 'id';
    const got = await target.capture('public.patients', order);
    const want = await source.capture('patients', order);
    out.restoreEqualsSource = diffCaptures(got, want, 'patients') === null && got.length === rows && Object.keys(got[0]!).length === PATIENT_COLUMNS.length;
  } finally {
    await target.drop();
  }
  console.log(JSON.stringify(out, null, 2));
} finally {
  await source.drop();
  if (!process.env.KEEP) rmSync(work, { recursive: true, force: true });
}
process.exit();
