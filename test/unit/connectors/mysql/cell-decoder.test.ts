import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cellDecoder, formatInet6, padFraction } from '../../../../connectors/mysql/cell-decoder.js';
import { columnTypeOf } from '../../../../connectors/mysql/column-type.js';
import type { CellValue } from '../../../../src/core/table-schema.js';

const decode = (sourceType: string, raw: unknown, json = false): CellValue =>
  cellDecoder({ name: 'c', sourceType, type: columnTypeOf(sourceType, json), nullable: true })(raw);

describe('cell decoding (raw zongji / mysql2 values → value model)', () => {
  it('64-bit integers become exact bigints, whether number or string', () => {
    assert.equal(decode('bigint(20)', 42), 42n);
    assert.equal(decode('bigint(20) unsigned', '18446744073709551615'), 18446744073709551615n);
    assert.equal(decode('bigint(20)', '-9223372036854775808'), -9223372036854775808n);
    assert.equal(decode('int(11)', -5), -5);
  });

  it('repairs zongji\'s YEAR 0000 → 1900 and ENUM \'\' → undefined', () => {
    assert.equal(decode('year(4)', 1900), 0);
    assert.equal(decode('year(4)', 0), 0);
    assert.equal(decode('year(4)', 1901), 1901);
    assert.equal(decode("enum('a','b')", undefined), '');
    assert.equal(decode("enum('a','b')", null), null);
  });

  it('formats MariaDB UUID / INET from the binlog\'s bytes as the server prints them', () => {
    assert.equal(decode('uuid', Buffer.from('123e4567e89b12d3a456426614174000', 'hex')), '123e4567-e89b-12d3-a456-426614174000');
    assert.equal(decode('uuid', '123E4567-E89B-12D3-A456-426614174000'), '123e4567-e89b-12d3-a456-426614174000');
    assert.equal(decode('inet4', Buffer.from([10, 0, 0, 1])), '10.0.0.1');
    assert.equal(formatInet6(Buffer.from('20010db8000000000000000000000001', 'hex')), '2001:db8::1');
    assert.equal(formatInet6(Buffer.from('00000000000000000000ffffc0000201', 'hex')), '::ffff:192.0.2.1');
    assert.equal(formatInet6(Buffer.alloc(16)), '::');
    assert.equal(formatInet6(Buffer.from('00010002000300040005000600070008', 'hex')), '1:2:3:4:5:6:7:8');
  });

  it('BIT becomes its digits, exactly as wide as declared', () => {
    assert.equal(decode('bit(10)', Buffer.from([0x02, 0xaa])), '1010101010');
    assert.equal(decode('bit(1)', Buffer.from([1])), '1');
    assert.equal(decode('bit(64)', Buffer.from('8000000000000001', 'hex')), `1${'0'.repeat(62)}1`);
  });

  it('temporal values carry exactly the declared fraction digits; TIMESTAMP is marked UTC', () => {
    assert.equal(decode('time(6)', '-838:59:59'), '-838:59:59.000000');
    assert.equal(decode('datetime(6)', '2024-01-01 00:00:00'), '2024-01-01 00:00:00.000000');
    assert.equal(decode('datetime(3)', '2024-01-01 00:00:00.5'), '2024-01-01 00:00:00.500');
    assert.equal(decode('datetime', '0000-00-00 00:00:00'), '0000-00-00 00:00:00');
    assert.equal(decode('timestamp(6)', '2038-01-19 03:14:07.999999'), '2038-01-19 03:14:07.999999+00');
    assert.equal(decode('date', '0000-00-00'), '0000-00-00');
    assert.equal(padFraction('12:00:00.123456', 0), '12:00:00');
  });

  it('SET becomes its members; bytes are copies; NULL stays null', () => {
    assert.deepEqual(decode("set('p','q''r','s')", "q'r,s"), ["q'r", 's']);
    assert.deepEqual(decode("set('p')", ''), []);
    const packet = Buffer.from([1, 2, 3, 4]);
    const v = decode('varbinary(4)', packet.subarray(1, 3)) as Uint8Array;
    assert.deepEqual(v, new Uint8Array([2, 3]));
    assert.equal(Object.getPrototypeOf(v), Uint8Array.prototype);
    packet[1] = 9;
    assert.equal(v[0], 2, 'not a view of the packet');
    assert.equal(decode('decimal(65,30)', null), null);
    assert.equal(decode('longtext', '{"n": 12345678901234567890}', true), '{"n": 12345678901234567890}');
  });

  it('refuses a value of a type it cannot read without printing it', () => {
    assert.throws(() => decode('bigint(20)', { secret: 'CANARY-SSN-123-45-6789' }), (err: Error) => {
      assert.doesNotMatch(err.message, /CANARY/);
      return /integer value from a driver value of type object/.test(err.message);
    });
  });
});
