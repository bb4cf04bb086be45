import assert from 'node:assert/strict';
import { test } from 'node:test';
import avro from 'avsc';
import { AvroContainerWriter } from '../../../src/archive/avro-container.js';
import { encodeFlushPart, flushPartSection, flushPartToc } from '../../../src/archive/flush-part.js';
import { FLUSH_PARTS } from '../../../src/archive/layout.js';
import { Position } from '../../../src/core/position.js';

/** The flush part as it was written before it was assembled by hand: avsc records in a codec-null container. */
async function reference(sections: { table: string; fingerprint: string; records: number; bytes: number; first: Position; last: Position; container: Buffer }[], sync: Buffer): Promise<Buffer> {
  const schema = { type: 'record', name: 'FlushSection', namespace: 'io.chartlog', fields: [{ name: 'table', type: 'string' }, { name: 'fingerprint', type: 'string' }, { name: 'container', type: 'bytes' }] };
  const type = avro.Type.forSchema(schema as unknown as avro.Schema);
  const toc = sections.map((s) => ({ table: s.table, fingerprint: s.fingerprint, records: s.records, bytes: s.bytes, first: Position.format(s.first), last: Position.format(s.last) }));
  const w = new AvroContainerWriter(JSON.stringify(schema), { codec: 'null', sync, metadata: { 'chartlog.table': FLUSH_PARTS, 'chartlog.format': '1', 'chartlog.sections': JSON.stringify(toc) } });
  for (const s of sections) await w.addBlock([type.toBuffer({ table: s.table, fingerprint: s.fingerprint, container: s.container })]);
  return w.toBuffer();
}

async function section(table: string, rows: number): Promise<{ whole: Buffer; chunks: readonly Buffer[]; length: number }> {
  const w = new AvroContainerWriter('"string"', { level: 1, sync: Buffer.alloc(16, 7), metadata: { 'chartlog.table': table } });
  const type = avro.Type.forSchema('string');
  const bodies = Array.from({ length: rows }, (_, i) => type.toBuffer(`row ${i} of ${table}`));
  for (let b = 0; b < bodies.length; b += 100) await w.addBlock(bodies.slice(b, b + 100));
  const { chunks, length } = w.toChunks();
  return { whole: w.toBuffer(), chunks, length };
}

test('a flush part assembled from uncopied section pieces is byte for byte the avsc-built part (names, hashes and readers unchanged)', async () => {
  const first = Position.parse('0000000000000001.00000000');
  const last = Position.parse('0000000000000002.ffffffff');
  const specs = [['public.visits', 0], ['public.patients', 250], ['~transactions', 3], ['schéma.tàble_ünicode', 130]] as const;
  const built = await Promise.all(specs.map(([t, n]) => section(t, n)));
  const sync = Buffer.alloc(16, 3);
  const base = specs.map(([table, n], i) => ({ table, fingerprint: `00000000000000a${i}`, records: n, bytes: built[i]!.length, first, last }));
  const expected = await reference(base.map((b, i) => ({ ...b, container: built[i]!.whole })), sync);
  const fromChunks = await encodeFlushPart(base.map((b, i) => ({ ...b, container: built[i]!.chunks })), sync);
  const fromWhole = await encodeFlushPart(base.map((b, i) => ({ ...b, container: built[i]!.whole })), sync);
  assert.ok(fromChunks.equals(expected), 'pieces: same bytes as the avsc-built part');
  assert.ok(fromWhole.equals(expected), 'whole containers: same bytes as the avsc-built part');
  assert.equal(built[1]!.length, built[1]!.whole.length);
  // And it reads back: the table of contents and each section's container.
  assert.deepEqual(flushPartToc(fromChunks, 'k').map((s) => s.table), specs.map(([t]) => t));
  assert.ok(flushPartSection(fromChunks, 'k', 3).container.equals(built[3]!.whole));
  // Negative control: a section with one byte changed no longer matches.
  const changed = Buffer.from(built[1]!.whole);
  changed[changed.length - 20]! ^= 1;
  const other = await encodeFlushPart(base.map((b, i) => ({ ...b, container: i === 1 ? changed : built[i]!.whole })), sync);
  assert.equal(other.equals(expected), false);
});
