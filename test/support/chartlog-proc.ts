import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { chartlogBin } from './chartlog-process.js';

/** A `chartlog` process running in the background, its stdout and stderr in `logFile`. */
export class Proc {
  readonly child: ChildProcess;
  private readonly out: WriteStream;
  constructor(
    args: string[],
    readonly logFile: string,
  ) {
    writeFileSync(logFile, '');
    this.out = createWriteStream(logFile, { flags: 'a' });
    this.child = spawn(process.execPath, [chartlogBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.pipe(this.out, { end: false });
    this.child.stderr!.pipe(this.out, { end: false });
  }
  text(): string {
    return readFileSync(this.logFile, 'utf8');
  }
  async waitFor(pattern: RegExp, what: string, timeoutMs = 60_000): Promise<void> {
    for (const deadline = Date.now() + timeoutMs; !pattern.test(this.text()); await sleep(50)) {
      assert.ok(this.child.exitCode === null, `${what}: the process exited ${this.child.exitCode} (see ${this.logFile})`);
      assert.ok(Date.now() < deadline, `${what} (see ${this.logFile})`);
    }
  }
  async stop(signal: NodeJS.Signals): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.child.kill(signal);
    const code = await exited;
    this.out.end();
    return code;
  }
}

