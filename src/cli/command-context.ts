import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import type { Config, SourceConfig } from '../config/schema.js';
import { configureLogger } from '../core/logger.js';
import { usageError } from '../core/errors.js';
import { openObjectStore } from '../storage/open-object-store.js';
import type { ObjectStore } from '../storage/object-store.js';

export interface CommandContext {
  config: Readonly<Config>;
  store: ObjectStore;
  /** The sources the command works on: the one named by --source, or all. */
  sources: readonly Readonly<SourceConfig>[];
}

/** Adds the options every archive command takes. */
export function withConfigOptions(cmd: Command, sourceOption = true): Command {
  cmd.requiredOption('-c, --config <file>', 'configuration file (YAML)');
  if (sourceOption) cmd.option('-s, --source <name>', 'only this source (default: all)');
  return cmd;
}

/**
 * Loads and checks everything a command needs before it does anything, so a bad configuration
 * or an unknown source fails with exit code 2 and nothing written.
 */
export function openContext(opts: { config: string; source?: string }): CommandContext {
  const config = loadConfig(opts.config);
  configureLogger({ level: config.log.level, format: config.log.format });
  let sources = config.sources;
  if (opts.source !== undefined) {
    sources = config.sources.filter((s) => s.name === opts.source);
    if (sources.length === 0) {
      throw usageError(
        `--source: no source named "${opts.source}" in ${opts.config}`,
        `use one of: ${config.sources.map((s) => s.name).join(', ')}`,
      );
    }
  }
  return { config, store: openObjectStore(config.storage), sources };
}
