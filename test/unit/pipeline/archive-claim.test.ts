import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ensureArchiveIdentity, isArchiveId, readArchiveIdentity } from '../../../src/archive/archive-identity.js';
import { readCheckpoint, writeCheckpoint } from '../../../src/archive/checkpoint.js';
import { archiveIdentityKey } from '../../../src/archive/layout.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { ArchiveClaim, SourceConnector } from '../../../src/core/source-connector.js';
import { claimSourceArchive, recordArchive } from '../../../src/pipeline/prepare-source.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const SOURCE = 'clinic';
const source = { name: SOURCE } as Parameters<typeof claimSourceArchive>[0]['source'];

/** A connector that records the claims it is given (the PostgreSQL rule is tested on its own). */
function connector(): SourceConnector & { claims: ArchiveClaim[] } {
  const claims: ArchiveClaim[] = [];
  return { claims, claim: async (c: ArchiveClaim) => void claims.push(c) } as unknown as SourceConnector & { claims: ArchiveClaim[] };
}
const run = { takeOverSlot: false, refuseMissingCheckpoint: true };
const isConfig = (e: unknown) => e instanceof ChartlogError && e.code === 'config' && e.exitCode === 2;
const checkpoint = (store: MemoryObjectStore, archiveId?: string) =>
  writeCheckpoint(store, { source: SOURCE, position: Position.of('0000000000000010'), commitTsUs: 1n, snapshotId: null, ...(archiveId ? { archiveId } : {}) });

test('a new archive: a fresh id is proposed and nothing is written until recordArchive; then archive.json is created once', async () => {
  const store = new MemoryObjectStore();
  const c = connector();
  const claim = await claimSourceArchive({ source, connector: c, store }, run);
  assert.ok(isArchiveId(claim.archiveId));
  assert.deepEqual(claim, { archiveId: claim.archiveId, adoptLegacy: false, takeOver: false });
  assert.equal(store.writes, 0, 'the claim writes nothing');
  assert.deepEqual(c.claims, [claim]);
  assert.equal(await recordArchive({ source, connector: c, store }, claim), claim.archiveId);
  const identity = await readArchiveIdentity(store, SOURCE);
  assert.equal(identity?.archiveId, claim.archiveId);
  // Created once: a second process proposing another id gets the first one, and is claimed again under it.
  const second = connector();
  assert.equal(await recordArchive({ source, connector: second, store }, { ...claim, archiveId: 'bbbbbbbbbbbbbbbb' }), claim.archiveId);
  assert.deepEqual(second.claims.map((x) => x.archiveId), [claim.archiveId]);
  assert.equal((await readArchiveIdentity(store, SOURCE))?.createdAt, identity?.createdAt, 'never replaced');
});

test('the archive id comes from archive.json, else from the checkpoint; a checkpoint adopts legacy slots', async () => {
  const store = new MemoryObjectStore();
  await checkpoint(store, 'cccccccccccccccc');
  const claim = await claimSourceArchive({ source, connector: connector(), store }, run);
  assert.deepEqual(claim, { archiveId: 'cccccccccccccccc', adoptLegacy: true, takeOver: false }, 'archive.json lost: the checkpoint still names the archive');
  await ensureArchiveIdentity(store, SOURCE, 'dddddddddddddddd');
  await checkpoint(store); // a checkpoint from before ids
  assert.equal((await claimSourceArchive({ source, connector: connector(), store }, { ...run, takeOverSlot: true })).archiveId, 'dddddddddddddddd');
});

test('a checkpoint of another archive is refused (exit 2), and the connector is not asked', async () => {
  const store = new MemoryObjectStore();
  await ensureArchiveIdentity(store, SOURCE, 'aaaaaaaaaaaaaaaa');
  await checkpoint(store, 'bbbbbbbbbbbbbbbb');
  const c = connector();
  await assert.rejects(claimSourceArchive({ source, connector: c, store }, run), (e) => isConfig(e) && /belongs to archive bbbbbbbbbbbbbbbb, but this archive is aaaaaaaaaaaaaaaa/.test((e as Error).message));
  assert.deepEqual(c.claims, []);
  // Negative control: its own checkpoint passes.
  await checkpoint(store, 'aaaaaaaaaaaaaaaa');
  assert.equal((await claimSourceArchive({ source, connector: c, store }, run)).archiveId, 'aaaaaaaaaaaaaaaa');
});

test('stored changes without a checkpoint: run refuses (exit 2, the fix never says to delete anything); snapshot --from-source may start a new base', async () => {
  const store = new MemoryObjectStore();
  await ensureArchiveIdentity(store, SOURCE, 'aaaaaaaaaaaaaaaa');
  // Before any change is stored (an interrupted first snapshot), run starts over.
  assert.equal((await claimSourceArchive({ source, connector: connector(), store }, run)).adoptLegacy, false);
  await store.put(`${SOURCE}/parts/2026-11-24/05/public.patients/x.avro`, Buffer.from('x'));
  assert.equal(await readCheckpoint(store, SOURCE), null);
  await assert.rejects(claimSourceArchive({ source, connector: connector(), store }, run), (e) => {
    assert.ok(isConfig(e));
    const err = e as ChartlogError;
    assert.match(err.message, /holds stored changes but no state\/checkpoint\.json/);
    assert.match(err.hint ?? '', /snapshot --from-source/);
    assert.doesNotMatch(err.hint ?? '', /delete/i);
    return true;
  });
  assert.equal((await claimSourceArchive({ source, connector: connector(), store }, { takeOverSlot: false, refuseMissingCheckpoint: false })).archiveId, 'aaaaaaaaaaaaaaaa');
  // A closed hour (manifest) counts as stored changes too.
  const closed = new MemoryObjectStore();
  await closed.put(`${SOURCE}/manifests/2026-11-24T05.json`, Buffer.from('{}'));
  await assert.rejects(claimSourceArchive({ source, connector: connector(), store: closed }, run), isConfig);
});

test('an unreadable archive.json stops the claim with an integrity error', async () => {
  const store = new MemoryObjectStore();
  await store.put(archiveIdentityKey(SOURCE), Buffer.from('{"version":1,"source":"clinic","archiveId":"nothex"}'));
  await assert.rejects(claimSourceArchive({ source, connector: connector(), store }, run), (e) => e instanceof ChartlogError && e.code === 'integrity');
});

test('two processes starting a new archive at once: a refusal caused by the first one recording its id meanwhile is retried under that id', async () => {
  const store = new MemoryObjectStore();
  const claims: ArchiveClaim[] = [];
  const racing = {
    claim: async (c: ArchiveClaim) => {
      claims.push(c);
      if (claims.length === 1) {
        // The other process records its archive and creates its slot now.
        await ensureArchiveIdentity(store, SOURCE, 'eeeeeeeeeeeeeeee');
        throw new ChartlogError('config', 'replication slot chartlog_clinic_eeeeeeeeeeeeeeee belongs to archive eeeeeeeeeeeeeeee');
      }
    },
  } as unknown as SourceConnector;
  const claim = await claimSourceArchive({ source, connector: racing, store }, run);
  assert.equal(claim.archiveId, 'eeeeeeeeeeeeeeee');
  assert.equal(claims.length, 2);
  // Negative control: with the identity already recorded before, a refusal stands.
  const refusing = { claim: async () => Promise.reject(new ChartlogError('config', 'belongs to archive ffffffffffffffff')) } as unknown as SourceConnector;
  await assert.rejects(claimSourceArchive({ source, connector: refusing, store }, run), isConfig);
});
