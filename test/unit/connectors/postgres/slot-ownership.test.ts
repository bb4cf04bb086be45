import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SLOT_BASE, ownSlotName, planSlot, slotBase, slotOwner, type SlotRow } from '../../../../connectors/postgres/slot-ownership.js';
import type { ArchiveClaim } from '../../../../src/core/source-connector.js';

const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';
const BASE = 'chartlog_clinic';
const claimOf = (archiveId: string, o: Partial<ArchiveClaim> = {}): ArchiveClaim => ({ archiveId, adoptLegacy: false, takeOver: false, ...o });
const slots = (...names: string[]): SlotRow[] => names.map((name) => ({ name, active: false }));
const plan = (claim: ArchiveClaim, rows: SlotRow[]) => planSlot({ source: 'clinic', legacyName: BASE, base: BASE, claim, slots: rows });

test('slot names: <base>_<archive id>, at most 63 characters of [a-z0-9_]; the owner is read back from the name', () => {
  assert.equal(ownSlotName(BASE, A), `chartlog_clinic_${A}`);
  assert.equal(slotOwner(BASE, `chartlog_clinic_${A}`), A);
  assert.equal(slotOwner(BASE, BASE), null, 'a legacy slot records no owner');
  assert.equal(slotOwner(BASE, 'chartlog_clinic_x_aaaaaaaaaaaaaaaa'), null, 'another base is not this one');
  assert.equal(slotOwner(BASE, 'chartlog_clinic_AAAAAAAAAAAAAAAA'), null);
  const long = `chartlog_${'x'.repeat(60)}`.slice(0, 63);
  const base = slotBase(long);
  assert.equal(base.length, MAX_SLOT_BASE);
  assert.match(ownSlotName(base, A), /^[a-z0-9_]{63}$/);
  assert.notEqual(slotBase(`${long.slice(0, 62)}y`), base, 'two long names that share a prefix keep distinct bases');
  assert.equal(slotBase(BASE), BASE, 'a short base is kept as it is');
});

test('a new archive on a database without slots creates its own', () => {
  assert.deepEqual(plan(claimOf(A), []), { kind: 'use', slot: `${BASE}_${A}`, exists: false, drop: [], others: [], adoptedLegacy: false });
});

test("this archive's own slot is used; other archives' slots are left alone and reported", () => {
  const p = plan(claimOf(A), slots(`${BASE}_${A}`, `${BASE}_${B}`, 'unrelated_slot'));
  assert.deepEqual(p, { kind: 'use', slot: `${BASE}_${A}`, exists: true, drop: [], others: [`${BASE}_${B}`], adoptedLegacy: false });
});

test("another archive's slot is refused (exit 2) with the slot, its owner, this archive and the fix", () => {
  const p = plan(claimOf(B), [{ name: `${BASE}_${A}`, active: true }]);
  assert.equal(p.kind, 'refuse');
  if (p.kind !== 'refuse') return;
  assert.equal(p.error.exitCode, 2);
  assert.match(p.error.message, new RegExp(`replication slot ${BASE}_${A} belongs to archive ${A}; this archive is ${B}`));
  assert.match(p.error.message, /Nothing was written/);
  assert.match(p.error.hint ?? '', /--take-over-slot/);
  assert.match(p.error.hint ?? '', /sources\[\]\.postgres\.slotName/);
  assert.match(p.error.hint ?? '', /in use now/, 'an active slot: stop its reader first');
});

test("with takeOver, another archive's slot is dropped and this archive's own is created", () => {
  assert.deepEqual(plan(claimOf(B, { takeOver: true }), slots(`${BASE}_${A}`)), {
    kind: 'use',
    slot: `${BASE}_${B}`,
    exists: false,
    drop: [`${BASE}_${A}`],
    others: [],
    adoptedLegacy: false,
  });
});

test('a legacy slot (no owner recorded) is adopted only when the store has a checkpoint; refused otherwise; takeOver replaces it', () => {
  const adopted = plan(claimOf(A, { adoptLegacy: true }), slots(BASE));
  assert.deepEqual(adopted, { kind: 'use', slot: BASE, exists: true, drop: [], others: [], adoptedLegacy: true });
  const refused = plan(claimOf(A), slots(BASE));
  assert.equal(refused.kind, 'refuse');
  if (refused.kind === 'refuse') assert.match(refused.error.message, /records no owning archive .* no checkpoint of source clinic/);
  assert.deepEqual(plan(claimOf(A, { takeOver: true }), slots(BASE)), { kind: 'use', slot: `${BASE}_${A}`, exists: false, drop: [BASE], others: [], adoptedLegacy: false });
  // takeOver never drops a legacy slot this archive may adopt: it holds this archive's unread changes.
  assert.deepEqual(plan(claimOf(A, { adoptLegacy: true, takeOver: true }), slots(BASE)), adopted);
});

test("once this archive has its own slot, a legacy slot beside it is left alone and reported", () => {
  const p = plan(claimOf(A, { adoptLegacy: true }), slots(BASE, `${BASE}_${A}`));
  assert.deepEqual(p, { kind: 'use', slot: `${BASE}_${A}`, exists: true, drop: [], others: [BASE], adoptedLegacy: false });
});
