import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyRelfileChange, RewriteWatch, type RelfileReading, type RewriteVerdict } from '../../../../connectors/postgres/rewrite-watch.js';

const reading = (relfilenode: string, xmin: string, oid = 16384, table = 'public.t'): RelfileReading => ({ oid, table, relfilenode, xmin });
/** The verdicts without the deciding reading's relfilenode (asserted on its own below). */
const passedOf = (w: RewriteWatch, lsn: bigint): Omit<RewriteVerdict, 'relfilenode'>[] => w.passed(lsn).map(({ relfilenode: _r, ...v }) => v);

describe('rewrite watch: a new relfilenode is a rewrite unless a TRUNCATE in the stream explains it', () => {
  it('classifies by the pg_class row xmin against the truncating transactions the stream delivered', () => {
    assert.equal(classifyRelfileChange(reading('2', '700'), new Set(['700'])), 'truncate');
    assert.equal(classifyRelfileChange(reading('2', '701'), new Set(['700'])), 'rewrite');
    assert.equal(classifyRelfileChange(reading('2', '700'), new Set()), 'rewrite');
  });

  it('a new relfilenode with every pg_attribute row as before kept its values (VACUUM FULL, CLUSTER); a column written since, or no attrs, is a rewrite', () => {
    const withAttrs = (relfilenode: string, xmin: string, attrs?: string): RelfileReading => ({ ...reading(relfilenode, xmin), ...(attrs !== undefined ? { attrs } : {}) });
    assert.equal(classifyRelfileChange(withAttrs('2', '701', '1:500,2:500'), new Set(), withAttrs('1', '500', '1:500,2:500')), 'kept');
    // ALTER … TYPE … USING rewrites the column's row; ADD COLUMN … DEFAULT random() adds one.
    assert.equal(classifyRelfileChange(withAttrs('2', '701', '1:500,2:701'), new Set(), withAttrs('1', '500', '1:500,2:500')), 'rewrite');
    assert.equal(classifyRelfileChange(withAttrs('2', '701', '1:500,2:500,3:701'), new Set(), withAttrs('1', '500', '1:500,2:500')), 'rewrite');
    // Not read (publication without truncates, a partitioned root, an older recorded state): not proved.
    assert.equal(classifyRelfileChange(withAttrs('2', '701'), new Set(), withAttrs('1', '500')), 'rewrite');
    assert.equal(classifyRelfileChange(withAttrs('2', '701', '1:500'), new Set(), withAttrs('1', '500')), 'rewrite');
    assert.equal(classifyRelfileChange(withAttrs('2', '701', '1:500'), new Set(), undefined), 'rewrite');
    // Through the watch: the prior reading is the newest that showed the old relfilenode.
    const w = new RewriteWatch();
    w.observe([withAttrs('1', '500', '1:500')], 100n);
    w.observe([withAttrs('2', '701', '1:500')], 200n);
    assert.deepEqual(passedOf(w, 300n), [{ kind: 'kept', oid: 16384, table: 'public.t', atLsn: 200n }]);
    w.observe([withAttrs('3', '702', '1:702')], 400n);
    // The verdict names the relfilenode of the reading that decided it (kept in the unproven record).
    assert.deepEqual(w.passed(500n), [{ kind: 'rewrite', oid: 16384, table: 'public.t', relfilenode: '3', atLsn: 400n }]);
  });

  it('the first reading is the baseline; an unchanged relfilenode decides nothing', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '500')], 100n);
    assert.deepEqual(passedOf(w, 1000n), []);
    w.observe([reading('1', '500')], 200n);
    assert.deepEqual(passedOf(w, 1000n), []);
  });

  it('a rewrite is reported once the stream has passed the reading, and only once', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '500')], 100n);
    w.observe([reading('2', '600')], 300n);
    assert.deepEqual(passedOf(w, 299n), [], 'not before the stream reached the reading: a truncate may still come');
    assert.deepEqual(passedOf(w, 300n), [{ kind: 'rewrite', oid: 16384, table: 'public.t', atLsn: 300n }]);
    assert.deepEqual(passedOf(w, 400n), [], 'decided once');
    w.observe([reading('2', '600')], 500n);
    assert.deepEqual(passedOf(w, 600n), [], 'the new relfilenode is now the known one');
  });

  it('a truncate the stream delivers before the stream passes the reading is not a rewrite', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '500')], 100n);
    w.observe([reading('2', '650')], 300n); // read ahead of the stream
    w.truncated(16384, '650'); // then the stream reaches the truncating transaction
    assert.deepEqual(passedOf(w, 300n), [{ kind: 'truncate', oid: 16384, table: 'public.t', atLsn: 300n }]);
  });

  it('a rewrite after a truncate (a later xmin) is a rewrite; readings merge into the newest', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '500')], 100n);
    w.observe([reading('2', '650')], 200n);
    w.truncated(16384, '650');
    w.observe([reading('3', '660')], 300n); // ALTER … USING after the truncate, before the stream passed 200
    assert.deepEqual(passedOf(w, 250n), [], 'the newest reading waits for its own position');
    assert.deepEqual(passedOf(w, 300n), [{ kind: 'rewrite', oid: 16384, table: 'public.t', atLsn: 300n }]);
  });

  it('tables are decided independently; a forgotten (dropped) table decides nothing', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '1', 1, 'public.a'), reading('1', '1', 2, 'public.b')], 10n);
    w.observe([reading('5', '9', 1, 'public.a'), reading('6', '9', 2, 'public.b')], 20n);
    w.forget(2);
    assert.deepEqual(passedOf(w, 20n), [{ kind: 'rewrite', oid: 1, table: 'public.a', atLsn: 20n }]);
    assert.deepEqual(w.oids(), [1]);
  });

  it('remembers a bounded number of truncating transactions per table', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '1')], 10n);
    for (let i = 0; i < 100; i++) w.truncated(16384, String(1000 + i));
    w.observe([reading('2', '1000')], 20n); // the oldest, no longer remembered: re-read rather than guess
    assert.deepEqual(passedOf(w, 20n), [{ kind: 'rewrite', oid: 16384, table: 'public.t', atLsn: 20n }]);
  });

  it('a verdict carries the newest reading that still showed the old relfilenode (the window starts after it)', () => {
    const w = new RewriteWatch();
    w.observe([reading('1', '500')], 100n, { streamLsn: 90n, timeUs: 1_000n });
    w.observe([reading('1', '500')], 200n, { streamLsn: 180n, timeUs: 2_000n });
    w.observe([reading('2', '600')], 300n, { streamLsn: 250n, timeUs: 3_000n });
    w.observe([reading('3', '601')], 400n, { streamLsn: 350n, timeUs: 4_000n }); // a second rewrite before the decision
    assert.deepEqual(passedOf(w, 400n), [{ kind: 'rewrite', oid: 16384, table: 'public.t', atLsn: 400n, since: { streamLsn: 180n, timeUs: 2_000n } }],
      'the first reading with a new relfilenode is not "old": the window starts after the reading at 200');
    w.observe([reading('4', '700')], 500n, { streamLsn: 450n, timeUs: 5_000n });
    assert.deepEqual(passedOf(w, 500n)[0]?.since, { streamLsn: 350n, timeUs: 4_000n }, 'the next window starts after the reading that decided the last one');
  });
});
