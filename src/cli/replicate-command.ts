import type { Command } from 'commander';
import { usageError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { maskUrl } from '../core/mask-url.js';
import { replicaLocation, replicaName } from '../replicate/replica-name.js';
import { PHI_MODES, type PhiMode, type ReplicaTarget } from '../replicate/replica-target.js';
import { replicate } from '../replicate/replicator.js';
import { openContext, withConfigOptions } from './command-context.js';
import { targetUrl } from './target-url.js';

interface ReplicateCliOptions {
  config: string;
  source?: string;
  target: string;
  targetPasswordFile?: string;
  tables?: string;
  phi: string;
  json?: boolean;
  statusInterval: string;
  pollInterval?: string;
  checkpointInterval?: string;
  warnLag: string;
  name?: string;
}

/**
 * `chartlog replicate`: keeps a live database equal to a source, transaction by transaction,
 * until SIGINT/SIGTERM (src/replicate/replicator.ts). Every check that can refuse runs before
 * anything is written (exit 2).
 */
export function registerReplicateCommand(program: Command): void {
  withConfigOptions(program.command('replicate').description('keep a live database equal to a source, one source transaction at a time, until stopped'), false)
    .option('-s, --source <name>', 'the source to replicate (needed when the configuration has several)')
    .requiredOption('--target <url>', 'an empty database, or one this command already replicates into: postgres://… or mysql://…/database (its password from CHARTLOG_TARGET_PASSWORD or --target-password-file)')
    .option('--target-password-file <path>', "a file holding the target's password (mode 0600), instead of CHARTLOG_TARGET_PASSWORD")
    .option('--tables <list>', 'only these tables, comma-separated schema.table names (default: all)')
    .requiredOption('--phi <mode>', `what the replica holds of PHI columns: ${PHI_MODES.join(' | ')} (open: opened with the keyring and audited; sealed: the sealed bytes; omit: NULL)`)
    .option('--json', 'print a status line as JSON every status interval (and at start and stop)')
    .option('--status-interval <seconds>', 'seconds between status lines and lag log lines', '60')
    .option('--poll-interval <ms>', 'milliseconds between reads of the archive when there is nothing to apply (default 250; 1000 on s3://)')
    .option('--checkpoint-interval <ms>', 'milliseconds between looks at the checkpoint alone while waiting for the next read: how soon a caught-up replica sees new durable changes (default 50; 200 on s3://, where each look is a billed request)')
    .option('--warn-lag <seconds>', 'a status whose lag passes this many seconds is logged as a warning', '300')
    .option('--name <name>', "the replica's name in `chartlog timeline` (a-z, 0-9, '_', '-'; default: from the target, e.g. postgres-analytics-5432-clinic_replica)")
    .action(async (opts: ReplicateCliOptions) => {
      const ctx = openContext(opts);
      try {
        if (opts.source === undefined && ctx.sources.length > 1) {
          throw usageError('--source is required: the configuration has several sources', `use one of: ${ctx.sources.map((s) => s.name).join(', ')}`);
        }
        const source = ctx.sources[0]!;
        if (!PHI_MODES.includes(opts.phi as PhiMode)) throw usageError(`--phi ${opts.phi}: expected one of ${PHI_MODES.join(', ')}`, 'open needs the keyring and audits every session; omit keeps PHI out of the replica');
        const statusEveryMs = seconds('--status-interval', opts.statusInterval, 1, 86_400) * 1000;
        const pollMs = opts.pollInterval === undefined ? undefined : seconds('--poll-interval', opts.pollInterval, 10, 600_000);
        const checkpointLookMs = opts.checkpointInterval === undefined ? undefined : seconds('--checkpoint-interval', opts.checkpointInterval, 10, 600_000);
        const warnLagSeconds = seconds('--warn-lag', opts.warnLag, 1, 10_000_000);
        const tables = opts.tables === undefined ? undefined : parseTables(opts.tables);
        const url = targetUrl(opts.target, { file: opts.targetPasswordFile, env: process.env.CHARTLOG_TARGET_PASSWORD });
        const mysqlTarget = /^(mysql|mariadb):\/\//.test(url);
        if (!mysqlTarget && !/^postgres(ql)?:\/\//.test(url)) throw usageError(`--target ${maskUrl(url)}: expected a postgres://… or mysql://…/database URL`);
        const location = replicaLocation(url);
        const name = replicaName(opts.name, location);
        const engine = source.type === 'mysql' ? 'mysql' : 'postgres';
        // Only the target engine's modules (and driver) are loaded: start-up is part of the initial load's time.
        const engines = mysqlTarget
          ? await Promise.all([import('../replicate/mysql-replica-target.js'), import('../restore/targets/mysql-target.js')]).then(([r, t]) => ({
              replica: new r.MysqlReplicaTarget(url, engine),
              load: () => new t.MysqlTarget(url),
            }))
          : await Promise.all([import('../replicate/postgres-replica-target.js'), import('../restore/targets/postgres-target.js')]).then(([r, t]) => ({
              replica: new r.PostgresReplicaTarget(url, engine),
              load: () => new t.PostgresTarget(url),
            }));
        const target: ReplicaTarget = engines.replica;
        const stop = new AbortController();
        const onSignal = (signal: NodeJS.Signals) => {
          logger().info({ signal }, 'stopping the replica after the transaction being applied');
          stop.abort();
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        try {
          await replicate({
            config: ctx.config,
            source,
            store: ctx.store,
            target,
            loadTarget: engines.load,
            ...(tables ? { tables } : {}),
            phi: opts.phi as PhiMode,
            signal: stop.signal,
            statusEveryMs,
            ...(pollMs !== undefined ? { pollMs } : {}),
            ...(checkpointLookMs !== undefined ? { checkpointLookMs } : {}),
            warnLagSeconds,
            record: { name, location },
            onStatus: opts.json ? (s) => process.stdout.write(`${JSON.stringify(s)}\n`) : undefined,
          });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await target.close();
        }
      } finally {
        await ctx.store.close();
      }
    });
}

function seconds(option: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max) throw usageError(`${option} ${text}: expected a number from ${min} to ${max}`);
  return n;
}

function parseTables(text: string): string[] {
  const names = text.split(',').map((t) => t.trim()).filter((t) => t !== '');
  const bad = names.filter((t) => !/^[^.\s]+\.[^\s]+$/.test(t));
  if (names.length === 0 || bad.length > 0) throw usageError(`--tables "${text}": expected comma-separated schema.table names`, 'e.g. --tables public.patients,public.visits');
  return names;
}
