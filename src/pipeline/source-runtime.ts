import { createConnector } from '../../connectors/registry.js';
import type { Config, SourceConfig } from '../config/schema.js';
import { checkSourcePhiNames, type SourcePipelineDeps } from './prepare-source.js';
import { logger } from '../core/logger.js';
import type { SourceConnector } from '../core/source-connector.js';
import type { TableSchema } from '../core/table-schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { AvroCodec } from '../codec/avro-codec.js';
import { SchemaStore } from '../codec/schema-store.js';
import { ColumnPolicy } from '../phi/column-policy.js';
import { PhiGuard } from '../phi/phi-guard.js';
import { KeyManager, sealAlgorithmOf } from '../phi/key-manager.js';
import { CryptoPool } from '../phi/crypto-pool.js';
import { backupRootOf, openKeyring } from '../phi/keyring/open-keyring.js';
import { CodecEnvelopeReader } from '../archive/codec-envelope-reader.js';
import { archiveSigner } from '../archive/archive-auth.js';
import { readUnprovenRecords, unprovenRecord, writeUnprovenRecord } from '../archive/unproven-tables.js';
import { tableStartRecord, writeTableStart } from '../archive/table-starts.js';
import { readCatalogState, writeCatalogState } from '../archive/catalog-states.js';
import { readCheckpoint } from '../archive/checkpoint.js';
import { Position } from '../core/position.js';
import { withRetry } from '../core/retry.js';
import { ResyncQueue } from './resync-queue.js';
import { resyncTables } from './resync-tables.js';
import { SealedMissingWatch } from './sealed-missing-watch.js';

/**
 * Builds everything one source's pipeline needs from the frozen configuration: its connector,
 * the PHI policy and data keys, the codec that seals and encodes, and the compactor's view of
 * the envelopes. Opening the keyring here means a missing or too-open keyring stops start-up
 * before anything is read from the source.
 */
export function buildSourceRuntime(config: Readonly<Config>, source: Readonly<SourceConfig>, store: ObjectStore): SourcePipelineDeps {
  const keyring = openKeyring(config.phi.keyring, { backupRoot: backupRootOf(config.storage.url) });
  const signer = archiveSigner(store, keyring, source.name);
  const schemas = new SchemaStore({ source: source.name, store, signer });
  const keys = new KeyManager({ source: source.name, store, keyring, rotation: config.phi.dekRotation, algorithm: sealAlgorithmOf(config.phi.algorithm) });
  const policy = new ColumnPolicy(config.phi);
  // Reads a sampled value of each clear column before the codec encodes the batch (phi-guard.ts).
  const guard = config.phi.guard.enabled ? new PhiGuard({ sealedOf: (t) => policy.sealedColumns(t), intervalMs: config.phi.guard.intervalMs }) : null;
  const codec = new AvroCodec({
    source: source.name,
    connector: source.type,
    db: dbNameOf(source.url),
    schemas,
    policy,
    keys,
    ...(config.phi.cryptoThreads > 0 ? { cryptoPool: new CryptoPool(config.phi.cryptoThreads) } : {}),
  });
  const encoder: SourcePipelineDeps['encoder'] = {
    encode: (batch) => {
      guard?.inspect(batch);
      return codec.encodeBatch(batch);
    },
    encodeBase: (batch, ordinals) => {
      guard?.inspect(batch);
      return codec.encodeBaseSnapshot(batch, ordinals);
    },
    fingerprintOf: (_source, table) => codec.fingerprintOf(table),
  };
  const envelopes = new CodecEnvelopeReader(schemas);
  // Automatic table resyncs (docs/architecture.md §4): each read through a connector of its own,
  // so the stream's connector and its connections are never shared with a long snapshot read.
  const resync = source.resync.automatic
    ? new ResyncQueue({
        source: source.name,
        // Each table's window, recorded before the stream publishes past the DDL (unproven-tables.ts).
        record: async (r) => {
          for (const table of r.tables) {
            if (r.window) await writeUnprovenRecord(store, source.name, unprovenRecord({ table, ...r.window, reason: r.reason }));
          }
        },
        run: (tables, signal) =>
          withConnector(source, (connector) =>
            resyncTables({ deps: { source, store, connector, encoder, envelopes, signer }, tables, rowsPerSecond: source.resync.rowsPerSecond, signal }),
          ),
      })
    : undefined;
  // The stream's batches also ask for the re-read a sealed column's withheld default needs
  // (sealed-missing-watch.ts), recorded before the batch is published; a resync's own batches do not.
  const watch = new SealedMissingWatch({ registeredOf: (t) => codec.registeredOf(t), storedHere: (f) => schemas.storedHere(f) });
  const streamEncoder: SourcePipelineDeps['encoder'] = {
    encode: async (batch) => {
      const requests = await watch.requests(batch);
      for (const r of requests) {
        if (resync) resync.request(r);
        else logger().warn({ source: source.name, tables: r.tables, reason: r.reason }, `a restore past this change refuses the table until it is re-read: chartlog resync --tables ${r.tables.join(',')}`);
      }
      if (resync && requests.length > 0) await resync.durable();
      return encoder.encode(batch);
    },
    encodeBase: encoder.encodeBase!,
    fingerprintOf: encoder.fingerprintOf,
  };
  return {
    config,
    source,
    store,
    connector: createConnector(source, {
      logger: logger(),
      ...(resync ? { requestResync: resync.request } : {}),
      // Durable before the connector goes on (table-starts.ts); a failed write restarts the stream.
      recordTableStart: (start) => withRetry(() => writeTableStart(store, source.name, tableStartRecord(start)), { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 2000 }),
      // The connector's view of the catalog between runs (src/core/catalog-state.ts).
      catalogStates: {
        load: async (upTo) => {
          const checkpoint = await readCheckpoint(store, source.name);
          const atCheckpoint = checkpoint && Position.compare(checkpoint.position, upTo) === 0;
          const saved = await readCatalogState(store, source.name, upTo);
          // Changes whose windows were recorded after that state (a kill -9 before the next state):
          // found again at this start, they are already covered (src/core/catalog-state.ts).
          const recorded = (await readUnprovenRecords(store, source.name))
            .filter((r) => r.catalog !== undefined && (!saved || Position.compare(Position.parse(r.seenAt), saved.position) > 0))
            .map((r) => ({ table: r.table, catalog: r.catalog! }));
          return { saved, upToCommitTsUs: atCheckpoint ? checkpoint.commitTsUs : null, recorded };
        },
        // Stored only once every resync request made before it is durable: a crash between a
        // change found and its request recorded leaves the older state, and the next start finds it again.
        save: async (saved) => {
          await resync?.durable();
          await withRetry(() => writeCatalogState(store, source.name, saved), { maxAttempts: 5, initialDelayMs: 100, maxDelayMs: 2000 });
        },
      },
    }),
    encoder: streamEncoder,
    envelopes,
    peerTables: readCapturedTables,
    signer,
    ...(resync ? { resync } : {}),
  };
}

/** The tables another source captures, read through a connector of its own (closed after). */
export async function readCapturedTables(source: Readonly<SourceConfig>): Promise<readonly TableSchema[]> {
  return withConnector(source, (c) => c.tables());
}

/**
 * `chartlog config check --source-check`: each source's setup check and its PHI name check,
 * as `chartlog run` does them at start, without the keyring or the object store. The catalogs of
 * all the given sources are read first, so a PHI table of another source is looked up there.
 * Throws the first failure ('source_setup', or 'config' for a PHI name).
 */
export async function checkSources(config: Readonly<Config>, sources: readonly Readonly<SourceConfig>[]): Promise<{ source: string; tables: number }[]> {
  const captured = new Map<string, readonly TableSchema[]>();
  for (const s of sources) {
    captured.set(
      s.name,
      await withConnector(s, async (c) => {
        await c.check();
        return c.tables();
      }),
    );
  }
  const peerTables = async (s: Readonly<SourceConfig>) => captured.get(s.name) ?? readCapturedTables(s);
  for (const s of sources) await checkSourcePhiNames({ config, source: s, peerTables }, captured.get(s.name)!);
  return sources.map((s) => ({ source: s.name, tables: captured.get(s.name)!.length }));
}

async function withConnector<T>(source: Readonly<SourceConfig>, f: (c: SourceConnector) => Promise<T>): Promise<T> {
  const connector = createConnector(source, { logger: logger() });
  try {
    return await f(connector);
  } finally {
    await connector.close();
  }
}

function dbNameOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  } catch {
    return '';
  }
}
