import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ChangeEvent, Op } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { UNCHANGED, type Row, type TableSchema } from '../../../src/core/table-schema.js';
import { cellKey, TableState } from '../../../src/archive/table-state.js';
import { filterHas, heldTest, keyOf, KeyFilter, TableMerge } from '../../../src/archive/table-merge.js';
import { SpillKey } from '../../../src/archive/spill-file.js';
import { sortByKey } from '../../../src/archive/key-sort.js';
import { prng } from '../../support/prng.js';

const col = (name: string) => ({ name, sourceType: 'text', type: { kind: 'string' as const }, nullable: true });
const v1: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [{ name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false }, col('note'), col('chart')],
};
/** The next table version: a column added. */
const v2: TableSchema = { ...v1, columns: [...v1.columns, col('extra')] };
const keyless1: TableSchema = { ...v1, table: 'log', primaryKey: [] };
const keyless2: TableSchema = { ...v2, table: 'log', primaryKey: [] };

let seq = 0;
const ev = (schema: TableSchema, op: Op, before: Row | null, after: Row | null): ChangeEvent => ({ op, schema, before, after, position: Position.of('01', seq++) });

/** A row's identity for comparing results as multisets (every column, type-tagged). */
const rowId = (r: Row): string =>
  Object.keys(r)
    .sort()
    .map((k) => `${k}=${cellKey(r[k])}`)
    .join('|');

interface History {
  base: { schema: TableSchema; rows: Row[] }[];
  changes: ChangeEvent[];
}

/**
 * A random history over few keys (so keys meet often): a base snapshot, then inserts, updates
 * (some changing the key, some with unchanged TOAST values), deletes, a truncate now and then,
 * and a table version with one more column half-way. Unchanged values are only sent where the
 * row exists, as PostgreSQL does; the reference TableState is applied as the history is made.
 */
function history(seed: number, keyed: boolean, n: number): { h: History; expected: TableState } {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const [s1, s2] = keyed ? [v1, v2] : [keyless1, keyless2];
  const state = new TableState(s1);
  const live: Row[] = [];
  const value = (): string | null => (rnd() < 0.1 ? null : pick(['a', 'b', 'c', '', 'Ω', 'x\ty']));
  const base: Row[] = [];
  for (let i = 0; i < 12; i++) {
    const row: Row = { id: BigInt(keyed ? i * 2 : Math.floor(rnd() * 4)), note: value(), chart: value() };
    base.push(row);
    state.apply(ev(s1, 'r', null, row));
  }
  // Rows no change is made for at first (keys no insert picks): most pass a spilled merge untouched.
  for (let i = 0; i < 20; i++) {
    const row: Row = { id: BigInt(100 + i), note: value(), chart: value() };
    base.push(row);
    state.apply(ev(s1, 'r', null, row));
  }
  const h: History = { base: [{ schema: s1, rows: base }], changes: [] };
  const liveRows = (): Row[] => [...state.allRows()];
  for (let i = 0; i < n; i++) {
    const s = i < n / 2 ? s1 : s2;
    const widen = (r: Row): Row => (s === s2 ? { ...r, extra: value() } : r);
    const rows = liveRows();
    live.splice(0, live.length, ...rows);
    const r = rnd();
    let e: ChangeEvent;
    if (r < 0.3 || live.length === 0) {
      e = ev(s, 'c', null, widen({ id: BigInt(Math.floor(rnd() * 30)), note: value(), chart: value() }));
    } else if (r < 0.75) {
      const before = pick(live);
      const after: Record<string, unknown> = { ...widen(before), note: value() };
      if (rnd() < 0.3) after.id = BigInt(Math.floor(rnd() * 30)); // a key change
      // Key-less rows are found by their whole image under the event's version: only rows of that version.
      const findable = keyed || Object.keys(before).length === s.columns.length;
      if (rnd() < 0.4 && before.chart !== undefined && findable) after.chart = UNCHANGED;
      e = ev(s, 'u', keyed && rnd() < 0.5 && after.id === before.id ? null : before, after as Row);
    } else if (r < 0.97) {
      const gone = pick(live);
      e = ev(s, 'd', keyed ? { id: gone.id! } : gone, null);
    } else e = ev(s, 't', null, null);
    state.apply(e);
    h.changes.push(e);
  }
  return { h, expected: state };
}

async function merged(h: History, budgetBytes: number, dir: string): Promise<{ rows: Row[]; merge: TableMerge }> {
  const merge = new TableMerge('public.patients', { budgetBytes, dir, key: new SpillKey(), expectedBytes: 1 }); // 4 partitions at the tiny budget
  for (const e of h.changes) await merge.apply(e);
  const rows: Row[] = [];
  const base = async function* () {
    yield* h.base;
  };
  for await (const batch of merge.merge(base, h.changes.at(-1)?.schema ?? v1)) rows.push(...batch);
  return { rows, merge };
}

/**
 * The merge as restore's COPY text path reads it (TableMerge.openBase): base rows whose keys the
 * pass does not hold go out as they are, unseen by the merge; the held ones go through `add`.
 * `passBy` writes the held row at that index as it is instead (a planted fault).
 */
async function mergedByPass(h: History, budgetBytes: number, dir: string, passBy = -1): Promise<{ rows: Row[]; merge: TableMerge; added: number }> {
  const merge = new TableMerge('public.patients', { budgetBytes, dir, key: new SpillKey(), expectedBytes: 1 });
  for (const e of h.changes) await merge.apply(e);
  const pass = await merge.openBase(h.changes.at(-1)?.schema ?? v1);
  const held = heldTest(pass.held());
  const rows: Row[] = [];
  let added = 0;
  if (merge.readsBase) {
    for (const batch of h.base) {
      const hold: Row[] = [];
      for (const row of batch.rows) {
        if (!held?.(keyOf(batch.schema, row)) || added++ === passBy) rows.push(row);
        else hold.push(row);
      }
      rows.push(...(await pass.add({ schema: batch.schema, rows: hold })));
    }
  }
  for await (const batch of pass.rest()) rows.push(...batch);
  return { rows, merge, added };
}

for (const keyed of [true, false]) {
  test(`streaming merge equals TableState on random histories (${keyed ? 'primary key' : 'no key: counted rows'}), in memory and spilled`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chartlog-merge-test-'));
    try {
      let spilledRuns = 0;
      for (let seed = 1; seed <= 80; seed++) {
        const { h, expected } = history(seed, keyed, 5 + (seed % 40));
        const want = [...expected.allRows()].map(rowId).sort();
        for (const budget of [1 << 30, 1]) {
          const { rows, merge } = await merged(h, budget, dir);
          if (merge.everSpilled) spilledRuns++;
          assert.deepEqual(rows.map(rowId).sort(), want, `seed ${seed}, budget ${budget}`);
        }
        assert.deepEqual(readdirSync(dir), [], `seed ${seed}: spill files removed`);
      }
      assert.ok(spilledRuns > 60, `the tiny budget spilled (${spilledRuns} runs)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

for (const keyed of [true, false]) {
  test(`a base pass that adds only the held base rows (COPY text path) equals TableState (${keyed ? 'primary key' : 'no key'}), in memory and spilled`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chartlog-merge-test-'));
    try {
      let spilledRuns = 0;
      let passedBy = 0;
      let caught = 0;
      for (let seed = 1; seed <= 40; seed++) {
        const { h, expected } = history(seed, keyed, 5 + (seed % 40));
        const want = [...expected.allRows()].map(rowId).sort();
        const baseRows = h.base.reduce((n, b) => n + b.rows.length, 0);
        for (const budget of [1 << 30, 1]) {
          const { rows, merge, added } = await mergedByPass(h, budget, dir);
          if (merge.everSpilled) spilledRuns++;
          if (merge.readsBase) passedBy += baseRows - added;
          assert.deepEqual(rows.map(rowId).sort(), want, `seed ${seed}, budget ${budget}`);
          // A held row written as it is, past the merge, is seen (a wrong result or a refusal): holding keeps the result exact.
          if (added > 0) {
            const plantedDir = mkdtempSync(join(tmpdir(), 'chartlog-merge-test-'));
            const planted = await mergedByPass(h, budget, plantedDir, 0).catch(() => null);
            rmSync(plantedDir, { recursive: true, force: true });
            if (!planted || JSON.stringify(planted.rows.map(rowId).sort()) !== JSON.stringify(want)) caught++;
          }
        }
        assert.deepEqual(readdirSync(dir), [], `seed ${seed}: spill files removed`);
      }
      assert.ok(spilledRuns > 30, `the tiny budget spilled (${spilledRuns} runs)`);
      assert.ok(passedBy > 500, `base rows passed by without the merge: ${passedBy}`);
      assert.ok(caught > 20, `a held row passed by changed the result (${caught} runs)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('a spilled merge writes to disk only the base rows whose keys a change names (and about 1 in 32 others)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-merge-test-'));
  try {
    const rows: Row[] = Array.from({ length: 20_000 }, (_, i) => ({ id: BigInt(i), note: `note ${i}`, chart: 'c' }));
    const changes = Array.from({ length: 50 }, (_, i) => ev(v1, 'u', null, { id: BigInt(i * 400), note: 'changed', chart: UNCHANGED }));
    const { rows: got, merge } = await merged({ base: [{ schema: v1, rows }], changes }, 1, dir);
    assert.ok(merge.everSpilled);
    assert.equal(got.length, 20_000);
    assert.equal(got.filter((r) => r.note === 'changed' && r.chart === 'c').length, 50);
    // The whole base through the spill files was about 20,000 × 30 bytes; the rows passed by are not written.
    const baseRowsSpilled = merge.spilledBaseRows;
    assert.ok(baseRowsSpilled >= 50 && baseRowsSpilled < 50 + 20_000 / 16, `base rows spilled: ${baseRowsSpilled}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('KeyFilter: never "no" for a key added; "maybe" for few others', () => {
  const f = new KeyFilter();
  for (let i = 0; i < 10_000; i++) f.add(`${i}\u0001k`);
  const sealed = f.seal();
  for (let i = 0; i < 10_000; i++) assert.ok(filterHas(sealed, `${i}\u0001k`), `key ${i}`);
  let maybe = 0;
  for (let i = 10_000; i < 110_000; i++) if (filterHas(sealed, `${i}\u0001k`)) maybe++;
  assert.ok(maybe < 100_000 / 16, `false maybes: ${maybe} of 100,000`);
});

test('an unchanged value with no earlier image is refused, as TableState refuses it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-merge-test-'));
  try {
    const h: History = { base: [{ schema: v1, rows: [{ id: 1n, note: 'a', chart: 'c' }] }], changes: [ev(v1, 'u', null, { id: 2n, note: 'b', chart: UNCHANGED })] };
    assert.throws(() => {
      const t = new TableState(v1);
      for (const e of h.changes) t.apply(e);
    }, ChartlogError);
    await assert.rejects(merged(h, 1 << 30, dir), (err: unknown) => err instanceof ChartlogError && /chart: an unchanged value has no earlier image/.test(err.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('key order for files: in memory and through sorted runs on disk, the same order as TableState.allRows', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-merge-test-'));
  try {
    const rows: Row[] = Array.from({ length: 3000 }, (_, i) => ({ id: BigInt((i * 7919) % 3000), note: `n${i}`, chart: null }));
    const state = new TableState(v1);
    for (const r of rows) state.apply(ev(v1, 'c', null, r));
    const want = [...state.allRows()].map(rowId);
    const keyOf = (r: Row) => cellKey(r.id);
    for (const budget of [1 << 30, 10_000]) {
      const got: Row[] = [];
      const batches = async function* () {
        for (let i = 0; i < rows.length; i += 100) yield rows.slice(i, i + 100);
      };
      for await (const b of sortByKey(batches(), keyOf, { budgetBytes: budget, dir, key: new SpillKey(), prefix: 't' })) got.push(...b);
      assert.deepEqual(got.map(rowId), want, `budget ${budget}`);
    }
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
