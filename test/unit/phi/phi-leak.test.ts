import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { ChangeBatch } from '../../../src/core/change-event.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { COMMIT_SEQ, Position } from '../../../src/core/position.js';
import { UNCHANGED, type TableSchema } from '../../../src/core/table-schema.js';
import { codecRig } from '../../support/codec-support.js';
import { describeHits, scanForCanaries } from '../../support/leak-scan.js';

/**
 * Synthetic patients carry canary values in every PHI column. Encoded messages, every stored
 * object (schemas, wrapped keys) and every log line of the code path (pino, captured through
 * a destination stream at trace level) must hold none of their bytes — in UTF-8, UTF-16, hex or
 * base64 — while the opened messages give every canary back (so the test would see a leak).
 */

const patients: TableSchema = {
  schema: 'public',
  table: 'patients',
  primaryKey: ['id'],
  columns: [
    { name: 'id', sourceType: 'bigint', type: { kind: 'int', bits: 64 }, nullable: false },
    { name: 'full_name', sourceType: 'text', type: { kind: 'string' }, nullable: false },
    { name: 'ssn', sourceType: 'character(11)', type: { kind: 'string', length: 11 }, nullable: true },
    { name: 'notes', sourceType: 'jsonb', type: { kind: 'json' }, nullable: true },
    { name: 'photo', sourceType: 'bytea', type: { kind: 'bytes' }, nullable: true },
    { name: 'aliases', sourceType: 'text[]', type: { kind: 'array', element: { kind: 'string' } }, nullable: true },
    { name: 'ward', sourceType: 'text', type: { kind: 'string' }, nullable: true },
  ],
};

const PHI = ['full_name', 'ssn', 'notes', 'photo', 'aliases'];

function canaries(i: number) {
  return {
    name: `CANARY-NAME-Ada-${i}-Lovelace`,
    ssn: `CANARY-SSN-${String(i).padStart(3, '0')}-45-6789`,
    note: `CANARY-NOTE-diagnosis-${i}`,
    photo: `CANARY-PHOTO-${i}`,
    alias: `CANARY-ALIAS-${i}`,
  };
}

function batches(): ChangeBatch[] {
  const out: ChangeBatch[] = [];
  for (let i = 0; i < 40; i++) {
    const c = canaries(i);
    const commit = (0x1000 + i).toString(16).padStart(16, '0');
    const row = {
      id: BigInt(i),
      full_name: c.name,
      ssn: c.ssn,
      notes: `{"note": "${c.note}", "big": 12345678901234567890}`,
      photo: Buffer.from(c.photo),
      aliases: [c.alias, null],
      ward: `ward-${i % 3}`,
    };
    out.push({
      source: 'clinic',
      txId: String(i),
      position: Position.of(commit, COMMIT_SEQ),
      commitTsUs: 1_700_000_000_000_000n + BigInt(i),
      snapshot: i < 5,
      events: [
        { op: i < 5 ? 'r' : 'c', schema: patients, before: null, after: row, position: Position.of(commit, 0) },
        { op: 'u', schema: patients, before: row, after: { ...row, notes: UNCHANGED, ward: 'icu' }, position: Position.of(commit, 1) },
        { op: 'd', schema: patients, before: { id: BigInt(i) }, after: null, position: Position.of(commit, 2) },
      ],
    });
  }
  return out;
}

function forms(text: string): Buffer[] {
  const utf8 = Buffer.from(text);
  return [utf8, Buffer.from(text, 'utf16le'), Buffer.from(utf8.toString('hex')), Buffer.from(utf8.toString('base64').slice(0, 16))];
}

function assertNoCanary(haystack: Uint8Array, what: string): void {
  const buf = Buffer.from(haystack);
  assert.equal(buf.indexOf('CANARY'), -1, `${what} holds a canary`);
  for (let i = 0; i < 40; i++) {
    for (const v of Object.values(canaries(i))) {
      for (const f of forms(v)) assert.equal(buf.indexOf(f), -1, `${what} holds canary ${i}`);
    }
  }
}

test('no canary byte reaches an encoded message, a stored object or a log line', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter((l) => l !== ''));
      done();
    },
  });
  const log = createLogger({ level: 'trace', format: 'json', destination: sink });
  const rig = codecRig({ log, policy: { columns: { 'public.patients': PHI }, strict: ['public.patients'], publicColumns: { 'public.patients': ['id', 'ward'] } } });

  const messages: Uint8Array[] = [];
  for (const b of batches()) {
    const encoded = await rig.codec.encodeBatch(b);
    log.info({ table: 'public.patients', events: b.events, count: encoded.length }, 'encoded batch');
    for (const m of encoded) {
      messages.push(m.value);
      if (m.key) assertNoCanary(m.key, 'a partition key');
    }
  }
  assert.equal(messages.length, 120);
  for (const [i, m] of messages.entries()) assertNoCanary(m, `message ${i}`);
  for (const [key, o] of rig.store.objects) assertNoCanary(o.body, `stored object ${key}`);
  // The same objects decoded (JSON unescaped, containers inflated), where a byte search is blind.
  const decodedLeaks = scanForCanaries([...rig.store.objects].map(([key, o]) => ({ key, bytes: o.body })), ['CANARY']);
  assert.deepEqual(decodedLeaks, [], describeHits(decodedLeaks));

  // Errors on the same path: a value of the wrong JS type, logged as pino logs errors.
  const bad: ChangeBatch = { ...batches()[0]!, events: [{ ...batches()[0]!.events[0]!, after: { ...batches()[0]!.events[0]!.after!, id: 'CANARY-SSN-000-45-6789' } }] };
  await assert.rejects(rig.codec.encodeBatch(bad), (e: ChartlogError) => {
    log.error({ err: e }, 'encode failed');
    assertNoCanary(Buffer.from(`${e.message} ${e.hint ?? ''} ${e.stack ?? ''}`), 'an error');
    return e instanceof ChartlogError;
  });

  sink.end();
  assert.ok(lines.length >= 3, 'the code path logged (schema stored, data key made, batches)');
  assert.ok(lines.some((l) => /new data key/.test(l)) && lines.some((l) => /stored new table schema/.test(l)));
  for (const [i, l] of lines.entries()) assertNoCanary(Buffer.from(l), `log line ${i}`);

  // Control: the canaries are really in there, sealed, and come back when opened.
  const opener = rig.reader({ withKeys: true });
  const first = await opener.decode(messages[0]!, { open: true });
  assert.equal(first.event.after!.ssn, canaries(0).ssn);
  assert.deepEqual(first.event.after!.aliases, [canaries(0).alias, null]);
  assert.deepEqual(Buffer.from(first.event.after!.photo as Uint8Array).toString(), canaries(0).photo);
});
