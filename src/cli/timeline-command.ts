import type { Command } from 'commander';
import { commitTimeResolutionUs } from '../../connectors/commit-time-resolution.js';
import { usageError } from '../core/errors.js';
import { readArchiveIndex } from '../archive/archive-index.js';
import { ArchiveReader, NO_ENVELOPES } from '../archive/archive-reader.js';
import { readReplicaStates } from '../archive/replica-state.js';
import { buildReplicaTimeline, renderReplicaTimeline, type ReplicaTimeline } from '../restore/replica-timeline.js';
import { buildTimeline, renderTimeline } from '../restore/timeline.js';
import { openContext, withConfigOptions } from './command-context.js';

/** `chartlog timeline`: per source, what can be restored, from the object store alone. */
export function registerTimelineCommand(program: Command): void {
  withConfigOptions(program.command('timeline').description('show the restorable range, snapshots, closed and open hours, gaps, and the replicas'))
    .option('--json', 'print JSON for machines')
    .option('--stale-after <minutes>', 'a running replica whose state is older than this (or than three of its status intervals) is marked stale', '5')
    .action(async (opts: { config: string; source?: string; json?: boolean; staleAfter: string }) => {
      const staleAfterMinutes = Number(opts.staleAfter);
      if (!Number.isFinite(staleAfterMinutes) || staleAfterMinutes <= 0) throw usageError(`--stale-after ${opts.staleAfter}: expected a positive number of minutes`, 'e.g. --stale-after 10');
      const ctx = openContext(opts);
      try {
        const timelines = [];
        const sections: ReplicaTimeline[] = [];
        for (const s of ctx.sources) {
          const index = await readArchiveIndex(ctx.store, s.name);
          const transactions = await new ArchiveReader(ctx.store, index, NO_ENVELOPES).transactions(null);
          // The replicas' own section (src/restore/replica-timeline.ts), from their state objects.
          const found = await readReplicaStates(ctx.store, s.name);
          const replicas = buildReplicaTimeline(found.states, found.unreadable, Date.now(), staleAfterMinutes * 60);
          timelines.push({ ...buildTimeline(index, { resolutionUs: commitTimeResolutionUs(s.type), transactions }), replicas: replicas.replicas, unreadableReplicaStates: replicas.unreadable });
          sections.push(replicas);
        }
        process.stdout.write(opts.json ? `${JSON.stringify(timelines, null, 2)}\n` : timelines.map((t, i) => renderTimeline(t) + renderReplicaTimeline(sections[i]!)).join('\n'));
      } finally {
        await ctx.store.close();
      }
    });
}
