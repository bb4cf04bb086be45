import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import { after, before, describe, it } from 'node:test';
import { EventSpill } from '../../../../connectors/mysql/event-spill.js';
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
