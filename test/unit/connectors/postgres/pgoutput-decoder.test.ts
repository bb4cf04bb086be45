import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodePgoutput } from '../../../../connectors/postgres/pgoutput-decoder.js';
import { UNCHANGED } from '../../../../src/core/table-schema.js';
import { msg } from './pgoutput-messages.js';

describe('pgoutput decoder', () => {
  it('decodes begin and commit with LSNs as BigInt and times in Unix microseconds', () => {
    assert.deepStrictEqual(decodePgoutput(msg.begin(0x1_0000_0010n, 1_700_000_000_123_456n, 4_000_000_000)), {
      tag: 'begin', finalLsn: 0x1_0000_0010n, commitTimeUs: 1_700_000_000_123_456n, xid: 4_000_000_000,
    });
    assert.deepStrictEqual(decodePgoutput(msg.commit(0x10n, 0x48n, 1_700_000_000_000_001n)), {
      tag: 'commit', commitLsn: 0x10n, endLsn: 0x48n, commitTimeUs: 1_700_000_000_000_001n,
    });
  });

  it('decodes a relation with key flags, type OIDs and modifiers', () => {
    const m = decodePgoutput(msg.relation(16384, 'public', 'pätients', 'f', [[1, 'id', 20, -1], [0, 'név', 1700, 786438]]));
    assert.deepStrictEqual(m, {
      tag: 'relation', relationOid: 16384, schema: 'public', table: 'pätients', replicaIdentity: 'full',
      columns: [{ flags: 1, name: 'id', typeOid: 20, typeMod: -1 }, { flags: 0, name: 'név', typeOid: 1700, typeMod: 786438 }],
    });
  });

  it('keeps column values as the server text, NULL as null and unchanged TOAST as UNCHANGED', () => {
    const ins = decodePgoutput(msg.insert(1, ['12345678901234567890', null, '']));
    assert.deepStrictEqual(ins, { tag: 'insert', relationOid: 1, newTuple: ['12345678901234567890', null, ''] });
    const upd = decodePgoutput(msg.update(1, { kind: 'K', values: ['7', null] }, ['8', 'UNCHANGED-TOAST']));
    assert.deepStrictEqual(upd, { tag: 'update', relationOid: 1, key: ['7', null], old: null, newTuple: ['8', UNCHANGED] });
    const full = decodePgoutput(msg.update(1, { kind: 'O', values: ['7', 'x'] }, ['7', 'y']));
    assert.deepStrictEqual(full, { tag: 'update', relationOid: 1, key: null, old: ['7', 'x'], newTuple: ['7', 'y'] });
    const plain = decodePgoutput(msg.update(1, null, ['7', 'y']));
    assert.deepStrictEqual(plain, { tag: 'update', relationOid: 1, key: null, old: null, newTuple: ['7', 'y'] });
  });

  it('decodes UTF-8 text exactly from a Buffer or a plain Uint8Array view (a leading BOM is data)', () => {
    const values = ['\uFEFFbom', 'Ünïcødé 😀 ß', '', 'a\u0000b'];
    const expected = { tag: 'insert', relationOid: 1, newTuple: values };
    const bytes = msg.insert(1, values);
    assert.deepStrictEqual(decodePgoutput(bytes), expected);
    assert.deepStrictEqual(decodePgoutput(Buffer.from(bytes)), expected);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 3);
    assert.deepStrictEqual(decodePgoutput(padded.subarray(3)), expected);
  });

  it('decodes deletes and truncates', () => {
    assert.deepStrictEqual(decodePgoutput(msg.delete(3, 'K', ['9', null])), { tag: 'delete', relationOid: 3, key: ['9', null], old: null });
    assert.deepStrictEqual(decodePgoutput(msg.truncate([3, 4], 3)), { tag: 'truncate', relationOids: [3, 4], cascade: true, restartIdentity: true });
  });

  it('refuses truncated and unknown messages with a decode error', () => {
    const whole = msg.insert(1, ['abc']);
    assert.throws(() => decodePgoutput(whole.subarray(0, whole.length - 1)), /ends early/);
    assert.throws(() => decodePgoutput(Uint8Array.from([0x5a])), /unknown message tag/);
  });
});
