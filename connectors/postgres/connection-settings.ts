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

export function clientConfig(url: string, tls: TlsSettings, applicationName: string): ClientConfig {
  return {
    connectionString: url,
    ssl: sslOptions(tls),
    options: SESSION_OPTIONS,
    types: RAW_TEXT_TYPES,
    application_name: applicationName,
    // A server that stops answering must surface as a lost connection, not a hang.
    keepAlive: true,
    connectionTimeoutMillis: 15_000,
  };
}

function sslOptions(tls: TlsSettings): ClientConfig['ssl'] {
  if (tls.mode === 'disable') return false;
  const files = {
    ...(tls.ca ? { ca: readFileSync(tls.ca, 'utf8') } : {}),
    ...(tls.cert ? { cert: readFileSync(tls.cert, 'utf8') } : {}),
    ...(tls.key ? { key: readFileSync(tls.key, 'utf8') } : {}),
  };
  return tls.mode === 'require' ? { ...files, rejectUnauthorized: false } : { ...files, rejectUnauthorized: true };
}
