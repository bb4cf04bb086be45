import { commitTimeResolutionUs } from '../../connectors/commit-time-resolution.js';
import type { Command } from 'commander';
import { setFlagsFromString } from 'node:v8';
import { usageError } from '../core/errors.js';
import { renderRestoreSummary, restoreArchive } from '../restore/restore.js';
import { jsonProgress, terminalProgress } from './restore-progress-reporters.js';
import { parseRestorePoint } from '../restore/restore-point.js';
import { FILE_FORMATS, FileTarget, type FileFormat } from '../restore/targets/file-target.js';
import type { RestoreTarget } from '../restore/targets/restore-target.js';
import { openContext, withConfigOptions } from './command-context.js';
import { targetUrl } from './target-url.js';

interface RestoreCliOptions {
  config: string;
  source?: string;
  to: string;
  tables?: string;
  target?: string;
  targetPasswordFile?: string;
  out?: string;
  format?: string;
  keepSealed?: boolean;
  parallel?: string;
  json?: boolean;
}

/**
 * `chartlog restore`: a source's tables at a moment into an empty database or a directory.
 * Every check that can refuse the request runs before anything is written (exit 2).
 */
export function registerRestoreCommand(program: Command): void {
  withConfigOptions(program.command('restore').description('restore tables to a moment into an empty database or files'), false)
    .option('-s, --source <name>', 'the source to restore (needed when the configuration has several)')
    .requiredOption('--to <moment>', 'ISO-8601 time with zone (microseconds allowed), `latest`, or a position from `chartlog timeline`')
    .option('--tables <list>', 'only these tables, comma-separated schema.table names (default: all)')
    .option('--target <url>', 'an empty database: postgres://… or mysql://…/database (its password from CHARTLOG_TARGET_PASSWORD or --target-password-file)')
    .option('--target-password-file <path>', "a file holding the target's password (mode 0600), instead of CHARTLOG_TARGET_PASSWORD")
    .option('--out <dir>', 'write files into this directory (empty or absent)')
    .option('--format <format>', `file format with --out: ${FILE_FORMATS.join(' | ')}`)
    .option('--keep-sealed', 'leave PHI columns as sealed bytes: no keyring needed, no audit record')
    .option('--parallel <n>', 'tables written at the same time', '4')
    .option('--json', 'print the summary as JSON (stdout) and progress as JSON lines (stderr)')
    .action(async (opts: RestoreCliOptions) => {
      boundHeapGrowth();
      const ctx = openContext(opts);
      try {
        if (opts.source === undefined && ctx.sources.length > 1) {
          throw usageError('--source is required: the configuration has several sources', `use one of: ${ctx.sources.map((s) => s.name).join(', ')}`);
        }
        const source = ctx.sources[0]!;
        const to = parseRestorePoint(opts.to);
        const tables = opts.tables === undefined ? undefined : parseTables(opts.tables);
        const parallel = Number(opts.parallel ?? '4');
        if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw usageError(`--parallel ${opts.parallel}: expected a whole number from 1 to 64`);
        const target = await targetOf(opts, ctx.config.restore.copyThreads);
        try {
          const summary = await restoreArchive({
            config: ctx.config,
            source,
            store: ctx.store,
            to,
            requested: opts.to,
            tables,
            target,
            keepSealed: opts.keepSealed === true,
            parallel,
            commitTimeResolutionUs: commitTimeResolutionUs(source.type),
            // --json: progress as JSON lines on stderr; a terminal: a line per table; otherwise none.
            progress: opts.json ? jsonProgress(process.stderr) : process.stderr.isTTY ? terminalProgress(process.stderr) : undefined,
          });
          process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : renderRestoreSummary(summary));
        } finally {
          await target.close();
        }
      } finally {
        await ctx.store.close();
      }
    });
}

/**
 * A restore's live heap is small and flat (a few blocks of rows, the collapsed changes' share)
 * while it allocates garbage fast (rows, values, COPY text): V8's default let the heap grow to
 * about three times the live set between full collections (heapUsed 52 → 150 MiB, heapTotal
 * 180 MiB at 2M rows), and dead buffers outside the heap waited for those collections too.
 * Growing it by at most 100 % (2×) at a time, a 2M-row restore peaked at 401 MiB RSS instead of
 * 457 MiB for the same CPU (47.1 s against 43.8 s, loaded; 30 % gave 400 MiB for 56.5 s): see
 * docs/operations.md, restore memory. V8 reads the flag at each collection; it is process-wide
 * (worker threads too) and set only for this command.
 */
function boundHeapGrowth(): void {
  setFlagsFromString(`--heap-growing-percent=${RESTORE_HEAP_GROWING_PERCENT}`);
}

const RESTORE_HEAP_GROWING_PERCENT = 100;

function parseTables(text: string): string[] {
  const names = text.split(',').map((t) => t.trim()).filter((t) => t !== '');
  const bad = names.filter((t) => !/^[^.\s]+\.[^\s]+$/.test(t));
  if (names.length === 0 || bad.length > 0) throw usageError(`--tables "${text}": expected comma-separated schema.table names`, 'e.g. --tables public.patients,public.visits');
  return names;
}

/**
 * The target the options name. A database target's module (and its driver) is loaded only for its
 * own URL scheme: a restore into PostgreSQL does not load the MySQL driver, nor the reverse (start-up
 * is a real part of a short restore's time).
 */
async function targetOf(opts: RestoreCliOptions, copyThreads: number | undefined): Promise<RestoreTarget> {
  if ((opts.target === undefined) === (opts.out === undefined)) {
    throw usageError(opts.target === undefined ? 'say where to restore: --target <database URL> or --out <dir> --format <format>' : '--target and --out exclude each other', 'give exactly one of them');
  }
  if (opts.out !== undefined) {
    if (opts.format === undefined || !FILE_FORMATS.includes(opts.format as FileFormat)) {
      throw usageError(`--format ${opts.format ?? '(missing)'}: with --out, give one of ${FILE_FORMATS.join(', ')}`);
    }
    return new FileTarget(opts.out, opts.format as FileFormat);
  }
  if (opts.format !== undefined) throw usageError('--format goes with --out only', 'a database target takes no format');
  const url = targetUrl(opts.target!, { file: opts.targetPasswordFile, env: process.env.CHARTLOG_TARGET_PASSWORD });
  if (/^postgres(ql)?:\/\//.test(url)) {
    const { PostgresTarget } = await import('../restore/targets/postgres-target.js');
    return new PostgresTarget(url, copyThreads === undefined ? {} : { copyThreads });
  }
  if (/^(mysql|mariadb):\/\//.test(url)) {
    const { MysqlTarget } = await import('../restore/targets/mysql-target.js');
    return new MysqlTarget(url);
  }
  throw usageError('--target: expected a postgres://… or mysql://… URL');
}
