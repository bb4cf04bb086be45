import type { Command } from 'commander';
import { stringify } from 'yaml';
import { loadConfig, maskSecrets } from '../config/load.js';

/** `chartlog config check --config F`: validate, print the resolved configuration, secrets masked. */
export function registerConfigCommand(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate a configuration file and print it resolved, with defaults filled in and secrets masked')
    .requiredOption('-c, --config <file>', 'configuration file (YAML)')
    .action((opts: { config: string }) => {
      const cfg = loadConfig(opts.config);
      process.stdout.write(`# ${opts.config}: valid\n${stringify(maskSecrets(cfg))}`);
    });
}
