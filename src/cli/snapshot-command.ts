import type { Command } from 'commander';
import type { Config, SourceConfig } from '../config/schema.js';
import { ChartlogError, toChartlogError, usageError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { withRetry } from '../core/retry.js';
import { checkSourceReady, claimSourceArchive, recordArchive, takeSourceSnapshot } from '../pipeline/prepare-source.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { SnapshotManifest } from '../archive/snapshot-manifest.js';
import { databaseOfUrl } from '../compactor/snapshot-schedule.js';
import { synthesiseSnapshot, synthesisMemory, type SynthesisResult } from '../compactor/snapshot-synthesiser.js';
import { formatUs } from '../archive/layout.js';
import { openContext, withConfigOptions } from './command-context.js';
import { buildSourceRuntime } from '../pipeline/source-runtime.js';
import { Lease } from '../archive/lease.js';
import { archiveSigner } from '../archive/archive-auth.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';

interface SnapshotReport {
  source: string;
  status: SynthesisResult['status'] | 'read';
  snapshot: { id: string; position: string; commitTime: string; origin: string; tables: number; rows: number } | null;
  base: string | null;
  changes: number;
  ms: number;
}

/**
 * `chartlog snapshot`: a new base snapshot now, so restores replay fewer changes.
 *
 * By default (`--synthesise`) it is built from the archive: the newest snapshot plus every
 * durable change, replayed. That reads only the object store — no load on the source, no
 * keyring (PHI stays sealed) — and is safe while `chartlog run` streams.
 *
 * It writes no shared state (only the new snapshot's deterministically named objects; it leaves
 * interrupted attempts for the writer that holds the lease), so it needs no writer lease.
 *
 * `--from-source` reads a consistent snapshot from the source database instead and moves the
 * checkpoint to it, so the next `chartlog run` streams from there. It writes shared state, so it
 * takes the source's writer lease (docs/architecture.md §1) and refuses (exit 2, nothing
 * written) while another process — a running `chartlog run` — holds it, on every engine. On
 * PostgreSQL a replication slot in use is refused the same way.
 */
export function registerSnapshotCommand(program: Command): void {
  withConfigOptions(program.command('snapshot').description('write a base snapshot now: synthesised from the archive (default) or read from the source'))
    .option('--synthesise', 'build it from the newest snapshot and the stored changes (the default: no load on the source, safe while `chartlog run` runs; the keyring authenticates what it reads and writes)')
    .option('--from-source', 'read a consistent snapshot from the source database (only while no `chartlog run` streams the source; needs the keyring)')
    .option('--take-over-slot', 'with --from-source: drop a PostgreSQL replication slot that belongs to another archive of the source (or to none recorded); the other archive stops receiving changes')
    .option('--json', 'print JSON for machines')
    .action(async (opts: { config: string; source?: string; synthesise?: boolean; fromSource?: boolean; takeOverSlot?: boolean; json?: boolean }) => {
      if (opts.synthesise && opts.fromSource) throw usageError('--synthesise and --from-source exclude each other', 'choose one (without either, the snapshot is synthesised)');
      if (opts.takeOverSlot && !opts.fromSource) throw usageError('--take-over-slot goes with --from-source only', 'add --from-source, or leave --take-over-slot out (a synthesised snapshot reads no slot)');
      const ctx = openContext(opts);
      // storage.objectLock on a bucket without Object Lock: exit 2 before anything is written.
      await ctx.store.checkWritable?.();
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const reports: SnapshotReport[] = [];
        for (const s of ctx.sources) {
          const report = opts.fromSource ? await fromSource(ctx.config, s, ctx.store, stop.signal, opts.takeOverSlot ?? false) : await synthesised(ctx.config, s, ctx.store, stop.signal);
          reports.push(report);
          if (!opts.json) process.stdout.write(`${render(report)}\n`);
        }
        if (opts.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await ctx.store.close();
      }
    });
}

/** Synthesis meeting a changing archive: 4 attempts, 0.5 s doubling apart. */
const SYNTHESIS_RETRY = { initialDelayMs: 500, maxDelayMs: 4000, maxAttempts: 4 } as const;

async function synthesised(config: Readonly<Config>, s: Readonly<SourceConfig>, store: ObjectStore, signal: AbortSignal): Promise<SnapshotReport> {
  // The archive-MAC key: what is read is authenticated, the new snapshot manifest signed.
  const signer = archiveSigner(store, openKeyring(config.phi.keyring, { backupRoot: backupRootOf(config.storage.url) }), s.name);
  const r = await withRetry(() => synthesiseSnapshot({ store, source: s.name, connector: s.type, db: databaseOfUrl(s.url), upTo: 'durable', signal, signer, ...synthesisMemory(config) }), {
    ...SYNTHESIS_RETRY,
    signal,
    // A running `chartlog run` may close an hour (parts become segments) while we read it:
    // the next attempt reads the archive's index again.
    retryIf: (e) => e.retriable || e.code === 'integrity',
    onRetry: (err, attempt) => logger().warn({ source: s.name, err: toChartlogError(err), attempt }, 'synthesis read a changing archive; reading it again'),
  });
  if (r.status === 'no-base') {
    throw new ChartlogError('not_found', `source ${s.name} has no base snapshot to synthesise from`, {
      hint: 'let `chartlog run` take the first one, or run `chartlog snapshot --from-source`',
    });
  }
  return { source: s.name, status: r.status, snapshot: summary(r.snapshot), base: r.base?.id ?? null, changes: r.changes, ms: r.ms };
}

async function fromSource(config: Readonly<Config>, s: Readonly<SourceConfig>, store: ObjectStore, signal: AbortSignal, takeOverSlot: boolean): Promise<SnapshotReport> {
  const started = Date.now();
  const runtime = buildSourceRuntime(config, s, store);
  try {
    if (!runtime.connector.capabilities.snapshot) {
      throw usageError(`--from-source: the ${s.type} connector of source ${s.name} cannot take a consistent snapshot`, 'run `chartlog snapshot` without --from-source');
    }
    await checkSourceReady(runtime);
    // Slot ownership, before anything is written; a new base on purpose may follow a lost checkpoint.
    const claimOptions = { takeOverSlot, refuseMissingCheckpoint: false };
    await claimSourceArchive(runtime, claimOptions);
    const lease = new Lease({ store, source: s.name, ttlMs: config.storage.leaseTtlMs });
    const got = await lease.tryAcquire();
    if (!got.acquired) {
      const h = got.holder;
      throw usageError(
        `--from-source: source ${s.name} is being streamed by a running \`chartlog run\` (it holds the writer lease: host ${h.host}, pid ${h.pid}, until ${h.expiresAt} unless renewed); nothing was written`,
        'stop that `chartlog run` first, or run `chartlog snapshot` without --from-source: it synthesises a snapshot from the archive while run keeps going',
      );
    }
    let snap: SnapshotManifest;
    try {
      const archiveId = await recordArchive(runtime, await claimSourceArchive(runtime, claimOptions), AbortSignal.any([signal, lease.signal]));
      snap = await takeSourceSnapshot({ ...runtime, fence: lease, archiveId }, AbortSignal.any([signal, lease.signal]));
      if (lease.lost) throw lease.lost;
    } catch (err) {
      const e = toChartlogError(err);
      // The connector refuses before reading anything when its replication slot is in use.
      if (e.code === 'source_setup' && e.retriable) {
        throw usageError(
          `--from-source: source ${s.name} is being streamed by a running \`chartlog run\` (${e.message}); nothing was written`,
          'stop that `chartlog run` first, or run `chartlog snapshot` without --from-source: it synthesises a snapshot from the archive while run keeps going',
        );
      }
      throw lease.lost ?? e;
    } finally {
      await lease.release();
    }
    return { source: s.name, status: 'read', snapshot: summary(snap), base: null, changes: 0, ms: Date.now() - started };
  } finally {
    await runtime.connector.close();
  }
}

function summary(m: SnapshotManifest | null): SnapshotReport['snapshot'] {
  if (!m) return null;
  const rows = Object.values(m.tables).reduce((n, t) => n + t.rows, 0);
  return { id: m.id, position: m.position, commitTime: formatUs(m.commitTsUs), origin: m.origin, tables: Object.keys(m.tables).length, rows };
}

function render(r: SnapshotReport): string {
  const s = r.snapshot;
  const secs = (r.ms / 1000).toFixed(1);
  if (!s) return `source ${r.source}: no snapshot`;
  switch (r.status) {
    case 'written':
      return `source ${r.source}: synthesised snapshot ${s.id} at ${s.commitTime} from ${r.base} (${s.tables} tables, ${s.rows} rows, ${r.changes} changes replayed) in ${secs} s`;
    case 'read':
      return `source ${r.source}: snapshot ${s.id} read from the source at ${s.commitTime} (${s.tables} tables, ${s.rows} rows) in ${secs} s; the stream continues after it`;
    case 'exists':
      return `source ${r.source}: snapshot ${s.id} at ${s.commitTime} already exists`;
    default:
      return `source ${r.source}: up to date — no change stored after snapshot ${s.id} (${s.commitTime})`;
  }
}
