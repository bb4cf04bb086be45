import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Position } from '../../../src/core/position.js';
import { mergeByPosition, RecordsOutOfOrder, type OrderedSource } from '../../../src/archive/position-merge.js';

const pos = (n: number): Position => Position.of(n.toString(16).padStart(8, '0'), 0);

/** An object holding these positions (already in its stored order), read in blocks of `block`. */
function source(ns: number[], block = 3, opened?: string[], name = ns.join(',')): OrderedSource<number> {
  return {
    first: pos(ns[0] ?? 0),
    async *open() {
      opened?.push(name);
      for (let i = 0; i < ns.length; i += block) yield ns.slice(i, i + block);
    },
  };
}

async function all(sources: OrderedSource<number>[]): Promise<number[]> {
  const out: number[] = [];
  for await (const batch of mergeByPosition(sources, pos, 'test')) out.push(...batch);
  return out;
}

test('objects merge into one position order, each position once (redelivered records overlap)', async () => {
  const got = await all([source([5, 6, 7, 8, 9, 10, 11, 12]), source([1, 2, 3, 4, 5, 6, 7]), source([12, 13, 14]), source([20, 21]), source([7, 7, 8])]);
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 20, 21]);
});

test('equals a sort-and-dedup of the union on random overlapping histories', async () => {
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const objects: number[][] = [];
    for (let k = 1 + rnd(6); k > 0; k--) {
      const start = rnd(100);
      const len = 1 + rnd(30);
      const ns: number[] = [];
      for (let i = 0; i < len; i++) if (rnd(4) > 0) ns.push(start + i);
      if (ns.length > 0) objects.push(ns);
    }
    const expected = [...new Set(objects.flat())].sort((a, b) => a - b);
    assert.deepEqual(await all(objects.map((ns) => source(ns, 1 + rnd(5)))), expected, `round ${round}`);
  }
});

test('an object is opened only when the merge reaches its first position', async () => {
  const events: string[] = [];
  const logged = (name: string, ns: number[]): OrderedSource<number> => ({
    first: pos(ns[0]!),
    async *open() {
      events.push(`open ${name}`);
      for (const n of ns) {
        events.push(`${name} ${n}`);
        yield [n];
      }
    },
  });
  assert.deepEqual(await all([logged('b', [100, 101]), logged('a', [1, 2, 3])]), [1, 2, 3, 100, 101]);
  // b is opened only once a's records up to its end were read: one object's block in memory at a time.
  assert.deepEqual(events, ['open a', 'a 1', 'a 2', 'a 3', 'open b', 'b 100', 'b 101']);
});

test('a record below one already passed on is refused (RecordsOutOfOrder), never dropped; a sorted order is not', async () => {
  // The second object's name says it starts at 10, but it holds 4: unplaceable once 5..9 went by.
  const liar: OrderedSource<number> = { first: pos(10), async *open() { yield [4, 10]; } };
  await assert.rejects(all([source([5, 6, 7, 8, 9, 11]), liar]), RecordsOutOfOrder);
  // Inside one object, going back is refused too.
  await assert.rejects(all([source([1, 3, 2])]), RecordsOutOfOrder);
  // Control: the same records in order merge fine.
  assert.deepEqual(await all([source([5, 6, 7, 8, 9, 11]), source([10])]), [5, 6, 7, 8, 9, 10, 11]);
});
