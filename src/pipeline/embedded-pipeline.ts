import { EmbeddedBus } from '../bus/embedded-bus.js';
import { Compactor } from '../compactor/compactor.js';
import { toChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import { prepareSource, type SourcePipelineDeps } from './prepare-source.js';
import { PublishAhead } from './publish-ahead.js';
import { runStreamLoop } from './stream-loop.js';

/**
 * One source, end to end on the embedded bus (docs/architecture.md §1); with bus.type kafka, see
 * kafka-pipeline.ts:
 *
 *   connector ─► encoder (seal + Avro) ─► bounded bus ─► compactor ─► object store
 *        ▲                                                    │
 *        └──────── acknowledge(position) once durable ◄───────┘
 *
 * On start it resumes from the checkpoint in the object store (taking a consistent snapshot
 * first when the source has none). Retriable failures of the stream restart it from the last
 * published position with the source's backoff (stream-loop.ts); the compactor, still running,
 * makes everything published durable. Aborting `signal` stops reading, flushes, acknowledges,
 * and returns.
 */
export async function runEmbeddedSourcePipeline(deps: SourcePipelineDeps, signal: AbortSignal): Promise<void> {
  const { config, source, connector, encoder, envelopes, store } = deps;
  const log = logger().child({ source: source.name });
  const { checkpoint, snapshotId } = await prepareSource(deps, signal);

  const bus = new EmbeddedBus(config.bus.maxBufferedBatches, config.bus.maxBufferedBytes);
  const compactor = new Compactor(
    store,
    source.name,
    envelopes,
    {
      flushIntervalMs: config.segments.flushIntervalMs,
      maxPartBytes: config.segments.maxPartBytes,
      closeGraceMs: 120_000,
      snapshotId,
      ...(deps.archiveId ? { archiveId: deps.archiveId } : {}),
      ...(deps.fence ? { fence: deps.fence } : {}),
      ...(deps.signer ? { signer: deps.signer } : {}),
    },
    async (r) => {
      await connector.acknowledge(r.upTo);
      deps.onDurable?.(r);
    },
    signal,
  );
  await compactor.start();
  const compacting = compactor.run(bus);
  // A failed compactor must stop the reader too, or publish() would wait forever on a full bus.
  const compactorFailed = compacting.then(
    () => null,
    (err: unknown) => {
      bus.close();
      return toChartlogError(err);
    },
  );

  const from = checkpoint?.position ?? null;
  const ahead = new PublishAhead(from, source.name, (b) => encoder.encode(b), (b) => bus.publish(b));
  log.info({ from: from ? Position.format(from) : null }, 'pipeline streaming');
  const { last, failure, unpublished } = await runStreamLoop({
    connector,
    ahead,
    from,
    policy: source.reconnect,
    signal,
    log,
    restartMessage: 'source stream failed; reconnecting from the last published position',
    ...(deps.resync ? { beforePublish: () => deps.resync!.durable() } : {}),
  });

  bus.close();
  const compactorError = await compactorFailed;
  await connector.close();
  // A publish fails when the compactor closed the bus: the compactor's error says why.
  const err = failure ?? compactorError ?? unpublished;
  if (err) throw err;
  log.info({ upTo: last ? Position.format(last) : null }, 'stopped; everything read is durable and acknowledged');
}
