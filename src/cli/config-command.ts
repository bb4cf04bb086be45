import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadConfig, maskSecrets } from '../config/load.js';
import { configureLogger } from '../core/logger.js';
import { checkSources } from '../pipeline/source-runtime.js';

/**
 * `chartlog config check --config F [--source-check]`: validate, print the resolved
 * configuration, secrets masked. With --source-check it also connects to every source and runs
 * what `chartlog run` checks there before reading anything: the CDC setup, and that every PHI
 * table and column the configuration names is one the source captures (exit 2 naming the
 * configuration path and the closest existing name when one is not). Nothing is written.
 */
export function registerConfigCommand(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate a configuration file and print it resolved, with defaults filled in and secrets masked')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .option('--source-check', "also connect to every source: check its CDC setup, and that every PHI table and column named in phi.* is one it captures (creates nothing)")
    .action(async (opts: { config: string; sourceCheck?: boolean }) => {
      const cfg = loadConfig(opts.config);
      let checked = '';
      if (opts.sourceCheck) {
        configureLogger({ level: cfg.log.level, format: cfg.log.format });
        const results = await checkSources(cfg, cfg.sources);
        checked = results.map((r) => `# source ${r.source}: ready for CDC; every PHI name matches its ${r.tables} captured table${r.tables === 1 ? '' : 's'}\n`).join('');
      }
      process.stdout.write(`# ${opts.config}: valid\n${checked}${stringify(maskSecrets(cfg))}`);
    });
}
