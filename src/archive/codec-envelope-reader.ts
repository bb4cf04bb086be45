import avro from 'avsc';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import { bigintTypeHook } from '../codec/bigint-long.js';
import { AvroReader } from '../codec/avro-binary.js';
import { compileTable, type CompiledTable } from '../codec/compiled-table.js';
import { readEnvelope, splitBlockRecord } from '../codec/envelope-reader.js';
import type { RegisteredSchema, SchemaStore } from '../codec/schema-store.js';
import { singleObjectHeader } from '../codec/single-object.js';
import { isBlockSeal } from '../phi/block-seal.js';
import type { BlockSealFinder, EnvelopeReader, RecordSplitter } from './envelope-reader.js';

/**
 * The compactor's view of the codec's envelopes: a record's position and commit time, read with
 * the row images passed over (splitBlockRecord; for a schema another codec version wrote, by avsc's
 * schema resolution against a reader schema that has only `source`), so sealed PHI is never touched.
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
    // A version the current mappings cannot compile is never opened by this codec either: nothing to check.
    const compiled = compiledOrNull(this.schemas.source, registered);
    if (!compiled || compiled.sealed.length === 0) return () => null;
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

/** The table version compiled, or null when the current mappings cannot compile it. */
function compiledOrNull(source: string, registered: RegisteredSchema): CompiledTable | null {
  try {
    return compileTable(source, registered);
  } catch {
    return null;
  }
}

/**
 * The table version compiled for the direct reader, or null: a version another codec version
 * wrote (not direct), or one the current mappings cannot compile, is still split by avsc from its
 * stored schema (the compactor and verify split records they never decode).
 */
function directOrNull(source: string, registered: RegisteredSchema): CompiledTable | null {
  const compiled = compiledOrNull(source, registered);
  return compiled?.direct ? compiled : null;
}
