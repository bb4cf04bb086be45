/**
 * A connector in a process of its own, for tests that kill it with SIGKILL: streams the source
 * given as JSON in argv[2] (a SourceConfig) and prints one JSON line per batch
 * ({position, ids}), acknowledging nothing.
 */
import { PostgresConnector } from '../../connectors/postgres/postgres-connector.js';
import type { SourceConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';

const config = JSON.parse(process.argv[2]!) as SourceConfig;
const connector = new PostgresConnector(config, { logger: createLogger({ level: 'warn', format: 'json' }) });
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
for await (const b of connector.stream({ from: null })) {
  const ids = b.events.map((e) => String(e.after?.id ?? e.before?.id));
  process.stdout.write(JSON.stringify({ position: Position.format(b.position), ids }) + '\n');
}
