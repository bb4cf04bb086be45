/**
 * What the PostgreSQL benchmarks that run chartlog as a real process share: a source database
 * on the private PostgreSQL 15 of scripts/services.sh, a chartlog configuration (embedded bus,
 * file:// store in a temp directory, file keyring), `chartlog run` in the background with its
 * pid (for /proc/<pid>/status), waiting until the durable checkpoint covers a commit, and
 * timing any command as a process while sampling its memory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { chartlogBin, chartlogNodeEnv, chartlogNodeFlags } from '../../test/support/chartlog-process.js';
import { publicPatientColumns } from './patient-workload.js';

/** Session settings that make `row::text` the same on every connection. */
export const PG_SESSION = '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1';

/** A PostgreSQL binary of the private server's version (not Debian's pg_wrapper script). */
export function pgBin(name: string): string {
  return join(process.env.CHARTLOG_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin', name);
}

export async function pgConnect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, options: PG_SESSION });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

/** "16/B374D848" → BigInt. */
export function parseLsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export interface BenchSetup {
  work: string;
  sourceName: string;
  configFile: string;
  backupDir: string;
  store: FsObjectStore;
}

/**
 * A chartlog configuration in `work`: one PostgreSQL source capturing `table`, with its PHI
 * columns sealed by a new file keyring kept outside the backup root.
 */
export function writeBenchConfig(
  work: string,
  sourceName: string,
  url: string,
  table: string,
  phi: readonly string[],
  bus: { maxBufferedBatches?: number; maxBufferedBytes?: number } = {},
  postgres: { spillThresholdBytes?: number } = {},
  more: { maxPartBytes?: number; cryptoThreads?: number; snapshotConnections?: number } = {},
  /** The source's type; `mysql` also takes the MySQL/MariaDB settings. Default postgres. */
  engine: { type?: 'postgres' | 'mysql'; mysql?: { spillThresholdBytes?: number } } = {},
): BenchSetup {
  const keyring = join(work, 'keys', 'keyring.json');
  mkdirSync(join(work, 'keys'), { mode: 0o700 });
  FileKeyring.create(keyring);
  const backupDir = join(work, 'backup');
  const configFile = join(work, 'chartlog.yaml');
  writeFileSync(
    configFile,
    [
      'sources:',
      `  - { name: ${sourceName}, type: ${engine.type ?? 'postgres'}, url: "${url}", tables: [${table}]${more.snapshotConnections ? `, snapshot: { connections: ${more.snapshotConnections} }` : ''}${postgres.spillThresholdBytes ? `, postgres: { spillThresholdBytes: ${postgres.spillThresholdBytes} }` : ''}${engine.mysql?.spillThresholdBytes ? `, mysql: { spillThresholdBytes: ${engine.mysql.spillThresholdBytes} }` : ''} }`,
      `bus: { type: embedded${bus.maxBufferedBatches ? `, maxBufferedBatches: ${bus.maxBufferedBatches}` : ''}${bus.maxBufferedBytes ? `, maxBufferedBytes: ${bus.maxBufferedBytes}` : ''} }`,
      `storage: { url: "file://${backupDir}" }`,
      'phi:',
      `  keyring: "file://${keyring}"`,
      `  columns: { ${table}: [${phi.join(', ')}] }`,
      // The other columns reviewed as not PHI: exactly the PHI columns are sealed.
      `  publicColumns: { ${table}: [${publicPatientColumns(phi).join(', ')}] }`,
      ...(more.cryptoThreads !== undefined ? [`  cryptoThreads: ${more.cryptoThreads}`] : []),
      ...(more.maxPartBytes ? [`segments: { maxPartBytes: ${more.maxPartBytes} }`] : []),
      `log: { level: ${process.env.BENCH_LOG_LEVEL ?? 'info'}, format: json }`,
      '',
    ].join('\n'),
  );
  return { work, sourceName, configFile, backupDir, store: new FsObjectStore(backupDir) };
}

/** Peak and current resident set of a live process, in MiB, from /proc/<pid>/status. */
export function procMemoryMiB(pid: number): { hwm: number; rss: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { hwm: kb('VmHWM') / 1024, rss: kb('VmRSS') / 1024 };
  } catch {
    return null;
  }
}

/**
 * Samples VmRSS of a process every `everyMs` until stopped; `peak` is the largest seen. Also its
 * CPU time (user + system, all its threads) as last seen: up to `everyMs` short of the total at
 * exit. On a machine shared with other work, CPU time says what a change saved where wall-clock
 * time mostly says how busy the machine was.
 */
export class RssSampler {
  peakMiB = 0;
  cpuSeconds = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number, everyMs = 50) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  sample(): void {
    const m = procMemoryMiB(this.pid);
    if (m && Number.isFinite(m.rss)) this.peakMiB = Math.max(this.peakMiB, m.rss);
    const cpu = procCpuSeconds(this.pid);
    if (cpu !== null) this.cpuSeconds = cpu;
  }

  stop(): number {
    clearInterval(this.timer);
    return this.peakMiB;
  }
}

/** utime + stime of a live process from /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux). */
export function procCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** `chartlog run` in the background, its output in a log file, with its pid. */
export class BackgroundRun {
  readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  /**
   * Runs the binary as shipped: with the node flags and environment of its first line (chartlogNodeFlags, chartlogNodeEnv).
   * `nodeArgs` go to node after those (a diagnosis may override one), `env` adds to the environment,
   * `bin` is another checkout's bin/chartlog.js (old code, measured beside the new).
   */
  constructor(setup: BenchSetup, readonly logFile: string, nodeArgs: readonly string[] = [], env: Record<string, string> = {}, bin: string = chartlogBin) {
    const log = createWriteStream(logFile, { flags: 'a' });
    this.child = spawn(process.execPath, [...chartlogNodeFlags, ...nodeArgs, bin, 'run', '--config', setup.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...chartlogNodeEnv, ...env } });
    this.child.stdout!.pipe(log);
    this.child.stderr!.pipe(log);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Waits for the "pipeline streaming" line (after the base snapshot). */
  async streaming(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let text = '';
      try {
        text = readFileSync(this.logFile, 'utf8');
      } catch {
        // not written yet
      }
      if (text.includes('"msg":"pipeline streaming"')) return;
      if (this.child.exitCode !== null) throw new Error(`chartlog run exited with ${this.child.exitCode}; see ${this.logFile}`);
      if (Date.now() > deadline) throw new Error(`chartlog run did not start streaming within ${timeoutMs} ms; see ${this.logFile}`);
      await sleep(50);
    }
  }

  /** SIGTERM (flush, acknowledge, exit 0) and wait; SIGKILL after `graceMs`. */
  async stop(graceMs = 120_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/**
 * Waits until the durable checkpoint in the store holds a commit at or after `lsn` (16-hex
 * commit part compared as a number), polling every `everyMs`. Returns when it was seen.
 */
export async function waitForCheckpoint(setup: BenchSetup, lsn: bigint, timeoutMs: number, run?: BackgroundRun, everyMs = 50): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cp = await readCheckpoint(setup.store, setup.sourceName).catch(() => null);
    if (cp && BigInt(`0x${cp.position.commit}`) >= lsn) return performance.now();
    if (run && run.child.exitCode !== null) throw new Error(`chartlog run exited with ${run.child.exitCode}; see ${run.logFile}`);
    if (Date.now() > deadline) throw new Error(`the checkpoint did not reach LSN ${lsn.toString(16)} within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** Waits for any checkpoint (the base snapshot's, on a fresh store). */
export async function waitForAnyCheckpoint(setup: BenchSetup, timeoutMs: number, run?: BackgroundRun): Promise<void> {
  await waitForCheckpoint(setup, 0n, timeoutMs, run, 100);
}

export interface TimedProcess {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  /** Largest VmRSS seen, sampled every 50 ms. */
  peakRssMiB: number;
  /** CPU seconds (user + system, all threads) last sampled before exit (RssSampler). */
  cpuSeconds: number;
}

/** Runs a command to its end: wall-clock seconds from spawn to exit, and its sampled peak RSS. */
export function timeProcess(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<TimedProcess> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const sampler = new RssSampler(child.pid!);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      sampler.stop();
      reject(e);
    });
    child.on('exit', () => {
      // Measured at exit, before the pipes drain: the tool's own time.
      const seconds = (performance.now() - started) / 1000;
      const peakRssMiB = sampler.stop();
      const cpuSeconds = sampler.cpuSeconds;
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), seconds, peakRssMiB, cpuSeconds }));
    });
  });
}

export { chartlogBin };
