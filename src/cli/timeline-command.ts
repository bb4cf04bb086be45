import type { Command } from 'commander';
import { commitTimeResolutionUs } from '../../connectors/registry.js';
import { readArchiveIndex } from '../archive/archive-index.js';
import { ArchiveReader, NO_ENVELOPES } from '../archive/archive-reader.js';
import { buildTimeline, renderTimeline } from '../restore/timeline.js';
import { openContext, withConfigOptions } from './command-context.js';

/** `chartlog timeline`: per source, what can be restored, from the object store alone. */
export function registerTimelineCommand(program: Command): void {
  withConfigOptions(program.command('timeline').description('show the restorable range, snapshots, closed and open hours, and gaps'))
    .option('--json', 'print JSON for machines')
    .action(async (opts: { config: string; source?: string; json?: boolean }) => {
      const ctx = openContext(opts);
      try {
        const timelines = [];
        for (const s of ctx.sources) {
          const index = await readArchiveIndex(ctx.store, s.name);
          const transactions = await new ArchiveReader(ctx.store, index, NO_ENVELOPES).transactions(null);
          timelines.push(buildTimeline(index, { resolutionUs: commitTimeResolutionUs(s.type), transactions }));
        }
        process.stdout.write(opts.json ? `${JSON.stringify(timelines, null, 2)}\n` : timelines.map(renderTimeline).join('\n'));
      } finally {
        await ctx.store.close();
      }
    });
}
