import type pg from 'pg';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { CellValue, Row } from '../../src/core/table-schema.js';
import { lsnHex, parseLsn, type Lsn } from './lsn.js';
import { quoteIdent, quoteTable } from './setup-check.js';
import type { DescribedTable, Queryable, TypeCatalog } from './type-catalog.js';

/**
 * A consistent snapshot from an exported slot snapshot (FIELD-NOTES, verified under concurrent
 * writers): a replication connection runs CREATE_REPLICATION_SLOT … (SNAPSHOT 'export'); a
 * second connection imports that snapshot in a REPEATABLE READ transaction and reads every
 * table in primary-key order, one keyset chunk at a time, so memory holds one chunk. Every
 * batch carries the slot's consistent point P: the slot streams exactly the transactions that
 * commit after the snapshot.
 *
 * Restart after an interruption: the slot is created together with its snapshot, and the
 * exported snapshot dies with the exporting transaction, so a half-read snapshot cannot be
 * resumed. The connector therefore drops the slot (if one is there) and creates it again at
 * the start of every snapshot; the new consistent point makes the new snapshot and the stream
 * after it consistent, and nothing from the interrupted attempt is relied on.
 */
export interface SnapshotRun {
  readonly source: string;
  readonly slot: string;
  /**
   * A TEMPORARY slot (`chartlog resync` beside the stream): it only names the snapshot's LSN and
   * is dropped by the server when the exporting connection ends, right after the import.
   */
  readonly temporary?: boolean;
  /** "schema.table" names to read. */
  readonly tables: readonly string[];
  readonly chunkRows: number;
  /**
   * Connections that read at once (default 1), every one inside the same exported snapshot: a
   * table is read in key ranges, range i on connection i mod n, and handed on in key order.
   */
  readonly connections?: number;
  readonly signal?: AbortSignal;
  readonly catalog: TypeCatalog;
  readonly connect: (replication: boolean) => Promise<pg.Client>;
  readonly log: Logger;
  /** Called inside the snapshot's transaction, before any row is read (the catalog it reads is the snapshot's). */
  readonly atConsistentPoint?: (q: Queryable, at: Lsn, commitTsUs: bigint) => Promise<void>;
}

export async function* takeSnapshot(run: SnapshotRun): AsyncGenerator<ChangeBatch> {
  let repl: pg.Client | null = await run.connect(true);
  let data: pg.Client | null = null;
  /** Connections after the first that read in the same snapshot. */
  const readers: pg.Client[] = [];
  let committed = false;
  try {
    const created = await repl.query(`CREATE_REPLICATION_SLOT ${quoteIdent(run.slot)}${run.temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput (SNAPSHOT 'export')`);
    const slotRow = created.rows[0] as { consistent_point: string; snapshot_name: string };
    const consistent = parseLsn(slotRow.consistent_point);
    const commit = lsnHex(consistent);
    data = await run.connect(false);
    await data.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await data.query(`SET TRANSACTION SNAPSHOT '${slotRow.snapshot_name.replace(/'/g, "''")}'`);
    const now = await data.query(`SELECT (extract(epoch FROM now()) * 1000000)::int8 AS us`);
    const commitTsUs = BigInt((now.rows[0] as { us: string }).us);
    await run.atConsistentPoint?.(data as unknown as Queryable, consistent, commitTsUs);
    // Every reader imports the snapshot while the exporting connection still holds it.
    for (let i = 1; i < Math.max(1, run.connections ?? 1); i++) {
      const c = await run.connect(false);
      readers.push(c);
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await c.query(`SET TRANSACTION SNAPSHOT '${slotRow.snapshot_name.replace(/'/g, "''")}'`);
    }
    // Imported: the exporting connection may go; the slot itself is permanent (a temporary one goes with it).
    await repl.end();
    repl = null;
    run.log.info({ slot: run.slot, position: commit, tables: run.tables.length }, 'snapshot started at the slot consistent point');

    let seq = 0;
    const position = Position.of(commit);
    for (const table of run.tables) {
      const described = await describeTable(data, run.catalog, table);
      const ranges = readers.length > 0 && described.schema.primaryKey.length > 0 ? await keyRanges(data, described, (readers.length + 1) * 4) : [{}];
      const reader = ranges.length > 1 ? readInRanges([data, ...readers], described, run.chunkRows, ranges) : readChunks(data, described, run.chunkRows);
      let first = true;
      let rows = 0;
      for await (const chunk of reader) {
        if (run.signal?.aborted) {
          throw new ChartlogError('timeout', 'snapshot aborted before it finished', {
            retriable: true,
            hint: 'run the snapshot again: it starts over with a new slot',
          });
        }
        const events: ChangeEvent[] = chunk.map((after) => {
          if (seq >= COMMIT_SEQ) throw new ChartlogError('internal', 'snapshot has more rows than positions can number');
          return { op: 'r', schema: described.schema, before: null, after, position: Position.of(commit, seq++) };
        });
        rows += events.length;
        if (events.length === 0 && !first) continue;
        yield {
          source: run.source,
          txId: null,
          position,
          commitTsUs,
          snapshot: true,
          events,
          ...(first ? { schemaChanges: [described.schema] } : {}),
        };
        first = false;
      }
      run.log.info({ table, rows, ranges: ranges.length, position: commit }, 'snapshot table read');
    }
    await data.query('COMMIT');
    for (const c of readers) await c.query('COMMIT');
    committed = true;
  } finally {
    for (const c of readers) {
      if (!committed) await c.query('ROLLBACK').catch(() => undefined);
      await c.end().catch(() => undefined);
    }
    if (data && !committed) await data.query('ROLLBACK').catch(() => undefined);
    await data?.end().catch(() => undefined);
    await repl?.end().catch(() => undefined);
  }
}

/** Columns as pgoutput sends them: no dropped and no generated columns, in attnum order. */
async function describeTable(data: pg.Client, catalog: TypeCatalog, table: string): Promise<DescribedTable> {
  const db = data as unknown as Queryable;
  const rel = await db.query(`SELECT $1::regclass::oid AS oid`, [quoteTable(table)]);
  const oid = Number(rel.rows[0]!.oid);
  const cols = await db.query(
    `SELECT attname, atttypid, atttypmod FROM pg_attribute
      WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
      ORDER BY attnum`,
    [oid],
  );
  const dot = table.indexOf('.');
  return catalog.describe(
    db,
    oid,
    table.slice(0, dot),
    table.slice(dot + 1),
    cols.rows.map((r) => ({ name: r.attname ?? '', typeOid: Number(r.atttypid), typeMod: Number(r.atttypmod) })),
  );
}

/**
 * Keyset pagination by primary key: each chunk is "rows after the last key, in key order",
 * so a chunk costs an index range scan and memory holds two chunks (one read ahead). A table without a primary
 * key (REPLICA IDENTITY FULL) is read through a cursor in the same snapshot instead.
 */
async function* readChunks(data: pg.Client, t: DescribedTable, chunkRows: number, range: KeyRange = {}): AsyncGenerator<Row[]> {
  const { schema, codecs } = t;
  const selectList = schema.columns.map((c) => quoteIdent(c.name)).join(', ');
  const from = quoteTable(`${schema.schema}.${schema.table}`);
  const toRow = (raw: (string | null)[]): Row => {
    const row: Record<string, CellValue> = {};
    schema.columns.forEach((c, i) => {
      const v = raw[i];
      row[c.name] = v === null || v === undefined ? null : codecs[i]!.parse(v);
    });
    return row;
  };
  if (schema.primaryKey.length === 0) {
    const cursor = `chartlog_snap_${Math.random().toString(36).slice(2)}`;
    await data.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT ${selectList} FROM ${from}`);
    for (;;) {
      const res = await data.query({ text: `FETCH ${chunkRows} FROM ${cursor}`, rowMode: 'array' });
      const rows = (res.rows as (string | null)[][]).map(toRow);
      yield rows;
      if (rows.length < chunkRows) break;
    }
    await data.query(`CLOSE ${cursor}`);
    return;
  }
  const keyIdx = schema.primaryKey.map((k) => schema.columns.findIndex((c) => c.name === k));
  const keyList = schema.primaryKey.map(quoteIdent).join(', ');
  const casts = keyIdx.map((ci, i) => `$${i + 1}::${schema.columns[ci]!.sourceType}`).join(', ');
  // A key range bounds the first key column: from (inclusive) and below (exclusive).
  const first = quoteIdent(schema.primaryKey[0]!);
  const firstType = schema.columns[keyIdx[0]!]!.sourceType;
  const chunkAfter = (last: (string | null)[] | null): Promise<(string | null)[][]> => {
    const values: (string | null)[] = [...(last ?? [])];
    const conditions = last ? [`(${keyList}) > (${casts})`] : [];
    if (range.from !== undefined) conditions.push(`${first} >= $${values.push(range.from)}::${firstType}`);
    if (range.below !== undefined) conditions.push(`${first} < $${values.push(range.below)}::${firstType}`);
    const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
    const read = data.query({
      text: `SELECT ${selectList} FROM ${from} ${where} ORDER BY ${keyList} LIMIT ${chunkRows}`,
      values,
      rowMode: 'array',
    });
    const rows = read.then((res) => res.rows as (string | null)[][]);
    rows.catch(() => undefined); // awaited by the loop below, unless the reader is abandoned first
    return rows;
  };
  // The next chunk is asked for as soon as this one's last key is known, before this one is
  // parsed and handed on: the server reads chunk n+1 while chartlog parses, encodes, seals and
  // writes chunk n (one chunk ahead, so memory holds two).
  let next: Promise<(string | null)[][]> | null = chunkAfter(null);
  while (next) {
    const raw: (string | null)[][] = await next;
    const tail: (string | null)[] | null = raw.length === chunkRows ? raw[raw.length - 1]! : null;
    next = tail ? chunkAfter(keyIdx.map((ci) => tail[ci] ?? null)) : null;
    yield raw.map(toRow);
  }
}

/** Rows whose first key column is ≥ `from` and < `below` (text forms; absent: unbounded). */
interface KeyRange {
  readonly from?: string;
  readonly below?: string;
}

/** First key column types whose planner histogram is cast back safely and whose order is plain. */
const SPLITTABLE = /^(smallint|integer|bigint|numeric(\(.*\))?|uuid|date|timestamp(\(\d\))? with(out)? time zone)$/;

/**
 * Ranges of the first key column that split the table into about `parts` pieces, from the
 * planner's histogram (pg_stats, read in the snapshot). Statistics only place the boundaries:
 * the ranges cover every value whatever they say, each row falls in exactly one, and they are
 * in key order. One unbounded range when the table has no statistics or another key type.
 */
async function keyRanges(data: pg.Client, t: DescribedTable, parts: number): Promise<KeyRange[]> {
  const { schema } = t;
  const firstColumn = schema.columns.find((c) => c.name === schema.primaryKey[0]);
  if (!firstColumn || !SPLITTABLE.test(firstColumn.sourceType) || parts < 2) return [{}];
  const res = await data.query({
    text: `SELECT b::text FROM pg_stats s, unnest(s.histogram_bounds::text::${firstColumn.sourceType}[]) WITH ORDINALITY AS u(b, n)
            WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3 ORDER BY n`,
    values: [schema.schema, schema.table, firstColumn.name],
    rowMode: 'array',
  });
  const bounds = (res.rows as string[][]).map((r) => r[0]!);
  // The histogram's ends are the smallest and largest values seen: the ranges past them are open.
  const inner = bounds.slice(1, -1);
  const cuts = [...new Set(Array.from({ length: parts - 1 }, (_, i) => inner[Math.floor(((i + 1) * inner.length) / parts)]).filter((b): b is string => b !== undefined))];
  if (cuts.length === 0) return [{}];
  const ranges: KeyRange[] = cuts.map((below, i) => (i === 0 ? { below } : { from: cuts[i - 1]!, below }));
  ranges.push({ from: cuts.at(-1)! });
  return ranges;
}

/**
 * A table read on several connections in the same snapshot: range i on connection i mod n, each
 * connection going through its ranges in order one chunk ahead (readChunks) and holding one
 * more chunk ready, while the caller takes the ranges in key order. So the server reads the
 * next ranges while the current one is parsed and handed on, and memory holds about two chunks
 * per connection.
 */
async function* readInRanges(connections: readonly pg.Client[], t: DescribedTable, chunkRows: number, ranges: readonly KeyRange[]): AsyncGenerator<Row[]> {
  const n = Math.min(connections.length, ranges.length);
  const lanes = Array.from({ length: n }, (_, j) => readyAhead(rangesOf(connections[j]!, ranges.filter((_, i) => i % n === j))));
  try {
    for (let i = 0; i < ranges.length; i++) {
      const lane = lanes[i % n]!;
      for (;;) {
        const item = await lane.next();
        if (item.done || item.value === END_OF_RANGE) break;
        yield item.value;
      }
    }
  } finally {
    // Abandoned early (an error or an abort): every lane's pending chunk settles before the connections end.
    await Promise.all(lanes.map((l) => l.return()));
  }

  async function* rangesOf(c: pg.Client, mine: readonly KeyRange[]): AsyncGenerator<Row[] | typeof END_OF_RANGE> {
    for (const range of mine) {
      yield* readChunks(c, t, chunkRows, range);
      yield END_OF_RANGE;
    }
  }
}

const END_OF_RANGE = Symbol('end of range');

/** An iterator over `source` that asks for its next item as soon as the previous one is taken: one item ready ahead. */
function readyAhead<T>(source: AsyncGenerator<T>): { next(): Promise<IteratorResult<T>>; return(): Promise<void> } {
  let ahead: Promise<IteratorResult<T>> = source.next();
  ahead.catch(() => undefined); // awaited by next(), or settled by return()
  return {
    async next() {
      const item = await ahead;
      if (!item.done) {
        ahead = source.next();
        ahead.catch(() => undefined);
      }
      return item;
    },
    async return() {
      await ahead.catch(() => undefined);
      await source.return(undefined);
    },
  };
}
