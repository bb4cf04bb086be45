import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClinicTables, mariadbEngine, postgresEngine, prng, RunHarness, Workload } from '../support/run-harness.js';

/**
 * Source TLS by default (issue 13, item 8): `tls.mode` defaults to prefer. The test servers run
 * without TLS, so `chartlog run` falls back to plaintext and says so loudly — once, naming the
 * source and the settings that make TLS required or silence the warning — and the backup goes
 * on. With an explicit `tls.mode: disable` the same run logs no such warning (the negative
 * control of the count); with `require` it refuses to connect in plaintext.
 */

const WARNING = /source clinic: the database server does not offer TLS, so the change stream .* travel UNENCRYPTED/;
const warnings = (log: string) => log.split('\n').filter((l) => WARNING.test(l));

for (const make of [postgresEngine, mariadbEngine]) {
  const engineName = make.name.replace('Engine', '');
  test(`${engineName}: the default tls.mode prefers TLS, falls back to plaintext with one warning; disable is silent; require refuses plaintext`, { timeout: 180_000 }, async () => {
    const engines = [await make(), await make(), await make()];
    const byDefault = new RunHarness(engines[0]!, 'file');
    const disabled = new RunHarness(engines[1]!, 'file', { sourceExtra: 'tls: { mode: disable }' });
    const required = new RunHarness(engines[2]!, 'file', { sourceExtra: 'tls: { mode: require }' });
    try {
      for (const h of [byDefault, disabled]) {
        await createClinicTables(h.engine);
        await h.start();
        const workload = new Workload(h.engine, prng(71));
        for (let i = 0; i < 5; i++) await workload.transaction();
        assert.equal(await h.converge(), '', 'the backup goes on');
        assert.equal(await h.kill('SIGTERM'), 0);
      }
      const warned = warnings(byDefault.logText());
      assert.equal(warned.length, 1, `one warning per run, not one per connection:\n${warned.join('\n')}`);
      const line = JSON.parse(warned[0]!) as { level: number; source: string; tlsMode: string; encrypted: boolean; msg: string };
      assert.equal(line.level, 40, 'a warning');
      assert.deepEqual([line.source, line.tlsMode, line.encrypted], ['clinic', 'prefer', false]);
      assert.match(line.msg, /tls\.mode: verify-full \(or require\) to refuse plaintext/);
      assert.match(line.msg, /tls\.mode: disable only to accept plaintext on purpose/);
      assert.deepEqual(warnings(disabled.logText()), [], 'explicit disable: no warning');

      await createClinicTables(required.engine);
      const refused = await required.runToEnd(['config', 'check', '--source-check']);
      assert.equal(refused.code, 1, refused.output);
      assert.match(refused.output, engineName === 'postgres' ? /does not support SSL/ : /does not support secure connection/);
      assert.deepEqual(warnings(refused.output), []);
    } finally {
      for (const h of [byDefault, disabled, required]) await h.close();
      for (const e of engines) await e.close();
    }
  });
}
