import type { ReplicaState } from '../archive/replica-state.js';

/** One replica as `chartlog timeline` shows it (its state object, judged for staleness). */
export interface ReplicaTimelineEntry {
  name: string;
  /** Engine, host[:port]/database: never a user name or password. */
  target: string;
  phi: ReplicaState['phi'];
  status: ReplicaState['status'];
  reason?: string;
  position: string;
  commitTime: string;
  lagSeconds: number;
  lagTransactions: number;
  updatedAt: string;
  /**
   * A running replica whose state was not replaced for longer than the stale limit (or three of
   * its own status intervals, when longer): its replicator stopped without saying so (killed, its
   * machine lost) or cannot write to the store. Its position and lag are as of `updatedAt`.
   */
  stale: boolean;
  /** Seconds since `updatedAt`. */
  ageSeconds: number;
}

export interface ReplicaTimeline {
  replicas: ReplicaTimelineEntry[];
  /** State objects that could not be read (damaged or of an unknown version). */
  unreadable: { key: string; reason: string }[];
}

/** The replicas section of the timeline (pure): `nowMs` and the stale limit given. */
export function buildReplicaTimeline(states: readonly ReplicaState[], unreadable: readonly { key: string; reason: string }[], nowMs: number, staleAfterSeconds: number): ReplicaTimeline {
  return {
    replicas: states.map((s) => {
      const ageSeconds = Math.max(0, Math.round((nowMs - Date.parse(s.updatedAt)) / 100) / 10);
      const limit = Math.max(staleAfterSeconds, 3 * s.intervalSeconds);
      const t = s.target;
      return {
        name: s.name,
        target: `${t.kind} ${t.host}${t.port === null ? '' : `:${t.port}`}/${t.database}`,
        phi: s.phi,
        status: s.status,
        ...(s.reason !== undefined ? { reason: s.reason } : {}),
        position: s.position,
        commitTime: s.commitTime,
        lagSeconds: s.lagSeconds,
        lagTransactions: s.lagTransactions,
        updatedAt: s.updatedAt,
        stale: s.status === 'running' && ageSeconds > limit,
        ageSeconds,
      };
    }),
    unreadable: [...unreadable],
  };
}

/** The replicas section for people: one line per replica, a second for a stale or failed one. */
export function renderReplicaTimeline(r: ReplicaTimeline): string {
  const lines = [`  replicas (${r.replicas.length})`];
  const width = Math.max(0, ...r.replicas.map((e) => e.name.length));
  for (const e of r.replicas) {
    const state = e.stale ? 'STALE' : e.status;
    lines.push(`    ${e.name.padEnd(width)}  ${state.padEnd(7)} at ${e.position} (commit ${e.commitTime})  lag ${e.lagSeconds} s, ${e.lagTransactions} tx  phi ${e.phi}  ${e.target}  updated ${e.updatedAt}`);
    if (e.stale) lines.push(`      not updated for ${humanAge(e.ageSeconds)}: its replicator is not running or cannot write to the store; position and lag are as of then`);
    if (e.status === 'failed') lines.push(`      stopped by an error: ${e.reason ?? '(no reason recorded)'}`);
  }
  for (const u of r.unreadable) lines.push(`    unreadable replica state ${u.key}: ${u.reason}`);
  return `${lines.join('\n')}\n`;
}

function humanAge(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}
