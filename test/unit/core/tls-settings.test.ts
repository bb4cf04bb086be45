import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { TlsPreference, type TlsSettings } from '../../../src/core/tls-settings.js';
import { clientConfig, serverHasNoTls as pgNoTls } from '../../../connectors/postgres/connection-settings.js';
import { connectionOptions, serverHasNoTls as mysqlNoTls } from '../../../connectors/mysql/connection-settings.js';

function capture() {
  const lines: { msg: string; source?: string; downgrade?: boolean }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as { msg: string });
      done();
    },
  });
  return { lines, log: createLogger({ format: 'json', destination }) };
}

const config = (tls: string, kafka = '') => `
sources:
  - { name: clinic, type: postgres, url: "postgres://cdc@127.0.0.1:5499/app"${tls} }
storage: { url: "file:///var/lib/chartlog" }
${kafka}
phi: { keyring: "file:///etc/chartlog/keyring.json" }
`;

test('source tls.mode defaults to prefer; disable, require, verify-full stay as written; Kafka keeps disable and has no prefer', () => {
  assert.deepEqual(parseConfig(config(''), 't.yaml', {}).sources[0]!.tls, { mode: 'prefer' });
  for (const mode of ['prefer', 'disable', 'require', 'verify-full']) {
    assert.equal(parseConfig(config(`, tls: { mode: ${mode} }`), 't.yaml', {}).sources[0]!.tls.mode, mode);
  }
  assert.equal(parseConfig(config(', tls: { ca: /etc/ca.pem }'), 't.yaml', {}).sources[0]!.tls.mode, 'prefer', 'a CA alone keeps the default mode');
  assert.throws(
    () => parseConfig(config(', tls: { mode: allow }'), 't.yaml', {}),
    (e) => e instanceof ChartlogError && e.exitCode === 2 && /sources\.0\.tls\.mode|sources\[0\]\.tls\.mode/.test(e.message),
  );
  const kafka = 'bus: { type: kafka, kafka: { brokers: ["127.0.0.1:9092"] } }';
  assert.equal(parseConfig(config('', kafka), 't.yaml', {}).bus.kafka!.tls.mode, 'disable');
  assert.throws(() => parseConfig(config('', 'bus: { type: kafka, kafka: { brokers: ["127.0.0.1:9092"], tls: { mode: prefer } } }'), 't.yaml', {}), ChartlogError);
});

test('the drivers get TLS as the attempt says: prefer and require check no certificate, verify-full does, disable never uses TLS', () => {
  const url = 'postgres://cdc@127.0.0.1:5499/app';
  const pg = (tls: TlsSettings, useTls?: boolean) => clientConfig(url, tls, 'chartlog:t', useTls).ssl;
  assert.deepEqual(pg({ mode: 'prefer' }), { rejectUnauthorized: false });
  assert.equal(pg({ mode: 'prefer' }, false), false, 'the plaintext attempt of prefer');
  assert.deepEqual(pg({ mode: 'require' }), { rejectUnauthorized: false });
  assert.deepEqual(pg({ mode: 'verify-full' }), { rejectUnauthorized: true });
  assert.equal(pg({ mode: 'disable' }), false);
  assert.equal(pg({ mode: 'disable' }, true), false, 'disable never uses TLS');
  const my = (tls: TlsSettings, useTls?: boolean) => connectionOptions('mysql://cdc@127.0.0.1:3306/', tls, useTls).ssl;
  assert.deepEqual(my({ mode: 'prefer' }), { rejectUnauthorized: false });
  assert.equal(my({ mode: 'prefer' }, false), undefined);
  assert.deepEqual(my({ mode: 'verify-full' }), { rejectUnauthorized: true });
  assert.equal(my({ mode: 'disable' }), undefined);
  // What each driver says when the server offers no TLS, and only that.
  assert.ok(pgNoTls(new Error('The server does not support SSL connections')));
  assert.ok(!pgNoTls(new Error('self-signed certificate')));
  assert.ok(mysqlNoTls(Object.assign(new Error('Server does not support secure connection'), { code: 'HANDSHAKE_NO_SSL_SUPPORT' })));
  assert.ok(!mysqlNoTls(Object.assign(new Error('x'), { code: 'HANDSHAKE_SSL_ERROR' })));
});

const NO_TLS = new Error('no tls offered');
const noTls = (e: unknown) => e === NO_TLS;

test('prefer: TLS first; plaintext only when the server offers no TLS, with one loud warning naming the source', async () => {
  const { lines, log } = capture();
  const p = new TlsPreference('clinic', 'prefer', log);
  const tried: boolean[] = [];
  const server = (offersTls: boolean) => async (useTls: boolean) => {
    tried.push(useTls);
    if (useTls && !offersTls) throw NO_TLS;
    return useTls ? 'tls' : 'plain';
  };
  assert.equal(await p.connect(server(false), noTls), 'plain');
  assert.deepEqual(tried, [true, false]);
  assert.equal(p.lastUsedTls, false);
  assert.equal(await p.connect(server(false), noTls), 'plain');
  assert.equal(lines.length, 1, 'once per connector, not once per connection');
  assert.equal(lines[0]!.source, 'clinic');
  assert.match(lines[0]!.msg, /source clinic: .*UNENCRYPTED.*tls\.mode: verify-full .*tls\.mode: disable/);
  // The server starts offering TLS: used, no warning; then stops offering it: a downgrade, warned again.
  assert.equal(await p.connect(server(true), noTls), 'tls');
  assert.equal(p.lastUsedTls, true);
  assert.equal(lines.length, 1);
  assert.equal(await p.connect(server(false), noTls), 'plain');
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.downgrade, true);
  assert.match(lines[1]!.msg, /no longer offers TLS/);
});

test('prefer never falls back after another failure (a refused certificate, a failed handshake); require and verify-full never fall back; disable never tries TLS and never warns', async () => {
  const { lines, log } = capture();
  const bad = new Error('self-signed certificate in certificate chain');
  const tried: boolean[] = [];
  const fails = (err: Error) => async (useTls: boolean) => {
    tried.push(useTls);
    throw err;
  };
  await assert.rejects(new TlsPreference('clinic', 'prefer', log).connect(fails(bad), noTls), bad);
  assert.deepEqual(tried, [true], 'no plaintext attempt after a TLS error');
  for (const mode of ['require', 'verify-full'] as const) {
    tried.length = 0;
    await assert.rejects(new TlsPreference('clinic', mode, log).connect(fails(NO_TLS), noTls), NO_TLS);
    assert.deepEqual(tried, [true], `${mode}: TLS or nothing`);
  }
  tried.length = 0;
  const plain = new TlsPreference('clinic', 'disable', log);
  assert.equal(await plain.connect(async (useTls) => (tried.push(useTls), 'plain'), noTls), 'plain');
  assert.deepEqual(tried, [false]);
  assert.equal(plain.lastUsedTls, false);
  assert.equal(lines.length, 0, 'no warning: disable is a choice, and the others never went plaintext');
});
