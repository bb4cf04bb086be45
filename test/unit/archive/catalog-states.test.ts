import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { catalogStatesPrefix, readCatalogState, writeCatalogState } from '../../../src/archive/catalog-states.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { MemoryObjectStore } from '../../support/memory-object-store.js';

const at = (hex: string, seq?: number): Position => Position.of(hex.padStart(16, '0'), seq);

describe('catalog states: the connector view of the catalog, read back at a resume position', () => {
  it('gives the newest state at or before the resume position; a later one (never durable) is not used', async () => {
    const store = new MemoryObjectStore();
    assert.equal(await readCatalogState(store, 'clinic', at('100')), null, 'none recorded: null (the connector decides)');
    await writeCatalogState(store, 'clinic', { position: at('100'), state: { n: 1 } }, 1n);
    await writeCatalogState(store, 'clinic', { position: at('200'), state: { n: 2 } }, 2n);
    await writeCatalogState(store, 'clinic', { position: at('200'), state: { n: 3 } }, 3n);
    await writeCatalogState(store, 'clinic', { position: at('300'), state: { n: 4 } }, 4n);
    assert.deepEqual((await readCatalogState(store, 'clinic', at('250')))?.state, { n: 3 }, 'the last written of the newest position');
    assert.deepEqual((await readCatalogState(store, 'clinic', at('150')))?.state, { n: 1 });
    assert.deepEqual((await readCatalogState(store, 'clinic', at('300', 5)))?.state, { n: 3 }, 'inside a transaction: before its commit position');
    assert.equal(await readCatalogState(store, 'clinic', at('50')), null);
    assert.equal(await readCatalogState(store, 'other', at('300')), null, 'per source');
  });

  it('an unreadable state stops the start (integrity), naming the object', async () => {
    const store = new MemoryObjectStore();
    await store.put(`${catalogStatesPrefix('clinic')}${Position.format(at('100'))}-0000000000000001.json`, Buffer.from('{"format":9}'));
    await assert.rejects(readCatalogState(store, 'clinic', at('200')), (e: unknown) => e instanceof ChartlogError && e.code === 'integrity' && /catalog-states/.test(e.message));
  });
});
