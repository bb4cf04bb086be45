import type { Command } from 'commander';
import { SchemaStore } from '../codec/schema-store.js';
import { CodecEnvelopeReader } from '../archive/codec-envelope-reader.js';
import { ChartlogError } from '../core/errors.js';
import { readArchiveIndex } from '../archive/archive-index.js';
import { loadArchiveMac } from '../archive/archive-auth.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';
import { renderVerifyReport, verifyArchive } from '../restore/verify.js';
import { openContext, withConfigOptions } from './command-context.js';

/**
 * `chartlog verify`: exit 0 when the archive is whole and authentic, 1 naming every broken
 * object. The keyring is opened only to unwrap the archive-MAC key, when the archive has one.
 */
export function registerVerifyCommand(program: Command): void {
  withConfigOptions(program.command('verify').description('check every object, the manifest and transaction chains, counts and schemas'))
    .option('--json', 'print JSON for machines')
    .action(async (opts: { config: string; source?: string; json?: boolean }) => {
      const ctx = openContext(opts);
      try {
        const reports = [];
        for (const s of ctx.sources) {
          const mac = await loadArchiveMac(ctx.store, s.name, () => openKeyring(ctx.config.phi.keyring, { backupRoot: backupRootOf(ctx.config.storage.url) }));
          const engine = s.type === 'mysql' ? 'mysql' : 'postgres';
          const envelopes = new CodecEnvelopeReader(new SchemaStore({ source: s.name, store: ctx.store, ...(mac ? { mac } : {}), engine }));
          reports.push(await verifyArchive(ctx.store, await readArchiveIndex(ctx.store, s.name), envelopes, { mac, engine }));
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
