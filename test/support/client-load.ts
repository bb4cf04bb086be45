import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A real database client (pgbench, sysbench) run as the concurrent load of a DDL test. The
 * matrix pauses it around each moment it captures the source (DdlMatrix): the process is stopped
 * (SIGSTOP) and `quiet` is awaited — none of its server sessions is executing a statement — so
 * no commit of it is under way while the moment is taken and the source captured; a transaction
 * it left open commits after the moment, after SIGCONT. `progress` reads the client's own
 * per-second report lines, so the test can show the load really ran.
 */
export class ClientLoad {
  private child: ChildProcess | null = null;
  private output = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: {
      readonly command: string;
      readonly args: readonly string[];
      readonly env?: NodeJS.ProcessEnv;
      /** True when none of the client's sessions is running a statement. */
      readonly quiet: () => Promise<boolean>;
      /**
       * A text that changes whenever one of the client's sessions runs a statement (its sessions'
       * statement counters or state-change times). Quiet is not enough: a statement the client
       * sent just before SIGSTOP may wait in the socket, unseen, and run while a moment is taken.
       */
      readonly activity: () => Promise<string>;
      /** Transactions per second on one report line of the client's output, or null. */
      readonly tps: (line: string) => number | null;
    },
  ) {}

  start(): void {
    const child = spawn(this.o.command, [...this.o.args], { env: { ...process.env, ...this.o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (b: Buffer): void => {
      this.output = (this.output + b.toString()).slice(-200_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Stops the client and waits until its sessions are idle (or idle in a transaction). */
  async pause(): Promise<void> {
    this.signal('SIGSTOP');
    for (let i = 0; !(await this.o.quiet()); i++) {
      if (i > 600) throw new Error(`${this.o.command} did not go quiet within 30 s`);
      await sleep(50);
    }
  }

  /** See the `activity` option: equal before and after a moment when no statement ran during it. */
  activity(): Promise<string> {
    return this.o.activity();
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  /** Ends the client; the transactions it reported (sum of per-second rates, about). */
  async stop(): Promise<number> {
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    await this.exited;
    return this.transactions();
  }

  /** About how many transactions the client has reported so far. */
  transactions(): number {
    return Math.round(this.output.split('\n').reduce((sum, line) => sum + (this.o.tps(line) ?? 0), 0));
  }

  /** The client's output so far (its errors, when it exits early). */
  get log(): string {
    return this.output;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.running) this.child!.kill(sig);
  }
}
