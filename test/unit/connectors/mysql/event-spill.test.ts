import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import { after, before, describe, it } from 'node:test';
import { EventSpill, heapBytes } from '../../../../connectors/mysql/event-spill.js';
import { columnTypeOf } from '../../../../connectors/mysql/column-type.js';
import type { ChangeEvent } from '../../../../src/core/change-event.js';
import { Position } from '../../../../src/core/position.js';
import { type TableSchema, freezeTableSchema } from '../../../../src/core/table-schema.js';

const col = (name: string, sourceType: string) => ({ name, sourceType, type: columnTypeOf(sourceType), nullable: true });
const T1: TableSchema = freezeTableSchema({ schema: 'c', table: 'p', columns: [col('id', 'bigint(20)'), col('ssn', 'varchar(20)'), col('b', 'blob'), col('f', 'double'), col('s', "set('a','b')")], primaryKey: ['id'] });
const T2: TableSchema = freezeTableSchema({ schema: 'c', table: 'q', columns: [col('id', 'int(11)')], primaryKey: ['id'] });
const COMMIT = '00000000-0000000000000007-00000001';

/** Events with every value form MySQL rows carry: bigint, -0, NaN, bytes, SET arrays, null. */
function events(n: number, from = 0): ChangeEvent[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const row = { id: BigInt(i) * 1_000_000_007n, ssn: `CANARY-SSN-${i}`, b: Uint8Array.of(i & 255, 0, 255), f: i % 3 === 0 ? -0 : i % 3 === 1 ? Number.NaN : i / 7, s: i % 2 ? ['a', 'b'] : [] };
    return i % 5 === 4
      ? { op: 'c', schema: T2, before: null, after: { id: i }, position: Position.of(COMMIT, i) }
      : { op: i % 2 ? 'u' : 'd', schema: T1, before: row, after: i % 2 ? { ...row, ssn: null } : null, position: Position.of(COMMIT, i) };
  });
}

async function drainAll(s: EventSpill, renumber: boolean, commit = COMMIT): Promise<ChangeEvent[]> {
  const out: ChangeEvent[] = [];
  for await (const g of s.drain(commit, renumber)) out.push(...g);
  return out;
}

describe('EventSpill', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chartlog-event-spill-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const threshold of [64 * 1024 * 1024, 1]) {
    it(`gives back every event exactly, its table version the same object (threshold ${threshold})`, async () => {
      const s = new EventSpill({ spillThresholdBytes: threshold, spillDir: dir });
      const all = events(20_000); // past one 1 MiB chunk: the threshold is checked as a chunk closes
      for (let i = 0; i < all.length; i += 1000) await s.add(all.slice(i, i + 1000));
      assert.equal(s.size, 20_000);
      assert.equal(s.spilled, threshold === 1);
      const got = await drainAll(s, false);
      assert.equal(got.length, all.length);
      for (let i = 0; i < all.length; i++) {
        assert.deepStrictEqual(got[i], all[i]);
        assert.equal(got[i]!.schema, all[i]!.schema);
        if (all[i]!.before) assert.ok(Object.is(got[i]!.before!.f, all[i]!.before!.f), '-0 and NaN kept');
      }
      assert.deepStrictEqual(await readdir(dir), [], 'nothing left on disk');
    });
  }

  it('holds groups as they are while their estimated heap size is within the threshold, serialises the ones after, and gives all back in order', async () => {
    const all = events(20_000);
    const groups = Array.from({ length: 20 }, (_, g) => all.slice(g * 1000, g * 1000 + 1000));
    // The threshold falls inside the 8th group: the first 7 stay as they are, the 8th and later are serialised.
    const threshold = heapBytes(all.slice(0, 7500));
    const s = new EventSpill({ spillThresholdBytes: threshold, spillDir: dir });
    for (let g = 0; g < 7; g++) await s.add(groups[g]!);
    assert.equal(s.serialised, false, 'within the threshold nothing is serialised');
    await s.add(groups[7]!);
    assert.equal(s.serialised, true, 'the group past the threshold is serialised');
    for (let g = 8; g < 20; g++) await s.add(groups[g]!);
    assert.equal(s.size, 20_000);
    const got = await drainAll(s, false);
    assert.equal(got.length, all.length);
    for (let i = 0; i < all.length; i++) {
      assert.deepStrictEqual(got[i], all[i]);
      if (i < 7000) assert.equal(got[i], all[i], 'held: the same object');
      else assert.notEqual(got[i], all[i], 'past the threshold: back through serialisation');
    }
    assert.deepStrictEqual(await readdir(dir), [], 'nothing left on disk');
  });

  it('renumbers across held and serialised groups without a gap (a large XA transaction)', async () => {
    const all = events(5000);
    const s = new EventSpill({ spillThresholdBytes: heapBytes(all.slice(0, 2500)), spillDir: dir });
    for (let i = 0; i < all.length; i += 1000) await s.add(all.slice(i, i + 1000));
    assert.equal(s.serialised, true);
    const other = '00000000-0000000000000009-00000001';
    const got = await drainAll(s, true, other);
    assert.deepEqual(got.map((e) => [e.position.commit, e.position.seq]), Array.from({ length: 5000 }, (_, i) => [other, i]));
    assert.deepStrictEqual(got.map((e) => e.before), all.map((e) => e.before));
  });

  it('gives back held groups as the same objects, and renumbers them when asked', async () => {
    const all = events(3000);
    const s = new EventSpill({ spillThresholdBytes: 64 * 1024 * 1024, spillDir: dir });
    for (let i = 0; i < all.length; i += 1000) await s.add(all.slice(i, i + 1000));
    assert.equal(s.serialised, false);
    const got = await drainAll(s, false);
    assert.equal(got.length, all.length);
    for (let i = 0; i < all.length; i++) assert.equal(got[i], all[i]);
    assert.equal(s.size, 0, 'empty after the drain');
    const r = new EventSpill({ spillThresholdBytes: 64 * 1024 * 1024, spillDir: dir });
    await r.add(events(10, 100));
    const other = '00000000-0000000000000009-00000001';
    const renumbered = await drainAll(r, true, other);
    assert.deepEqual(renumbered.map((e) => [e.position.commit, e.position.seq]), Array.from({ length: 10 }, (_, i) => [other, i]));
    assert.deepStrictEqual(renumbered.map((e) => e.after), events(10, 100).map((e) => e.after));
  });

  it('estimates a row by its formula (strings, bytes, bigint, numbers, arrays counted)', () => {
    const [d] = events(1, 3); // an update: before and after rows of 5 columns
    const row = d!.before!;
    // 96 per event; a row 32 + 8 a property + its values.
    const expected = 96 + 2 * (32 + 5 * 8) + 2 * 24 /* id */ + (24 + 'CANARY-SSN-3'.length) + 16 /* ssn null after */ + 2 * (96 + 3) + 2 * 16 + 2 * (32 + 2 * (8 + 25));
    assert.equal(row.ssn, 'CANARY-SSN-3');
    assert.equal(heapBytes([d!]), expected);
  });

  it('renumbers under another commit (XA rows taking their XA COMMIT position)', async () => {
    const s = new EventSpill({ spillThresholdBytes: 1, spillDir: dir });
    await s.add(events(10, 100));
    const other = '00000000-0000000000000009-00000001';
    const got = await drainAll(s, true, other);
    assert.deepEqual(got.map((e) => [e.position.commit, e.position.seq]), Array.from({ length: 10 }, (_, i) => [other, i]));
  });

  it('the spill file holds no plaintext; the scan finds the canary in what is serialised (control)', async () => {
    const s = new EventSpill({ spillThresholdBytes: 1, spillDir: dir });
    const all = events(20_000);
    for (let i = 0; i < all.length; i += 1000) await s.add(all.slice(i, i + 1000));
    const files = await readdir(dir);
    assert.equal(files.length, 1);
    const onDisk = await readFile(join(dir, files[0]!));
    assert.ok(onDisk.length > 50_000);
    assert.ok(!onDisk.includes('CANARY-SSN'), 'no plaintext row data on disk');
    assert.ok(serialize(all.map((e) => e.before)).includes('CANARY-SSN'), 'control: unencrypted, the canary would be found');
    await s.discard();
    assert.deepStrictEqual(await readdir(dir), [], 'discard removes the file');
  });
});
