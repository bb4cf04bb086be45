import { configError } from '../src/core/errors.js';
import { MYSQL_COMMIT_TIME_RESOLUTION_US } from './mysql/binlog-position.js';
import { POSTGRES_COMMIT_TIME_RESOLUTION_US } from './postgres/lsn.js';

/**
 * How exact each source type's commit times are, in µs, as its connector declares: one line per
 * database type, like registry.ts. Apart from the registry so that restore and timeline, which ask
 * only this, do not load every connector and its driver (binlog reader, replication client) at
 * start-up.
 */
const resolutions: Record<string, bigint> = {
  postgres: POSTGRES_COMMIT_TIME_RESOLUTION_US,
  mysql: MYSQL_COMMIT_TIME_RESOLUTION_US,
};

/** How exact a source type's commit times are, in µs, as its connector declares (restore and timeline ask). */
export function commitTimeResolutionUs(type: string): bigint {
  const r = resolutions[type];
  if (r === undefined) throw configError(`no connector for source type "${type}"`, `use one of: ${Object.keys(resolutions).join(', ')}`);
  return r;
}
