import assert from 'node:assert/strict';
import { test } from 'node:test';
import avro from 'avsc';
import fc from 'fast-check';
import { AvroReader, AvroWriter } from '../../../src/codec/avro-binary.js';
import { bigintTypeHook } from '../../../src/codec/bigint-long.js';
import { recordBody, singleObject, singleObjectHeader } from '../../../src/codec/single-object.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { qualifiedName, type TableSchema } from '../../../src/core/table-schema.js';
import { batchOf, type Engine } from '../../support/change-arbitraries.js';
import { codecRig } from '../../support/codec-support.js';

/**
 * The codec writes and reads Avro itself (src/codec/avro-binary.ts) for speed. These tests hold
 * it to avsc's bytes: every message must be exactly what avsc writes for the value avsc reads
 * from it, so archives written before and after read the same, with avsc or any Avro reader.
 */

const RUNS = 150;

function avscTypeOf(schema: unknown): avro.Type {
  return avro.Type.forSchema(schema as avro.Schema, { wrapUnions: true, typeHook: bigintTypeHook as never });
}

for (const engine of ['postgres', 'mysql'] as Engine[]) {
  test(`${engine}: every message is byte for byte what avsc writes (random PHI columns sealed)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        batchOf(engine, 'clinic').chain((b) => fc.tuple(fc.constant(b), fc.subarray(b.events[0]!.schema.columns.map((c) => c.name)))),
        async ([batch, phiColumns]) => {
          const table = qualifiedName(batch.events[0]!.schema);
          const rig = codecRig({ connector: engine, policy: { columns: { [table]: phiColumns }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
          const messages = await rig.codec.encodeBatch(batch);
          const reader = rig.reader();
          for (const m of messages) {
            assert.equal(await reader.avroPathOf(m.fingerprint), 'direct');
            const registered = await rig.codec['schemas'].resolve(BigInt(`0x${m.fingerprint}`));
            const type = avscTypeOf(registered.schema);
            const body = Buffer.from(recordBody(m.value));
            assert.deepEqual(type.toBuffer(type.fromBuffer(body)), body);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
}

test('longs and strings at their edges are what avsc writes, and read back', () => {
  const longs = [0n, 1n, -1n, 63n, -64n, 64n, 2n ** 30n - 1n, -(2n ** 30n), 2n ** 30n, 2n ** 31n, 2n ** 51n - 1n, -(2n ** 51n), 2n ** 51n, 2n ** 52n, 2n ** 53n, -(2n ** 53n) - 1n, 2n ** 62n, 2n ** 63n - 1n, -(2n ** 63n), 1_795_000_000_000_000n];
  const longType = avscTypeOf('long');
  const stringType = avro.Type.forSchema('string');
  const check = (v: bigint) => {
    const w = new AvroWriter(4);
    w.bigLong(v);
    const bytes = Buffer.from(w.result());
    assert.deepEqual(bytes, longType.toBuffer(v), `long ${v}`);
    assert.equal(new AvroReader(bytes, 0).bigLong(), v);
    if (v >= -(2n ** 52n) && v < 2n ** 52n) {
      const w2 = new AvroWriter(4);
      w2.long(Number(v));
      assert.deepEqual(Buffer.from(w2.result()), bytes, `long ${v} as a number`);
      assert.equal(new AvroReader(bytes, 0).long(), Number(v));
    }
  };
  for (const v of longs) check(v);
  fc.assert(fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), check), { numRuns: 2000 });
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 100 }), (s) => {
      const w = new AvroWriter(2);
      w.string(s);
      const bytes = Buffer.from(w.result());
      assert.deepEqual(bytes, stringType.toBuffer(s));
      assert.equal(new AvroReader(bytes, 0).string(), s);
    }),
    { numRuns: 2000 },
  );
});

const patients: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'ssn', sourceType: 'text', type: { kind: 'string' }, nullable: true },
    { name: 'born', sourceType: 'date', type: { kind: 'date' }, nullable: true },
  ],
};

async function oneMessage() {
  const rig = codecRig({ policy: { columns: { 'public.patients': ['ssn'] }, strict: [], publicColumns: {}, unclassified: 'clear' as const } });
  const commit = '0000000000000100';
  const [m] = await rig.codec.encodeBatch({
    source: 'clinic',
    txId: '1',
    position: Position.of(commit, COMMIT_SEQ),
    commitTsUs: 1_795_000_000_000_000n,
    snapshot: false,
    events: [{ op: 'u', schema: patients, before: { id: 1n }, after: { id: 1n, ssn: 'CANARY-SSN-111-11-1111', born: '1950-01-02' }, position: Position.of(commit, 0) }],
  });
  return { rig, message: m! };
}

test('a damaged message fails with an integrity error, whatever is cut or changed', async () => {
  const { rig, message } = await oneMessage();
  const reader = rig.reader();
  const opener = rig.reader({ withKeys: true });
  // A changed key id names a data key that does not exist: 'not_found', also clean.
  const rejectsCleanly = (e: unknown, codes = ['integrity']): boolean => {
    assert.ok(e instanceof ChartlogError, `a ChartlogError, not ${String(e)}`);
    assert.ok(codes.includes(e.code), e.code);
    assert.ok(!e.message.includes('CANARY'));
    return true;
  };
  for (let n = 10; n < message.value.length; n++) {
    await assert.rejects(reader.decode(message.value.subarray(0, n)), rejectsCleanly, `cut at ${n}`);
  }
  await assert.rejects(reader.decode(Buffer.concat([message.value, Buffer.of(0)])), rejectsCleanly, 'trailing byte');
  // Any single byte changed after the header: a clean error or an event, never a crash.
  for (let at = 10; at < message.value.length; at++) {
    for (const x of [0x01, 0x80, 0xff]) {
      const changed = Buffer.from(message.value);
      changed[at]! ^= x;
      for (const d of [reader, opener]) {
        try {
          await d.decode(changed, { open: d === opener });
        } catch (e) {
          rejectsCleanly(e, ['integrity', 'not_found']);
        }
      }
    }
  }
});

test('an event that does not fit its schema takes avsc\'s path, which names the field', async () => {
  const { rig } = await oneMessage();
  const commit = '0000000000000200';
  await assert.rejects(
    rig.codec.encodeBatch({
      source: 'clinic',
      txId: 7 as unknown as string,
      position: Position.of(commit, COMMIT_SEQ),
      commitTsUs: 1n,
      snapshot: false,
      events: [{ op: 'c', schema: patients, before: null, after: { id: 2n, ssn: 'CANARY-SSN-222-22-2222', born: null }, position: Position.of(commit, 0) }],
    }),
    (e: unknown) => e instanceof ChartlogError && e.code === 'internal' && /source\.txId/.test(e.message) && !e.message.includes('CANARY'),
  );
});

test('a stored schema that is not the one this version makes is read through avsc', async () => {
  const { rig, message } = await oneMessage();
  const registered = await rig.codec['schemas'].resolve(BigInt(`0x${message.fingerprint}`));
  // A third marker symbol: another fingerprint, the same bytes for every message written so far.
  const other = JSON.parse(JSON.stringify(registered.schema).replace('"symbols":["UNCHANGED","ABSENT"]', '"symbols":["UNCHANGED","ABSENT","OTHER"]')) as Record<string, unknown>;
  const otherRegistered = await rig.codec['schemas'].register(other);
  assert.notEqual(otherRegistered.fingerprintHex, message.fingerprint);
  const relabelled = singleObject(singleObjectHeader(otherRegistered.fingerprint), recordBody(message.value));
  const reader = rig.reader({ withKeys: true });
  assert.equal(await reader.avroPathOf(otherRegistered.fingerprintHex), 'avsc');
  const direct = await reader.decode(message.value, { open: true });
  const viaAvsc = await reader.decode(relabelled, { open: true });
  assert.deepStrictEqual(viaAvsc.event, direct.event);
  assert.equal(viaAvsc.event.after!.ssn, 'CANARY-SSN-111-11-1111');
});
