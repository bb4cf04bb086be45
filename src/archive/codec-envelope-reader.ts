import avro from 'avsc';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { bigintTypeHook } from '../codec/bigint-long.js';
import { AvroReader } from '../codec/avro-binary.js';
import { compileTable, type CompiledTable } from '../codec/compiled-table.js';
import { splitBlockRecord } from '../codec/envelope-reader.js';
import type { RegisteredSchema, SchemaStore } from '../codec/schema-store.js';
import type { EnvelopeReader, RecordSplitter } from './envelope-reader.js';

/**
 * The compactor's view of the codec's envelopes: a record's position and commit time, read with
 * the row images passed over (splitBlockRecord; for a schema another codec version wrote, by avsc's
 * schema resolution against a reader schema that has only `source`), so sealed PHI is never touched.
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
    // A version the codec's direct reader reads (every one this codec writes): its records split
    // by passing over the row images (splitBlockRecord), several times cheaper than avsc's resolution.
    const compiled = directOrNull(this.schemas.source, registered);
    if (compiled) {
      return (data, offset) => {
        const r = new AvroReader(data, offset);
        const { position, commitTsUs } = splitBlockRecord(compiled, r);
        return { position, commitTsUs, end: r.pos };
      };
    }
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

/**
 * The table version compiled for the direct reader, or null: a version another codec version
 * wrote (not direct), or one the current mappings cannot compile, is still split by avsc from its
 * stored schema (the compactor and verify split records they never decode).
 */
function directOrNull(source: string, registered: RegisteredSchema): CompiledTable | null {
  try {
    const compiled = compileTable(source, registered);
    return compiled.direct ? compiled : null;
  } catch {
    return null;
  }
}
