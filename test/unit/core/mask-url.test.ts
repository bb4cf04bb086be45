import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { maskUrl } from '../../../src/core/mask-url.js';

test('a password is masked whatever it holds', () => {
  const cases: [string, string][] = [
    ['postgres://cdc:s3cret@127.0.0.1:5499/app', 'postgres://cdc:****@127.0.0.1:5499/app'],
    ['postgres://cdc:p@ss@db:5432/app', 'postgres://cdc:****@db:5432/app'],
    ['mysql://cdc:a/b:c@db/clinic', 'mysql://cdc:****@db/clinic'],
    ['mysql://cdc:a#b?c@db/clinic?ssl=true', 'mysql://cdc:****@db/clinic?ssl=true'],
    ['postgres://cdc:@db/app', 'postgres://cdc:****@db/app'],
  ];
  for (const [url, masked] of cases) assert.equal(maskUrl(url), masked);
});

test('URLs without a password are unchanged', () => {
  for (const url of ['mysql://root@h/db', 'postgres://h:5432/app', 'file:///var/lib/chartlog', 's3://bucket/prefix', 'not a url']) assert.equal(maskUrl(url), url);
});

test('property: no password survives masking', () => {
  const part = fc.string({ minLength: 1, maxLength: 20, unit: fc.constantFrom(...'abcXYZ019@/:#?%!'.split('')) });
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z]{1,8}$/), part, fc.stringMatching(/^[a-z0-9.]{1,12}(:[0-9]{1,5})?$/), (user, password, host) => {
      const secret = `SECRET${password}`;
      const masked = maskUrl(`postgres://${user}:${secret}@${host}/db`);
      assert.ok(!masked.includes(secret), masked);
      assert.ok(masked.includes(host));
    }),
  );
});
