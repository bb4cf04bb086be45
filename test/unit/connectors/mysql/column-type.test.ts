import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { columnTypeOf, fractionDigits, parseValueList } from '../../../../connectors/mysql/column-type.js';

describe('MySQL column types', () => {
  it('maps COLUMN_TYPE to the value model', () => {
    assert.deepEqual(columnTypeOf('tinyint(4)'), { kind: 'int', bits: 8, unsigned: false });
    assert.deepEqual(columnTypeOf('bigint(20) unsigned'), { kind: 'int', bits: 64, unsigned: true });
    assert.deepEqual(columnTypeOf('mediumint unsigned zerofill'), { kind: 'int', bits: 24, unsigned: true });
    assert.deepEqual(columnTypeOf('decimal(65,30)'), { kind: 'decimal', precision: 65, scale: 30 });
    assert.deepEqual(columnTypeOf('float'), { kind: 'float', bits: 32 });
    assert.deepEqual(columnTypeOf('double'), { kind: 'float', bits: 64 });
    assert.deepEqual(columnTypeOf('datetime(6)'), { kind: 'timestamp' });
    assert.deepEqual(columnTypeOf('timestamp(3)'), { kind: 'timestamptz' });
    assert.deepEqual(columnTypeOf('year(4)'), { kind: 'year' });
    assert.deepEqual(columnTypeOf('varchar(50)'), { kind: 'string', length: 50 });
    assert.deepEqual(columnTypeOf('longtext'), { kind: 'string' });
    assert.deepEqual(columnTypeOf('longtext', true), { kind: 'json' });
    assert.deepEqual(columnTypeOf('json'), { kind: 'json' });
    assert.deepEqual(columnTypeOf('binary(16)'), { kind: 'bytes', length: 16 });
    assert.deepEqual(columnTypeOf('mediumblob'), { kind: 'bytes' });
    assert.deepEqual(columnTypeOf('bit(10)'), { kind: 'bit', length: 10 });
    assert.deepEqual(columnTypeOf('uuid'), { kind: 'uuid' });
    assert.deepEqual(columnTypeOf('inet6'), { kind: 'text' });
    assert.deepEqual(columnTypeOf("set('a','b')"), { kind: 'set', values: ['a', 'b'] });
  });

  it('reads ENUM/SET labels with commas, doubled and escaped quotes and backslashes', () => {
    assert.deepEqual(parseValueList("enum('a,b','it''s','x','back\\\\slash','q\\'t','')"), ['a,b', "it's", 'x', 'back\\slash', "q't", '']);
    assert.deepEqual(columnTypeOf("enum('a,b','c')").values, ['a,b', 'c']);
  });

  it('knows the fraction digits of temporal types', () => {
    assert.equal(fractionDigits('datetime(6)'), 6);
    assert.equal(fractionDigits('time(3)'), 3);
    assert.equal(fractionDigits('timestamp'), 0);
    assert.equal(fractionDigits('date'), 0);
  });
});
