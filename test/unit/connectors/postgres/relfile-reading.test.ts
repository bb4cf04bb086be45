import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { relfileReading } from '../../../../connectors/postgres/relfile-reading.js';
import { RewriteWatch } from '../../../../connectors/postgres/rewrite-watch.js';

/** A partitioned root's row as RELFILE_READING_SQL returns it: [oid, name, relfilenode, xmin, isleaf] per partition. */
type Part = readonly [string, string, string, string, boolean];
const root = (parts: readonly Part[]): Record<string, string | null> => ({
  oid: '100', nspname: 'public', relname: 'part', relkind: 'p', relfilenode: '0', xmin: '1', attached_to: null,
  partitions: JSON.stringify(parts),
});
const p1: Part = ['201', 'public.part_1', '9001', '500', true];
const p2: Part = ['202', 'public.part_2', '9002', '500', true];
const p3: Part = ['203', 'public.part_3', '9003', '640', true];

describe('relfile reading: a partitioned table is read as its partition tree', () => {
  it('an ordinary table is its relfilenode and xmin; a partition of a published root says which', () => {
    assert.deepEqual(relfileReading({ oid: '7', nspname: 'public', relname: 't', relkind: 'r', relfilenode: '42', xmin: '9', attached_to: null }), {
      oid: 7, table: 'public.t', relfilenode: '42', xmin: '9',
    });
    assert.equal(relfileReading({ oid: '203', nspname: 'public', relname: 'part_3', relkind: 'r', relfilenode: '9003', xmin: '640', attached_to: 'public.part' }).attachedTo, 'public.part');
  });

  it('ATTACH, DETACH and one partition rewritten change the root\'s reading: the watch re-reads the root', () => {
    const base = relfileReading(root([p1, p2]));
    assert.deepEqual(base.partitions, ['public.part_1', 'public.part_2']);
    for (const [what, parts] of [
      ['attach', [p1, p2, p3]],
      ['detach', [p1]],
      ['one partition rewritten', [p1, ['202', 'public.part_2', '9100', '650', true]]],
    ] as [string, Part[]][]) {
      const w = new RewriteWatch();
      w.observe([base], 10n);
      w.observe([relfileReading(root(parts))], 20n);
      assert.deepEqual(w.passed(20n).map((v) => [v.kind, v.table]), [['rewrite', 'public.part']], what);
    }
    // Negative control: the same tree read again decides nothing.
    const w = new RewriteWatch();
    w.observe([base], 10n);
    w.observe([relfileReading(root([p1, p2]))], 20n);
    assert.deepEqual(w.passed(20n), []);
  });

  it('a TRUNCATE of the root that the stream carried (every leaf has its xid) is no rewrite; a truncate of one leaf alone is', () => {
    const truncated = (x1: string, x2: string) => relfileReading(root([['201', 'public.part_1', '9500', x1, true], ['202', 'public.part_2', '9501', x2, true]]));
    const w = new RewriteWatch();
    w.observe([relfileReading(root([p1, p2]))], 10n);
    w.truncated(100, '777');
    w.observe([truncated('777', '777')], 20n);
    assert.deepEqual(w.passed(20n).map((v) => v.kind), ['truncate']);
    // One partition truncated alone: pgoutput does not publish it through the root.
    const alone = new RewriteWatch();
    alone.observe([relfileReading(root([p1, p2]))], 10n);
    alone.observe([relfileReading(root([p1, ['202', 'public.part_2', '9600', '778', true]]))], 20n);
    assert.deepEqual(alone.passed(20n).map((v) => v.kind), ['rewrite']);
  });
});
