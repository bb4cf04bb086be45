/**
 * Memory of the archive operations (issue 15: "restore, snapshot, synthesis, hour closing and
 * verify … each stay ≤ 512 MiB RSS"): peak RSS and time of hour closing, snapshot synthesis and
 * verify, each alone in a fresh process (benchmarks/lib/archive-memory-op.ts), on a file://
 * archive of a base snapshot of N patient rows and one hour of N/2 changes
 * (benchmarks/lib/archive-memory-build.ts) — for this tree and, in the same run on copies of
 * the same archive, for a baseline tree (default: `git archive main`, the code before).
 *
 *   node --import tsx benchmarks/archive-memory.bench.ts [--rows 1000000] [--reps 1] [--baseline main|none|DIR]
 *
 * Per repetition and tree: a fresh copy of the archive, then close the hour, synthesise a
 * snapshot (from the base plus the closed hour), verify. Lower is better. Writes
 * benchmarks/results/archive-memory.json (archive-memory-<rows>.json for other sizes than 1M).
 */
import { execFileSync, execSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchRun, goal, measurement } from './lib/bench-report.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    reps: { type: 'string', default: '1' },
    baseline: { type: 'string', default: 'main' },
    // A subset, for the larger sizes (synthesis of 5M rows takes most of an hour on a loaded machine).
    ops: { type: 'string', default: 'close,synthesise,verify' },
    // Changes per transaction (verify's transaction log grows with their number).
    'tx-size': { type: 'string', default: '100' },
    // Build the archive into DIR and keep it (with DIR.built.json), or reuse it when built already:
    // the 10M-row archive takes most of an hour to build on a loaded machine.
    archive: { type: 'string' },
  },
});
const ROWS = Number(args.rows);
const REPS = Math.max(1, Number(args.reps));
const OPS = args.ops!.split(',');
const TX_SIZE = Number(args['tx-size']);
if (!Number.isInteger(TX_SIZE) || TX_SIZE < 1 || !Number.isInteger(ROWS) || ROWS < 10 || !Number.isInteger(REPS) || OPS.some((op) => !['close', 'synthesise', 'verify'].includes(op)) || (OPS.includes('synthesise') && !OPS.includes('close'))) {
  console.error('usage: archive-memory.bench.ts [--rows N ≥ 10] [--reps N] [--baseline main|none|DIR] [--ops close,synthesise,verify] (synthesise needs close) [--tx-size N ≥ 1] [--archive DIR]');
  process.exit(2);
}
const HERE = resolve(new URL('..', import.meta.url).pathname);
const work = mkdtempSync(join(os.tmpdir(), 'chartlog-archive-memory-'));
const LIMIT_MIB = 512;

/** The baseline tree: a git ref exported beside this run, or a directory given. */
function baselineRoot(): string | null {
  if (args.baseline === 'none') return null;
  if (existsSync(args.baseline!)) return resolve(args.baseline!);
  const dir = join(work, 'baseline');
  execSync(`mkdir -p ${dir} && git -C ${HERE} archive ${args.baseline} | tar -x -C ${dir}`);
  symlinkSync(resolve(HERE, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

interface OpResult {
  op: string;
  ms: number;
  vmHwmMiB: number;
  [k: string]: unknown;
}

function run(script: string, argv: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', script, ...argv], { cwd: HERE, encoding: 'utf8', maxBuffer: 64 * 2 ** 20, stdio: ['ignore', 'pipe', 'inherit'] });
}

const lastJson = (out: string): OpResult => JSON.parse(out.trim().split('\n').filter((l) => l.startsWith('{"op"') || l.startsWith('{"hour"')).at(-1)!) as OpResult;

try {
  const archive = args.archive ? resolve(args.archive) : join(work, 'archive');
  type Built = { hour: string; ms: number; rows: number; transactions: number; snapshotMs: number; snapshotVmHwmMiB: number };
  let built: Built;
  if (args.archive && existsSync(`${archive}.built.json`)) {
    built = JSON.parse(readFileSync(`${archive}.built.json`, 'utf8')) as Built;
    if (built.rows !== ROWS) throw new Error(`${archive} holds ${built.rows} rows, not ${ROWS}`);
    console.log(`reusing the archive in ${archive}`);
  } else {
    console.log(`building the archive: ${ROWS} snapshot rows, ${Math.floor(ROWS / 2)} changes in one hour, ${TX_SIZE} per transaction…`);
    built = lastJson(run(join(HERE, 'benchmarks/lib/archive-memory-build.ts'), [archive, String(ROWS), String(TX_SIZE)])) as unknown as Built;
    if (args.archive) writeFileSync(`${archive}.built.json`, JSON.stringify(built));
  }
  const archiveMiB = Math.round(Number(execSync(`du -sk ${archive}`).toString().split('\t')[0]) / 1024);
  console.log(`built in ${(built.ms / 1000).toFixed(1)} s, ${archiveMiB} MiB, hour ${built.hour}`);
  const trees: [string, string][] = [['after', HERE]];
  const base = baselineRoot();
  if (base) trees.push(['before', base]);

  const results = new Map<string, OpResult[]>();
  for (let rep = 0; rep < REPS; rep++) {
    for (const [name, root] of trees) {
      const copy = join(work, `copy-${name}`);
      rmSync(copy, { recursive: true, force: true });
      cpSync(archive, copy, { recursive: true });
      for (const op of OPS) {
        const r = lastJson(run(join(HERE, 'benchmarks/lib/archive-memory-op.ts'), [op, copy, root, built.hour]));
        console.log(`${name.padEnd(6)} ${JSON.stringify(r)}`);
        const key = `${name} ${op}`;
        results.set(key, [...(results.get(key) ?? []), r]);
      }
      rmSync(copy, { recursive: true, force: true });
    }
  }

  const label: Record<string, string> = { close: `hour closing (${Math.floor(ROWS / 2)} events)`, synthesise: `snapshot synthesis (${ROWS} rows + ${Math.floor(ROWS / 2)} changes)`, verify: 'verify' };
  const snapshotLabel = `base snapshot write (${ROWS} rows, writeSnapshot fed by a generator)`;
  const bench = new BenchRun('archive-memory', 'Peak RSS and time of hour closing, snapshot synthesis and verify, before and after streaming them', `node --import tsx benchmarks/archive-memory.bench.ts --rows ${ROWS} --reps ${REPS} --baseline ${args.baseline}${args.ops === 'close,synthesise,verify' ? '' : ` --ops ${args.ops}`}${TX_SIZE === 100 ? '' : ` --tx-size ${TX_SIZE}`}`, {
    rows: ROWS,
    changes: Math.floor(ROWS / 2),
    transactions: built.transactions,
    changesPerTransaction: Math.round(Math.floor(ROWS / 2) / built.transactions),
    reps: REPS,
    archiveMiB,
    store: 'file:// (local disk)',
    baseline: args.baseline,
  });
  const snap = bench.add(measurement(`peak RSS, ${snapshotLabel}, after`, 'MiB', 'lower', 'chartlog', [built.snapshotVmHwmMiB]));
  bench.add(measurement(`time, ${snapshotLabel}, after`, 'ms', 'lower', 'detail', [built.snapshotMs]));
  bench.addGoal(goal(`${snapshotLabel}: peak RSS ≤ ${LIMIT_MIB} MiB`, snap.median, 'MiB', snap.median <= LIMIT_MIB));
  for (const op of OPS) {
    for (const [name] of trees) {
      const rs = results.get(`${name} ${op}`)!;
      const role = name === 'after' ? 'chartlog' : 'baseline';
      const rss = bench.add(measurement(`peak RSS, ${label[op]}, ${name}`, 'MiB', 'lower', role, rs.map((r) => r.vmHwmMiB)));
      bench.add(measurement(`time, ${label[op]}, ${name}`, 'ms', 'lower', 'detail', rs.map((r) => r.ms)));
      if (name === 'after') bench.addGoal(goal(`${label[op]}: peak RSS ≤ ${LIMIT_MIB} MiB (${ROWS} rows)`, rss.median, 'MiB', rss.median <= LIMIT_MIB));
    }
  }
  bench.note('Each operation runs alone in a fresh Node process; peak RSS is its VmHWM from /proc/self/status at the end (the Node runtime and tsx included, ≈ 90 MiB).');
  bench.note('"before" is the same operations run from a `git archive` of the baseline ref on a copy of the same archive, in the same run; synthesis runs after the hour is closed, so it replays the base snapshot plus the closed hour.');
  // Another size is written under its own name: the default size's committed result stays as it was.
  const defaultFile = join(HERE, 'benchmarks/results/archive-memory.json');
  const kept = existsSync(defaultFile) ? readFileSync(defaultFile) : null;
  const file = bench.write();
  if (ROWS !== 1_000_000 || TX_SIZE !== 100) {
    const renamed = file.replace(/archive-memory\.json$/, `archive-memory-${ROWS}${TX_SIZE === 100 ? '' : `-tx${TX_SIZE}`}.json`);
    cpSync(file, renamed);
    if (kept) writeFileSync(file, kept);
    else rmSync(file);
    console.log(`wrote ${renamed}`);
  } else console.log(`wrote ${file}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
