import type { Command } from 'commander';
import { usageError } from '../core/errors.js';
import { formatUs } from '../archive/layout.js';
import { buildSourceRuntime } from '../pipeline/source-runtime.js';
import { checkSourceReady } from '../pipeline/prepare-source.js';
import { resyncTables, type ResyncProgress } from '../pipeline/resync-tables.js';
import { openContext, withConfigOptions } from './command-context.js';

/**
 * `chartlog resync`: an online re-snapshot of chosen tables while `chartlog run` keeps
 * streaming (src/pipeline/resync-tables.ts). Progress (rows, rate) goes to stderr about once a
 * second; the result to stdout. Exit 2 with nothing written on a bad argument.
 */
export function registerResyncCommand(program: Command): void {
  withConfigOptions(program.command('resync').description('re-read chosen tables from the source as their new base, while `chartlog run` keeps streaming (lock-free, chunked, throttled)'), false)
    .requiredOption('-s, --source <name>', 'the source whose tables are re-read')
    .requiredOption('--tables <list>', 'comma-separated "schema.table" names (MySQL/MariaDB: "database.table")')
    .option('--rows-per-second <n>', 'read at most this many rows per second from the source (0: unthrottled; default: sources[].resync.rowsPerSecond)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { config: string; source: string; tables: string; rowsPerSecond?: string; json?: boolean }) => {
      const tables = opts.tables.split(',').map((t) => t.trim()).filter((t) => t.length > 0);
      const bad = tables.filter((t) => !/^[^.]+\.[^.]+$/.test(t));
      if (tables.length === 0 || bad.length > 0) {
        throw usageError(`--tables: ${bad.length > 0 ? `"${bad.join('", "')}" is not schema.table` : 'no table named'}`, 'e.g. --tables public.patients,public.encounters');
      }
      if (opts.rowsPerSecond !== undefined && !/^\d+$/.test(opts.rowsPerSecond)) throw usageError(`--rows-per-second: "${opts.rowsPerSecond}" is not a whole number ≥ 0`, 'e.g. --rows-per-second 5000 (0: unthrottled)');
      const ctx = openContext(opts);
      const source = ctx.sources[0]!;
      await ctx.store.checkWritable?.();
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const runtime = buildSourceRuntime(ctx.config, source, ctx.store);
      let shown = 0;
      const progress = (p: ResyncProgress): void => {
        if (Date.now() - shown < 1000) return;
        shown = Date.now();
        process.stderr.write(`resync ${source.name}: ${p.table ?? '-'} ${p.rows} rows, ${Math.round(p.rate)} rows/s, ${(p.elapsedMs / 1000).toFixed(1)} s\n`);
      };
      try {
        await checkSourceReady(runtime);
        const started = performance.now();
        const m = await resyncTables({ deps: runtime, tables, rowsPerSecond: opts.rowsPerSecond !== undefined ? Number(opts.rowsPerSecond) : source.resync.rowsPerSecond, signal: stop.signal, onProgress: progress });
        const seconds = (performance.now() - started) / 1000;
        const rows = Object.values(m.tables).reduce((n, t) => n + t.rows, 0);
        const result = { source: source.name, snapshot: m.id, position: m.position, commitTime: formatUs(m.commitTsUs), tables: Object.fromEntries(Object.entries(m.tables).map(([k, t]) => [k, t.rows])), rows, seconds: Math.round(seconds * 1000) / 1000, rowsPerSecond: Math.round(rows / Math.max(seconds, 0.001)) };
        if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        else process.stdout.write(`source ${source.name}: resync ${m.id} of ${Object.keys(m.tables).join(', ')} at position ${m.position} (${rows} rows in ${seconds.toFixed(1)} s, ${result.rowsPerSecond} rows/s); restores after it start these tables from it\n`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await runtime.connector.close();
        await ctx.store.close();
      }
    });
}
