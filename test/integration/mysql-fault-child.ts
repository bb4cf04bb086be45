// A connector in a process of its own, for tests that kill it: streams a source from a position
// and prints one JSON line per batch (its position and the ids of its rows) on stdout.
// Usage: node --import tsx mysql-fault-child.ts <url> <schema.table> <serverId> [<from position>]
import { MysqlConnector } from '../../connectors/mysql/mysql-connector.js';
import { createLogger } from '../../src/core/logger.js';
import { Position } from '../../src/core/position.js';

const [url, table, serverId, from] = process.argv.slice(2);
const connector = new MysqlConnector(
  { name: 'child', url: url!, tables: [table!], mysql: { serverId: Number(serverId) } },
  { log: createLogger({ level: 'silent', format: 'json' }) },
);
for await (const b of connector.stream({ from: from ? Position.parse(from) : null })) {
  const ids = b.events.map((e) => (e.after ?? e.before)?.id ?? null);
  process.stdout.write(`${JSON.stringify({ pos: Position.format(b.position), ids: ids.map(String) })}\n`);
}
