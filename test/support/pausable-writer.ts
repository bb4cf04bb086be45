import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A concurrent client for DDL tests: runs `step(n)` (n = 1, 2, …; one or two small transactions)
 * until stopped, `gapMs` apart, and pauses around each moment a test captures the source, so the
 * capture and the moment agree.
 */
export class PausableWriter {
  private n = 0;
  private stopped = false;
  private paused = false;
  private idle: Promise<void> = Promise.resolve();
  private loop: Promise<void> | null = null;
  /** Steps completed. */
  commits = 0;

  constructor(
    private readonly step: (n: number) => Promise<void>,
    private readonly gapMs = 5,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        if (this.paused) {
          await sleep(5);
          continue;
        }
        let done!: () => void;
        this.idle = new Promise((r) => (done = r));
        try {
          await this.step(++this.n);
          this.commits++;
        } finally {
          done();
        }
        await sleep(this.gapMs);
      }
    })();
  }

  /** Waits for the step under way, and holds the next until `resume`. */
  async pause(): Promise<void> {
    this.paused = true;
    await this.idle;
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** The lines of a `chartlog run` JSON log with this message. */
export function logLines(file: string, msg: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
