import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { readLease } from '../../src/archive/lease.js';
import { verifyArchive } from '../../src/restore/verify.js';
import { createClinicTables, mariadbEngine, postgresEngine, prng, RunHarness, Workload, type StoreKind } from '../support/run-harness.js';

/**
 * Two writers on one archive (issue 13, item 5): several `chartlog run` with one configuration
 * at once, as in a rolling deploy, under a concurrent write load. Only the holder of the writer
 * lease streams; the others wait and say who holds it. Measured and asserted:
 * - a clean stop (SIGTERM) of the holder hands over at once (the lease is released);
 * - kill -9 of the holder: the waiting process on this machine sees its pid gone and takes over
 *   well within the lease TTL;
 * - a holder that is alive but stuck (SIGSTOP) is taken over once its lease expires, and when it
 *   continues it finds the lease lost and exits 1 without writing;
 * and afterwards the archive replayed equals the source row by row and `verify` is clean.
 */

const TTL_MS = 4000;

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

interface LogLine {
  time: number;
  msg: string;
  holder?: { host: string; pid: number };
  err?: { code?: string };
}

function lines(p: Proc): LogLine[] {
  return readFileSync(p.log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}
const find = (p: Proc, re: RegExp) => lines(p).find((l) => re.test(l.msg));
const count = (p: Proc, re: RegExp) => lines(p).filter((l) => re.test(l.msg)).length;

// 90 s by default: a new `chartlog run` compiles src/ through tsx before it logs anything, which
// took more than 30 s at a load average of 40–50 (fresh-clone CI beside five helpers).
async function until(what: string, p: Proc, ok: () => boolean, timeoutMs = 90_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(50)) if (ok()) return;
  assert.fail(`${p.name}: ${what} did not happen within ${timeoutMs} ms (see ${p.log})`);
}

for (const make of [postgresEngine, mariadbEngine]) {
  for (const storeKind of ['file', 's3'] as StoreKind[]) {
    const engineName = make.name.replace('Engine', '');
    test(`${engineName} → ${storeKind}://: two chartlog run at once — one writer; handover on stop, on kill -9 and on expiry; restore equals the source`, { timeout: 480_000 }, async () => {
      const engine = await make();
      const h = new RunHarness(engine, storeKind, { leaseTtlMs: TTL_MS });
      const procs: Proc[] = [];
      const run = (name: string): Proc => {
        const log = join(h.work, `run-${name}.log`);
        const child = h.spawnRun(log);
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        const p = { name, child, log, exited };
        procs.push(p);
        return p;
      };
      let loading = true;
      let load: Promise<void> = Promise.resolve();
      try {
        await createClinicTables(engine);
        const workload = new Workload(engine, prng(engineName === 'postgres' ? 31 : 37));
        const a = run('a');
        await until('streaming', a, () => count(a, /^pipeline streaming$/) > 0);
        load = (async () => {
          while (loading) await workload.transaction();
        })();

        // 1. A second run with the same configuration waits, says who holds the lease, writes nothing.
        const b = run('b');
        await until('waiting', b, () => count(b, /waiting for its lease/) > 0);
        await sleep(TTL_MS + 1000); // more than a TTL: a live holder's lease never expires
        // A's lease lines say whether A lost it first (a renewal late past the 4 s TTL: seen at load 40–50).
        assert.equal(count(b, /^pipeline streaming$/), 0, `B streamed while A held the lease; A said: ${JSON.stringify(lines(a).filter((l) => /lease/.test(l.msg)).map((l) => l.msg))}`);
        const waiting = find(b, /waiting for its lease/)!;
        assert.equal(waiting.holder?.pid, a.child.pid);
        assert.match(waiting.msg, new RegExp(`another chartlog \\(host .+, pid ${a.child.pid}\\) writes this source's archive`));

        // 2. Rolling deploy: A stops cleanly, B takes over at once.
        a.child.kill('SIGTERM');
        assert.equal(await a.exited, 0, 'a clean stop exits 0');
        const aStopped = Date.now();
        await until('lease acquired', b, () => count(b, /^writer lease acquired$/) > 0);
        const handoverMs = find(b, /^writer lease acquired$/)!.time - aStopped;
        await until('streaming', b, () => count(b, /^pipeline streaming$/) > 0, 60_000);

        // 3. kill -9 of the holder while C waits: C takes over within the lease expiry.
        const c = run('c');
        await until('waiting', c, () => count(c, /waiting for its lease/) > 0);
        b.child.kill('SIGKILL');
        await b.exited;
        const bKilled = Date.now();
        await until('lease acquired', c, () => count(c, /^writer lease acquired$/) > 0, TTL_MS + 5000);
        const killTakeoverMs = find(c, /^writer lease acquired$/)!.time - bKilled;
        await until('streaming', c, () => count(c, /^pipeline streaming$/) > 0, 60_000);

        // 4. A holder that is alive but stuck (SIGSTOP): D takes over once its lease expired; C,
        //    continued, finds its lease lost and exits 1 without writing more.
        const d = run('d');
        await until('waiting', d, () => count(d, /waiting for its lease/) > 0);
        c.child.kill('SIGSTOP');
        const cStopped = Date.now();
        await until('lease acquired', d, () => count(d, /^writer lease acquired$/) > 0, TTL_MS + 20_000);
        const expiryTakeoverMs = find(d, /^writer lease acquired$/)!.time - cStopped;
        c.child.kill('SIGCONT');
        assert.equal(await c.exited, 1, 'the deposed holder exits 1');
        const lost = lines(c).find((l) => /writer lease lost|taken over|lease/.test(l.msg) && l.err?.code === 'lease');
        assert.ok(lost, `the deposed holder did not report the lost lease (see ${c.log})`);
        await until('streaming', d, () => count(d, /^pipeline streaming$/) > 0, 90_000);

        loading = false;
        await load;
        for (let i = 0; i < 10; i++) await workload.transaction();
        assert.equal(await h.converge(90_000), '', 'the archive converges to the source');
        d.child.kill('SIGTERM');
        assert.equal(await d.exited, 0);
        const rec = await readLease(h.store, 'clinic');
        assert.equal(rec?.released, true);
        assert.ok((rec?.epoch ?? 0) >= 4, `epoch ${rec?.epoch}: four holders`);

        const archive = openArchiveCodec(h.config, h.config.sources[0]!, h.store, false);
        const report = await verifyArchive(h.store, await readArchiveIndex(h.store, 'clinic'), archive.envelopes);
        assert.deepEqual(report.problems, [], 'the transaction chain and counts are whole');
        assert.ok(report.checked.transactions > 20, `only ${report.checked.transactions} transactions archived`);

        console.log(
          `[lease] ${engineName} ${storeKind}: handover after SIGTERM ${handoverMs} ms, takeover after kill -9 ${killTakeoverMs} ms, takeover of a stopped holder ${expiryTakeoverMs} ms (TTL ${TTL_MS} ms), ${report.checked.transactions} transactions`,
        );
        assert.ok(handoverMs < 2000, `handover after a clean stop took ${handoverMs} ms`);
        assert.ok(killTakeoverMs < TTL_MS, `takeover after kill -9 took ${killTakeoverMs} ms, not within the ${TTL_MS} ms lease`);
        // A stopped holder's lease runs out at most a TTL after it stopped (it renewed before); the
        // taker polls at most every second. The slack beyond that is for a loaded machine (a CI
        // run at load 38 did not see D take over within TTL + 5 s; quiet runs take 2.9–3.7 s).
        assert.ok(expiryTakeoverMs <= TTL_MS + 5000, `takeover of an expired lease took ${expiryTakeoverMs} ms`);
        assert.ok(expiryTakeoverMs >= TTL_MS / 3, `took over a live lease after ${expiryTakeoverMs} ms`);
      } finally {
        loading = false;
        await load.catch(() => undefined);
        for (const p of procs) {
          if (p.child.exitCode === null && p.child.signalCode === null) {
            p.child.kill('SIGCONT');
            p.child.kill('SIGKILL');
            await p.exited;
          }
        }
        await h.close();
        await engine.close();
      }
    });
  }
}
