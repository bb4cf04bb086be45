#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=4
// MALLOC_ARENA_MAX=2 (glibc; read before node starts, so it cannot be set from inside): the
// threads that allocate buffers (the reader, the crypto worker, libuv's pool deflating
// containers) share two malloc arenas instead of each keeping its own high-water mark: 4–14 MiB
// less peak RSS for a 1M-row MariaDB transaction, rows/s within noise (four same-time pairs,
// docs/operations.md "Memory").
// --max-semi-space-size=4 (MiB; V8's default grows to 16): a small young generation is scavenged
// often, so the row objects and buffers of a large transaction die young instead of being
// promoted and waiting, with the buffers they hold, for a full collection. A 1M-row MariaDB
// transaction peaked at 383 MiB RSS without it (benchmarks/results/memory-mariadb.json;
// docs/operations.md, Running it). The Dockerfile ENTRYPOINT passes the same flags. Run as
// `node bin/chartlog.js`, pass them yourself (or NODE_OPTIONS=--max-semi-space-size=4, and
// MALLOC_ARENA_MAX=2 in the environment).
// In a source checkout, runs src/ through tsx, so a stale dist/ can never shadow the code being
// tested; an installed package or image (no src/, see Dockerfile) runs the compiled dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'cli', 'main.ts');
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  await import(pathToFileURL(join(root, 'dist', 'src', 'cli', 'main.js')).href);
}
