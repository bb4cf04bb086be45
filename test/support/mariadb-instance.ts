import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';

const run = promisify(execFile);

/**
 * A private, throwaway MariaDB server for tests that need one of their own (restart, failover),
 * started per FIELD-NOTES: binlog ROW / FULL image / FULL metadata, GTID strict mode, root
 * without password (socket and 127.0.0.1), a `cdc` user with the CDC grants. The shared test
 * server comes from CHARTLOG_TEST_MARIADB_URL instead.
 */
export interface MariadbInstance {
  readonly dir: string;
  readonly port: number;
  readonly serverId: number;
  /** root, TCP. */
  readonly rootUrl: string;
  /** cdc/cdc: REPLICATION SLAVE, REPLICATION CLIENT, SELECT. */
  readonly cdcUrl: string;
  /** Starts the server again on the same data directory and port (after stop or kill). */
  start(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that stops answering without closing its connections. */
  freeze(): void;
  thaw(): void;
  /** Stops the server and removes its directory. */
  destroy(): Promise<void>;
  /** A root connection (caller ends it). */
  connect(database?: string): Promise<mysql.Connection>;
}

export interface MariadbInstanceOptions {
  readonly serverId: number;
  /** Extra mariadbd flags, e.g. ['--log-slave-updates']. */
  readonly args?: readonly string[];
  readonly port?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function startMariadbInstance(options: MariadbInstanceOptions): Promise<MariadbInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-mariadb-'));
  const port = options.port ?? (await freePort());
  const user = userInfo().username;
  mkdirSync(join(dir, 'binlog'));
  mkdirSync(join(dir, 'tmp'));
  await run('mariadb-install-db', [
    // A private tmpdir: concurrent installs sharing /tmp collide on temporary table names
    // ("Unknown table 'mysql.tmp_user_sys'"), which failed the failover test in CI.
    '--no-defaults', `--user=${user}`, `--datadir=${join(dir, 'data')}`, `--tmpdir=${join(dir, 'tmp')}`,
    '--auth-root-authentication-method=normal', '--skip-test-db',
  ]);
  const socket = join(dir, 'mysqld.sock');
  let child: ChildProcess | null = null;

  const start = async (): Promise<void> => {
    const mariadbd = existsSync('/usr/sbin/mariadbd') ? '/usr/sbin/mariadbd' : 'mariadbd';
    // setpriv --pdeathsig: the server dies with the test process, even when that one is killed
    // before its after() hooks run, so no orphaned server outlives a test run.
    const [command, prefix] = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', mariadbd]] : [mariadbd, []];
    child = spawn(command, [
      ...prefix,
      '--no-defaults', `--user=${user}`, `--datadir=${join(dir, 'data')}`, `--tmpdir=${join(dir, 'tmp')}`,
      `--socket=${socket}`, `--pid-file=${join(dir, 'mysqld.pid')}`, `--port=${port}`,
      '--bind-address=127.0.0.1', '--skip-name-resolve', `--log-error=${join(dir, 'error.log')}`,
      `--server-id=${options.serverId}`, `--log-bin=${join(dir, 'binlog', 'mysql-bin')}`,
      '--binlog-format=ROW', '--binlog-row-image=FULL', '--binlog-row-metadata=FULL', '--gtid-strict-mode=1',
      '--character-set-server=utf8mb4', '--collation-server=utf8mb4_unicode_ci', '--innodb-buffer-pool-size=64M',
      ...(options.args ?? []),
    ], { stdio: 'ignore', detached: true });
    child.unref();
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const c = await mysql.createConnection({ socketPath: socket, user: 'root' });
        await c.end();
        return;
      } catch (err) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`mariadbd did not start in ${dir}`, { cause: err });
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.ref(); // keep the event loop alive until the server has gone
    c.kill(sig);
    await exited;
    child = null;
  };

  try {
    await start();
  } catch (err) {
    await signal('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const setup = await mysql.createConnection({ socketPath: socket, user: 'root', multipleStatements: true });
  await setup.query(`SET sql_log_bin = 0;
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY 'cdc';
    GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'cdc'@'%';`);
  await setup.end();

  return {
    dir,
    port,
    serverId: options.serverId,
    rootUrl: `mysql://root@127.0.0.1:${port}/`,
    cdcUrl: `mysql://cdc:cdc@127.0.0.1:${port}/`,
    start,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    freeze: () => {
      child?.kill('SIGSTOP');
    },
    thaw: () => {
      child?.kill('SIGCONT');
    },
    async destroy() {
      await signal('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    connect: (database?: string) =>
      mysql.createConnection({
        host: '127.0.0.1', port, user: 'root', multipleStatements: true, ...(database ? { database } : {}),
        supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, timezone: 'Z', charset: 'utf8mb4',
      }),
  };
}

/** A database of its own on a shared server: `t_<random>`, dropped by `drop()`. */
export interface TestDatabase {
  readonly name: string;
  /** Root connection using the database, multipleStatements on. */
  readonly conn: mysql.Connection;
  drop(): Promise<void>;
}

export async function createTestDatabase(rootUrl: string): Promise<TestDatabase> {
  const u = new URL(rootUrl);
  const name = `t_${Math.random().toString(36).slice(2, 10)}`;
  const conn = await mysql.createConnection({
    host: u.hostname, port: Number(u.port || 3306), user: decodeURIComponent(u.username) || 'root',
    password: decodeURIComponent(u.password), multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true,
    dateStrings: true, timezone: 'Z', charset: 'utf8mb4',
  });
  await conn.query(`CREATE DATABASE \`${name}\``);
  await conn.query(`USE \`${name}\``);
  return {
    name,
    conn,
    async drop() {
      await conn.query(`DROP DATABASE IF EXISTS \`${name}\``).catch(() => undefined);
      await conn.end().catch(() => undefined);
    },
  };
}

/**
 * Reads batches from an async iterable until `enough(batches)` is true, then stops it. A guard
 * (not an assertion) ends a stream that never delivers, so a failing test fails instead of hanging.
 */
export async function takeUntil<T>(
  source: (signal: AbortSignal) => AsyncIterable<T>,
  enough: (items: readonly T[]) => boolean,
  guardMs = 60_000,
): Promise<T[]> {
  const ac = new AbortController();
  const items: T[] = [];
  const guard = setTimeout(() => ac.abort(), guardMs);
  try {
    for await (const item of source(ac.signal)) {
      items.push(item);
      if (enough(items)) break;
    }
  } finally {
    clearTimeout(guard);
    ac.abort();
  }
  if (!enough(items)) throw new Error(`stream ended after ${items.length} items without the expected data`);
  return items;
}

/**
 * Consumes an async iterable in the background, so a test can write, wait for what it wrote to
 * arrive (`waitFor`), and write again. `stop()` aborts the source and waits for it to end.
 */
export class Collector<T> {
  readonly items: T[] = [];
  private readonly ac = new AbortController();
  private failure: unknown = null;
  private ended = false;
  private readonly waiters = new Set<() => void>();
  private readonly done: Promise<void>;

  constructor(source: (signal: AbortSignal) => AsyncIterable<T>) {
    this.done = (async () => {
      try {
        for await (const item of source(this.ac.signal)) {
          this.items.push(item);
          this.wakeAll();
        }
      } catch (err) {
        this.failure = err;
      } finally {
        this.ended = true;
        this.wakeAll();
      }
    })();
  }

  /** Resolves once `ready(items)` holds; rejects if the source fails or ends first (or after the guard). */
  async waitFor(ready: (items: readonly T[]) => boolean, guardMs = 60_000): Promise<T[]> {
    const deadline = Date.now() + guardMs;
    for (;;) {
      if (ready(this.items)) return this.items;
      if (this.failure) throw this.failure;
      if (this.ended) throw new Error(`source ended after ${this.items.length} items without the expected data`);
      if (Date.now() > deadline) throw new Error(`gave up waiting after ${guardMs} ms with ${this.items.length} items`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 250);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  get error(): unknown {
    return this.failure;
  }

  async stop(): Promise<void> {
    this.ac.abort();
    await this.done;
  }

  private wakeAll(): void {
    for (const w of this.waiters) w();
    this.waiters.clear();
  }
}
