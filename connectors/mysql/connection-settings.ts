import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'mysql2';
import { ChartlogError, configError } from '../../src/core/errors.js';
import type { TlsSettings } from '../../src/core/tls-settings.js';

/**
 * mysql2 options for a source URL (mysql:// or mariadb://), with the settings that keep values
 * exact on every connection chartlog opens, binlog or query:
 * - dateStrings + timezone 'Z': DATE/DATETIME as text, never shifted into the process's zone
 *   nor cut to milliseconds;
 * - supportBigNumbers + bigNumberStrings: 64-bit integers as exact strings, never rounded;
 * - jsonStrings: JSON as the server's text, big integers inside it intact;
 * - charset utf8mb4: four-byte characters (emoji) survive.
 */
export function connectionOptions(url: string, tls: TlsSettings = { mode: 'disable' }, useTls: boolean = tls.mode !== 'disable'): ConnectionOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw configError('the source url is not a valid URL', 'write it as mysql://user:password@host:3306/');
  }
  if (u.protocol !== 'mysql:' && u.protocol !== 'mariadb:') {
    throw configError(`a MySQL source needs a mysql:// url, not ${u.protocol}//`, 'write it as mysql://user:password@host:3306/');
  }
  const options: ConnectionOptions = {
    host: decodeURIComponent(u.hostname) || '127.0.0.1',
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    charset: 'utf8mb4',
    dateStrings: true,
    timezone: 'Z',
    supportBigNumbers: true,
    bigNumberStrings: true,
    jsonStrings: true,
    connectTimeout: 10_000,
  };
  const socket = u.searchParams.get('socket');
  if (socket) options.socketPath = socket;
  if (useTls && tls.mode !== 'disable') {
    // prefer checks no certificate (TlsPreference, src/core/tls-settings.ts); verify-full does.
    options.ssl = {
      rejectUnauthorized: tls.mode === 'verify-full',
      ...(tls.ca ? { ca: readFileSync(tls.ca, 'utf8') } : {}),
      ...(tls.cert ? { cert: readFileSync(tls.cert, 'utf8') } : {}),
      ...(tls.key ? { key: readFileSync(tls.key, 'utf8') } : {}),
    };
  }
  return options;
}

/** mysql2 refuses `ssl` against a server whose handshake lacks the SSL capability, before any login. */
export function serverHasNoTls(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'HANDSHAKE_NO_SSL_SUPPORT';
}

/**
 * A mysql2 error as a ChartlogError: lost connections and transient server conditions are
 * retriable, refused logins are auth errors. Only the server's message is kept: mysql2 attaches
 * the statement and its parameters (row values) to its errors, which must not travel on.
 */
export function sourceError(err: unknown): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const e = err as { errno?: number; code?: string; fatal?: boolean; message?: string };
  const message = e.message ?? String(err);
  if (e.errno === 1045) return new ChartlogError('auth', `the source refused the CDC user: ${message}`, { hint: 'check the user and password in sources[].url' });
  if (e.errno === 1142 || e.errno === 1227 || e.errno === 1044) {
    return new ChartlogError('auth', `the CDC user lacks a privilege: ${message}`, { hint: 'grant the CDC user REPLICATION SLAVE, REPLICATION CLIENT and SELECT' });
  }
  if (e.errno === 1146) return new ChartlogError('not_found', message, { hint: 'check the table names in sources[].tables' });
  // Table definition changed under an open snapshot (1412), deadlock (1213), lock wait (1205).
  if (e.errno === 1412 || e.errno === 1213 || e.errno === 1205) return new ChartlogError('connection', message, { retriable: true });
  const network = e.fatal === true || /^(PROTOCOL_|ECONN|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND)/.test(e.code ?? '');
  return new ChartlogError(network ? 'connection' : 'internal', `${e.code ?? 'error'}: ${message}`, { retriable: network });
}
