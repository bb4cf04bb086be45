import assert from 'node:assert/strict';
import { test } from 'node:test';
import { replicaLocation, replicaName } from '../../../src/replicate/replica-name.js';

test('replica location: engine, host, port and database, never the user name or password', () => {
  const pg = replicaLocation('postgres://replica:s3cret@Analytics.example:5432/clinic_replica');
  assert.deepEqual(pg, { kind: 'postgres', host: 'Analytics.example', port: 5432, database: 'clinic_replica' });
  assert.ok(!JSON.stringify(pg).includes('s3cret') && !JSON.stringify(pg).includes('replica:'), 'no credentials');
  assert.deepEqual(replicaLocation('mysql://root@127.0.0.1/rep'), { kind: 'mysql', host: '127.0.0.1', port: null, database: 'rep' });
  assert.deepEqual(replicaLocation('postgresql:///rep?host=/var/run/postgresql'), { kind: 'postgres', host: '/var/run/postgresql', port: null, database: 'rep' });
});

test('replica name: --name when valid (exit 2 otherwise), else derived from the location', () => {
  const at = replicaLocation('postgres://u:p@Analytics.example:5432/Clinic_Replica');
  assert.equal(replicaName(undefined, at), 'postgres-analytics-example-5432-clinic_replica');
  assert.equal(replicaName('nightly', at), 'nightly');
  assert.throws(() => replicaName('Bad Name', at), (e: Error & { exitCode?: number }) => /--name "Bad Name": expected 1 to 64/.test(e.message) && e.exitCode === 2);
  assert.equal(replicaName(undefined, replicaLocation(`mysql://h/${'x'.repeat(100)}`)).length, 64);
  assert.equal(replicaName(undefined, replicaLocation('postgresql:///rep?host=/var/run/postgresql')), 'postgres-var-run-postgresql-rep');
});
