import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { Position } from '../../../src/core/position.js';
import { freezeTableSchema, type ColumnType, type Row, type TableSchema } from '../../../src/core/table-schema.js';
import { SINGLE_OBJECT_HEADER_BYTES } from '../../../src/codec/single-object.js';
import { CopyBlockRenderer, type CopyTableSpec } from '../../../src/restore/targets/copy-block-renderer.js';
import { CopyTextBuffer, writeCopyRow } from '../../../src/restore/targets/copy-text-buffer.js';
import { keyOf } from '../../../src/archive/table-merge.js';
import { BlockOrdinals } from '../../../src/phi/block-seal.js';
import { codecRig } from '../../support/codec-support.js';

/**
 * The COPY text renderer's direct path (block-sealed base rows written straight from the block
 * and the opened block seal) against the row path it stands in for: the message decoder's opened
 * rows written by writeCopyRow must be the very same bytes; held keys come back as those rows;
 * a reference moved to another row of its block is refused with 'integrity', no value in the error.
 */

const c = (name: string, sourceType: string, type: ColumnType) => ({ name, sourceType, type, nullable: name !== 'id' });
const patients: TableSchema = freezeTableSchema({
  schema: 'public',
  table: 'patients',
  columns: [
    c('id', 'bigint', { kind: 'int', bits: 64 }),
    c('mrn', 'character varying(20)', { kind: 'string', length: 20 }),
    c('full_name', 'text', { kind: 'string' }),
    c('ssn', 'character(11)', { kind: 'string', length: 11 }),
    c('birth_date', 'date', { kind: 'date' }),
    c('address', 'text', { kind: 'string' }),
    c('admitted_at', 'timestamp with time zone', { kind: 'timestamptz' }),
    c('balance', 'numeric(12,2)', { kind: 'decimal', precision: 12, scale: 2 }),
    c('active', 'boolean', { kind: 'boolean' }),
    c('visits', 'integer', { kind: 'int', bits: 32 }),
    c('photo', 'bytea', { kind: 'bytes' }),
  ],
  primaryKey: ['id'],
});
const PHI = ['full_name', 'ssn', 'birth_date', 'address'];

function rowOf(i: number): Row {
  const odd = i % 2 === 1;
  return {
    id: BigInt(i + 1),
    mrn: i % 7 === 0 ? `MRN\t${i}\\x` : `MRN${i}`,
    full_name: i % 5 === 0 ? `CANARY Zoë ${i} 患者\n` : `CANARY Name ${i}`,
    ssn: i % 11 === 0 ? null : `CANARY-${String(i).padStart(4, '0')}`,
    birth_date: odd ? '1980-02-29' : i % 13 === 0 ? 'infinity' : null,
    address: i % 3 === 0 ? null : `${i} Canary Street\r\\`,
    admitted_at: odd ? '2026-03-01 00:00:00.000001+00' : null,
    balance: odd ? '-12.50' : null,
    active: odd,
    visits: i,
    photo: i % 4 === 0 ? new Uint8Array([0, 9, 10, 92, 255]) : null,
  };
}

async function archive(n: number) {
  const rig = codecRig({ policy: { columns: { 'public.patients': PHI }, strict: [], publicColumns: { 'public.patients': patients.columns.map((x) => x.name).filter((x) => !PHI.includes(x)) }, unclassified: 'clear' as const } });
  const commit = '00000000000000ff';
  const batch: ChangeBatch = {
    source: 'clinic',
    txId: null,
    position: Position.of(commit),
    commitTsUs: 1n,
    snapshot: true,
    events: Array.from({ length: n }, (_x, i) => ({ op: 'r' as const, schema: patients, before: null, after: rowOf(i), position: Position.of(commit, i) })),
  };
  const messages = (await rig.codec.encodeBaseSnapshot(batch, new BlockOrdinals())).map((m) => m.value);
  const registered = await rig.codec.registeredOf(patients);
  const data = Buffer.concat(messages.map((m) => m.subarray(SINGLE_OBJECT_HEADER_BYTES)));
  return { rig, messages, registered, data };
}

const spec = (held: string[] = []): CopyTableSpec => ({ source: 'clinic', open: true, columns: patients.columns, sealed: patients.columns.map(() => false), engine: 'postgres', held: { keys: held, bits: null }, name: 'public.patients' });

async function expected(a: Awaited<ReturnType<typeof archive>>, held: ReadonlySet<string>): Promise<{ text: Buffer; rows: Row[] }> {
  const decoded = await a.rig.reader({ withKeys: true }).decodeMany(a.messages, { open: true });
  const out = new CopyTextBuffer(1024);
  const rows: Row[] = [];
  for (const d of decoded) {
    const row = d.event.after!;
    if (held.has(keyOf(patients, row))) rows.push(row);
    else writeCopyRow(out, row, patients.columns, patients.columns.map(() => false), 'postgres');
  }
  return { text: Buffer.from(out.take()), rows };
}

function renderer(a: Awaited<ReturnType<typeof archive>>, held: string[] = []): CopyBlockRenderer {
  const r = new CopyBlockRenderer(spec(held), { get: (id) => a.rig.keys.get(id) });
  r.addVersion(a.registered.fingerprintHex, a.registered);
  return r;
}

test('block-sealed base rows render to the bytes the row path writes; held keys come back as the opened rows', async () => {
  const a = await archive(300);
  for (const held of [[], [0, 149, 299].map((i) => keyOf(patients, rowOf(i)))]) {
    const want = await expected(a, new Set(held));
    const got = await renderer(a, held).render(a.registered.fingerprintHex, a.messages.length, a.data);
    assert.equal(got.rows, 300 - held.length);
    assert.ok(Buffer.from(got.bytes).equals(want.text), 'the same COPY text');
    assert.deepStrictEqual(got.held, want.rows);
  }
});

test('a planted difference is caught: one byte of the text', async () => {
  const a = await archive(20);
  const want = await expected(a, new Set());
  const got = Buffer.from((await renderer(a).render(a.registered.fingerprintHex, a.messages.length, a.data)).bytes);
  assert.ok(got.equals(want.text));
  const at = got.indexOf('CANARY-0002');
  got[at] = got[at]! ^ 1;
  assert.ok(!got.equals(want.text), 'a changed byte is seen');
});

test("a reference moved to another row of its block is refused ('integrity'), naming the column and no value", async () => {
  const a = await archive(20);
  // Row 5's first reference made to name row 6: 0x15, the seal's 8-byte nonce prefix, then the row index.
  const message = a.messages[5]!;
  const body = Buffer.from(message.subarray(SINGLE_OBJECT_HEADER_BYTES));
  const at = body.indexOf(0x15);
  assert.ok(at > 0 && body[at + 9] === 5, 'the reference found');
  const data = Buffer.from(a.data);
  const offset = a.messages.slice(0, 5).reduce((n, m) => n + m.length - SINGLE_OBJECT_HEADER_BYTES, 0);
  data[offset + at + 9] = 6;
  await assert.rejects(renderer(a).render(a.registered.fingerprintHex, a.messages.length, data), (e: unknown) => {
    assert.ok(e instanceof ChartlogError, String(e));
    assert.equal(e.code, 'integrity');
    assert.match(e.message, /public\.patients\.\w+: a reference names another row/);
    assert.ok(!e.message.includes('CANARY'), 'no value in the error');
    return true;
  });
});
