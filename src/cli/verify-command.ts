import type { Command } from 'commander';
import { SchemaStore } from '../codec/schema-store.js';
import { CodecEnvelopeReader } from '../archive/codec-envelope-reader.js';
import { ChartlogError } from '../core/errors.js';
import { readArchiveIndex } from '../archive/archive-index.js';
import { renderVerifyReport, verifyArchive } from '../restore/verify.js';
import { openContext, withConfigOptions } from './command-context.js';

/** `chartlog verify`: exit 0 when the archive is whole, 1 naming every broken object. No keyring needed. */
export function registerVerifyCommand(program: Command): void {
  withConfigOptions(program.command('verify').description('check every object, the manifest and transaction chains, counts and schemas'))
    .option('--json', 'print JSON for machines')
    .action(async (opts: { config: string; source?: string; json?: boolean }) => {
      const ctx = openContext(opts);
      try {
        const reports = [];
        for (const s of ctx.sources) {
          const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: s.name, store: ctx.store }));
          reports.push(await verifyArchive(ctx.store, await readArchiveIndex(ctx.store, s.name), envelopes));
        }
        process.stdout.write(opts.json ? `${JSON.stringify(reports, null, 2)}\n` : reports.map(renderVerifyReport).join(''));
        const bad = reports.filter((r) => !r.ok);
        if (bad.length > 0) {
          throw new ChartlogError('integrity', `verify found problems in ${bad.map((r) => r.source).join(', ')}`, { hint: 'see the objects named above' });
        }
      } finally {
        await ctx.store.close();
      }
    });
}
