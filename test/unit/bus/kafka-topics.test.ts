import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import kafkajs, { CompressionTypes } from 'kafkajs';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import {
  decodeHeaders,
  decodeTransactionMessage,
  deflateBound,
  encodeHeaders,
  encodeTransactionMessage,
  gzipInflatedSize,
  isTableTopic,
  schemasTopic,
  tableTopic,
  topicPart,
  transactionsTopic,
  zlibChunkSize,
} from '../../../src/bus/kafka-topics.js';

const LEGAL = /^[A-Za-z0-9._-]{1,249}$/;

test('a table topic is <prefix>.<source>.<schema>.<table>', () => {
  assert.equal(tableTopic('chartlog', 'clinic', 'public.patients'), 'chartlog.clinic.public.patients');
  assert.equal(transactionsTopic('chartlog', 'clinic'), 'chartlog.clinic.__transactions');
  assert.equal(schemasTopic('chartlog', 'clinic'), 'chartlog.clinic.__schemas');
});

test('names Kafka does not allow are escaped, and a dot inside a name cannot merge two tables', () => {
  assert.equal(topicPart('Patients_2024-x'), 'Patients_2024-x');
  assert.equal(topicPart('my table'), 'my__20table');
  assert.equal(topicPart('ü'), '__c3__bc');
  const a = tableTopic('p', 's', 'a.b.c'); // schema "a", table "b.c"
  const b = tableTopic('p', 's', 'a_b.c');
  assert.notEqual(a, b);
  assert.equal(a, 'p.s.a.b__2ec');
  for (const t of [a, b, tableTopic('p', 's', 'dbo.Ünïcødé "quoted" name')]) assert.match(t, LEGAL);
});

test('very long names are cut to 249 characters, still distinct', () => {
  const long1 = tableTopic('chartlog', 'clinic', `public.${'x'.repeat(300)}1`);
  const long2 = tableTopic('chartlog', 'clinic', `public.${'x'.repeat(300)}2`);
  assert.equal(long1.length, 249);
  assert.match(long1, LEGAL);
  assert.notEqual(long1, long2);
});

test('a table name without a schema is refused', () => {
  assert.throws(() => tableTopic('p', 's', 'patients'), ChartlogError);
});

test('table topics of a source are told from its metadata topics and from other sources', () => {
  assert.ok(isTableTopic('chartlog', 'clinic', 'chartlog.clinic.public.patients'));
  assert.ok(!isTableTopic('chartlog', 'clinic', 'chartlog.clinic.__transactions'));
  assert.ok(!isTableTopic('chartlog', 'clinic', 'chartlog.clinic.__schemas'));
  assert.ok(!isTableTopic('chartlog', 'clinic', 'chartlog.clinic2.public.patients'));
  assert.ok(!isTableTopic('chartlog', 'clinic', 'other.clinic.public.patients'));
  assert.ok(isTableTopic('chartlog', 'clinic', tableTopic('chartlog', 'clinic', '__x.__transactions')));
});

test('headers round-trip: position, transaction id, commit time beyond 2^53, fingerprint, table', () => {
  const h = { table: 'public.patients', fingerprint: '0123456789abcdef', position: Position.of('00000000016b3748', 7), txId: '0-1-42', commitTsUs: 2n ** 60n + 1n };
  const encoded = encodeHeaders(h);
  assert.deepEqual(Object.keys(encoded), ['chartlog']);
  assert.deepEqual(decodeHeaders(encoded, 't/0@1'), h);
  const noTx = { ...h, txId: null, table: 'sch\u00e9ma.t\u00e2ble' };
  assert.deepEqual(decodeHeaders(encodeHeaders(noTx), 't/0@1'), noTx);
  assert.throws(() => encodeHeaders({ ...h, fingerprint: '0123456789abcdeX' }), ChartlogError);
});

/** A table message's headers as kafkajs delivers them from a topic (Buffers). */
const received = (headers: Record<string, string>) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.from(v, 'latin1')]));

test('format 1 is pinned: these bytes are what a topic holds and what is read back', () => {
  const h = { table: 'public.patients', fingerprint: '0123456789abcdef', position: Position.of('00000000016b3748', 7), txId: '0-1-42', commitTsUs: 1_795_000_000_123_456n };
  const pinned = '01' + '0123456789abcdef' + '0006608b01611240' + '00000007' + '01' + '000f' + Buffer.from('public.patients').toString('hex') + '0010' + Buffer.from('00000000016b3748').toString('hex') + '0006' + Buffer.from('0-1-42').toString('hex');
  assert.equal(encodeHeaders(h).chartlog!.toString('hex'), pinned);
  assert.deepEqual(decodeHeaders({ chartlog: Buffer.from(pinned, 'hex') }, 't/0@1'), h);
});

test('format 0 (five text headers, written before format 1) is still read: a pinned message', () => {
  // Exactly what chartlog before format 1 put on a table message.
  const legacy = received({ table: 'public.patients', fingerprint: '0123456789abcdef', position: '00000000016b3748.00000007', commitTsUs: '1152921504606846977', txId: '0-1-42' });
  assert.deepEqual(decodeHeaders(legacy, 't/0@1'), { table: 'public.patients', fingerprint: '0123456789abcdef', position: Position.of('00000000016b3748', 7), txId: '0-1-42', commitTsUs: 2n ** 60n + 1n });
  const { txId: _t, ...noTx } = legacy;
  assert.equal(decodeHeaders(noTx, 't/0@1').txId, null);
});

test('missing or malformed headers are decode errors that name the header and where, not values', () => {
  const good = received({ table: 'public.t', fingerprint: '0123456789abcdef', position: '01.00000000', commitTsUs: '5' });
  const { position: _p, ...noPosition } = good;
  assert.throws(() => decodeHeaders(noPosition, 'topic/3@17'), (e: unknown) => e instanceof ChartlogError && e.code === 'decode' && /topic\/3@17.*"position"/.test(e.message));
  assert.throws(() => decodeHeaders({ ...good, fingerprint: Buffer.from('XYZ') }, 'w'), (e: unknown) => e instanceof ChartlogError && e.code === 'decode');
  assert.throws(() => decodeHeaders({ ...good, commitTsUs: Buffer.from('-3') }, 'w'), (e: unknown) => e instanceof ChartlogError && e.code === 'decode');
  assert.throws(() => decodeHeaders(undefined, 'w'), ChartlogError);
  const meta = encodeHeaders({ table: 'public.t', fingerprint: '0123456789abcdef', position: Position.of('01', 0), txId: 'x', commitTsUs: 5n }).chartlog!;
  const isDecode = (pattern: RegExp) => (e: unknown) => e instanceof ChartlogError && e.code === 'decode' && pattern.test(e.message);
  assert.throws(() => decodeHeaders({ chartlog: Buffer.concat([Buffer.from([2]), meta.subarray(1)]) }, 'topic/3@17'), isDecode(/topic\/3@17.*format 2/));
  assert.throws(() => decodeHeaders({ chartlog: meta.subarray(0, meta.length - 1) }, 'w'), isDecode(/truncated/));
  assert.throws(() => decodeHeaders({ chartlog: meta.subarray(0, 10) }, 'w'), isDecode(/truncated/));
  assert.throws(() => decodeHeaders({ chartlog: Buffer.concat([meta, Buffer.from([0])]) }, 'w'), isDecode(/after its fields/));
  const badCommit = Buffer.from(meta);
  badCommit.write('Z', meta.indexOf(Buffer.from('01', 'latin1'), 22), 'latin1');
  assert.throws(() => decodeHeaders({ chartlog: badCommit }, 'w'), isDecode(/position/));
});

test('transaction records carry Debezium-style counts and round-trip', () => {
  const r = { pos: '0000000000000009.ffffffff', previous: '0000000000000008.ffffffff', txId: 'tx9', commitTsUs: 1_795_000_000_000_000, tables: { 'public.patients': 2, 'public.encounters': 1 } };
  const end = encodeTransactionMessage('END', r);
  const json = JSON.parse(end.toString()) as { event_count: number; data_collections: unknown[] };
  assert.equal(json.event_count, 3);
  assert.deepEqual(json.data_collections, [
    { data_collection: 'public.encounters', event_count: 1 },
    { data_collection: 'public.patients', event_count: 2 },
  ]);
  assert.deepEqual(decodeTransactionMessage(end, 'w'), { status: 'END', record: r });
  assert.deepEqual(decodeTransactionMessage(encodeTransactionMessage('BEGIN', r), 'w'), { status: 'BEGIN', record: { ...r, tables: {} } });
  assert.throws(() => decodeTransactionMessage(Buffer.from('{"status":"END"}'), 'w'), ChartlogError);
  assert.throws(() => decodeTransactionMessage(Buffer.from('not json'), 'w'), ChartlogError);
  assert.throws(() => decodeTransactionMessage(null, 'w'), ChartlogError);
});

test('the gzip codec of the Kafka clients deflates at level 1 (cheaper, nearly the same ratio) and reads what it wrote', async () => {
  const data = Buffer.from(Array.from({ length: 2000 }, (_, i) => `row ${i} of public.patients; `).join(''));
  const codec = (kafkajs.CompressionCodecs[CompressionTypes.GZIP] as () => { compress: (e: { buffer: Buffer }) => Promise<Buffer>; decompress: (b: Buffer) => Promise<Buffer> })();
  const packed = await codec.compress({ buffer: data });
  assert.deepEqual(packed, gzipSync(data, { level: 1 }));
  assert.notDeepEqual(packed, gzipSync(data), "not kafkajs's default level");
  assert.deepEqual(await codec.decompress(packed), data);
});

test('the gzip codec sizes its one output buffer from the data, and a wrong hint still reads right: incompressible data, a stream of two members, an empty batch', async () => {
  const codec = (kafkajs.CompressionCodecs[CompressionTypes.GZIP] as () => { compress: (e: { buffer: Buffer }) => Promise<Buffer>; decompress: (b: Buffer) => Promise<Buffer> })();
  // Sealed values barely compress: stored blocks make gzip's output larger than its input.
  const random = randomBytes(1 << 20);
  const packed = await codec.compress({ buffer: random });
  assert.ok(packed.length > random.length && packed.length <= deflateBound(random.length), `${packed.length} within the bound`);
  assert.deepEqual(await codec.decompress(packed), random);
  assert.equal(gzipInflatedSize(packed), random.length + 64);
  // Another producer's gzip of two members: the trailer tells only the last one's size.
  const first = Buffer.from('first member '.repeat(5000));
  const two = Buffer.concat([gzipSync(first), gzipSync(Buffer.from('second'))]);
  assert.equal(gzipInflatedSize(two), 6 + 64);
  assert.deepEqual(await codec.decompress(two), Buffer.concat([first, Buffer.from('second')]));
  assert.deepEqual(await codec.decompress(await codec.compress({ buffer: Buffer.alloc(0) })), Buffer.alloc(0));
  assert.equal(zlibChunkSize(2 ** 32), 16 * 1024 * 1024);
  assert.equal(zlibChunkSize(3), 64);
});
