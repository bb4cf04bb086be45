import { readFileSync } from 'node:fs';
import type { ClientConfig, CustomTypesConfig } from 'pg';
import type { TlsSettings } from '../../src/core/tls-settings.js';

/**
 * Session settings on every chartlog connection, replication ones included (pgoutput formats
 * values with the walsender's settings). The parsers in type-parsers.ts rely on them:
 * timestamptz printed in UTC ('+00') whatever the role's TimeZone, ISO dates, hex bytea,
 * shortest exact floats.
 */
export const SESSION_OPTIONS =
  '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex';

/**
 * Per-connection type parsers that return the server's text unchanged. pg's global parsers
 * (pg.types) are shared by every pg user in the process and are lossy; chartlog never touches
 * them and parses the text itself.
 */
export const RAW_TEXT_TYPES: CustomTypesConfig = {
  getTypeParser: (() => (value: string) => value) as CustomTypesConfig['getTypeParser'],
};

/**
 * `useTls`: whether this attempt uses TLS (TlsPreference decides it for `prefer`; for the other
 * modes it is `mode !== 'disable'`).
 */
export function clientConfig(url: string, tls: TlsSettings, applicationName: string, useTls: boolean = tls.mode !== 'disable'): ClientConfig {
  return {
    connectionString: url,
    ssl: useTls ? sslOptions(tls) : false,
    options: SESSION_OPTIONS,
    types: RAW_TEXT_TYPES,
    application_name: applicationName,
    // A server that stops answering must surface as a lost connection, not a hang.
    keepAlive: true,
    connectionTimeoutMillis: 15_000,
  };
}

/** node-postgres has no `prefer` (issue #2720): its 'N' answer to SSLRequest is this error, raised before any login. */
export function serverHasNoTls(err: unknown): boolean {
  return err instanceof Error && err.message === 'The server does not support SSL connections';
}

export function sslOptions(tls: TlsSettings): ClientConfig['ssl'] {
  if (tls.mode === 'disable') return false;
  const files = {
    ...(tls.ca ? { ca: readFileSync(tls.ca, 'utf8') } : {}),
    ...(tls.cert ? { cert: readFileSync(tls.cert, 'utf8') } : {}),
    ...(tls.key ? { key: readFileSync(tls.key, 'utf8') } : {}),
  };
  // prefer, like libpq's, checks no certificate: it guards against eavesdropping, not against a
  // man in the middle. verify-full does.
  return tls.mode === 'verify-full' ? { ...files, rejectUnauthorized: true } : { ...files, rejectUnauthorized: false };
}
