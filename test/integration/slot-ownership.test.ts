import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkpointKey } from '../../src/archive/layout.js';
import { readArchiveIdentity } from '../../src/archive/archive-identity.js';
import { createClinicTables, postgresEngine, prng, RunHarness, Workload, type Engine } from '../support/run-harness.js';

/**
 * Slot ownership (issue 13, item 6), with real `chartlog run` processes on a real PostgreSQL:
 * archive A streams from its slot; a copy of its configuration with the same source name and
 * another storage.url (archive B) is refused — exit 2, nothing in its store, A's slot untouched
 * (name, owner, confirmed_flush_lsn) — while A runs and while it is stopped. A with its
 * checkpoint deleted is refused rather than dropping its own slot for a new snapshot; with the
 * checkpoint put back it resumes and loses nothing. B with --take-over-slot proceeds; A is then
 * refused, naming B. A legacy slot (named without an owner) is refused to an archive without a
 * checkpoint.
 */

interface SlotState {
  slot_name: string;
  confirmed: string;
  active: boolean;
}

async function slotsOf(engine: Engine, base: string): Promise<SlotState[]> {
  return (await engine.query(
    `SELECT slot_name, confirmed_flush_lsn::text AS confirmed, active FROM pg_replication_slots WHERE starts_with(slot_name, '${base}') ORDER BY 1`,
  )) as unknown as SlotState[];
}

test('postgres: a second archive of one source cannot drop or take the first archive’s slot without --take-over-slot; a deleted checkpoint is refused', { timeout: 300_000 }, async () => {
  const engine = await postgresEngine();
  const a = new RunHarness(engine, 'file');
  const b = new RunHarness(engine, 'file'); // the copied configuration: same source name, same slot base, another store
  try {
    assert.equal(a.slotName, b.slotName);
    await createClinicTables(engine);
    // A slot named exactly the base, as chartlog made them before owners were recorded, and a
    // store without a checkpoint: it may be another archive's, so a new archive is refused it.
    await engine.exec(`SELECT pg_create_logical_replication_slot('${a.slotName}', 'pgoutput')`);
    const legacy = await a.runToEnd(['run']);
    assert.equal(legacy.code, 2, legacy.output);
    assert.match(legacy.output, new RegExp(`replication slot ${a.slotName} records no owning archive`));
    assert.deepEqual(await a.storedObjects(), [], 'nothing written');
    assert.deepEqual((await slotsOf(engine, a.slotName)).map((s) => s.slot_name), [a.slotName], 'the legacy slot is left alone');
    await engine.exec(`SELECT pg_drop_replication_slot('${a.slotName}')`);
    const workload = new Workload(engine, prng(61));
    for (let i = 0; i < 10; i++) await workload.transaction();
    await a.start();
    for (let i = 0; i < 10; i++) await workload.transaction();
    assert.equal(await a.converge(), '', 'A archives the source');
    const idA = (await readArchiveIdentity(a.store, 'clinic'))?.archiveId;
    assert.ok(idA, 'A recorded its archive id');
    const [slotA] = await slotsOf(engine, a.slotName);
    assert.equal(slotA?.slot_name, `${a.slotName}_${idA}`, "A's slot records A's archive id in its name");

    // B while A runs.
    const whileRunning = await b.runToEnd(['run']);
    assert.equal(whileRunning.code, 2, whileRunning.output);
    assert.match(whileRunning.output, new RegExp(`replication slot ${slotA.slot_name} belongs to archive ${idA}`));
    assert.match(whileRunning.output, /--take-over-slot/);
    assert.deepEqual(await b.storedObjects(), [], "nothing written to B's store (not even its lease)");
    assert.deepEqual((await slotsOf(engine, a.slotName)).map((s) => s.slot_name), [slotA.slot_name], 'no slot dropped or created');

    // B while A is stopped, with changes waiting in A's slot.
    assert.equal(await a.kill('SIGTERM'), 0);
    for (let i = 0; i < 10; i++) await workload.transaction();
    const [stopped] = await slotsOf(engine, a.slotName);
    assert.equal(stopped?.active, false);
    const whileStopped = await b.runToEnd(['run']);
    assert.equal(whileStopped.code, 2, whileStopped.output);
    assert.match(whileStopped.output, new RegExp(`belongs to archive ${idA}; this archive is [0-9a-f]{16}`));
    assert.deepEqual(await b.storedObjects(), []);
    assert.deepEqual(await slotsOf(engine, a.slotName), [stopped], "A's slot untouched: same name (owner) and confirmed_flush_lsn");
    // snapshot --from-source is refused the same way.
    const snap = await b.runToEnd(['snapshot', '--from-source']);
    assert.equal(snap.code, 2, snap.output);
    assert.match(snap.output, new RegExp(`belongs to archive ${idA}`));
    assert.deepEqual(await b.storedObjects(), []);
    assert.deepEqual(await slotsOf(engine, a.slotName), [stopped]);

    // A without its checkpoint: refused, nothing dropped; put back, it resumes and loses nothing.
    const key = checkpointKey('clinic');
    const saved = await a.store.get(key);
    await a.store.delete(key);
    const lost = await a.runToEnd(['run']);
    assert.equal(lost.code, 2, lost.output);
    assert.match(lost.output, /holds stored changes but no state\/checkpoint\.json/);
    assert.doesNotMatch(lost.output, /delet/i, 'no hint suggests deleting anything');
    assert.deepEqual(await slotsOf(engine, a.slotName), [stopped], 'the refused run left the slot as it was');
    await a.store.put(key, saved);
    await a.start();
    assert.equal(await a.converge(), '', 'with its checkpoint back, A has every change, also those made while it was stopped');
    assert.equal(await a.kill('SIGTERM'), 0);

    // B takes the slot over on purpose.
    await b.start(['--take-over-slot']);
    for (let i = 0; i < 5; i++) await workload.transaction();
    assert.equal(await b.converge(), '', 'B archives the source');
    const idB = (await readArchiveIdentity(b.store, 'clinic'))?.archiveId;
    assert.ok(idB && idB !== idA);
    assert.deepEqual((await slotsOf(engine, a.slotName)).map((s) => s.slot_name), [`${a.slotName}_${idB}`], "A's slot was dropped, B's created");
    assert.match(b.logText(), /dropped the replication slot of another archive \(--take-over-slot\)/);
    await b.kill('SIGTERM');

    // A finds its slot taken: refused, naming B, rather than silently streaming from nothing.
    const taken = await a.runToEnd(['run']);
    assert.equal(taken.code, 2, taken.output);
    assert.match(taken.output, new RegExp(`belongs to archive ${idB}; this archive is ${idA}`));
  } finally {
    await a.close();
    await b.close();
    await engine.close();
  }
});
