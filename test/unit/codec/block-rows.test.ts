import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import fc from 'fast-check';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { Position } from '../../../src/core/position.js';
import { freezeTableSchema, qualifiedName, type ColumnType, type Row, type TableSchema } from '../../../src/core/table-schema.js';
import { AvroReader } from '../../../src/codec/avro-binary.js';
import type { AvroCodec } from '../../../src/codec/avro-codec.js';
import { SINGLE_OBJECT_HEADER_BYTES } from '../../../src/codec/single-object.js';
import type { OpenAuditEntry } from '../../../src/phi/phi-opener.js';
import { CryptoPool } from '../../../src/phi/crypto-pool.js';
import { batchWithPhiOf, type Engine } from '../../support/change-arbitraries.js';
import { codecRig } from '../../support/codec-support.js';

/**
 * Restore's block reader (BlockRows, readBlockRecord) against the message decoder it replaces
 * for base snapshot rows: the records of a container block read where they lie must give, value
 * for value, what `decodeMany` gives for the same records as messages — sealed or opened, on
 * the crypto pool's thread or inline, with the same audit entries.
 */

const pool = new CryptoPool(1);
after(() => pool.close());

/** A block's data as the container holds it: the messages' bodies, one after another. */
function blockOf(messages: readonly Uint8Array[]): Buffer {
  return Buffer.concat(messages.map((m) => m.subarray(SINGLE_OBJECT_HEADER_BYTES)));
}

/** Every record of a block through BlockRows, `max` at a time: the after images, and how many records were read. */
async function blockRowsOf(codec: AvroCodec, fingerprint: string, data: Buffer, open: boolean, max: number): Promise<{ rows: Row[]; count: number }> {
  const reader = await codec.blockRows(fingerprint);
  assert.ok(reader, 'a version of this codec is read directly');
  const r = new AvroReader(data, 0);
  const rows: Row[] = [];
  let count = 0;
  const groups: Promise<Row[]>[] = [];
  // Groups read back to back before any is awaited, as restore's decode-ahead does.
  while (r.pos < r.end) {
    const g = reader.read(r, max, open);
    count += g.count;
    groups.push(g.rows);
  }
  for (const g of groups) rows.push(...(await g));
  return { rows, count };
}

/** What the message decoder gives for the same records: the after images. */
async function messageRowsOf(codec: AvroCodec, messages: readonly Uint8Array[], open: boolean): Promise<Row[]> {
  const decoded = await codec.decodeMany(messages, { open });
  return decoded.flatMap((d) => (d.event.after ? [d.event.after] : []));
}

/** The comparison every case makes: the same rows, value for value (types included), in order. */
function assertAgree(fromBlock: readonly Row[], fromMessages: readonly Row[]): void {
  assert.deepStrictEqual(fromBlock, fromMessages);
}

async function encode(batch: ChangeBatch, phiColumns: string[], engine: Engine) {
  const table = qualifiedName(batch.events[0]!.schema);
  const rig = codecRig({ connector: engine, policy: { columns: { [table]: phiColumns }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
  const messages = (await rig.codec.encodeBatch(batch)).map((m) => m.value);
  const fingerprint = await rig.codec.fingerprintOf(batch.events[0]!.schema);
  return { rig, messages, fingerprint };
}

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: records read from a block where they lie equal the message decoder's events, sealed and opened, pooled and inline`, async () => {
    await fc.assert(
      fc.asyncProperty(batchWithPhiOf(engine, 'clinic'), fc.integer({ min: 1, max: 4 }), async ([batch, phiColumns], max) => {
        const { rig, messages, fingerprint } = await encode(batch, phiColumns, engine);
        const data = blockOf(messages);
        // Sealed (an archive reader without keys).
        const sealed = rig.reader();
        const b = await blockRowsOf(sealed, fingerprint, data, false, max);
        assert.equal(b.count, messages.length);
        assertAgree(b.rows, await messageRowsOf(sealed, messages, false));
        // Opened inline and on the pool: the same rows as the message decoder, the same audit entries.
        for (const cryptoPool of [undefined, pool]) {
          const audits: OpenAuditEntry[][] = [[], []];
          const viaBlock = rig.reader({ withKeys: true, onOpen: (e) => audits[0]!.push(e), ...(cryptoPool ? { cryptoPool } : {}) });
          const viaMessages = rig.reader({ withKeys: true, onOpen: (e) => audits[1]!.push(e), ...(cryptoPool ? { cryptoPool } : {}) });
          const opened = await blockRowsOf(viaBlock, fingerprint, data, true, max);
          assertAgree(opened.rows, await messageRowsOf(viaMessages, messages, true));
          // Groups read ahead may finish opening out of order (a data key loaded for the first): the same entries.
          const inOrder = (a: OpenAuditEntry[]) => [...a].sort((x, y) => Position.compare(x.position, y.position));
          assert.deepStrictEqual(inOrder(audits[0]!), inOrder(audits[1]!));
        }
        // Every event itself (before, after, op, position), through the record reader beneath.
        const decoded = await sealed.decodeMany(messages);
        const reader = (await sealed.blockRows(fingerprint))!;
        const r = new AvroReader(data, 0);
        for (const d of decoded) {
          const got = await reader.read(r, 1, false).rows;
          assert.deepStrictEqual(got, d.event.after ? [d.event.after] : []);
        }
        assert.equal(r.pos, data.length);
      }),
      { numRuns: 150 },
    );
  });
}

const c = (name: string, sourceType: string, type: ColumnType) => ({ name, sourceType, type, nullable: name !== 'id' });
/** The edge types the issue names, one column each, PHI among them. */
const edges: TableSchema = freezeTableSchema({
  schema: 'public',
  table: 'edges',
  columns: [
    c('id', 'bigint', { kind: 'int', bits: 64 }),
    c('amount', 'numeric(38,10)', { kind: 'decimal', precision: 38, scale: 10 }),
    c('free', 'numeric', { kind: 'decimal' }),
    c('big', 'bigint', { kind: 'int', bits: 64 }),
    c('at', 'timestamp without time zone', { kind: 'timestamp' }),
    c('at_tz', 'timestamp with time zone', { kind: 'timestamptz' }),
    c('t', 'time without time zone', { kind: 'time' }),
    c('raw', 'bytea', { kind: 'bytes' }),
    c('doc', 'jsonb', { kind: 'json' }),
    c('name', 'text', { kind: 'string' }),
    c('ssn', 'text', { kind: 'string' }),
  ],
  primaryKey: ['id'],
});

function edgeRows(): Row[] {
  return [
    { id: -(2n ** 63n), amount: '-9999999999999999999999999999.9999999999', free: 'NaN', big: 2n ** 63n - 1n, at: '2026-03-01 00:00:00.000001', at_tz: '1999-12-31 23:59:59.999999+00', t: '23:59:59.999999', raw: new Uint8Array([0, 9, 10, 13, 92, 255]), doc: '{"n": 12345678901234567890, "s": "tab\\t"}', name: 'Zoë 🩺 \t\n\\ 医', ssn: 'CANARY-SSN-0001' },
    { id: 0n, amount: '0.0000000001', free: '-0.0', big: 0n, at: 'infinity', at_tz: '-infinity', t: '00:00:00', raw: new Uint8Array(0), doc: '[]', name: '', ssn: '' },
    { id: 2n ** 63n - 1n, amount: null, free: null, big: null, at: null, at_tz: null, t: null, raw: null, doc: null, name: null, ssn: null },
  ];
}

async function edgeArchive() {
  const rig = codecRig({ policy: { columns: { 'public.edges': ['ssn', 'name', 'raw'] }, strict: [], publicColumns: { 'public.edges': ['id', 'amount', 'free', 'big', 'at', 'at_tz', 't', 'doc'] }, unclassified: 'clear' as const } });
  const commit = '00000000000000ff';
  const rows = edgeRows();
  const batch: ChangeBatch = {
    source: 'clinic',
    txId: null,
    position: Position.of(commit),
    commitTsUs: 1n,
    snapshot: true,
    events: rows.map((after, i) => ({ op: 'r' as const, schema: edges, before: null, after, position: Position.of(commit, i) })),
  };
  const messages = (await rig.codec.encodeBatch(batch)).map((m) => m.value);
  return { rig, messages, fingerprint: await rig.codec.fingerprintOf(edges), rows };
}

test('edge types (decimals, 64-bit ints, microsecond times, bytes, JSON, nulls, unicode) read from a block equal the source rows and the message decoder', async () => {
  const { rig, messages, fingerprint, rows } = await edgeArchive();
  for (const cryptoPool of [undefined, pool]) {
    const codec = rig.reader({ withKeys: true, ...(cryptoPool ? { cryptoPool } : {}) });
    const fromBlock = await blockRowsOf(codec, fingerprint, blockOf(messages), true, 2);
    assertAgree(fromBlock.rows, await messageRowsOf(codec, messages, true));
    assert.deepStrictEqual(fromBlock.rows, rows);
  }
});

test('a planted difference between the paths is caught: one digit of a decimal, one microsecond, one byte', async () => {
  const { rig, messages, fingerprint } = await edgeArchive();
  const codec = rig.reader({ withKeys: true });
  const truth = await messageRowsOf(codec, messages, true);
  const plants: [string, unknown][] = [
    ['amount', '-9999999999999999999999999999.9999999998'],
    ['at', '2026-03-01 00:00:00.000002'],
    ['raw', new Uint8Array([0, 9, 10, 13, 92, 254])],
    ['big', 2n ** 63n - 2n],
  ];
  for (const [column, value] of plants) {
    const got = (await blockRowsOf(codec, fingerprint, blockOf(messages), true, 2)).rows;
    assertAgree(got, truth); // unplanted: they agree
    (got[0] as Record<string, unknown>)[column] = value;
    assert.throws(() => assertAgree(got, truth), assert.AssertionError, `a planted ${column} is caught`);
  }
});

test('a damaged block is refused as damaged, naming the table, never read as other rows', async () => {
  const { rig, messages, fingerprint } = await edgeArchive();
  const data = blockOf(messages);
  const cut = data.subarray(0, data.length - 3);
  await assert.rejects(blockRowsOf(rig.reader(), fingerprint, cut, false, 8), (err: Error) => /public\.edges.*does not decode/.test(err.message));
});
