import type { ChangeEvent } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { Position } from '../../src/core/position.js';
import { sameTableVersion, UNCHANGED, type CellValue, type Row, type TableSchema } from '../../src/core/table-schema.js';
import { insertRelationOid, insertTupleReader, TUPLE_NULL, TUPLE_TEXT, TUPLE_UNCHANGED, unexpectedColumnKind, type PgMessage, type RawTuple } from './pgoutput-decoder.js';
import type { DescribedTable } from './type-catalog.js';

/**
 * pgoutput messages → change events, as pure steps `(message, state) → result` (after
 * Electric's message_converter). The I/O around it (postgres-connector.ts) decodes bytes,
 * describes relations from the catalog, and groups events into batches.
 */

type RelationMessage = Extract<PgMessage, { tag: 'relation' }>;
export type ChangeMessage = Extract<PgMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

export interface RelationState {
  readonly table: DescribedTable;
  /** Per column: part of the replica identity key (relation message flag bit 0). */
  readonly identityKey: readonly boolean[];
}

export interface ConverterState {
  readonly relations: ReadonlyMap<number, RelationState>;
}

export const initialConverterState: ConverterState = { relations: new Map() };

/**
 * A relation message makes `described` the current version of the table. Returns the new state
 * and the schema when it differs from the version known before (null when it is the same), so
 * the batch can list it in `schemaChanges`.
 */
export function applyRelation(
  state: ConverterState,
  msg: RelationMessage,
  described: DescribedTable,
): { state: ConverterState; schemaChange: TableSchema | null } {
  const previous = state.relations.get(msg.relationOid);
  const relations = new Map(state.relations);
  relations.set(msg.relationOid, { table: described, identityKey: msg.columns.map((c) => (c.flags & 1) === 1) });
  const same = previous !== undefined && sameSchema(previous.table.schema, described.schema);
  return { state: { relations }, schemaChange: same ? null : described.schema };
}

export function sameSchema(a: TableSchema, b: TableSchema): boolean {
  return sameTableVersion(a, b);
}

/**
 * One DML or TRUNCATE message → its events. `commit` is the transaction's commit part, `seq`
 * the index of the first event produced (a TRUNCATE of n tables produces n events).
 */
export function convertChange(state: ConverterState, msg: ChangeMessage, commit: string, seq: number): ChangeEvent[] {
  if (msg.tag === 'truncate') {
    return msg.relationOids.map((oid, i) => ({
      op: 't' as const,
      schema: relationOf(state, oid).table.schema,
      before: null,
      after: null,
      position: Position.of(commit, seq + i),
    }));
  }
  const rel = relationOf(state, msg.relationOid);
  const position = Position.of(commit, seq);
  const schema = rel.table.schema;
  switch (msg.tag) {
    case 'insert':
      return [{ op: 'c', schema, before: null, after: toRow(rel, msg.newTuple, null), position }];
    case 'update': {
      const before = msg.old ? toRow(rel, msg.old, null) : msg.key ? toKeyRow(rel, msg.key) : null;
      return [{ op: 'u', schema, before, after: toRow(rel, msg.newTuple, msg.old ? before : null), position }];
    }
    case 'delete': {
      const before = msg.old ? toRow(rel, msg.old, null) : msg.key ? toKeyRow(rel, msg.key) : null;
      return [{ op: 'd', schema, before, after: null, position }];
    }
  }
}

/**
 * An insert message's bytes → its event: the same event as
 * `convertChange(state, decodePgoutput(bytes), commit, seq)[0]`, without the decoded message and
 * its RawTuple array in between (two objects and an array slot per column, per row, which lived
 * only to be copied into the row). Inserts are nearly every message of a backlog.
 */
export function convertInsert(state: ConverterState, bytes: Uint8Array, commit: string, seq: number): ChangeEvent {
  const rel = relationOf(state, insertRelationOid(bytes));
  const r = insertTupleReader(bytes);
  const { columns } = rel.table.schema;
  const codecs = rel.table.codecs;
  const n = r.i16();
  if (n !== columns.length) {
    throw new ChartlogError('decode', `tuple of ${n} columns for ${rel.table.schema.schema}.${rel.table.schema.table} with ${columns.length}`);
  }
  const row: Record<string, CellValue> = {};
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    const name = columns[i]!.name;
    if (kind === TUPLE_TEXT) row[name] = codecs[i]!.parse(r.text(r.i32()));
    else if (kind === TUPLE_NULL) row[name] = null;
    else if (kind === TUPLE_UNCHANGED) row[name] = UNCHANGED; // no old row to take it from (toRow)
    else throw unexpectedColumnKind(kind);
  }
  return { op: 'c', schema: rel.table.schema, before: null, after: row, position: Position.of(commit, seq) };
}

function relationOf(state: ConverterState, oid: number): RelationState {
  const rel = state.relations.get(oid);
  if (!rel) {
    throw new ChartlogError('decode', `change for relation ${oid} before its relation message`, { retriable: true });
  }
  return rel;
}

/**
 * A whole tuple → row. An unchanged TOAST value is UNCHANGED unless the old row (REPLICA
 * IDENTITY FULL, which PostgreSQL sends detoasted) holds the value, which is then exact.
 */
function toRow(rel: RelationState, tuple: RawTuple, old: Row | null): Row {
  const { columns } = rel.table.schema;
  if (tuple.length !== columns.length) {
    throw new ChartlogError('decode', `tuple of ${tuple.length} columns for ${rel.table.schema.schema}.${rel.table.schema.table} with ${columns.length}`);
  }
  const row: Record<string, CellValue> = {};
  for (let i = 0; i < columns.length; i++) {
    const name = columns[i]!.name;
    const raw = tuple[i]!;
    if (raw === UNCHANGED) {
      const prior = old?.[name];
      row[name] = prior !== undefined && prior !== UNCHANGED ? prior : UNCHANGED;
    } else {
      row[name] = raw === null ? null : rel.table.codecs[i]!.parse(raw);
    }
  }
  return row;
}

/** A key tuple carries the identity columns; the others are placeholders and are left out. */
function toKeyRow(rel: RelationState, tuple: RawTuple): Row {
  const { columns } = rel.table.schema;
  const row: Record<string, CellValue> = {};
  for (let i = 0; i < columns.length; i++) {
    if (!rel.identityKey[i]) continue;
    const raw = tuple[i];
    row[columns[i]!.name] = raw === undefined || raw === null ? null : raw === UNCHANGED ? UNCHANGED : rel.table.codecs[i]!.parse(raw);
  }
  return row;
}
