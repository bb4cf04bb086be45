import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';

/** One object of the archive as the merge reads it: where it starts, and its records on demand. */
export interface OrderedSource<T> {
  /** The lowest position it holds, as its manifest entry or part name says (before it is read). */
  readonly first: Position;
  /** Its records in position order, a batch (a container block) at a time. Opened once, when needed. */
  open(): AsyncIterable<T[]>;
}

/**
 * An object held a record below one already passed on, so the streaming merge cannot place it
 * (a part written from a reordered delivery, whose name's first position is not its lowest). The
 * caller reads that table the whole-table way instead (ArchiveReader.tableRecords).
 */
export class RecordsOutOfOrder extends ChartlogError {
  constructor(what: string) {
    super('internal', `${what}: an object holds a record below one already read; read the table whole`);
  }
}

/** Records passed on per batch. */
const BATCH = 2048;

interface Cursor<T> {
  it: AsyncIterator<T[]>;
  batch: T[];
  at: number;
  head: T;
  pos: Position;
}

/**
 * The records of several objects in one position order, once each (docs/architecture.md §5): a
 * k-way merge that opens an object only when the merge reaches its first position, so it holds
 * the current block of the objects that overlap there (usually one) — never a table's history.
 * A position seen again (at-least-once delivery) is passed on once. A record below one already
 * passed on cannot be placed: RecordsOutOfOrder, never a silently dropped change.
 */
export async function* mergeByPosition<T>(sources: readonly OrderedSource<T>[], positionOf: (t: T) => Position, what: string): AsyncGenerator<T[]> {
  const pending = [...sources].sort((a, b) => Position.compare(a.first, b.first));
  let next = 0;
  const active: Cursor<T>[] = [];
  let last: Position | null = null;
  let out: T[] = [];

  /** Moves a cursor to its next record; false when its object is done. */
  const advance = async (c: Cursor<T>): Promise<boolean> => {
    for (;;) {
      if (c.at < c.batch.length) {
        const head = c.batch[c.at++]!;
        const pos = positionOf(head);
        const order = Position.compare(pos, c.pos);
        if (order < 0) throw new RecordsOutOfOrder(what);
        if (order === 0) continue; // the same record twice in one object
        c.head = head;
        c.pos = pos;
        return true;
      }
      const r = await c.it.next();
      if (r.done) return false;
      c.batch = r.value;
      c.at = 0;
    }
  };
  const openNext = async (): Promise<void> => {
    const src = pending[next++]!;
    const c: Cursor<T> = { it: src.open()[Symbol.asyncIterator](), batch: [], at: 0, head: undefined as T, pos: MIN };
    if (await advance(c)) active.push(c);
  };

  try {
    for (;;) {
      // Every object that may hold the next record is open: those starting at or before the least head.
      let least: Cursor<T> | null = null;
      for (;;) {
        least = null;
        for (const c of active) if (!least || Position.compare(c.pos, least.pos) < 0) least = c;
        if (next < pending.length && (!least || Position.compare(pending[next]!.first, least.pos) <= 0)) await openNext();
        else break;
      }
      if (!least) break;
      if (last) {
        const order = Position.compare(least.pos, last);
        if (order < 0) throw new RecordsOutOfOrder(what);
        if (order > 0) out.push(least.head);
      } else out.push(least.head);
      last = least.pos;
      if (!(await advance(least))) active.splice(active.indexOf(least), 1);
      if (out.length >= BATCH) {
        yield out;
        out = [];
      }
    }
    if (out.length > 0) yield out;
  } finally {
    for (const c of active) await c.it.return?.();
  }
}

/** Below every real position (an empty commit part sorts first): a cursor's "nothing read yet". */
const MIN: Position = Object.freeze({ commit: '', seq: -1 });
