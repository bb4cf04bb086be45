import type { Position } from '../../src/core/position.js';
import { flushPartToc } from '../../src/archive/flush-part.js';
import { FLUSH_PARTS } from '../../src/archive/layout.js';
import type { MemoryObjectStore } from './memory-object-store.js';

/** Every section of every flush part of open hours in an in-memory store, from their tables of contents. */
export function storedSections(store: MemoryObjectStore, source = 'clinic'): { key: string; table: string; first: Position; last: Position; records: number }[] {
  const out: { key: string; table: string; first: Position; last: Position; records: number }[] = [];
  for (const [key, o] of store.objects) {
    if (!key.startsWith(`${source}/parts/`) || !key.includes(`/${FLUSH_PARTS}/`)) continue;
    for (const s of flushPartToc(o.body, key)) out.push({ key, table: s.table, first: s.first, last: s.last, records: s.records });
  }
  return out;
}
