import { configError } from '../src/core/errors.js';
import type { ConnectorOptions, SourceConnector } from '../src/core/source-connector.js';
import { MysqlConnector, type MysqlSourceSettings } from './mysql/mysql-connector.js';
import { PostgresConnector, type PostgresSourceSettings } from './postgres/postgres-connector.js';

/** A source as the configuration gives it: what every connector reads, and its type. */
export type ConnectorSource = PostgresSourceSettings & MysqlSourceSettings & { readonly type: string };

/** What every connector may get from the pipeline besides its configuration (src/core/source-connector.ts). */
export type ConnectorDeps = ConnectorOptions;

type ConnectorFactory = (source: ConnectorSource, deps: ConnectorDeps) => SourceConnector;

/**
 * One line per database type (docs/architecture.md §7): nothing outside a connector branches on the
 * database's name.
 */
const connectors: Record<string, ConnectorFactory> = {
  postgres: (source, deps) => new PostgresConnector(source, deps),
  mysql: (source, deps) =>
    new MysqlConnector(source, { ...(deps.logger ? { log: deps.logger } : {}), ...(deps.requestResync ? { requestResync: deps.requestResync } : {}), ...(deps.recordTableStart ? { recordTableStart: deps.recordTableStart } : {}) }),
};

export function createConnector(source: ConnectorSource, deps: ConnectorDeps = {}): SourceConnector {
  const factory = connectors[source.type];
  if (!factory) throw configError(`no connector for source type "${source.type}"`, `use one of: ${Object.keys(connectors).join(', ')}`);
  return factory(source, deps);
}

export { commitTimeResolutionUs } from './commit-time-resolution.js';
