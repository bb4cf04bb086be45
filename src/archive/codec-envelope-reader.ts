import avro from 'avsc';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { bigintTypeHook } from '../codec/bigint-long.js';
import { compileTable } from '../codec/compiled-table.js';
import { readEnvelope } from '../codec/envelope-reader.js';
import type { SchemaStore } from '../codec/schema-store.js';
import { singleObjectHeader } from '../codec/single-object.js';
import { isBlockSeal } from '../phi/block-seal.js';
import type { BlockSealFinder, EnvelopeReader, RecordSplitter } from './envelope-reader.js';

/**
 * The compactor's view of the codec's envelopes: a record's position and commit time, read by
 * schema resolution against a reader schema that has only `source` — avsc then skips the row
 * images without building them, and sealed PHI is never touched.
 */
export class CodecEnvelopeReader implements EnvelopeReader {
  private readonly splitters = new Map<string, Promise<RecordSplitter>>();
  private readonly finders = new Map<string, Promise<BlockSealFinder>>();

  constructor(private readonly schemas: SchemaStore) {}

  async schemaJson(source: string, fingerprint: string): Promise<string> {
    this.checkSource(source);
    return (await this.schemas.resolve(BigInt(`0x${fingerprint}`))).text;
  }

  splitterFor(source: string, fingerprint: string): Promise<RecordSplitter> {
    this.checkSource(source);
    let p = this.splitters.get(fingerprint);
    if (!p) {
      p = this.build(fingerprint);
      this.splitters.set(fingerprint, p);
      p.catch(() => this.splitters.delete(fingerprint));
    }
    return p;
  }

  blockSealFinder(source: string, fingerprint: string): Promise<BlockSealFinder> {
    this.checkSource(source);
    let p = this.finders.get(fingerprint);
    if (!p) {
      p = this.buildFinder(fingerprint);
      this.finders.set(fingerprint, p);
      p.catch(() => this.finders.delete(fingerprint));
    }
    return p;
  }

  /**
   * The first record of a block decoded as the codec reads it, its PHI left sealed (one record a
   * container block: the parts writer puts a block seal in the first record of one), and the
   * sealed column that holds a block seal, if any.
   */
  private async buildFinder(fingerprint: string): Promise<BlockSealFinder> {
    const registered = await this.schemas.resolve(BigInt(`0x${fingerprint}`));
    const compiled = compileTable(this.schemas.source, registered);
    if (compiled.sealed.length === 0) return () => null;
    const split = await this.splitterFor(this.schemas.source, fingerprint);
    const prefix = singleObjectHeader(BigInt(`0x${fingerprint}`));
    return (data) => {
      if (data.length === 0) return null;
      const after = readEnvelope(compiled, Buffer.concat([prefix, data.subarray(0, split(data, 0).end)])).event.after;
      for (const c of compiled.sealed) {
        const v = after?.[c.name];
        if (isBlockSeal(v)) return v;
      }
      return null;
    };
  }

  private async build(fingerprint: string): Promise<RecordSplitter> {
    const registered = await this.schemas.resolve(BigInt(`0x${fingerprint}`));
    const writer = avro.Type.forSchema(registered.schema as avro.Schema, { typeHook: bigintTypeHook as never });
    const schema = registered.schema as { name: string; namespace?: string };
    const reader = avro.Type.forSchema(
      {
        type: 'record',
        name: schema.name,
        namespace: schema.namespace,
        fields: [
          {
            name: 'source',
            type: {
              type: 'record',
              name: 'Source',
              fields: [
                { name: 'pos', type: 'string' },
                { name: 'seq', type: 'long' },
                { name: 'commitTsUs', type: 'long' },
              ],
            },
          },
        ],
      } as avro.Schema,
      { typeHook: bigintTypeHook as never },
    );
    const resolver = reader.createResolver(writer);
    return (data, offset) => {
      const r = reader.decode(data, offset, resolver);
      if (r.offset < 0) throw new ChartlogError('integrity', `a record of schema ${fingerprint} is truncated`);
      const s = (r.value as { source: { pos: string; seq: bigint; commitTsUs: bigint } }).source;
      return { position: Position.of(s.pos, Number(s.seq)), commitTsUs: s.commitTsUs, end: r.offset };
    };
  }

  private checkSource(source: string): void {
    if (source !== this.schemas.source) throw new ChartlogError('internal', `schemas of ${this.schemas.source} asked for source ${source}`);
  }
}
