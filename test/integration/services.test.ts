import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Kafka, logLevel } from 'kafkajs';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { requireEnv, testServices } from '../support/env.js';

/**
 * Smoke test of the servers scripts/services.sh starts: each one answers, and is configured
 * the way the connectors need (PostgreSQL logical WAL, MariaDB row binlog with full metadata).
 * When this fails, the other integration tests cannot be trusted either.
 */

const services = testServices();

describe('test services', () => {
  it('PostgreSQL 15 answers and has wal_level=logical', async () => {
    const client = new pg.Client({ connectionString: services.pgUrl });
    await client.connect();
    try {
      const version = await client.query<{ server_version_num: string }>('SHOW server_version_num');
      assert.match(version.rows[0]?.server_version_num ?? '', /^15\d{4}$/);
      const wal = await client.query<{ wal_level: string }>('SHOW wal_level');
      assert.equal(wal.rows[0]?.wal_level, 'logical');
      const slots = await client.query<{ max_replication_slots: string }>('SHOW max_replication_slots');
      assert.ok(Number(slots.rows[0]?.max_replication_slots) >= 10);
      const su = await client.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
      assert.equal(su.rows[0]?.rolsuper, true);
    } finally {
      await client.end();
    }
  });

  it('MariaDB answers with a ROW binlog, FULL image and metadata, GTID strict mode', async () => {
    const conn = await mysql.createConnection(services.mariadbUrl);
    try {
      const [rows] = await conn.query<mysql.RowDataPacket[]>(
        `SELECT VERSION() AS version, @@log_bin AS log_bin, @@binlog_format AS format,
                @@binlog_row_image AS image, @@binlog_row_metadata AS metadata,
                @@gtid_strict_mode AS strict, @@character_set_server AS charset`,
      );
      const row = rows[0];
      assert.ok(row);
      assert.match(String(row.version), /^10\.11\..*MariaDB/);
      assert.equal(Number(row.log_bin), 1);
      assert.equal(row.format, 'ROW');
      assert.equal(row.image, 'FULL');
      assert.equal(row.metadata, 'FULL');
      assert.equal(Number(row.strict), 1);
      assert.equal(row.charset, 'utf8mb4');
    } finally {
      await conn.end();
    }
  });

  it('MariaDB has a cdc user that may read the binlog', async () => {
    const conn = await mysql.createConnection(requireEnv('CHARTLOG_TEST_MARIADB_CDC_URL'));
    try {
      const [grants] = await conn.query<mysql.RowDataPacket[]>('SHOW GRANTS');
      const text = grants.map((g) => String(Object.values(g)[0])).join('\n');
      assert.match(text, /REPLICATION SLAVE/);
      assert.match(text, /SELECT/);
      // What a binlog reader asks first; refused without REPLICATION CLIENT (BINLOG MONITOR).
      const [status] = await conn.query<mysql.RowDataPacket[]>('SHOW MASTER STATUS');
      assert.match(String(status[0]?.File), /^mysql-bin\.\d+$/);
    } finally {
      await conn.end();
    }
  });

  /** kafkajs's ConfigResourceTypes.TOPIC (kafkajs is CommonJS: the named export does not reach ESM). */
  const TOPIC_RESOURCE = 2;

  it('Apache Kafka: three brokers, topics with three replicas and min.insync.replicas 2, a message taken and given back', async () => {
    assert.equal(services.kafkaBrokers.length, 3);
    const kafka = new Kafka({ clientId: 'chartlog-services-test', brokers: services.kafkaBrokers, logLevel: logLevel.NOTHING });
    const topic = `services-smoke-${randomUUID()}`;
    const value = `hello ${randomUUID()}`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      // A real cluster: the admin API works (librdkafka's mock had none), three brokers answer,
      // and a topic created with the broker defaults has three in-sync replicas.
      assert.equal((await admin.describeCluster()).brokers.length, 3);
      assert.equal(await admin.createTopics({ waitForLeaders: true, topics: [{ topic }] }), true);
      const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
      for (const p of meta!.partitions) assert.deepEqual([p.replicas.length, p.isr.length], [3, 3], `partition ${p.partitionId}`);
      const configs = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: ['min.insync.replicas'] }] });
      assert.equal(configs.resources[0]!.configEntries[0]!.configValue, '2');
    } finally {
      await admin.disconnect();
    }
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    await producer.connect();
    try {
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value, headers: { h: 'v' } }] });
    } finally {
      await producer.disconnect();
    }
    // A short fetch wait: disconnect waits for the fetch in flight (5 s by default).
    const consumer = kafka.consumer({ groupId: `services-smoke-${randomUUID()}`, maxWaitTimeInMs: 100 });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      const received = await new Promise<{ key: string; value: string; header: string }>((resolve, reject) => {
        consumer
          .run({
            eachMessage: async ({ message }) => {
              resolve({
                key: message.key?.toString() ?? '',
                value: message.value?.toString() ?? '',
                header: message.headers?.h?.toString() ?? '',
              });
            },
          })
          .catch(reject);
      });
      assert.deepEqual(received, { key: 'k', value, header: 'v' });
    } finally {
      await consumer.disconnect();
    }
  });

  it('S3 (radosgw) stores an object in the test bucket and returns it byte for byte', async () => {
    const s3 = new S3Client({
      endpoint: services.s3.endpoint,
      region: services.s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: services.s3.accessKeyId, secretAccessKey: services.s3.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const key = `services-smoke/${randomUUID()}`;
    const body = Buffer.from([0, 1, 2, 255, ...Buffer.from(`payload ${randomUUID()}`)]);
    try {
      await s3.send(new PutObjectCommand({ Bucket: services.s3.bucket, Key: key, Body: body }));
      const got = await s3.send(new GetObjectCommand({ Bucket: services.s3.bucket, Key: key }));
      const bytes = Buffer.from(await got.Body!.transformToByteArray());
      assert.deepEqual(bytes, body);
      // radosgw refuses to overwrite when asked for create-if-absent; the stores rely on it.
      await assert.rejects(
        s3.send(new PutObjectCommand({ Bucket: services.s3.bucket, Key: key, Body: body, IfNoneMatch: '*' })),
        (err: { $metadata?: { httpStatusCode?: number } }) => err.$metadata?.httpStatusCode === 412,
      );
    } finally {
      await s3.send(new DeleteObjectCommand({ Bucket: services.s3.bucket, Key: key }));
      s3.destroy();
    }
  });
});
