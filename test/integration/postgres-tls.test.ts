import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pg from 'pg';
import { PostgresConnector } from '../../connectors/postgres/postgres-connector.js';
import { createLogger } from '../../src/core/logger.js';
import { sourceConfig } from '../support/pg-test-db.js';
import { startPgInstance } from '../support/pg-instance.js';

/**
 * Source TLS against a PostgreSQL that offers it (a private server with a self-signed CA made
 * here): `verify-full` with the CA connects, and the server sees the connections encrypted;
 * `verify-full` without the CA is refused (a certificate error never falls back to plaintext);
 * the default `prefer` uses TLS and logs no plaintext warning.
 */

function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const sh = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  sh(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=chartlog test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
  sh(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  sh(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.pem']);
  const key = join(dir, 'server.key');
  chmodSync(key, 0o600);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chmodSync(dir, 0o755);
    for (const f of ['server.key', 'server.pem']) chownSync(join(dir, f), uid, gid);
  }
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key };
}

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, log: createLogger({ format: 'json', destination }) };
}

test('postgres with TLS: verify-full with the CA connects encrypted; without the CA it is refused, not downgraded; prefer uses TLS silently', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-tls-'));
  const certs = makeCerts(dir);
  const server = await startPgInstance(['-c', 'ssl=on', '-c', `ssl_cert_file=${certs.cert}`, '-c', `ssl_key_file=${certs.key}`]);
  const admin = new pg.Client({ connectionString: server.url });
  try {
    await admin.connect();
    await admin.query('CREATE TABLE public.t (id int PRIMARY KEY, v text)');
    const { lines, log } = capture();
    const connector = (tls: Record<string, unknown>, name: string) => new PostgresConnector(sourceConfig(server.url, { tables: ['public.t'], tls }, name), { logger: log });

    const verified = connector({ mode: 'verify-full', ca: certs.ca }, 'verified');
    await verified.check();
    assert.deepEqual((await verified.tables()).map((t) => `${t.schema}.${t.table}`), ['public.t']);
    // While a stream runs, the server lists its connections (query and walsender) as encrypted.
    const stop = new AbortController();
    const streaming = (async () => {
      for await (const _ of verified.stream({ from: null, signal: stop.signal })) void _;
    })();
    let seen: { ssl: boolean; backend_type: string }[] = [];
    for (let i = 0; i < 100 && seen.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      seen = (await admin.query(`SELECT s.ssl, a.backend_type FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'chartlog:verified'`)).rows;
    }
    stop.abort();
    await streaming;
    await verified.close();
    assert.ok(seen.some((r) => r.backend_type === 'walsender'), `the replication connection was seen: ${JSON.stringify(seen)}`);
    assert.ok(seen.length >= 2 && seen.every((r) => r.ssl), `every connection encrypted: ${JSON.stringify(seen)}`);

    // The CA is not trusted: refused, and no plaintext attempt follows.
    await assert.rejects(connector({ mode: 'verify-full' }, 'untrusted').check(), /certificate/);

    const preferred = connector({ mode: 'prefer' }, 'preferred');
    await preferred.check();
    await preferred.close();
    assert.deepEqual(lines.filter((l) => /UNENCRYPTED/.test(l)), [], 'TLS was offered: no plaintext warning');
  } finally {
    await admin.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots`).catch(() => undefined);
    await admin.end().catch(() => undefined);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
