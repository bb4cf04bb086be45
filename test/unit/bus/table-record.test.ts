import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import type { BusMessage } from '../../../src/codec/bus-message.js';
import { encodeHeaders } from '../../../src/bus/kafka-topics.js';
import { BATCH_VERSION, decodeTableRecord, encodeTableRecord } from '../../../src/bus/table-record.js';

const CANARY = 'CANARY-ROW-VALUE-7f3a';
const event = (seq: number, fingerprint: string, key: string | null, value: string): BusMessage => ({
  table: 'sch\u00e9ma.patients',
  fingerprint,
  key: key === null ? null : Buffer.from(key),
  value: Buffer.from(value),
  position: Position.of('00000000016b3748', seq),
});

test('format 2 round-trips several events: keys or none, a schema change between them, commit time beyond 2^53, a txId or none', () => {
  const events = [event(0, '0123456789abcdef', 'k1', 'v-one'), event(1, '0123456789abcdef', null, ''), event(5, 'fedcba9876543210', 'k3', `${CANARY}-three`)];
  for (const txId of ['0-1-42', null]) {
    const { headers, value } = encodeTableRecord(events, txId, 2n ** 60n + 1n);
    assert.equal(headers.chartlog![0], BATCH_VERSION);
    const r = decodeTableRecord({ headers, key: null, value }, 't/0@1');
    assert.equal(r.table, 'sch\u00e9ma.patients');
    assert.equal(r.txId, txId);
    assert.equal(r.commitTsUs, 2n ** 60n + 1n);
    assert.deepEqual(
      r.events.map((e) => ({ position: e.position, fingerprint: e.fingerprint, key: e.key?.toString() ?? null, value: e.value.toString() })),
      events.map((m) => ({ position: m.position, fingerprint: m.fingerprint, key: m.key ? Buffer.from(m.key).toString() : null, value: Buffer.from(m.value).toString() })),
    );
  }
});

test('format 2 is pinned: these bytes are what a topic holds and what is read back', () => {
  const { headers, value } = encodeTableRecord([event(7, '0123456789abcdef', 'k', 'ab'), event(8, '0123456789abcdef', null, 'c')], '0-1-42', 1_795_000_000_123_456n);
  const text = (s: string) => Buffer.byteLength(s).toString(16).padStart(4, '0') + Buffer.from(s).toString('hex');
  const pinnedHeader = '02' + '0006608b01611240' + '01' + '00000002' + text('sch\u00e9ma.patients') + text('00000000016b3748') + text('0-1-42');
  const pinnedValue = '00000007' + '0123456789abcdef' + '00000001' + '6b' + '00000002' + '6162' + '00000008' + '0123456789abcdef' + 'ffffffff' + '00000001' + '63';
  assert.equal(headers.chartlog!.toString('hex'), pinnedHeader);
  assert.equal(value.toString('hex'), pinnedValue);
  const r = decodeTableRecord({ headers: { chartlog: Buffer.from(pinnedHeader, 'hex') }, key: null, value: Buffer.from(pinnedValue, 'hex') }, 't/0@1');
  assert.deepEqual(r.events.map((e) => [Position.format(e.position), e.fingerprint, e.key?.toString('hex') ?? null, e.value.toString('hex')]), [
    ['00000000016b3748.00000007', '0123456789abcdef', '6b', '6162'],
    ['00000000016b3748.00000008', '0123456789abcdef', null, '63'],
  ]);
});

test('formats 1 and 0 (one event per record, metadata in headers) are read as records of one event', () => {
  const h = { table: 'public.patients', fingerprint: '0123456789abcdef', position: Position.of('00000000016b3748', 7), txId: '0-1-42', commitTsUs: 1_795_000_000_123_456n };
  const one = decodeTableRecord({ headers: encodeHeaders(h), key: Buffer.from('k'), value: Buffer.from('v') }, 't/0@1');
  assert.deepEqual({ ...one, events: one.events.map((e) => ({ ...e, key: e.key?.toString(), value: e.value.toString() })) }, {
    table: 'public.patients', txId: '0-1-42', commitTsUs: h.commitTsUs,
    events: [{ position: h.position, fingerprint: h.fingerprint, key: 'k', value: 'v' }],
  });
  const legacy = Object.fromEntries(Object.entries({ table: 'public.patients', fingerprint: '0123456789abcdef', position: '00000000016b3748.00000007', commitTsUs: '1795000000123456' }).map(([k, v]) => [k, Buffer.from(v)]));
  const zero = decodeTableRecord({ headers: legacy, key: null, value: Buffer.from('v') }, 't/0@1');
  assert.equal(zero.txId, null);
  assert.deepEqual(zero.events.map((e) => Position.format(e.position)), ['00000000016b3748.00000007']);
  assert.throws(() => decodeTableRecord({ headers: encodeHeaders(h), key: null, value: null }, 't/0@1'), (e: unknown) => e instanceof ChartlogError && e.code === 'decode');
});

test('a malformed format 2 record is a decode error naming where and what, never a value', () => {
  const { headers, value } = encodeTableRecord([event(1, '0123456789abcdef', 'k', CANARY), event(2, '0123456789abcdef', 'k', CANARY)], 'x', 5n);
  const h = headers.chartlog!;
  const fails = (hd: Buffer, v: Buffer | null, pattern: RegExp) =>
    assert.throws(() => decodeTableRecord({ headers: { chartlog: hd }, key: null, value: v }, 'topic/3@17'), (e: unknown) => {
      assert.ok(e instanceof ChartlogError && e.code === 'decode', String(e));
      assert.match(e.message, /topic\/3@17/);
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes(CANARY) && !(e.hint ?? '').includes(CANARY), 'no value in the error');
      return true;
    });
  fails(h, value.subarray(0, value.length - 1), /truncated in event 1/);
  fails(h, value.subarray(0, 10), /truncated in event 0/);
  fails(h, Buffer.concat([value, Buffer.from([0])]), /after its events/);
  fails(h, null, /no value/);
  fails(h.subarray(0, 12), value, /truncated header/);
  fails(h.subarray(0, h.length - 1), value, /truncated header/);
  fails(Buffer.concat([h, Buffer.from([0])]), value, /after its header fields/);
  const flags = Buffer.from(h);
  flags[9] = 3;
  fails(flags, value, /unknown flags 3/);
  const none = Buffer.from(h);
  none.writeUInt32BE(0, 10);
  fails(none, Buffer.alloc(0), /counts no events/);
  const badCommit = Buffer.from(h);
  badCommit.write('Z', h.indexOf(Buffer.from('01', 'latin1'), 14), 'latin1');
  fails(badCommit, value, /position/);
  const newer = Buffer.from(h);
  newer[0] = 3;
  fails(newer, value, /format 3, this chartlog reads formats 0 to 2/);
  // Negative control: the unchanged record decodes.
  assert.equal(decodeTableRecord({ headers: { chartlog: h }, key: null, value }, 'w').events.length, 2);
});

test('a record of events from two tables or two transactions, or with a bad fingerprint, is refused when made', () => {
  const a = event(1, '0123456789abcdef', 'k', 'v');
  assert.throws(() => encodeTableRecord([a, { ...a, table: 'public.other' }], null, 1n), (e: unknown) => e instanceof ChartlogError && e.code === 'internal');
  assert.throws(() => encodeTableRecord([a, { ...a, position: Position.of('00000000016b3749', 2) }], null, 1n), ChartlogError);
  assert.throws(() => encodeTableRecord([{ ...a, fingerprint: '0123456789abcdeX' }], null, 1n), ChartlogError);
  assert.throws(() => encodeTableRecord([], null, 1n), ChartlogError);
});
