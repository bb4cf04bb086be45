import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsingCanonicalForm } from '../../../src/codec/parsing-canonical-form.js';
import { fingerprintBytesLE, fingerprintHex, rabinFingerprint64 } from '../../../src/codec/rabin-fingerprint.js';

const signed = (n: bigint): bigint => BigInt.asIntN(64, n);

test('CRC-64-AVRO matches the Avro project published vectors (schema-tests.txt)', () => {
  assert.equal(signed(rabinFingerprint64('"null"')), 7195948357588979594n);
  assert.equal(signed(rabinFingerprint64('"boolean"')), -6970731678124411036n);
  assert.equal(signed(rabinFingerprint64('"int"')), 8247732601305521295n);
  assert.equal(signed(rabinFingerprint64('{"name":"foo","type":"fixed","size":15}')), 1756455273707447556n);
  assert.equal(
    signed(rabinFingerprint64('{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}')),
    7843277075252814651n,
  );
});

test('fingerprint forms: 16 hex digits, 8 bytes little-endian', () => {
  const fp = rabinFingerprint64('"null"');
  assert.equal(fingerprintHex(fp), '63dd24e7cc258f8a');
  assert.deepEqual([...fingerprintBytesLE(fp)], [0x8a, 0x8f, 0x25, 0xcc, 0xe7, 0x24, 0xdd, 0x63]);
});

test('Parsing Canonical Form: primitives, full names, stripped attributes, key order, named references', () => {
  assert.equal(parsingCanonicalForm({ type: 'null' }), '"null"');
  assert.equal(parsingCanonicalForm({ type: 'long', logicalType: 'timestamp-micros' }), '"long"');
  assert.equal(
    parsingCanonicalForm({ fields: [{ type: 'boolean', name: 'f1', default: true, doc: 'x' }], name: 'foo', type: 'record', 'chartlog.table': {} }),
    '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
  );
  assert.equal(
    parsingCanonicalForm({
      type: 'record',
      name: 'R',
      namespace: 'a.b',
      fields: [
        { name: 'x', type: { type: 'enum', name: 'E', symbols: ['A'] } },
        { name: 'y', type: ['null', 'E', { type: 'enum', name: 'M', namespace: 'c', symbols: ['Z'] }, 'c.M'] },
        { name: 'z', type: { type: 'array', items: { type: 'bytes', logicalType: 'decimal', precision: 4, scale: 2 } } },
      ],
    }),
    '{"name":"a.b.R","type":"record","fields":[{"name":"x","type":{"name":"a.b.E","type":"enum","symbols":["A"]}},' +
      '{"name":"y","type":["null","a.b.E",{"name":"c.M","type":"enum","symbols":["Z"]},"c.M"]},' +
      '{"name":"z","type":{"type":"array","items":"bytes"}}]}',
  );
});
