import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig, maskSecrets, parseConfig } from '../../../src/config/load.js';
import { ChartlogError } from '../../../src/core/errors.js';
import { compactorGroupId } from '../../../src/bus/kafka-topics.js';

const good = `
sources:
  - name: clinic
    type: postgres
    url: postgres://cdc:hunter2@127.0.0.1:5499/app
    tables: [public.patients, public.encounters]
storage:
  url: file:///var/lib/chartlog
phi:
  keyring: file:///etc/chartlog/keyring.json
  columns:
    public.patients: [full_name, ssn]
  strict: [public.patients]
`;

function configFailure(text: string, env: NodeJS.ProcessEnv = {}): ChartlogError {
  try {
    parseConfig(text, 'test.yaml', env);
  } catch (err) {
    assert.ok(err instanceof ChartlogError);
    return err;
  }
  assert.fail('expected the configuration to be refused');
}

test('a valid file is defaulted and frozen', () => {
  const cfg = parseConfig(good, 'test.yaml', {});
  assert.equal(cfg.bus.type, 'embedded');
  assert.equal(cfg.segments.flushIntervalMs, 1000);
  assert.equal(cfg.sources[0]?.snapshot.chunkRows, 10000);
  // A restore replays at most about a day after its snapshot unless the operator says otherwise.
  assert.equal(cfg.sources[0]?.snapshot.everyHours, 24);
  assert.ok(Object.isFrozen(cfg));
  assert.ok(Object.isFrozen(cfg.sources[0]));
  assert.throws(() => {
    (cfg.segments as { flushIntervalMs: number }).flushIntervalMs = 5;
  }, TypeError);
});

test('sources[].reconnect defaults to 0.25 s doubling to 30 s, never giving up; every field can be set', () => {
  const cfg = parseConfig(good, 'test.yaml', {});
  assert.deepEqual({ ...cfg.sources[0]!.reconnect }, { initialDelayMs: 250, maxDelayMs: 30_000 });
  assert.equal(cfg.sources[0]!.reconnect.maxAttempts, undefined, 'a backup waits out an outage');
  const set = parseConfig(good.replace('    tables: [public.patients', '    reconnect: { initialDelayMs: 100, maxDelayMs: 5000, maxAttempts: 10 }\n    tables: [public.patients'), 'test.yaml', {});
  assert.deepEqual({ ...set.sources[0]!.reconnect }, { initialDelayMs: 100, maxDelayMs: 5000, maxAttempts: 10 });
  const partial = parseConfig(good.replace('    tables: [public.patients', '    reconnect: { maxAttempts: 3 }\n    tables: [public.patients'), 'test.yaml', {});
  assert.deepEqual({ ...partial.sources[0]!.reconnect }, { initialDelayMs: 250, maxDelayMs: 30_000, maxAttempts: 3 });
});

test('a reconnect policy that makes no sense is refused, naming the field', () => {
  const withReconnect = (r: string) => good.replace('    tables: [public.patients', `    reconnect: ${r}\n    tables: [public.patients`);
  assert.match(configFailure(withReconnect('{ maxAttempts: 0 }')).message, /sources\[0\]\.reconnect\.maxAttempts/);
  assert.match(configFailure(withReconnect('{ initialDelayMs: 5000, maxDelayMs: 1000 }')).message, /sources\[0\]\.reconnect\.maxDelayMs: maxDelayMs must be at least initialDelayMs/);
  assert.match(configFailure(withReconnect('{ retries: 3 }')).message, /sources\[0\]\.reconnect\.retries: unknown field/);
});

test('a wrong enum names the field, the bad value and the choices, with exit code 2', () => {
  const err = configFailure(good.replace('type: postgres', 'type: postgress'));
  assert.equal(err.exitCode, 2);
  assert.match(err.message, /sources\[0\]\.type: expected "postgres" \| "mysql", got "postgress"/);
});

test('a misspelt key is refused, not ignored', () => {
  const err = configFailure(good.replace('storage:\n  url:', 'storage:\n  ulr: x\n  url:'));
  assert.match(err.message, /storage\.ulr: unknown field/);
});

test('a missing required field is named', () => {
  const err = configFailure(good.replace(/storage:\n {2}url: .*\n/, ''));
  assert.match(err.message, /storage: required field is missing/);
});

test('a wrong type says what was expected and what came', () => {
  const err = configFailure(`${good}segments:\n  flushIntervalMs: soon\n`);
  assert.match(err.message, /segments\.flushIntervalMs: expected number, got "soon"/);
});

test('bad YAML is reported with its line', () => {
  const err = configFailure('sources: [\n  - name: x\n');
  assert.equal(err.exitCode, 2);
  assert.match(err.message, /test\.yaml:\d+:\d+: not valid YAML/);
});

test('a strict table without a phi.columns entry is refused', () => {
  const err = configFailure(good.replace('strict: [public.patients]', 'strict: [public.patients, public.labs]'));
  assert.match(err.message, /strict table public\.labs has no entry in phi\.columns/);
});

test('a keyring inside the backup root is refused', () => {
  const err = configFailure(good.replace('file:///etc/chartlog/keyring.json', 'file:///var/lib/chartlog/keys/kr.json'));
  assert.match(err.message, /phi\.keyring: the keyring is inside the backup root/);
});

test('storage.objectLock: needs an s3:// store; parsed and frozen on one', () => {
  const withLock = (url: string) => good.replace('  url: file:///var/lib/chartlog\n', `  url: ${url}\n  objectLock: { mode: governance, retainDays: 7 }\n`);
  const err = configFailure(withLock('file:///var/lib/chartlog'));
  assert.equal(err.exitCode, 2);
  assert.match(err.message, /storage\.objectLock: needs an S3 bucket with Object Lock enabled/);
  const cfg = parseConfig(withLock('s3://archive/prod'), 'test.yaml', {});
  assert.deepEqual(cfg.storage.objectLock, { mode: 'governance', retainDays: 7 });
  assert.ok(Object.isFrozen(cfg.storage.objectLock));
  assert.equal(parseConfig(good, 'test.yaml', {}).storage.objectLock, undefined, 'absent = off');
  assert.match(configFailure(withLock('s3://archive/prod').replace('governance', 'legal-hold')).message, /storage\.objectLock\.mode/);
  assert.match(configFailure(withLock('s3://archive/prod').replace('retainDays: 7', 'retainDays: 0')).message, /storage\.objectLock\.retainDays/);
});

test('duplicate source names are refused', () => {
  const text = good.replace('sources:\n', 'sources:\n  - { name: clinic, type: mysql, url: "mysql://cdc@127.0.0.1:3407/" }\n');
  const err = configFailure(text);
  assert.match(err.message, /sources\[1\]\.name: duplicate source name "clinic"/);
});

test('secrets never appear in error messages', () => {
  const text = good.replace('url: postgres://cdc:hunter2@127.0.0.1:5499/app', 'url: "ftp://cdc:hunter2@127.0.0.1/app"');
  const err = configFailure(text);
  assert.match(err.message, /sources\[0\]\.url/);
  assert.doesNotMatch(err.message, /hunter2/);
  const s3 = configFailure(`${good.replace('storage:\n  url: file:///var/lib/chartlog', 'storage:\n  url: s3://b\n  s3:\n    secretAccessKey: 12345')}`);
  assert.match(s3.message, /storage\.s3\.secretAccessKey: expected string, got "\*\*\*\*"/);
  assert.doesNotMatch(s3.message, /12345/);
});

test('environment variables override secrets', () => {
  const cfg = parseConfig(good.replace('file:///var/lib/chartlog', 's3://backups/clinic'), 'test.yaml', {
    CHARTLOG_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
    CHARTLOG_S3_SECRET_ACCESS_KEY: 's3cr3t',
    CHARTLOG_SOURCE_CLINIC_PASSWORD: 'p@ss/word',
  });
  assert.equal(cfg.storage.s3?.accessKeyId, 'AKIAEXAMPLE');
  assert.equal(cfg.storage.s3?.secretAccessKey, 's3cr3t');
  assert.equal(new URL(cfg.sources[0]!.url).password, encodeURIComponent('p@ss/word'));
});

test('the printed configuration masks every secret', () => {
  const cfg = parseConfig(good.replace('file:///var/lib/chartlog', 's3://backups/clinic'), 'test.yaml', {
    CHARTLOG_S3_SECRET_ACCESS_KEY: 's3cr3t',
    CHARTLOG_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
  });
  const printed = JSON.stringify(maskSecrets(cfg));
  for (const secret of ['hunter2', 's3cr3t', 'AKIAEXAMPLE']) assert.ok(!printed.includes(secret), `${secret} printed`);
  assert.match(printed, /cdc:\*\*\*\*@127\.0\.0\.1/);
});

test('an unreadable file is a configuration error naming the path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chartlog-cfg-'));
  assert.throws(() => loadConfig(join(dir, 'missing.yaml')), (err: ChartlogError) => {
    assert.equal(err.exitCode, 2);
    assert.match(err.message, /missing\.yaml: ENOENT/);
    return true;
  });
  writeFileSync(join(dir, 'ok.yaml'), good);
  assert.equal(loadConfig(join(dir, 'ok.yaml'), {}).sources[0]?.name, 'clinic');
});

test('bus.kafka: each source has its own consumer group, <groupId>.<source> unless sourceGroupIds names one; a shared or misnamed one is refused', () => {
  const two = good.replace('storage:', '  - { name: lab, type: mysql, url: "mysql://cdc@127.0.0.1:3407/lab" }\nstorage:');
  const withKafka = (kafka: string) => `${two}bus:\n  type: kafka\n  kafka: { brokers: ["127.0.0.1:9092"]${kafka} }\n`;
  const cfg = parseConfig(withKafka(', sourceGroupIds: { lab: legacy-group }'), 'test.yaml', {});
  assert.deepEqual(['clinic', 'lab'].map((s) => compactorGroupId(cfg.bus.kafka!, s)), ['chartlog-compactor.clinic', 'legacy-group']);

  const unknown = configFailure(withKafka(', sourceGroupIds: { labs: g1 }'));
  assert.equal(unknown.exitCode, 2);
  assert.match(unknown.message, /bus\.kafka\.sourceGroupIds\.labs/);
  assert.match(unknown.message, /not a source name; use one of clinic, lab/);

  const shared = configFailure(withKafka(', groupId: g, sourceGroupIds: { lab: g.clinic }'));
  assert.match(shared.message, /bus\.kafka\.sourceGroupIds\.lab/);
  assert.match(shared.message, /sources clinic and lab would share the consumer group "g\.clinic"/);
});

test('bus.kafka.topics: defaults to 3 replicas and min.insync.replicas 2; a setting that can lose acknowledged data is refused unless allowUnsafeReplication', () => {
  const kafka = (topics: string) => `${good}bus: { type: kafka, kafka: { brokers: ["127.0.0.1:9092"]${topics} } }\n`;
  const cfg = parseConfig(kafka(''), 'test.yaml', {});
  assert.deepEqual(cfg.bus.kafka?.topics, { replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false });
  for (const [field, topics] of [
    ['replicationFactor', ', topics: { replicationFactor: 1, minInsyncReplicas: 1 }'],
    ['minInsyncReplicas', ', topics: { minInsyncReplicas: 1 }'],
  ] as const) {
    const err = configFailure(kafka(topics));
    assert.equal(err.exitCode, 2);
    assert.match(err.message, new RegExp(`bus\\.kafka\\.topics\\.${field}`));
    assert.match(err.message, /allowUnsafeReplication/);
  }
  const unsafe = parseConfig(kafka(', topics: { replicationFactor: 1, minInsyncReplicas: 1, allowUnsafeReplication: true }'), 'test.yaml', {});
  assert.equal(unsafe.bus.kafka?.topics.replicationFactor, 1);
  // Never satisfiable with acks = all, override or not.
  const err = configFailure(kafka(', topics: { replicationFactor: 2, minInsyncReplicas: 3, allowUnsafeReplication: true }'));
  assert.match(err.message, /bus\.kafka\.topics\.minInsyncReplicas.*above the replication factor/);
  const tuned = parseConfig(kafka(', topics: { retentionMs: 604800000, schemaHistory: { cleanupPolicy: "compact,delete", retentionMs: 31536000000 } }'), 'test.yaml', {});
  assert.equal(tuned.bus.kafka?.topics.retentionMs, 604_800_000);
  assert.equal(tuned.bus.kafka?.topics.schemaHistory.cleanupPolicy, 'compact,delete');
  assert.match(configFailure(kafka(', topics: { schemaHistory: { cleanupPolicy: delete } }')).message, /schemaHistory\.cleanupPolicy/);
});
