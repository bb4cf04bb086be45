import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCheckpoint } from '../../src/archive/checkpoint.js';
import { listSnapshots, type SnapshotManifest } from '../../src/archive/snapshot-manifest.js';
import { Position } from '../../src/core/position.js';
import type { CellValue } from '../../src/core/table-schema.js';
import { sealedKeyId } from '../../src/phi/sealer.js';
import { isRowSealReference, refersTo } from '../../src/phi/row-seal.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { ArchiveReader } from '../../src/archive/archive-reader.js';
import { verifyArchive } from '../../src/restore/verify.js';
import { describeHits, scanForCanaries, scanTextForCanaries } from '../support/leak-scan.js';
import { createClinicTables, PHI_CANARIES, mariadbEngine, norm, postgresEngine, prng, RunHarness, Workload, type StoreKind } from '../support/run-harness.js';

/**
 * `chartlog snapshot` against a real PostgreSQL and `chartlog run` as a process: synthesised
 * from the archive while run streams (equal to the source, PHI sealed, opening with the
 * keyring to the source's values); `--from-source` refused while run holds the slot and taken
 * once it stopped; the stream continuing after each; verify clean throughout.
 */

const bin = join(import.meta.dirname, '..', '..', 'bin', 'chartlog.js');

async function cli(h: RunHarness, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args, '--config', h.configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: h.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stdout, stderr };
}

/** The snapshot's rows, PHI opened with the keyring, as the harness compares rows. */
async function snapshotRows(h: RunHarness, m: SnapshotManifest, table: string): Promise<{ rows: Record<string, string | null>[]; sealed: number }> {
  const archive = openArchiveCodec(h.config, h.config.sources[0]!, h.store, true);
  const reader = new ArchiveReader(h.store, await readArchiveIndex(h.store, 'clinic'), archive.envelopes);
  const plain = openArchiveCodec(h.config, h.config.sources[0]!, h.store, false).codec;
  const rows: Record<string, string | null>[] = [];
  let sealed = 0;
  for (const r of await reader.snapshotRecords(m, table)) {
    const closed = await plain.decode(r.message);
    // Format 3: a row's sealed columns hold one row seal and references to it (a merged row may
    // hold several seals); every non-null sealed cell is one of the two, and each reference names a
    // seal of its row.
    const cells = closed.sealedColumns.map((c) => [c, closed.event.after?.[c]] as const).filter(([, v]) => v !== null && v !== undefined);
    const seals = cells.map(([, v]) => v).filter((v): v is Uint8Array => v instanceof Uint8Array && sealedKeyId(v) !== null);
    for (const [c, v] of cells) {
      const ok = v instanceof Uint8Array && (sealedKeyId(v) !== null || (isRowSealReference(v) && seals.some((s) => refersTo(v, s))));
      assert.ok(ok, `${table}.${c} is sealed in the snapshot (a row seal, or a reference to one in its row)`);
      sealed++;
    }
    const row = (await archive.codec.decode(r.message, { open: true })).event.after!;
    rows.push(Object.fromEntries(Object.entries(row).map(([k, v]) => [k, norm(v as CellValue)])));
  }
  return { rows: rows.sort((a, b) => Number(a.id) - Number(b.id)), sealed };
}

async function sourceRows(h: RunHarness, table: string): Promise<Record<string, string | null>[]> {
  return (await h.engine.rows(table)).map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, norm(v)])));
}

/**
 * converge() replays every stored part, but the checkpoint (the synthesis's cut) is written just
 * after the parts it covers: wait until it covers every part stored.
 */
async function checkpointCoversParts(h: RunHarness): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const index = await readArchiveIndex(h.store, 'clinic');
    const newest = index.openParts.reduce<Position | null>((m, p) => (m && Position.compare(m, p.last) >= 0 ? m : p.last), null);
    if (index.checkpoint && (!newest || Position.compare(index.checkpoint.position, Position.commitOf(newest)) >= 0)) return;
    await sleep(50);
  }
  assert.fail('the checkpoint never covered the stored parts');
}

async function verifyClean(h: RunHarness): Promise<void> {
  const archive = openArchiveCodec(h.config, h.config.sources[0]!, h.store, false);
  const report = await verifyArchive(h.store, await readArchiveIndex(h.store, 'clinic'), archive.envelopes);
  assert.deepEqual(report.problems, [], 'verify is clean');
}

for (const make of [postgresEngine, mariadbEngine]) {
  for (const storeKind of ['file', 's3'] as StoreKind[]) {
    const kind = make.name.replace('Engine', '');
    test(`${kind} → ${storeKind}://: chartlog snapshot synthesises beside chartlog run, --from-source once run stopped`, { timeout: 300_000 }, async () => {
      const engine = await make();
      const h = new RunHarness(engine, storeKind);
      try {
        await createClinicTables(engine);
        const workload = new Workload(engine, prng(23));
        await h.start();
        for (let i = 0; i < 150; i++) await workload.transaction();
        assert.equal(await h.converge(), '', 'the archive converges to the source');
        await checkpointCoversParts(h);

        // 1. Synthesised while run streams: equals the source, PHI sealed, opens with the keyring.
        const first = await cli(h, ['snapshot', '--json']);
        assert.equal(first.code, 0, first.stderr);
        const [report] = JSON.parse(first.stdout) as { status: string; snapshot: { id: string; origin: string; rows: number } }[];
        assert.equal(report!.status, 'written');
        assert.equal(report!.snapshot.origin, 'synthesised');
        const snaps = await listSnapshots(h.store, 'clinic');
        assert.deepEqual(snaps.map((s) => s.origin), ['source', 'synthesised']);
        const synth = snaps[1]!;
        const checkpoint = (await readCheckpoint(h.store, 'clinic'))!;
        assert.ok(Position.compare(Position.parse(synth.position), checkpoint.position) <= 0);
        let sealed = 0;
        for (const t of ['patients', 'visits']) {
          const got = await snapshotRows(h, synth, h.engine.qualified(t));
          assert.deepEqual(got.rows, await sourceRows(h, t), `${t}: the synthesised snapshot equals the source`);
          sealed += got.sealed;
        }
        assert.ok(sealed > 50, `only ${sealed} sealed values`);
        const parts = await Promise.all(Object.values(synth.tables).flatMap((t) => t.parts).map(async (p) => ({ key: p.key, bytes: await h.store.get(p.key) })));
        const partLeaks = scanForCanaries(parts, PHI_CANARIES);
        assert.deepEqual(partLeaks, [], `PHI in clear:\n${describeHits(partLeaks)}`);
        await verifyClean(h);

        // 2. PostgreSQL: --from-source while run holds the slot is refused, exit 2, nothing written.
        // (MySQL/MariaDB has no slot to tell by; see snapshot-command.ts.)
        const outputs = [first];
        if (engine.type === 'postgres') {
          const refused = await cli(h, ['snapshot', '--from-source']);
          assert.equal(refused.code, 2, refused.stderr);
          assert.match(refused.stderr, /being streamed by a running `chartlog run`.*nothing was written/s);
          assert.equal((await listSnapshots(h.store, 'clinic')).length, 2);
          outputs.push(refused);
        }

        // 3. The stream goes on; restores now start from the synthesised snapshot.
        for (let i = 0; i < 60; i++) await workload.transaction();
        assert.equal(await h.converge(), '', 'converges from the synthesised snapshot');
        await sleep(300);
        assert.equal(await h.kill('SIGTERM'), 0);

        // 4. Stopped: --from-source reads the source; the checkpoint moves to it.
        for (let i = 0; i < 20; i++) await workload.transaction(); // while nothing streams
        const read = await cli(h, ['snapshot', '--from-source', '--json']);
        assert.equal(read.code, 0, read.stderr);
        const fromSource = (JSON.parse(read.stdout) as { status: string; snapshot: { id: string; origin: string } }[])[0]!;
        assert.equal(fromSource.status, 'read');
        assert.equal(fromSource.snapshot.origin, 'source');
        const after = (await readCheckpoint(h.store, 'clinic'))!;
        assert.equal(Position.format(after.position), fromSource.snapshot.id, 'the checkpoint moved to the new snapshot');
        assert.equal(after.snapshotId, fromSource.snapshot.id);

        // 5. The stream restarts after it; the chain's break at the snapshot is accepted.
        await h.start();
        for (let i = 0; i < 60; i++) await workload.transaction();
        assert.equal(await h.converge(), '', 'converges after a source snapshot');
        await checkpointCoversParts(h);
        const again = await cli(h, ['snapshot']);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stdout, /synthesised snapshot \S+ at .* from /);
        await sleep(300);
        assert.equal(await h.kill('SIGTERM'), 0);
        assert.deepEqual((await listSnapshots(h.store, 'clinic')).map((s) => s.origin), ['source', 'synthesised', 'source', 'synthesised']);
        await verifyClean(h);
        const timeline = await cli(h, ['timeline']);
        assert.equal(timeline.code, 0, timeline.stderr);
        assert.equal((timeline.stdout.match(/synthesised/g) ?? []).length, 2);

        const leaks = [
          ...scanForCanaries(await h.storedObjects(), PHI_CANARIES),
          ...scanTextForCanaries('log', h.logText(), ['CANARY']),
          ...[...outputs, read, again, timeline].flatMap((out, i) => scanTextForCanaries(`CLI output ${i}`, out.stdout + out.stderr, ['CANARY'])),
        ];
        assert.deepEqual(leaks, [], `PHI in clear:\n${describeHits(leaks)}`);
      } finally {
        await h.close();
        await engine.close();
      }
    });
  }
}
