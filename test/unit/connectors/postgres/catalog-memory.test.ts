import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { catalogMemoryKey, parseCatalogMemory, storeCatalogMemory, type CatalogMemory } from '../../../../connectors/postgres/catalog-memory.js';
import { RewriteWatch } from '../../../../connectors/postgres/rewrite-watch.js';
import { Position } from '../../../../src/core/position.js';
import { ChartlogError } from '../../../../src/core/errors.js';

const memory: CatalogMemory = {
  tables: [
    { oid: 16390, table: 'public.part', relfilenode: 'partitions:16391=16391,16392=16392', xmin: '740', partitions: ['public.part_1', 'public.part_2'], seen: { streamLsn: 0x300n, timeUs: 2000n } },
    { oid: 16384, table: 'public.t', relfilenode: '16384', xmin: '731', attrs: '1:731,2:731,3:735', seen: { streamLsn: 0x200n, timeUs: 1000n }, columns: new Map([['id', 1], ['note', 3]]), labels: new Map([['902', [800, 'happy']], ['901', [800, 'ok']]]) },
  ],
  scope: { names: ['public.t', 'public.part'], streamLsn: 0x250n, fromUs: 1500n },
};

describe('catalog memory: what the PostgreSQL connector records of the catalog between runs', () => {
  it('round-trips through its stored JSON, stored under its oldest stamp', () => {
    const { state, position } = storeCatalogMemory(memory);
    assert.deepEqual(position, Position.of('0000000000000200'));
    const back = parseCatalogMemory(JSON.parse(JSON.stringify(state)), 'x');
    assert.deepEqual(
      back.tables.map((t) => [t.oid, t.table, t.relfilenode, t.xmin, t.partitions ?? null, t.seen.streamLsn, t.seen.timeUs]),
      [
        [16384, 'public.t', '16384', '731', null, 0x200n, 1000n],
        [16390, 'public.part', 'partitions:16391=16391,16392=16392', '740', ['public.part_1', 'public.part_2'], 0x300n, 2000n],
      ],
    );
    assert.deepEqual(back.scope, { names: ['public.part', 'public.t'], streamLsn: 0x250n, fromUs: 1500n });
    assert.deepEqual([...back.tables[0]!.columns!], [['id', 1], ['note', 3]], 'format 2: the columns with their attnums, in order');
    assert.equal(back.tables[0]!.attrs, '1:731,2:731,3:735', 'format 2: the pg_attribute xmins (VACUUM FULL told from a rewrite)');
    assert.equal(back.tables[1]!.columns, undefined);
    assert.deepEqual([...back.tables[0]!.labels!], [['901', [800, 'ok']], ['902', [800, 'happy']]], 'format 3: the enum labels, by label OID');
    assert.equal(back.tables[1]!.labels, undefined);
    assert.equal(catalogMemoryKey(back), catalogMemoryKey(memory));
  });

  it('still reads format 2 (no labels): its tables come back with columns and without labels', () => {
    const stored = storeCatalogMemory(memory).state;
    assert.equal(stored.format, 3);
    const v2 = { ...stored, format: 2, tables: stored.tables.map(({ labels: _l, ...t }) => t) };
    const back = parseCatalogMemory(JSON.parse(JSON.stringify(v2)), 'x');
    assert.deepEqual([...back.tables[0]!.columns!], [['id', 1], ['note', 3]]);
    assert.equal(back.tables[0]!.labels, undefined);
    // A format-2 object never carries labels; if one did, they are not trusted.
    assert.equal(parseCatalogMemory({ ...v2, tables: stored.tables }, 'x').tables[0]!.labels, undefined);
  });

  it('still reads format 1 (no column lists): its tables come back without columns', () => {
    const stored = storeCatalogMemory(memory).state;
    const v1 = { ...stored, format: 1, tables: stored.tables.map(({ columns: _c, attrs: _a, labels: _l, ...t }) => t) };
    const back = parseCatalogMemory(JSON.parse(JSON.stringify(v1)), 'x');
    assert.deepEqual(back.tables.map((t) => [t.oid, t.columns]), [[16384, undefined], [16390, undefined]]);
    // A format-1 object never carries columns; if one did, they are not trusted.
    const odd = parseCatalogMemory({ ...v1, tables: stored.tables }, 'x');
    assert.equal(odd.tables[0]!.columns, undefined);
    assert.equal(odd.tables[0]!.attrs, undefined);
  });

  it('its key ignores the stamps (no new state for every check) and sees names, relfilenodes and scope', () => {
    const restamped = { ...memory, tables: memory.tables.map((t) => ({ ...t, seen: { streamLsn: 0x900n, timeUs: 9n } })) };
    assert.equal(catalogMemoryKey(restamped), catalogMemoryKey(memory));
    const renamed = { ...memory, tables: memory.tables.map((t) => (t.oid === 16384 ? { ...t, table: 'public.t2' } : t)) };
    const rewritten = { ...memory, tables: memory.tables.map((t) => (t.oid === 16384 ? { ...t, relfilenode: '16400' } : t)) };
    const scoped = { ...memory, scope: { ...memory.scope!, names: ['public.t'] } };
    const recolumned = { ...memory, tables: memory.tables.map((t) => (t.oid === 16384 ? { ...t, columns: new Map([['id', 1], ['memo', 3]]) } : t)) };
    const altered = { ...memory, tables: memory.tables.map((t) => (t.oid === 16384 ? { ...t, attrs: '1:731,2:731,3:740' } : t)) };
    const relabelled = { ...memory, tables: memory.tables.map((t) => (t.oid === 16384 ? { ...t, labels: new Map([['902', [800, 'happy']], ['901', [800, 'fine']]] as const) } : t)) };
    for (const m of [renamed, rewritten, scoped, recolumned, altered, relabelled]) assert.notEqual(catalogMemoryKey(m), catalogMemoryKey(memory));
  });

  it('refuses a state of another format (a newer chartlog) rather than guess what it holds', () => {
    const badColumns = { ...storeCatalogMemory(memory).state, tables: [{ ...storeCatalogMemory(memory).state.tables[0]!, columns: [['id', 'one']] }] };
    const badLabels = { ...storeCatalogMemory(memory).state, tables: [{ ...storeCatalogMemory(memory).state.tables[0]!, labels: [['901', 'x', 'ok']] }] };
    for (const bad of [{ format: 4, tables: [], scope: null }, null, { format: 1 }, badColumns, badLabels]) {
      assert.throws(() => parseCatalogMemory(bad, 'clinic/catalog-states/x.json'), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity' && /clinic\/catalog-states\/x\.json/.test(e.message));
    }
  });

  it('seeds the rewrite watch: a rewrite made while stopped is a rewrite at the first reading, its window from the recorded stamp', () => {
    const w = new RewriteWatch();
    w.seed(parseCatalogMemory(storeCatalogMemory(memory).state, 'x').tables);
    // The first reading of the next start: t has a new relfilenode, part is unchanged.
    w.observe(
      [
        { oid: 16384, table: 'public.t', relfilenode: '16410', xmin: '800' },
        { oid: 16390, table: 'public.part', relfilenode: 'partitions:16391=16391,16392=16392', xmin: '740' },
      ],
      0x1000n,
      { streamLsn: 0x800n, timeUs: 5000n },
    );
    assert.equal(w.knownWithStamps(), null, 'nothing to record while a change waits for its verdict');
    assert.deepEqual(w.passed(0x1000n), [{ kind: 'rewrite', oid: 16384, table: 'public.t', relfilenode: '16410', atLsn: 0x1000n, since: { streamLsn: 0x200n, timeUs: 1000n } }]);
    assert.deepEqual(
      w.knownWithStamps()!.map((r) => [r.oid, r.relfilenode, r.seen.streamLsn]),
      [
        [16384, '16410', 0x800n],
        [16390, 'partitions:16391=16391,16392=16392', 0x800n],
      ],
    );
  });

  it('without a seed (main before this change) the same reading is only the baseline: the negative control', () => {
    const w = new RewriteWatch();
    w.observe([{ oid: 16384, table: 'public.t', relfilenode: '16410', xmin: '800' }], 0x1000n, { streamLsn: 0x800n, timeUs: 5000n });
    assert.deepEqual(w.passed(0x1000n), []);
  });
});
