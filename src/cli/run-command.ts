import type { Command } from 'commander';
import { logger } from '../core/logger.js';
import { runSourcePipeline } from '../pipeline/source-pipeline.js';
import { openContext, withConfigOptions } from './command-context.js';
import { buildSourceRuntime } from '../pipeline/source-runtime.js';

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
    .action(async (opts: { config: string; source?: string; takeOverSlot?: boolean }) => {
      const ctx = openContext(opts);
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
      logger().info({ sources: runtimes.map((r) => r.source.name), store: ctx.store.description }, 'chartlog run started');
      try {
        // One failing source stops all: a backup that silently covers only some sources is worse.
        // The others still flush and acknowledge before the error is reported.
        const results = await Promise.allSettled(
          runtimes.map((r) =>
            runSourcePipeline(r, stop.signal, { takeOverSlot: opts.takeOverSlot ?? false }).catch((err: unknown) => {
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
