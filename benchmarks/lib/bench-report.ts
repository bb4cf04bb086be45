/**
 * What every benchmark writes: `benchmarks/results/<name>.json`, one shape for all of them so
 * the chart (benchmarks/chart.ts) and the README can read any result the same way.
 *
 * A measurement is repeated (≥ 3) and reported by its median. chartlog's figure and its
 * baseline (the native tool a user could run instead) are measured in the same run on the same
 * machine, so the ratio between them holds even when the machine's absolute speed drifts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';

export type Better = 'higher' | 'lower';

export interface Measurement {
  /** What was measured, e.g. "chartlog run (embedded bus, file://)". */
  name: string;
  /** "rows/s", "ms", "MB", "s". */
  unit: string;
  better: Better;
  /** "chartlog" for ours, "baseline" for the native tool it is compared with, "peer" for another CDC product a user could run instead (Debezium). */
  role: 'chartlog' | 'baseline' | 'peer' | 'detail';
  /** Every repetition, in the order measured. */
  reps: number[];
  median: number;
  min: number;
  max: number;
}

export interface Ratio {
  /** e.g. "chartlog / pg_recvlogical". */
  name: string;
  /** The median of chartlog over the median of the baseline (for "lower is better" figures the inverse, so > 1 is always "chartlog faster"). */
  value: number;
  /** The issue's goal for this ratio or figure, in words, e.g. "≥ 0.5×". */
  goal?: string;
  met?: boolean;
}

export interface Goal {
  /** e.g. "p99 ≤ 1500 ms". */
  goal: string;
  /** The figure compared with the goal. */
  value: number;
  unit: string;
  met: boolean;
}

export interface BenchResult {
  benchmark: string;
  title: string;
  date: string;
  command: string;
  parameters: Record<string, unknown>;
  measurements: Measurement[];
  ratios: Ratio[];
  goals: Goal[];
  notes: string[];
  machine: MachineFacts;
  versions: Record<string, string>;
}

export interface MachineFacts {
  cpu: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  arch: string;
  loadAverage1mBefore: number;
  loadAverage1mAfter: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Round to 3 significant digits: the noise of a shared machine makes more digits fiction. */
export function round3(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const d = Math.ceil(Math.log10(Math.abs(x)));
  const f = 10 ** (3 - d);
  return Math.round(x * f) / f;
}

export function measurement(name: string, unit: string, better: Better, role: Measurement['role'], reps: readonly number[]): Measurement {
  return { name, unit, better, role, reps: reps.map(round3), median: round3(median(reps)), min: round3(Math.min(...reps)), max: round3(Math.max(...reps)) };
}

/** chartlog's median relative to the baseline's, oriented so that > 1 means chartlog did better. */
export function ratio(ours: Measurement, baseline: Measurement, goalRatio?: number, name?: string): Ratio {
  const value = round3(ours.better === 'higher' ? ours.median / baseline.median : baseline.median / ours.median);
  const r: Ratio = { name: name ?? `${ours.name} / ${baseline.name}`, value };
  if (goalRatio !== undefined) {
    r.goal = `≥ ${goalRatio}×`;
    r.met = value >= goalRatio;
  }
  return r;
}

export function goal(text: string, value: number, unit: string, met: boolean): Goal {
  return { goal: text, value: round3(value), unit, met };
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** First line a command prints of its version, or "not found". */
export function toolVersion(command: string, args: string[] = ['--version']): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).split('\n')[0]!.trim();
  } catch {
    return 'not found';
  }
}

/**
 * A benchmark run: note the load before, collect measurements, write the JSON at the end.
 *
 *   const run = new BenchRun('cdc-postgres', 'PostgreSQL CDC throughput', 'npm run bench -- cdc-postgres', params);
 *   run.add(measurement(...)); run.addRatio(...); run.write();
 */
export class BenchRun {
  private readonly loadBefore = os.loadavg()[0]!;
  private readonly measurements: Measurement[] = [];
  private readonly ratios: Ratio[] = [];
  private readonly goals: Goal[] = [];
  private readonly notes: string[] = [];
  private readonly versions: Record<string, string> = {};

  constructor(
    readonly name: string,
    private readonly title: string,
    private readonly command: string,
    private readonly parameters: Record<string, unknown>,
  ) {
    this.versions.node = process.version;
    this.versions.openssl = process.versions.openssl;
    this.versions.chartlog = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    for (const p of ['avsc', 'kafkajs', 'pg', 'mysql2', '@vlasky/zongji', 'pg-logical-replication']) this.versions[p] = pkgVersion(p);
  }

  /** Records a tool's version (e.g. pg_recvlogical) next to the package versions. */
  version(name: string, value: string): void {
    this.versions[name] = value;
  }

  add(m: Measurement): Measurement {
    this.measurements.push(m);
    const fmt = (x: number): string => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : String(x));
    console.log(`${m.name.padEnd(56)} median ${fmt(m.median).padStart(10)} ${m.unit}  (reps: ${m.reps.map(fmt).join(', ')})`);
    return m;
  }

  addRatio(r: Ratio): void {
    this.ratios.push(r);
    console.log(`ratio ${r.name}: ${r.value}×${r.goal ? `  goal ${r.goal}: ${r.met ? 'met' : 'MISSED'}` : ''}`);
  }

  addGoal(g: Goal): void {
    this.goals.push(g);
    console.log(`goal ${g.goal}: ${g.value} ${g.unit} — ${g.met ? 'met' : 'MISSED'}`);
  }

  note(text: string): void {
    this.notes.push(text);
    console.log(`note: ${text}`);
  }

  /** Writes benchmarks/results/<name>.json and returns its path. */
  write(): string {
    const cpus = os.cpus();
    const result: BenchResult = {
      benchmark: this.name,
      title: this.title,
      date: new Date().toISOString(),
      command: this.command,
      parameters: this.parameters,
      measurements: this.measurements,
      ratios: this.ratios,
      goals: this.goals,
      notes: this.notes,
      machine: {
        cpu: cpus[0]?.model ?? 'unknown',
        cores: cpus.length,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        platform: `${os.platform()} ${os.release()}`,
        arch: os.arch(),
        // Other processes share the machine; the load average says how much they did.
        loadAverage1mBefore: round3(this.loadBefore),
        loadAverage1mAfter: round3(os.loadavg()[0]!),
      },
      versions: this.versions,
    };
    const dir = new URL('../results/', import.meta.url);
    mkdirSync(dir, { recursive: true });
    const file = new URL(`${this.name}.json`, dir);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    console.log(`wrote benchmarks/results/${this.name}.json`);
    return file.pathname;
  }
}
