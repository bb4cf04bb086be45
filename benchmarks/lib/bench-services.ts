/**
 * Benchmarks start their own private servers like the tests do: scripts/services.sh up (a no-op
 * when they already run), then its `env` output into process.env. Servers this process started
 * are stopped again by stopBenchServices(); ones that were already running are left alone.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { testServices, type TestServices } from '../../test/support/env.js';

const script = fileURLToPath(new URL('../../scripts/services.sh', import.meta.url));
let startedHere = false;

export function benchServices(): TestServices {
  if (!process.env.CHARTLOG_TEST_PG_URL) {
    const running = spawnSync('bash', [script, 'status'], { stdio: 'ignore' }).status === 0;
    if (!running) {
      execFileSync('bash', [script, 'up'], { stdio: ['ignore', 'inherit', 'inherit'] });
      startedHere = true;
    }
    const env = execFileSync('bash', [script, 'env'], { encoding: 'utf8' });
    for (const line of env.split('\n')) {
      const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (m) process.env[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
    }
  }
  return testServices();
}

export function stopBenchServices(): void {
  if (startedHere) execFileSync('bash', [script, 'down'], { stdio: ['ignore', 'inherit', 'inherit'] });
  startedHere = false;
}
