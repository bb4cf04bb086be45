import type { Position } from '../core/position.js';

/** Finds the writer schema (Avro JSON) of a fingerprint; the codec stored it before publishing. */
export interface SchemaSource {
  schemaJson(source: string, fingerprint: string): Promise<string>;
}

/** Splits a container block into records: where each starts and ends, its position and commit time. */
export type RecordSplitter = (data: Buffer, offset: number) => { position: Position; commitTsUs: bigint; end: number };

/** Gives the splitter for records written with a schema; the codec knows the envelope. */
export interface EnvelopeReader extends SchemaSource {
  splitterFor(source: string, fingerprint: string): Promise<RecordSplitter>;
}
