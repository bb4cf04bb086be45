import avro from 'avsc';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';
import type { BusBatch } from '../../src/codec/bus-message.js';
import { singleObjectHeader } from '../../src/codec/single-object.js';
import type { EnvelopeReader } from '../../src/archive/envelope-reader.js';
import { readAvroContainer } from '../../src/archive/avro-container.js';

// A stand-in envelope: the codec's real one is tested with the codec. What matters here is that
// the compactor keeps bodies intact, in position order, once each.
export const schemaV1 = { type: 'record', name: 'E', fields: [{ name: 'pos', type: 'string' }, { name: 'ts', type: 'long' }, { name: 'v', type: 'string' }] };
const schemaV2 = { ...schemaV1, fields: [...schemaV1.fields, { name: 'w', type: 'int', default: 0 }] };
export const types: Record<string, avro.Type> = { '00000000000000a1': avro.Type.forSchema(schemaV1 as avro.Schema), '00000000000000a2': avro.Type.forSchema(schemaV2 as avro.Schema) };

export const envelopes: EnvelopeReader = {
  async schemaJson(_s, fp) {
    return JSON.stringify(types[fp]!.schema());
  },
  async splitterFor(_s, fp) {
    const t = types[fp]!;
    return (data, offset) => {
      const { value, offset: end } = t.decode(data, offset);
      const v = value as { pos: string; ts: number };
      return { position: Position.parse(v.pos), commitTsUs: BigInt(v.ts), end };
    };
  },
};

export const HOUR_US = 3_600_000_000n;
export const T0 = BigInt(Date.parse('2026-11-24T05:00:00Z')) * 1000n;

export function batch(n: number, tsUs: bigint, tables: [string, string][], previous: Position | null): BusBatch {
  const commit = n.toString(16).padStart(16, '0');
  const messages = tables.map(([table, fp], seq) => {
    const position = Position.of(commit, seq);
    const body = types[fp]!.toBuffer({ pos: Position.format(position), ts: Number(tsUs), v: `row ${n}/${seq}`, w: 7 });
    return { table, fingerprint: fp, key: null, value: Buffer.concat([singleObjectHeader(0n), body]), position };
  });
  return { source: 'clinic', position: Position.of(commit, COMMIT_SEQ), previous, txId: `tx${n}`, commitTsUs: tsUs, messages };
}

/** Every record of a container object in the store, decoded with the container's own schema. */
export function decodeAll(bytes: Uint8Array, key: string): { pos: string; v: string }[] {
  const { header, blocks } = readAvroContainer(bytes, key);
  const t = avro.Type.forSchema(JSON.parse(header.schema) as avro.Schema);
  const out: { pos: string; v: string }[] = [];
  for (const b of blocks) {
    for (let o = 0; o < b.data.length; ) {
      const r = t.decode(b.data, o);
      out.push(r.value as { pos: string; v: string });
      o = r.offset;
    }
  }
  return out;
}
