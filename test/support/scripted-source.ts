import type { ChangeBatch } from '../../src/core/change-event.js';
import { ChartlogError } from '../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { SampledRow, SourceConnector, StreamOptions } from '../../src/core/source-connector.js';
import type { TableSchema } from '../../src/core/table-schema.js';
import type { BatchEncoder } from '../../src/codec/batch-encoder.js';
import { singleObjectHeader } from '../../src/codec/single-object.js';
import { T0, types } from './fake-envelopes.js';

/**
 * A scripted source for the pipeline tests (embedded and Kafka, unit and integration): one
 * table, one event a transaction, encoded as the stand-in envelope of fake-envelopes.ts. The
 * real connectors and codec have their own tests against real servers.
 */
export const SCRIPTED_TABLE: TableSchema = { schema: 'public', table: 'patients', columns: [], primaryKey: [] };

/** Transaction n's commit part: n as 16 hex digits, so positions sort as n does. */
export const commitOf = (n: number): string => n.toString(16).padStart(16, '0');

/** Transaction n: one insert, committed at `baseUs` + n. */
export function scriptedTxn(n: number, source = 'clinic', baseUs = T0): ChangeBatch {
  const position = Position.of(commitOf(n), COMMIT_SEQ);
  return { source, txId: String(n), position, commitTsUs: baseUs + BigInt(n), snapshot: false, events: [{ op: 'c', schema: SCRIPTED_TABLE, before: null, after: {}, position: Position.of(commitOf(n), 0) }] };
}

/** Encodes each event as the stand-in envelope (fingerprint a1) the fake envelope reader splits. */
export function scriptedEncoder(key: Uint8Array | null = null): BatchEncoder {
  return {
    async encode(batch) {
      return batch.events.map((e) => ({
        table: 'public.patients',
        fingerprint: '00000000000000a1',
        key,
        value: Buffer.concat([singleObjectHeader(0xa1n), types['00000000000000a1']!.toBuffer({ pos: Position.format(e.position), ts: Number(batch.commitTsUs), v: 'x' })]),
        position: e.position,
      }));
    },
    async fingerprintOf() {
      return '00000000000000a1';
    },
  };
}

export interface ScriptedConnectorOptions {
  readonly source?: string;
  readonly baseUs?: bigint;
  /** Transactions at or before the resume point sent again on each stream, as a slot may. */
  readonly redeliver?: number;
  /** Called once the last transaction is delivered (to stop the pipeline, as SIGTERM would). */
  readonly whenDelivered?: () => void;
  /** Sampled rows per "schema.table", for `sample()`. */
  readonly samples?: Readonly<Record<string, readonly SampledRow[]>>;
}

/** A snapshot at 0, then transactions 1..total; `failOnceAt` loses the connection once there. */
export class ScriptedConnector implements SourceConnector {
  readonly name: string;
  readonly capabilities = { beforeImage: 'full', truncate: true, snapshot: true, unchangedValues: false } as const;
  readonly acked: Position[] = [];
  readonly streams: (Position | null)[] = [];
  failOnceAt: number | null = null;

  constructor(
    private readonly total: number,
    private readonly options: ScriptedConnectorOptions = {},
  ) {
    this.name = options.source ?? 'clinic';
  }

  async check() {}

  async tables(): Promise<readonly TableSchema[]> {
    return [SCRIPTED_TABLE];
  }

  /** Rows for `phi classify`: the options' `samples` for the table, or none. */
  async sample(table: TableSchema, limit: number): Promise<readonly SampledRow[]> {
    return (this.options.samples?.[`${table.schema}.${table.table}`] ?? []).slice(0, limit);
  }

  async *snapshot(): AsyncIterable<ChangeBatch> {
    const position = Position.of(commitOf(0), COMMIT_SEQ);
    const schema = SCRIPTED_TABLE;
    yield { source: this.name, txId: null, position, commitTsUs: this.options.baseUs ?? T0, snapshot: true, schemaChanges: [schema], events: [{ op: 'r', schema, before: null, after: {}, position: Position.of(commitOf(0), 0) }] };
  }

  async *stream(options: StreamOptions): AsyncIterable<ChangeBatch> {
    this.streams.push(options.from);
    const start = options.from ? Number.parseInt(options.from.commit, 16) + 1 - (this.options.redeliver ?? 0) : 1;
    for (let n = Math.max(1, start); n <= this.total; n++) {
      if (this.failOnceAt === n) {
        this.failOnceAt = null;
        throw new ChartlogError('connection', 'connection lost', { retriable: true });
      }
      yield scriptedTxn(n, this.name, this.options.baseUs);
    }
    this.options.whenDelivered?.();
    await new Promise((resolve) => options.signal?.addEventListener('abort', resolve));
  }

  async acknowledge(p: Position) {
    this.acked.push(p);
  }

  async close() {}
}
