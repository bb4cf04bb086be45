/**
 * What the two CDC-throughput benchmarks (cdc-postgres, cdc-mariadb) share: unique names per
 * process, a working directory with a keyring, `chartlog run` as a real process timed until its
 * checkpoint in the object store covers a position, native tools timed as processes, and clean-up
 * that also runs on SIGINT/SIGTERM and removes what an earlier, killed run left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildSourceRuntime } from '../../src/pipeline/source-runtime.js';
import { parseConfig } from '../../src/config/load.js';
import { Position } from '../../src/core/position.js';
import { FsObjectStore } from '../../src/storage/fs-object-store.js';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { chartlogBin, chartlogNodeEnv, chartlogNodeFlags } from '../../test/support/chartlog-process.js';
import { procCpuSeconds } from './chartlog-pg-rig.js';
import { publicPatientColumns } from './patient-workload.js';

/** Prefix of every database, slot and temporary directory these benchmarks create. */
export const TAG = 'cdcb';

/** `cdcb_<pid>_<8 hex>`: the pid says whether the run that made it is still alive. */
export function uniqueName(): string {
  return `${TAG}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** The pid inside a name made by uniqueName(), or null for a name not ours. */
export function ownerPid(name: string): number | null {
  const m = new RegExp(`^${TAG}_(\\d+)_`).exec(name);
  return m ? Number(m[1]) : null;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True for a name of ours whose process is gone: a leftover of a killed run. */
export function isLeftover(name: string): boolean {
  const pid = ownerPid(name);
  return pid !== null && pid !== process.pid && !pidAlive(pid);
}

// ---------------------------------------------------------------------------------------------
// Clean-up: run in reverse order after each repetition, and on SIGINT/SIGTERM.

const cleanups: (() => Promise<void> | void)[] = [];
const children = new Set<ChildProcess>();

export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

export async function runCleanups(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      console.error(`clean-up step failed: ${(err as Error).message}`);
    }
  }
}

let handlersInstalled = false;
export function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`${signal}: cleaning up`);
    void runCleanups().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

/**
 * What a killed run left on this machine: its `chartlog run` processes (they outlive a SIGKILLed
 * parent where setpriv is missing, and keep their slot busy) are stopped, then its temporary
 * directories removed. Only processes whose command line names a working directory of ours whose
 * owner is gone; returns how many directories were removed.
 */
export async function sweepLeftovers(): Promise<number> {
  const orphans: number[] = [];
  const ours = new RegExp(`chartlog-${TAG}-(\\d+)-`);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    const m = ours.exec(cmdline);
    if (m && cmdline.includes('chartlog.js') && !pidAlive(Number(m[1]))) orphans.push(Number(entry));
  }
  for (const pid of orphans) {
    console.log(`stopping chartlog process ${pid}, left by a killed run`);
    process.kill(pid, 'SIGTERM');
  }
  for (const pid of orphans) {
    for (let i = 0; i < 200 && pidAlive(pid); i++) await sleep(50);
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  let removed = 0;
  for (const name of readdirSync(os.tmpdir())) {
    const m = new RegExp(`^chartlog-${TAG}-(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) {
      rmSync(join(os.tmpdir(), name), { recursive: true, force: true });
      removed++;
    }
  }
  return removed;
}

/**
 * `setpriv --pdeathsig TERM` before the command where util-linux has it: the kernel sends the
 * child SIGTERM when this process dies, even by SIGKILL, so no `chartlog run` outlives the
 * benchmark (it flushes, releases its slot and exits).
 */
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;
function withParentDeathSignal(command: string, args: readonly string[]): [string, string[]] {
  return setpriv ? [setpriv, ['--pdeathsig', 'TERM', command, ...args]] : [command, [...args]];
}

/** A temporary directory with a 0700 keys/ folder holding a new file keyring. */
export function makeWorkDir(): { dir: string; keyring: string } {
  const dir = mkdtempSync(join(os.tmpdir(), `chartlog-${TAG}-${process.pid}-`));
  onCleanup(() => {
    if (process.env.KEEP) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, 'keys'), { mode: 0o700 });
  const keyring = join(dir, 'keys', 'keyring.json');
  FileKeyring.create(keyring);
  return { dir, keyring };
}

export interface ChartlogConfigOptions {
  file: string;
  /** The `sources:` entry as one YAML flow mapping line (without the leading "- "). */
  source: string;
  storeDir: string;
  keyring: string;
  table: string;
  phi: readonly string[];
  /** Kafka brokers, a topic prefix and consumer group of its own; embedded bus when absent. */
  kafka?: { brokers: readonly string[]; topicPrefix: string; groupId: string; compression?: 'none' | 'gzip' };
}

export function writeChartlogConfig(o: ChartlogConfigOptions): void {
  const lines = ['sources:', `  - ${o.source}`];
  if (o.kafka) {
    lines.push(`bus: { type: kafka, kafka: { brokers: [${o.kafka.brokers.map((b) => `"${b}"`).join(', ')}], topicPrefix: ${o.kafka.topicPrefix}, groupId: ${o.kafka.groupId}${o.kafka.compression ? `, compression: ${o.kafka.compression}` : ''} } }`);
  }
  lines.push(
    `storage: { url: "file://${o.storeDir}" }`,
    'phi:',
    `  keyring: "file://${o.keyring}"`,
    `  columns: { ${o.table}: [${o.phi.join(', ')}] }`,
    // The other columns are reviewed as not PHI, so exactly the PHI columns are sealed
    // (unclassified columns would be sealed too by default, phi.unclassified).
    `  publicColumns: { ${o.table}: [${publicPatientColumns(o.phi).join(', ')}] }`,
    'log: { level: info, format: json }',
  );
  writeFileSync(o.file, `${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------

export interface ChartlogTiming {
  /** Spawn → checkpoint covering the target, seconds. */
  seconds: number;
  /** "pipeline streaming" (logged after start-up, checks and resume) → checkpoint covering the target, seconds; null when not logged. */
  streamingSeconds: number | null;
  /** Spawn → "pipeline streaming", seconds. */
  startupSeconds: number | null;
  exitCode: number | null;
  /** The process id (names its CPU profile, with --profile-dir). */
  pid: number | null;
  /** Peak resident set of the process (VmHWM from /proc) when the target was durable, MiB; null where /proc is not there. */
  peakRssMiB: number | null;
  /**
   * CPU seconds (user + system, every thread of the process) from spawn until the target was
   * durable; null where /proc is not there. On a loaded machine the wall time says more about
   * the neighbours than about chartlog; the CPU it spent per row does not.
   */
  cpuSeconds: number | null;
}

/** VmHWM of a live process in MiB, or null. */
export function peakRssMiB(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * `chartlog run --config F` as a real process (bin/chartlog.js), its output in a log file.
 * `covers` decides whether a checkpoint reaches the target.
 */
export class TimedChartlog {
  private child: ChildProcess | null = null;
  private spawnedAtMs = 0;

  constructor(
    private readonly configFile: string,
    private readonly storeDir: string,
    private readonly sourceName: string,
    readonly logFile: string,
    /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=…']. */
    private readonly nodeFlags: readonly string[] = [],
    /** The bin/chartlog.js to run: this checkout's, or another's (an old-vs-new pair, --compare-bin). */
    private readonly bin: string = chartlogBin,
  ) {}

  start(): void {
    appendFileSync(this.logFile, '');
    const log = createWriteStream(this.logFile, { flags: 'a' });
    this.spawnedAtMs = Date.now();
    // As shipped: the bin's shebang flags and environment (its young-generation size decides how
    // much of a row's cost is garbage collection), then the caller's.
    const [command, args] = withParentDeathSignal(process.execPath, [...chartlogNodeFlags, ...this.nodeFlags, this.bin, 'run', '--config', this.configFile]);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...chartlogNodeEnv } });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    child.once('exit', () => {
      children.delete(child);
      setImmediate(() => log.end());
    });
    children.add(child);
    this.child = child;
  }

  checkpoint(): Position | null {
    try {
      const text = readFileSync(join(this.storeDir, this.sourceName, 'state', 'checkpoint.json'), 'utf8');
      return Position.parse((JSON.parse(text) as { position: string }).position);
    } catch {
      return null; // not written yet (writes are atomic renames: never half a file)
    }
  }

  /**
   * Polls the checkpoint until `covers` holds; throws on timeout, when the process exits, or
   * when `failed` (checked about once a second) names a reason.
   */
  async waitFor(covers: (p: Position) => boolean, timeoutMs: number, failed?: () => string | null, pollMs = 10): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; ; i++) {
      if (failed && i % 100 === 99) {
        const reason = failed();
        if (reason) throw new Error(`${reason}; see ${this.logFile}`);
      }
      const p = this.checkpoint();
      if (p && covers(p)) return Date.now();
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) {
        throw new Error(`chartlog run exited with ${this.child.exitCode} before its checkpoint covered the target; see ${this.logFile}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`chartlog run: checkpoint ${p ? Position.format(p) : 'none'} did not cover the target within ${timeoutMs} ms; see ${this.logFile}`);
      }
      await sleep(pollMs);
    }
  }

  /** Waits until the log has a line with this message (after `from` characters). */
  async waitForLog(msg: string, timeoutMs: number, from = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.logTime(msg, from) === null) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) throw new Error(`chartlog run exited with ${this.child.exitCode}; see ${this.logFile}`);
      if (Date.now() > deadline) throw new Error(`chartlog run did not log "${msg}" within ${timeoutMs} ms; see ${this.logFile}`);
      await sleep(50);
    }
  }

  /** Starts, waits until the target is durable, stops with SIGTERM. */
  async timeUntil(covers: (p: Position) => boolean, timeoutMs: number, failed?: () => string | null): Promise<ChartlogTiming> {
    const logStart = this.logLength();
    this.start();
    const pid = this.child?.pid ?? null;
    const spawnedAt = this.spawnedAtMs;
    const doneAt = await this.waitFor(covers, timeoutMs, failed);
    // setpriv execs node, so the pid is chartlog's own.
    const peakRss = peakRssMiB(pid);
    const cpu = pid === null ? null : procCpuSeconds(pid);
    const streamingAt = this.logTime('pipeline streaming', logStart);
    const exitCode = await this.stop();
    return {
      seconds: (doneAt - spawnedAt) / 1000,
      streamingSeconds: streamingAt === null ? null : (doneAt - streamingAt) / 1000,
      startupSeconds: streamingAt === null ? null : (streamingAt - spawnedAt) / 1000,
      exitCode,
      pid,
      peakRssMiB: peakRss,
      cpuSeconds: cpu,
    };
  }

  /** SIGTERM (flush, acknowledge, exit) and wait; SIGKILL after `graceMs`. */
  async stop(graceMs = 60_000): Promise<number | null> {
    const c = this.child;
    this.child = null;
    if (!c) return null;
    if (c.exitCode !== null) return c.exitCode;
    const exited = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  private logLength(): number {
    try {
      return readFileSync(this.logFile, 'utf8').length;
    } catch {
      return 0;
    }
  }

  /** Whether the log holds this text (after `from` characters). */
  logHas(text: string, from = 0): boolean {
    try {
      return readFileSync(this.logFile, 'utf8').includes(text, from);
    } catch {
      return false;
    }
  }

  /** The pino `time` of the first line with this message after `from` characters of the log. */
  logTime(msg: string, from = 0): number | null {
    const text = readFileSync(this.logFile, 'utf8').slice(from);
    for (const line of text.split('\n')) {
      if (!line.includes(`"msg":"${msg}"`)) continue;
      try {
        return (JSON.parse(line) as { time: number }).time;
      } catch {
        return null;
      }
    }
    return null;
  }
}

/** Runs a native tool to its end; seconds from spawn to exit. Throws on a non-zero exit. */
export function timeCommand(command: string, args: readonly string[], options: { stdoutFile?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const out = openSync(options.stdoutFile ?? '/dev/null', 'w');
    const child = spawn(command, args, { stdio: ['ignore', out, 'pipe'], env: options.env ?? process.env });
    closeSync(out); // the child has its own copy
    children.add(child);
    const err: Buffer[] = [];
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const seconds = (performance.now() - started) / 1000;
      if (code === 0) resolve(seconds);
      else reject(new Error(`${command} exited with ${code ?? signal}: ${Buffer.concat(err).toString('utf8').slice(0, 2000)}`));
    });
  });
}

/**
 * One in-process pass over the backlog through the first stages of the pipeline, for a
 * breakdown of where chartlog's time goes: the connector alone (read, decode, convert to
 * ChangeBatches) or the connector plus sealing and Avro encoding (the codec), nothing
 * acknowledged, nothing sent to the bus or the store. Timed from the first stream() call until
 * the batch whose position `covers` the target; a new runtime (connector, keys, schemas) per
 * pass, built from the chartlog configuration file and an archive directory of its own.
 */
export async function stagePass(configFile: string, storeDir: string, from: Position | null, covers: (p: Position) => boolean, encode: boolean, timeoutMs: number): Promise<{ seconds: number; events: number }> {
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, process.env);
  const store = new FsObjectStore(storeDir);
  const deps = buildSourceRuntime(config, config.sources[0]!, store);
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  let events = 0;
  let done = false;
  const t0 = performance.now();
  try {
    for await (const batch of deps.connector.stream({ from, signal: stop.signal })) {
      events += batch.events.length;
      if (encode) await deps.encoder.encode(batch);
      if (covers(batch.position)) {
        done = true;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
    await deps.connector.close();
    await store.close();
  }
  if (!done) throw new Error(`stage pass (${encode ? 'connector + codec' : 'connector'}) did not reach the target within ${timeoutMs} ms`);
  return { seconds: (performance.now() - t0) / 1000, events };
}

/** Median helper for printing per-rep lines. */
export function fmtRate(rows: number, seconds: number): string {
  return `${Math.round(rows / seconds).toLocaleString('en-US')} rows/s (${seconds.toFixed(2)} s)`;
}
