import { usageError } from '../core/errors.js';
import { REPLICA_NAME, type ReplicaState } from '../archive/replica-state.js';

/** Where a replica is, without credentials (no user name, no password): what its state object records. */
export type ReplicaLocation = ReplicaState['target'];

/**
 * The target URL's engine, host, port and database (pure). A PostgreSQL URL may give its host
 * in `?host=` (a socket directory); no host means the driver's default, `localhost`.
 */
export function replicaLocation(url: string): ReplicaLocation {
  const u = new URL(url);
  const kind = /^postgres(ql)?:$/.test(u.protocol) ? 'postgres' : 'mysql';
  const host = decodeURIComponent(u.hostname) || u.searchParams.get('host') || 'localhost';
  const port = u.port === '' ? null : Number(u.port);
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || (kind === 'postgres' ? (u.searchParams.get('dbname') ?? '') : '');
  return { kind, host, port, database };
}

/**
 * The replica's name (pure): `--name` when given, checked; else derived from where it is:
 * `<engine>-<host>[-<port>]-<database>`, lowercased, other characters as '-', at most 64.
 */
export function replicaName(given: string | undefined, at: ReplicaLocation): string {
  if (given !== undefined) {
    if (!REPLICA_NAME.test(given)) throw usageError(`--name ${JSON.stringify(given)}: expected 1 to 64 of a-z, 0-9, '_' and '-'`, 'e.g. --name analytics-replica');
    return given;
  }
  const raw = [at.kind, at.host, ...(at.port === null ? [] : [String(at.port)]), at.database].join('-');
  const name = raw.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/-{2,}/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  return name === '' ? at.kind : name;
}
