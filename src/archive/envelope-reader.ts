import type { Position } from '../core/position.js';

/** Finds the writer schema (Avro JSON) of a fingerprint; the codec stored it before publishing. */
export interface SchemaSource {
  schemaJson(source: string, fingerprint: string): Promise<string>;
}

/** Splits a container block into records: where each starts and ends, its position and commit time. */
export type RecordSplitter = (data: Buffer, offset: number) => { position: Position; commitTsUs: bigint; end: number };

/** The block seal (sealed format 5) in the first record of a container block of a base snapshot's part, or null. */
export type BlockSealFinder = (data: Buffer) => Uint8Array | null;

/** Gives the splitter for records written with a schema; the codec knows the envelope. */
export interface EnvelopeReader extends SchemaSource {
  splitterFor(source: string, fingerprint: string): Promise<RecordSplitter>;
  /**
   * Finds block seals in records written with a schema, for the order check of base snapshots
   * (phi/block-seal.ts BlockOrder). Absent (readers of the transaction log, tests of other
   * things): base snapshots are read without it.
   */
  blockSealFinder?(source: string, fingerprint: string): Promise<BlockSealFinder>;
}
