import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { chartlogBin } from './chartlog-process.js';
import { requireEnv } from './env.js';

/** One status line of `chartlog replicate --json` (src/replicate/replicator.ts ReplicaStatus). */
export interface StatusLine {
  started: 'load' | 'resume';
  position: string;
  appliedTransactions: number;
  appliedRows: number;
  rowsPerSecond: number;
  lagTransactions: number;
  lagSeconds: number;
  loadSeconds?: number;
}

/** An empty database on the test PostgreSQL server, for a replica. */
export async function createTargetDb(): Promise<{ url: string; client: pg.Client; drop(): Promise<void> }> {
  const base = requireEnv('CHARTLOG_TEST_PG_URL');
  const name = `rep_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = base.replace(/\/[^/]*$/, `/${name}`);
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  client.on('error', () => undefined);
  await client.connect();
  return {
    url,
    client,
    drop: async () => {
      await client.end().catch(() => undefined);
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    },
  };
}

/** `chartlog replicate … --json` as a real process: its status lines parsed, everything logged to a file. */
export class ReplicaProcess {
  private child: ChildProcess | null = null;
  readonly statuses: StatusLine[] = [];
  output = '';
  exitCode: number | null = null;

  constructor(
    private readonly args: readonly string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly logFile: string,
  ) {}

  start(): void {
    const child = spawn(process.execPath, [chartlogBin, 'replicate', ...this.args, '--json', '--status-interval', '1', '--poll-interval', '100'], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    this.exitCode = null;
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => {
      appendFileSync(this.logFile, d);
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) if (l.startsWith('{')) this.statuses.push(JSON.parse(l) as StatusLine);
    });
    child.stderr!.on('data', (d: Buffer) => {
      appendFileSync(this.logFile, d);
      this.output += d.toString();
    });
    child.once('exit', (code) => (this.exitCode = code ?? -1));
    this.child = child;
  }

  /** Waits for a status line (of this start) that satisfies `ok`. */
  async waitFor(ok: (s: StatusLine) => boolean, timeoutMs: number, what: string): Promise<StatusLine> {
    const from = this.statuses.length;
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
      const hit = this.statuses.slice(from).find(ok);
      if (hit) return hit;
      if (this.exitCode !== null) throw new Error(`chartlog replicate exited with ${this.exitCode} while waiting for ${what}: ${this.output.slice(-2000)}`);
      await sleep(50);
    }
    throw new Error(`timed out waiting for ${what} (see ${this.logFile})`);
  }

  async kill(signal: NodeJS.Signals): Promise<number | null> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return c?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
    c.kill(signal);
    return exited;
  }
}

/**
 * Every row of a table as PostgreSQL's text form of the whole row, sorted: comparing two such
 * lists compares value by value, and duplicates show as extra lines.
 */
export async function rowTexts(client: pg.Client, table: string, columns?: readonly string[]): Promise<string[]> {
  const select = columns ? `ROW(${columns.join(', ')})::text` : 't::text';
  const { rows } = await client.query<{ r: string }>(`SELECT ${select} AS r FROM ${table} t`);
  return rows.map((r) => r.r).sort();
}

/** '' when both lists hold the same rows the same number of times; else the first difference. */
export function multisetDiff(expected: readonly string[], actual: readonly string[]): string {
  const count = new Map<string, number>();
  for (const r of expected) count.set(r, (count.get(r) ?? 0) + 1);
  for (const r of actual) count.set(r, (count.get(r) ?? 0) - 1);
  let extra = 0;
  let missing = 0;
  for (const n of count.values()) {
    if (n > 0) missing += n;
    if (n < 0) extra -= n;
  }
  return extra === 0 && missing === 0 ? '' : `${expected.length} rows expected, ${actual.length} found: ${missing} missing, ${extra} extra (or repeated)`;
}
