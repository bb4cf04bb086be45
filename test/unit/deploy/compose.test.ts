import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../../src/config/load.js';
import { chartlogNodeEnv, chartlogNodeFlags, shebangLaunch, shebangNodeFlags } from '../../support/chartlog-process.js';

/**
 * docker-compose.yml cannot run on the development machine (no Docker engine), so these
 * checks keep it honest: the settings the connectors need are there, every reference
 * resolves, and the chartlog configuration it mounts is valid and points at its services.
 */

interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
};
const services = compose.services;
const service = (name: string): Service => {
  const s = services[name];
  assert.ok(s, `docker-compose.yml has no service "${name}"`);
  return s;
};
const words = (v: string[] | string | undefined): string[] => (Array.isArray(v) ? v : (v ?? '').split(/\s+/));
const config = loadConfig('deploy/chartlog.compose.yaml', {});

describe('docker-compose.yml', () => {
  it('every dependency and named volume resolves', () => {
    for (const [name, s] of Object.entries(services)) {
      assert.ok(s.image !== undefined || s.build !== undefined, `${name} has neither image nor build`);
      for (const dep of Object.keys(s.depends_on ?? {})) assert.ok(services[dep], `${name} depends on unknown ${dep}`);
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0] ?? '';
        if (source.startsWith('.') || source.startsWith('/')) continue;
        assert.ok(source in (compose.volumes ?? {}), `${name} mounts undeclared volume ${source}`);
      }
    }
  });

  it('MySQL 8.4 writes a full row binlog with GTIDs', () => {
    const mysql = service('mysql');
    assert.match(mysql.image ?? '', /^mysql:8\.4/);
    const flags = words(mysql.command);
    for (const flag of [
      '--binlog-format=ROW',
      '--binlog-row-image=FULL',
      '--binlog-row-metadata=FULL',
      '--gtid-mode=ON',
      '--enforce-gtid-consistency=ON',
    ]) {
      assert.ok(flags.includes(flag), `mysql lacks ${flag}`);
    }
    assert.ok(flags.some((f) => /^--server-id=\d+$/.test(f)));
    const serverId = Number(flags.find((f) => f.startsWith('--server-id='))?.split('=')[1]);
    const reader = config.sources.find((s) => s.type === 'mysql');
    assert.ok(reader?.mysql.serverId !== undefined && reader.mysql.serverId !== serverId, 'chartlog needs its own server id');
  });

  it('PostgreSQL 16 runs with wal_level=logical and has the publication chartlog reads', () => {
    const pg = service('postgres');
    assert.match(pg.image ?? '', /^postgres:16/);
    assert.ok(words(pg.command).includes('wal_level=logical'));
    const source = config.sources.find((s) => s.type === 'postgres');
    assert.ok(source);
    const init = readFileSync('deploy/postgres-init/10-chartlog.sh', 'utf8');
    assert.match(init, new RegExp(`CREATE PUBLICATION chartlog_${source.name.replace(/-/g, '_')}\\b`));
  });

  it('Kafka runs in KRaft mode as one broker and controller', () => {
    const kafka = service('kafka');
    assert.match(kafka.image ?? '', /^apache\/kafka:/);
    const env = kafka.environment ?? {};
    assert.equal(env.KAFKA_PROCESS_ROLES, 'broker,controller');
    assert.equal(env.KAFKA_CONTROLLER_QUORUM_VOTERS, `${env.KAFKA_NODE_ID}@kafka:9093`);
    assert.match(String(env.KAFKA_LISTENERS), /CONTROLLER:\/\/:9093/);
    assert.equal(env.KAFKA_CONTROLLER_LISTENER_NAMES, 'CONTROLLER');
    assert.ok(!Object.keys(env).some((k) => k.includes('ZOOKEEPER')));
    assert.equal(config.bus.type, 'kafka');
    assert.deepEqual(config.bus.kafka?.brokers, [String(env.KAFKA_ADVERTISED_LISTENERS).replace('PLAINTEXT://', '')]);
  });

  it('MinIO gets the bucket the configuration names', () => {
    service('minio');
    const init = service('minio-init');
    const bucket = /^s3:\/\/([^/]+)/.exec(config.storage.url)?.[1];
    assert.ok(bucket);
    assert.match(words(init.command).join(' '), new RegExp(`mc mb --ignore-existing local/${bucket}\\b`));
    assert.equal(config.storage.s3?.endpoint, 'http://minio:9000');
    assert.equal(config.storage.s3?.forcePathStyle, true);
  });

  it('chartlog gets a password for every source and the S3 keys, and starts after the rest', () => {
    const chartlog = service('chartlog');
    assert.ok(chartlog.build !== undefined);
    const env = chartlog.environment ?? {};
    for (const s of config.sources) {
      assert.ok(`CHARTLOG_SOURCE_${s.name.toUpperCase().replace(/-/g, '_')}_PASSWORD` in env, `no password for ${s.name}`);
      assert.doesNotMatch(s.url, /:[^/@]*@/, 'passwords belong in the environment, not the mounted file');
    }
    assert.ok('CHARTLOG_S3_ACCESS_KEY_ID' in env && 'CHARTLOG_S3_SECRET_ACCESS_KEY' in env);
    assert.deepEqual(words(chartlog.command), ['run', '--config', '/etc/chartlog/chartlog.yaml']);
    assert.ok(chartlog.volumes?.includes('./deploy/chartlog.compose.yaml:/etc/chartlog/chartlog.yaml:ro'));
    assert.deepEqual(Object.keys(chartlog.depends_on ?? {}).sort(), ['chartlog-keys', 'kafka', 'mysql', 'postgres']);
    const keyring = config.phi.keyring.replace('file://', '');
    assert.ok(keyring.startsWith('/var/lib/chartlog/keys/'));
    assert.ok(chartlog.volumes?.includes('chartlog-keys:/var/lib/chartlog/keys'));
  });

  it('the image is Node 20 and runs the chartlog CLI', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8');
    assert.match(dockerfile, /^FROM node:20-slim AS build$/m);
    assert.match(dockerfile, /^RUN npm ci\b/m);
    assert.match(dockerfile, /npm run build/);
    assert.match(dockerfile, /^ENTRYPOINT \["node", "--max-semi-space-size=4", "\/app\/bin\/chartlog\.js"\]$/m);
    assert.match(dockerfile, /^CMD \["run", "--config", "\/etc\/chartlog\/chartlog\.yaml"\]$/m);
  });

  it('the image runs node with the flags of bin/chartlog.js\'s first line (what an installed chartlog runs)', () => {
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'));
    const argv = JSON.parse(entry![1]!) as string[];
    assert.deepEqual(argv.slice(1, -1), [...chartlogNodeFlags]);
    assert.deepEqual([...chartlogNodeFlags], ['--max-semi-space-size=4']);
    // The environment of the first line is the image's too.
    assert.deepEqual({ ...chartlogNodeEnv }, { MALLOC_ARENA_MAX: '2' });
    const env = /^ENV (.*)$/m.exec(readFileSync('Dockerfile', 'utf8').split('\nFROM node:20-slim\n')[1]!)![1]!;
    for (const [k, v] of Object.entries(chartlogNodeEnv)) assert.ok(env.split(/\s+/).includes(`${k}=${v}`), `the image sets ${k}=${v}`);
    assert.deepEqual(shebangLaunch('#!/usr/bin/env -S A=1 B_2=x node --f\n'), { env: { A: '1', B_2: 'x' }, flags: ['--f'] });
    // Negative controls: a first line without flags gives none; one that is not node is refused.
    assert.deepEqual(shebangNodeFlags('#!/usr/bin/env node\n'), []);
    assert.throws(() => shebangNodeFlags('#!/bin/sh\n'), /first line/);
  });
});
