import avro from 'avsc';
import { Position } from '../core/position.js';
import type { BusBatch } from '../codec/bus-message.js';

/**
 * The per-transaction log the compactor writes beside the table records, as its own "table"
 * (TRANSACTIONS_TABLE): one record per source transaction with how many events it had per
 * table and the position of the transaction before it. `verify` uses the chain of `previous`
 * positions to prove no transaction is missing, and the counts to prove none lost an event.
 * It holds no row values.
 */
export const transactionSchema = {
  type: 'record',
  name: 'Transaction',
  namespace: 'io.chartlog',
  fields: [
    { name: 'pos', type: 'string' },
    { name: 'previous', type: ['null', 'string'], default: null },
    { name: 'txId', type: ['null', 'string'], default: null },
    { name: 'commitTsUs', type: 'long' },
    { name: 'tables', type: { type: 'map', values: 'long' } },
  ],
} as const;

export const transactionSchemaJson = JSON.stringify(transactionSchema);

export interface TransactionRecord {
  pos: string;
  previous: string | null;
  txId: string | null;
  /** Microseconds; avsc's plain long is exact below 2^53 µs (year 2255). */
  commitTsUs: number;
  tables: Record<string, number>;
}

const type = avro.Type.forSchema(transactionSchema as unknown as avro.Schema);

export function transactionRecordOf(batch: BusBatch): TransactionRecord {
  const tables: Record<string, number> = {};
  for (const m of batch.messages) tables[m.table] = (tables[m.table] ?? 0) + 1;
  return {
    pos: Position.format(batch.position),
    previous: batch.previous ? Position.format(batch.previous) : null,
    txId: batch.txId,
    commitTsUs: Number(batch.commitTsUs),
    tables,
  };
}

export function encodeTransaction(r: TransactionRecord): Buffer {
  return type.toBuffer(r);
}

/** Decodes one record at `offset`; returns it and where the next one starts. */
export function decodeTransaction(data: Buffer, offset: number): { record: TransactionRecord; end: number } {
  const { value, offset: end } = type.decode(data, offset);
  if (end < 0) throw new RangeError('truncated transaction record');
  return { record: value as TransactionRecord, end };
}
