import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

// Start-up is a real part of a short restore's time, and of a replica's initial load: loading a
// command must not load drivers and SDKs it may never use. The packages a command's modules load
// (CommonJS ones land in require.cache, also when imported from ESM) are listed by a child process.
const cli = join(import.meta.dirname, '..', '..', '..', 'src', 'cli');

function packagesLoadedBy(module: string): string[] {
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(join(cli, module))});
    const names = Object.keys(createRequire(import.meta.url).cache).map((k) => /node_modules\\/((@[^/]+\\/)?[^/]+)\\//.exec(k)?.[1]).filter(Boolean);
    console.log(JSON.stringify([...new Set(names)]));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

/** Loaded only by the commands and backends that use them. */
const HEAVY = [/^mysql2$/, /^@aws-sdk\//, /^kafkajs$/];

for (const module of ['restore-command.ts', 'replicate-command.ts', 'timeline-command.ts']) {
  test(`${module} loads no MySQL driver, AWS SDK or Kafka client until asked`, () => {
    const loaded = packagesLoadedBy(module);
    // The listing works: it sees what every command loads.
    assert.ok(loaded.includes('yaml') && loaded.includes('pino'), `the listing missed packages every command loads: ${loaded.join(' ')}`);
    assert.deepEqual(
      loaded.filter((p) => HEAVY.some((h) => h.test(p))),
      [],
    );
  });
}

test('the listing catches a heavy package once loaded (planted: the run command loads the connectors)', () => {
  const loaded = packagesLoadedBy('run-command.ts');
  assert.ok(loaded.some((p) => HEAVY.some((h) => h.test(p))), `run-command loaded none of the heavy packages: ${loaded.join(' ')}`);
});
