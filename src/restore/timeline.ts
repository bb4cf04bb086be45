import { formatUs, type HourKey } from '../archive/layout.js';
import type { ArchiveIndex } from '../archive/archive-index.js';
import { backwardSteps, nonMonotonicStretches } from '../archive/transaction-cut.js';
import type { TransactionRecord } from '../archive/transaction-log.js';

export interface Timeline {
  source: string;
  /** From the oldest base snapshot to the newest durable commit; null when nothing is restorable. */
  restorable: { from: string; to: string; fromPosition: string; toPosition: string } | null;
  snapshots: { id: string; position: string; commitTime: string; takenAt: string; origin: string; tables: number; rows: number }[];
  closedHours: { hour: HourKey; transactions: number; events: number; objects: number }[];
  openHours: { hour: HourKey; parts: number }[];
  /** Breaks in the manifest hash chain: a manifest whose `previous` is not the one before it. */
  gaps: { hour: HourKey; expectedPrevious: string | null; found: string | null }[];
  checkpoint: { position: string; commitTime: string; updatedAt: string } | null;
  /** How exact the source's commit times are ('seconds': MySQL/MariaDB binlog headers); absent when not known. */
  commitTimeResolution?: 'microseconds' | 'seconds';
  /**
   * Transactions stamped earlier than a transaction before them (a clock set back): a time cut
   * stops at the first transaction stamped after the time asked for, so these can fall outside
   * a cut their own stamp is inside of. Absent when the transaction log was not read.
   */
  backwardSteps?: { position: string; commitTime: string; newestBefore: string }[];
  /**
   * The stretches where commit times are not monotonic (transaction-cut.ts): `restore --to` a time
   * between `earliest` and `latest` that falls between a transaction and a later one stamped
   * earlier is refused; a position (`fromPosition`, `toPosition`) restores there. Absent when the
   * transaction log was not read.
   */
  nonMonotonic?: { fromPosition: string; from: string; toPosition: string; to: string; earliest: string; latest: string; steps: number }[];
  /**
   * Tables a DDL changed without row events, from it until their new base (unproven-tables.ts):
   * a restore to a moment inside is refused for them. `until` null: the resync is still owed.
   */
  unproven: { table: string; from: string; fromPosition: string; until: string | null; untilPosition: string | null; base: string | null; reason: string }[];
}

/** What the timeline says beyond the index: the source's clock resolution and the transaction log's steps back. */
export interface TimelineExtras {
  resolutionUs?: bigint;
  transactions?: readonly TransactionRecord[];
}

export function buildTimeline(index: ArchiveIndex, extras: TimelineExtras = {}): Timeline {
  const snapshots = index.snapshots.map((s) => ({
    id: s.id,
    position: s.position,
    commitTime: formatUs(s.commitTsUs),
    takenAt: s.takenAt,
    origin: s.origin,
    tables: Object.keys(s.tables).length,
    rows: Object.values(s.tables).reduce((n, t) => n + t.rows, 0),
  }));
  const gaps: Timeline['gaps'] = [];
  index.hours.forEach((h, i) => {
    const before = i > 0 ? index.hours[i - 1]! : null;
    const prev = h.manifest.previous;
    const ok = before ? prev?.hour === before.hour && prev.sha256 === before.sha256 : prev === null;
    if (!ok) gaps.push({ hour: h.hour, expectedPrevious: before?.hour ?? null, found: prev?.hour ?? null });
  });
  const openHours = new Map<HourKey, number>();
  for (const p of index.openParts) openHours.set(p.hour, (openHours.get(p.hour) ?? 0) + 1);

  const oldest = index.snapshots[0];
  const cp = index.checkpoint;
  return {
    source: index.source,
    restorable:
      oldest && cp
        ? { from: formatUs(oldest.commitTsUs), to: formatUs(cp.commitTsUs), fromPosition: oldest.position, toPosition: formatPos(cp.position) }
        : null,
    snapshots,
    closedHours: index.hours.map((h) => ({ hour: h.hour, transactions: h.manifest.transactions, events: h.manifest.events, objects: h.manifest.objects.length })),
    openHours: [...openHours].sort(([a], [b]) => (a < b ? -1 : 1)).map(([hour, parts]) => ({ hour, parts })),
    gaps,
    unproven: (index.unproven ?? []).map((w) => ({
      table: w.table,
      from: formatUs(w.fromCommitTsUs),
      fromPosition: formatPos(w.from),
      until: w.closedBy ? formatUs(w.closedBy.commitTsUs) : null,
      untilPosition: w.closedBy ? formatPos(w.closedBy.position) : null,
      base: w.closedBy?.id ?? null,
      reason: w.reason,
    })),
    checkpoint: cp ? { position: formatPos(cp.position), commitTime: formatUs(cp.commitTsUs), updatedAt: cp.updatedAt } : null,
    ...(extras.resolutionUs !== undefined ? { commitTimeResolution: extras.resolutionUs >= 1_000_000n ? ('seconds' as const) : ('microseconds' as const) } : {}),
    ...(extras.transactions
      ? {
          backwardSteps: backwardSteps(extras.transactions).map((b) => ({ position: b.position, commitTime: formatUs(b.commitTsUs), newestBefore: formatUs(b.newestBeforeUs) })),
          nonMonotonic: nonMonotonicStretches(extras.transactions).map((n) => ({
            fromPosition: n.from.position,
            from: formatUs(n.from.commitTsUs),
            toPosition: n.to.position,
            to: formatUs(n.to.commitTsUs),
            earliest: formatUs(n.earliestUs),
            latest: formatUs(n.latestUs),
            steps: n.steps,
          })),
        }
      : {}),
  };
}

function formatPos(p: { commit: string; seq: number }): string {
  return `${p.commit}.${p.seq.toString(16).padStart(8, '0')}`;
}

/** The timeline for people: a few aligned lines per section. */
export function renderTimeline(t: Timeline): string {
  const lines = [`source ${t.source}`];
  lines.push(t.restorable ? `  restorable  ${t.restorable.from} → ${t.restorable.to}` : '  restorable  nothing yet (no base snapshot and checkpoint)');
  if (t.checkpoint) lines.push(`  durable up to position ${t.checkpoint.position} (commit ${t.checkpoint.commitTime})`);
  lines.push(`  snapshots (${t.snapshots.length})`);
  for (const s of t.snapshots) lines.push(`    ${s.commitTime}  ${s.origin.padEnd(11)} ${String(s.tables).padStart(4)} tables ${String(s.rows).padStart(10)} rows  ${s.id}`);
  lines.push(`  closed hours (${t.closedHours.length})`);
  for (const h of t.closedHours) lines.push(`    ${h.hour}  ${String(h.transactions).padStart(8)} tx ${String(h.events).padStart(10)} events ${String(h.objects).padStart(5)} objects`);
  lines.push(`  open hours (${t.openHours.length})`);
  for (const h of t.openHours) lines.push(`    ${h.hour}  ${h.parts} parts`);
  if (t.commitTimeResolution === 'seconds') lines.push('  commit times: whole seconds (binlog headers); a time cut includes a transaction only when its whole second is at or before the time asked for');
  if (t.commitTimeResolution === 'microseconds') lines.push('  commit times: microseconds');
  if (t.nonMonotonic && t.nonMonotonic.length > 0) {
    lines.push(`  commit times not monotonic (${t.nonMonotonic.length} stretches): restore --to a time between a stretch's earliest and latest stamps is refused where it falls between a transaction and a later one stamped earlier; --to a position restores there`);
    for (const n of t.nonMonotonic.slice(0, 20)) {
      lines.push(`    positions ${n.fromPosition} (stamped ${n.from}) → ${n.toPosition} (stamped ${n.to}): stamps ${n.earliest} … ${n.latest}, ${n.steps} stepping back`);
    }
    if (t.nonMonotonic.length > 20) lines.push(`    … ${t.nonMonotonic.length - 20} more (--json lists all, and each step in backwardSteps)`);
  }
  if (t.unproven.length > 0) {
    lines.push(`  unproven windows (${t.unproven.length}): a restore to a moment inside is refused for the table`);
    for (const u of t.unproven) lines.push(`    ${u.table}  ${u.from} → ${u.until ?? 'pending resync'}  (positions ${u.fromPosition} → ${u.untilPosition ?? '…'})`);
  }
  lines.push(t.gaps.length === 0 ? '  gaps: none' : `  gaps (${t.gaps.length})`);
  for (const g of t.gaps) lines.push(`    ${g.hour}: manifest chain expects ${g.expectedPrevious ?? '(start)'} before it, manifest names ${g.found ?? '(start)'}`);
  return `${lines.join('\n')}\n`;
}
