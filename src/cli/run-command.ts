import type { Command } from 'commander';
import { logger } from '../core/logger.js';
import { PIPELINE_ROLES, runSourcePipeline, type PipelineRole } from '../pipeline/source-pipeline.js';
import { usageError } from '../core/errors.js';
import { openContext, withConfigOptions } from './command-context.js';
import { buildSourceRuntime } from '../pipeline/source-runtime.js';
import { readTestHooks } from '../config/test-hooks.js';

/**
 * `chartlog run`: stream every source until SIGINT/SIGTERM, then flush what was read, make it
 * durable, acknowledge it, and exit 0. A second signal exits at once (data stays safe: nothing
 * unacknowledged is lost, it is read again on the next start).
 */
export function registerRunCommand(program: Command): void {
  withConfigOptions(program.command('run').description('stream changes from every source into the object store until stopped'), true)
    .option(
      '--take-over-slot',
      "drop a PostgreSQL replication slot that belongs to another archive of the source (or to none recorded) and use one of this archive's own; the other archive stops receiving changes",
    )
    .option(
      '--role <role>',
      'all: the whole pipeline (default); capture: read the source and send it to Kafka, acknowledging the source only once the compactor checkpointed it; compact: store the Kafka topics into the archive (Kafka bus only; docs/operations.md, "Roles")',
      'all',
    )
    .action(async (opts: { config: string; source?: string; takeOverSlot?: boolean; role: string }) => {
      const role = parseRole(opts.role);
      const ctx = openContext(opts);
      const testHooks = readTestHooks(process.env);
      checkRole(role, ctx.config.bus.type, opts.takeOverSlot ?? false, ctx.config.bus.kafka?.scaleOut ?? false);
      // storage.objectLock on a bucket without Object Lock: exit 2 before anything is written.
      await ctx.store.checkWritable?.();
      const runtimes = ctx.sources.map((s) => buildSourceRuntime(ctx.config, s, ctx.store));
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        if (stop.signal.aborted) {
          logger().warn({ signal }, 'second signal: exiting without waiting for the final flush');
          process.exit(130);
        }
        logger().info({ signal }, 'stopping: flushing and acknowledging what was read');
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      logger().info({ sources: runtimes.map((r) => r.source.name), store: ctx.store.description, role }, 'chartlog run started');
      try {
        // One failing source stops all: a backup that silently covers only some sources is worse.
        // The others still flush and acknowledge before the error is reported.
        const results = await Promise.allSettled(
          runtimes.map((r) =>
            runSourcePipeline(r, stop.signal, { takeOverSlot: opts.takeOverSlot ?? false, role, testHooks }).catch((err: unknown) => {
              stop.abort();
              throw err;
            }),
          ),
        );
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await ctx.store.close();
      }
    });
}

/** `--role`: one of PIPELINE_ROLES, or exit 2 naming the flag. */
export function parseRole(value: string): PipelineRole {
  const role = PIPELINE_ROLES.find((r) => r === value);
  if (!role) throw usageError(`--role ${JSON.stringify(value)} is not a role; nothing was started`, `use --role ${PIPELINE_ROLES.join(', --role ')}`);
  return role;
}

/**
 * Combinations that cannot work, refused before anything is read or written (exit 2): the
 * split roles hand data over through Kafka, so the embedded bus (one process by design) has
 * nothing to split; `--take-over-slot` concerns the source, which a compact process never opens.
 */
export function checkRole(role: PipelineRole, busType: string, takeOverSlot: boolean, scaleOut = false): void {
  if (role === 'all' && busType === 'kafka' && scaleOut) {
    throw usageError(
      '--role all with bus.kafka.scaleOut: true: with several active compactors, capture and compaction run as separate processes; nothing was started',
      'run one `chartlog run --role capture` and one or more `chartlog run --role compact` processes, or set bus.kafka.scaleOut: false',
    );
  }
  if (role !== 'all' && busType !== 'kafka') {
    throw usageError(
      `--role ${role} needs the Kafka bus, but bus.type is ${busType}: the embedded bus carries changes inside one process; nothing was started`,
      'run without --role (or --role all) on the embedded bus, or set bus.type: kafka and bus.kafka.brokers to run capture and compaction as separate processes',
    );
  }
  if (role === 'compact' && takeOverSlot) {
    throw usageError('--take-over-slot with --role compact: a compact process never opens the source or its replication slot; nothing was started', 'pass --take-over-slot to the --role capture process');
  }
}
