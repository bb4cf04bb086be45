import type { SourceConfig } from '../src/config/schema.js';
import { configError } from '../src/core/errors.js';
import type { Logger } from '../src/core/logger.js';
import type { SourceConnector } from '../src/core/source-connector.js';
import { MysqlConnector } from './mysql/mysql-connector.js';
import { PostgresConnector } from './postgres/postgres-connector.js';

/** What every connector may get from the pipeline besides its configuration. */
export interface ConnectorDeps {
  readonly logger?: Logger;
}

type ConnectorFactory = (source: SourceConfig, deps: ConnectorDeps) => SourceConnector;

/**
 * One line per database type (DESIGN.md §7): nothing outside a connector branches on the
 * database's name.
 */
const connectors: Record<string, ConnectorFactory> = {
  postgres: (source, deps) => new PostgresConnector(source, deps),
  mysql: (source, deps) => new MysqlConnector(source, deps.logger ? { log: deps.logger } : {}),
};

export function createConnector(source: SourceConfig, deps: ConnectorDeps = {}): SourceConnector {
  const factory = connectors[source.type];
  if (!factory) throw configError(`no connector for source type "${source.type}"`, `use one of: ${Object.keys(connectors).join(', ')}`);
  return factory(source, deps);
}
