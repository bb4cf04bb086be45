import { SnapshotSchedule } from '../compactor/snapshot-schedule.js';
import { runEmbeddedSourcePipeline } from './embedded-pipeline.js';
import { runKafkaSourcePipeline } from './kafka-pipeline.js';
import type { SourcePipelineDeps } from './prepare-source.js';

/**
 * One source's pipeline on the bus its configuration names, with its scheduled snapshot
 * synthesis (`snapshot.everyHours`) running beside it until the pipeline ends.
 */
export async function runSourcePipeline(deps: SourcePipelineDeps, signal: AbortSignal): Promise<void> {
  const every = deps.source.snapshot.everyHours;
  const scheduleStop = new AbortController();
  const stopSchedule = () => scheduleStop.abort();
  signal.addEventListener('abort', stopSchedule, { once: true });
  const scheduled = every ? new SnapshotSchedule({ store: deps.store, source: deps.source, everyHours: every }).run(scheduleStop.signal) : Promise.resolve();
  try {
    if (deps.config.bus.type === 'kafka') return await runKafkaSourcePipeline(deps, signal);
    return await runEmbeddedSourcePipeline(deps, signal);
  } finally {
    signal.removeEventListener('abort', stopSchedule);
    scheduleStop.abort();
    await scheduled;
  }
}
