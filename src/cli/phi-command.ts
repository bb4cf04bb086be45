import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { configureLogger } from '../core/logger.js';
import { usageError } from '../core/errors.js';
import { classificationJson, renderClassificationYaml } from '../phi/phi-classifier.js';
import { classifySources } from '../pipeline/phi-classify.js';

const MAX_SAMPLE = 10_000;

/**
 * `chartlog phi classify --config F [--source S] [--sample N] [--json]`: proposes a
 * classification of every captured column (PHI or reviewed public) from the catalog and a small
 * read-only sample of values, as YAML to paste under `phi:` (docs/operations.md). It prints
 * column names and counts per detector, never a value; sampled values stay in memory. Needs no
 * keyring and no object store, and writes nothing.
 */
export function registerPhiCommand(program: Command): void {
  const phi = program.command('phi').description('PHI classification helpers');
  phi
    .command('classify')
    .description('propose phi.columns / phi.publicColumns from the source catalog and a sample of values (prints names and counts, never a value)')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .option('-s, --source <name>', 'only this source (default: all)')
    .option('--sample <n>', `rows sampled per table, 0 for names only (at most ${MAX_SAMPLE})`, '100')
    .option('--json', 'print JSON for machines')
    .action(async (opts: { config: string; source?: string; sample: string; json?: boolean }) => {
      if (!/^\d+$/.test(opts.sample) || Number(opts.sample) > MAX_SAMPLE) {
        throw usageError(`--sample: expected a whole number from 0 to ${MAX_SAMPLE}, got ${JSON.stringify(opts.sample)}`, 'for example --sample 100');
      }
      const sample = Number(opts.sample);
      const config = loadConfig(opts.config);
      configureLogger({ level: config.log.level, format: config.log.format });
      const sources = opts.source === undefined ? config.sources : config.sources.filter((s) => s.name === opts.source);
      if (sources.length === 0) {
        throw usageError(`--source: no source named "${opts.source}" in ${opts.config}`, `use one of: ${config.sources.map((s) => s.name).join(', ')}`);
      }
      const findings = await classifySources(sources, sample);
      const header = { sources: sources.map((s) => `${s.name} (${s.type})`), sample };
      process.stdout.write(opts.json ? `${JSON.stringify(classificationJson(findings, header), null, 2)}\n` : renderClassificationYaml(findings, header));
    });
}
