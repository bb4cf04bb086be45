import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ChartlogError } from '../../../src/core/errors.js';
import {
  compareKeys, decodeCursor, encodeCursor, keyProblem, prefixProblem, TEMP_MARKER, validateKey, validatePrefix, validateRange,
} from '../../../src/storage/object-key.js';

describe('object keys', () => {
  it('accepts relative slash-separated keys, unicode and spaces included', () => {
    for (const key of [
      'a', 'clinic/segments/public.patients/2026-11-24/05/0000000001A2B3C4-0000000001A2B3D0.avro', 'Zoë Ångström/über café 🩺.avro',
      'a/.hidden', 'a/..b', 'a/b..', '.x', '-', 'x'.repeat(255), `${'y'.repeat(200)}/${'z'.repeat(200)}`,
    ]) {
      assert.equal(keyProblem(key), undefined, key);
      assert.equal(validateKey(key), key);
    }
  });

  it('rejects keys that could escape the root, name a folder or hide as a temporary file', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['/etc/passwd', /starts with '\/'/],
      ['a/', /ends with '\/'/],
      ['a//b', /empty segment/],
      ['..', /'\.\.' segment/],
      ['a/../../etc', /'\.\.' segment/],
      ['./a', /'\.' segment/],
      ['a/./b', /'\.' segment/],
      ['a\u0000b', /control character/],
      ['a\nb', /control character/],
      ['a\u007fb', /control character/],
      ['a\uD83E.avro', /lone surrogate/],
      ['a/\uDDEA', /lone surrogate/],
      [`a/${TEMP_MARKER}123`, /reserved for in-flight writes/],
      ['x'.repeat(256), /segment is longer than 255 bytes/],
      ['é'.repeat(128), /segment is longer than 255 bytes/], // 256 UTF-8 bytes, 128 UTF-16 units
      [Array.from({ length: 5 }, () => 'x'.repeat(250)).join('/'), /longer than 1024 bytes/],
    ];
    for (const [key, why] of cases) {
      assert.match(keyProblem(key) ?? '', why, JSON.stringify(key));
      assert.throws(
        () => validateKey(key),
        (err: unknown) => err instanceof ChartlogError && err.code === 'usage' && err.message.includes('invalid object key') && why.test(err.message) && err.hint !== undefined,
      );
    }
  });

  it('accepts prefixes that end anywhere in a key, and rejects the same escapes as keys', () => {
    for (const p of ['', 'a', 'a/', 'a/b', 'clinic/segments/public.pa', 'a/.', 'a/..', 'a/.chartlog']) {
      assert.equal(prefixProblem(p), undefined, p);
      assert.equal(validatePrefix(p), p);
    }
    for (const p of ['/a', 'a//', 'a/../', '../', 'a/./b', `${TEMP_MARKER}x/`, 'a\u0001']) {
      assert.notEqual(prefixProblem(p), undefined, p);
      assert.throws(() => validatePrefix(p), (err: unknown) => err instanceof ChartlogError && err.code === 'usage');
    }
  });

  it('orders keys by UTF-8 bytes, as S3 lists them, not by UTF-16 code units', () => {
    // U+FB01 is one UTF-16 unit above the surrogates of U+1F9EA, but its UTF-8 form sorts first.
    assert.ok('\u{1F9EA}' < '\uFB01', 'JavaScript order');
    assert.ok(compareKeys('\uFB01', '\u{1F9EA}') < 0, 'byte order');
    assert.ok(compareKeys('a-c', 'a/b') < 0);
    assert.ok(compareKeys('a/b', 'a0') < 0);
    assert.ok(compareKeys('Z', 'a') < 0);
    assert.equal(compareKeys('é', 'é'), 0);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        const c = compareKeys(a, b);
        assert.equal(Math.sign(c), Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
        assert.equal(Math.sign(compareKeys(b, a)), -Math.sign(c) || 0);
      }),
    );
  });

  it('round-trips cursors and refuses tampered ones', () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-zA-Z0-9 é🩺._-]{1,20}$/u), { minLength: 1, maxLength: 5 }), (segments) => {
        const key = segments.join('/');
        fc.pre(keyProblem(key) === undefined);
        assert.equal(decodeCursor(encodeCursor(key)), key);
      }),
    );
    for (const bad of ['', '!!!', encodeCursor('a') + '=', Buffer.from('/abs').toString('base64url'), Buffer.from('a//b').toString('base64url')]) {
      assert.throws(() => decodeCursor(bad), (err: unknown) => err instanceof ChartlogError && err.code === 'usage' && /cursor/.test(err.message), bad);
    }
  });

  it('checks byte ranges', () => {
    validateRange(0, 0);
    validateRange(3, 10);
    for (const [s, e] of [[-1, 3], [5, 4], [0.5, 2], [0, Number.NaN], [0, Infinity]]) {
      assert.throws(() => validateRange(s!, e!), (err: unknown) => err instanceof ChartlogError && err.code === 'usage', `${s}, ${e}`);
    }
  });
});
