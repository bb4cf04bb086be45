import { createConnector } from '../../connectors/registry.js';
import type { SourceConfig } from '../config/schema.js';
import { logger } from '../core/logger.js';
import { classifyTable, type TableFinding } from '../phi/phi-classifier.js';

/**
 * `chartlog phi classify`: reads each source's catalog (`connector.tables()`) and up to `sample`
 * rows per table (`connector.sample()`, read-only), and classifies each table's columns. The rows
 * live only inside this loop, one table at a time; what comes back is names and counts. A table
 * captured by several sources is classified from the first.
 */
export async function classifySources(sources: readonly Readonly<SourceConfig>[], sample: number): Promise<TableFinding[]> {
  const out = new Map<string, TableFinding>();
  for (const source of sources) {
    const connector = createConnector(source, { logger: logger() });
    try {
      for (const table of await connector.tables()) {
        const finding = classifyTable(table, sample > 0 ? await connector.sample(table, sample) : []);
        if (!out.has(finding.table)) out.set(finding.table, finding);
      }
    } finally {
      await connector.close();
    }
  }
  return [...out.values()];
}
