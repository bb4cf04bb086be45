import avro from 'avsc';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { bigintTypeHook } from '../codec/bigint-long.js';
import type { SchemaStore } from '../codec/schema-store.js';
import type { EnvelopeReader, RecordSplitter } from './envelope-reader.js';

/**
 * The compactor's view of the codec's envelopes: a record's position and commit time, read by
 * schema resolution against a reader schema that has only `source` — avsc then skips the row
 * images without building them, and sealed PHI is never touched.
 */
export class CodecEnvelopeReader implements EnvelopeReader {
  private readonly splitters = new Map<string, Promise<RecordSplitter>>();

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
