import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker, type ResourceLimits } from 'node:worker_threads';

/**
 * Starts the worker thread whose body is the module `file` beside `here` (an import.meta.url),
 * given without extension. From sources (a checkout run through tsx: tests, benchmarks, the bin
 * in a checkout) the thread loads its TypeScript through tsx's require hook, which compiles in
 * the thread itself: the ESM loader would start a loader thread of its own inside this one
 * (another V8 heap: ~25 MiB resident and ~0.2 s of CPU per thread, measured on a restore). From
 * dist it is plain JS.
 */
export function startWorker(here: string, file: string, resourceLimits?: ResourceLimits): Worker {
  const options = resourceLimits ? { resourceLimits } : {};
  if (!here.endsWith('.ts')) return new Worker(new URL(`./${file}.js`, here), options);
  const require = createRequire(here);
  const entry = fileURLToPath(new URL(`./${file}.ts`, here));
  const tsx = require.resolve('tsx/cjs/api');
  return new Worker(`require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(entry)});`, { eval: true, ...options });
}
