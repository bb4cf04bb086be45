import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The `chartlog` binary of this checkout, run as a real process. */
export const chartlogBin = join(import.meta.dirname, '..', '..', 'bin', 'chartlog.js');

/**
 * The node flags and the environment the binary's first line
 * (`#!/usr/bin/env -S NAME=VALUE… node …`) runs it with, as an operator's `chartlog` does; the
 * Dockerfile passes the same. Benchmarks that measure the process as shipped start it with
 * `process.execPath`, these flags and this environment.
 */
export const chartlogNodeFlags: readonly string[] = Object.freeze(shebangNodeFlags(readFileSync(chartlogBin, 'utf8')));
export const chartlogNodeEnv: Readonly<Record<string, string>> = Object.freeze(shebangLaunch(readFileSync(chartlogBin, 'utf8')).env);

export function shebangNodeFlags(text: string): string[] {
  return shebangLaunch(text).flags;
}

export function shebangLaunch(text: string): { env: Record<string, string>; flags: string[] } {
  const m = /^#!\/usr\/bin\/env(?: -S)?((?: [A-Z_][A-Z0-9_]*=\S+)*) node((?: [^\s]+)*)\s*$/m.exec(text.slice(0, text.indexOf('\n')));
  if (!m) throw new Error('bin/chartlog.js: the first line is not `#!/usr/bin/env [-S] [NAME=VALUE…] node [flags]`');
  const env = Object.fromEntries(m[1]!.trim().split(/\s+/).filter(Boolean).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
  return { env, flags: m[2]!.trim().split(/\s+/).filter(Boolean) };
}

export interface ChartlogResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one chartlog command to its end. */
export function runChartlog(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ChartlogResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [chartlogBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** `chartlog run` in the background, its output appended to a log file. */
export class ChartlogRun {
  private child: ChildProcess | null = null;
  private readonly log: WriteStream;
  private runs = 0;

  constructor(private readonly configFile: string, readonly logFile: string) {
    appendFileSync(logFile, '');
    this.log = createWriteStream(logFile, { flags: 'a' });
  }

  /** Starts it and waits until it logs that it is streaming. */
  async start(timeoutMs = 60_000): Promise<void> {
    this.runs++;
    const child = spawn(process.execPath, [chartlogBin, 'run', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(this.log, { end: false });
    child.stderr!.pipe(this.log, { end: false });
    this.child = child;
    const deadline = Date.now() + timeoutMs;
    while (this.streamingCount() < this.runs) {
      if (Date.now() > deadline) throw new Error(`chartlog run did not start streaming; see ${this.logFile}`);
      if (child.exitCode !== null) throw new Error(`chartlog run exited with ${child.exitCode}; see ${this.logFile}`);
      await sleep(50);
    }
  }

  private streamingCount(): number {
    return (readFileSync(this.logFile, 'utf8').match(/"msg":"pipeline streaming"/g) ?? []).length;
  }

  /** SIGTERM (flush and stop) or SIGKILL, and wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    c.kill(signal);
    await exited;
  }

  /**
   * Sends `signal` to the running process without waiting (SIGSTOP/SIGCONT: freezing it while a
   * test looks, so that a kill lands where it looked). False when none is running.
   */
  signal(signal: NodeJS.Signals): boolean {
    const c = this.child;
    return c !== null && c.exitCode === null && c.kill(signal);
  }

  async close(): Promise<void> {
    await this.stop('SIGKILL');
    this.log.end();
  }
}
