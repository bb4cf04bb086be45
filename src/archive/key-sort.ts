import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import type { CellValue, Row } from '../core/table-schema.js';
import { readSpill, SpillWriter, type SpillKey } from './spill-file.js';

export interface KeySortOptions {
  budgetBytes: number;
  dir: string;
  key: SpillKey;
  /** Names the run files apart from other sorts in the same directory. */
  prefix: string;
  /** Called when a sorted run is written to disk (the rows outgrew the budget). */
  onRun?: () => void;
}

/**
 * Sealed chunk size of the run files: the merge holds a chunk of every run at once, and runs are
 * as many as the table's decoded size ÷ the budget (hundreds at 10M rows), so 1 MiB chunks made
 * the merge's memory grow with the table.
 */
const RUN_CHUNK_BYTES = 64 * 1024;

/**
 * Rows in key order (plain string order of TableState's keys, as `TableState.allRows` gives
 * them), for targets whose output is compared line by line (files). Sorted in memory while the
 * rows fit the budget; otherwise in sorted runs on disk, sealed with the restore's spill key,
 * merged at the end.
 */
export async function* sortByKey(batches: AsyncIterable<Row[]>, keyOf: (row: Row) => string, o: KeySortOptions): AsyncGenerator<Row[]> {
  let held: [string, Row][] = [];
  let bytes = 0;
  const runs: string[] = [];
  const byKey = (a: [string, Row], b: [string, Row]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const writeRun = async (): Promise<void> => {
    held.sort(byKey);
    const w = new SpillWriter(join(o.dir, `${o.prefix}-run-${String(runs.length).padStart(4, '0')}.spill`), o.key, RUN_CHUNK_BYTES);
    for (const [k, row] of held) await w.add(serialize([k, row]));
    await w.close();
    runs.push(w.path);
    o.onRun?.();
    held = [];
    bytes = 0;
  };
  try {
    for await (const rows of batches) {
      for (const row of rows) {
        const k = keyOf(row);
        held.push([k, row]);
        bytes += 200 + k.length * 2 + approxRowBytes(row);
      }
      if (bytes > o.budgetBytes) await writeRun();
    }
    if (runs.length === 0) {
      held.sort(byKey);
      for (let i = 0; i < held.length; i += 1024) yield held.slice(i, i + 1024).map((x) => x[1]);
      return;
    }
    if (held.length > 0) await writeRun();
    yield* mergeRuns(runs, o.key);
  } finally {
    for (const r of runs) await rm(r, { force: true });
  }
}

/** k-way merge of sorted runs; runs are few (table size ÷ budget), so a linear scan picks the least. */
async function* mergeRuns(runs: readonly string[], key: SpillKey): AsyncGenerator<Row[]> {
  const cursors = runs.map((r) => ({ it: readSpill(r, key), buf: [] as Buffer[], at: 0, head: null as [string, Row] | null }));
  const advance = async (c: (typeof cursors)[number]): Promise<void> => {
    if (c.at >= c.buf.length) {
      const next = await c.it.next();
      if (next.done) {
        c.head = null;
        return;
      }
      c.buf = next.value;
      c.at = 0;
    }
    c.head = deserialize(c.buf[c.at++]!) as [string, Row];
  };
  for (const c of cursors) await advance(c);
  let out: Row[] = [];
  for (;;) {
    let best: (typeof cursors)[number] | null = null;
    for (const c of cursors) if (c.head && (!best || c.head[0] < best.head![0])) best = c;
    if (!best) break;
    out.push(best.head![1]);
    await advance(best);
    if (out.length >= 1024) {
      yield out;
      out = [];
    }
  }
  if (out.length > 0) yield out;
}

function approxRowBytes(row: Row): number {
  let n = 64;
  for (const k in row) {
    const v: CellValue | undefined = row[k];
    n += 24;
    if (typeof v === 'string') n += 16 + v.length * 2;
    else if (v instanceof Uint8Array) n += 96 + v.byteLength;
  }
  return n;
}
