/**
 * Connection settings of the real test services, as printed by `scripts/services.sh env`
 * (`npm test` exports them). A missing variable is an error, never a skip: an integration test
 * that silently does not run proves nothing.
 */
export interface TestServices {
  /** PostgreSQL 15 (Debian), wal_level=logical, superuser postgres, trust auth. */
  pgUrl: string;
  /** MariaDB 10.11 with binlog ROW/FULL/FULL metadata and GTID; root without password. */
  mariadbUrl: string;
  /** Apache Kafka brokers (the 3-node cluster of scripts/kafka-cluster.sh), "host:port" list. */
  kafkaBrokers: string[];
  /** Ceph radosgw. */
  s3: { endpoint: string; accessKeyId: string; secretAccessKey: string; bucket: string; region: string };
}

export function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run integration tests through \`npm test\`, or \`eval "$(bash scripts/services.sh env)"\` after \`bash scripts/services.sh up\``);
  }
  return v;
}

export function testServices(): TestServices {
  return {
    pgUrl: requireEnv('CHARTLOG_TEST_PG_URL'),
    mariadbUrl: requireEnv('CHARTLOG_TEST_MARIADB_URL'),
    kafkaBrokers: requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(','),
    s3: {
      endpoint: requireEnv('CHARTLOG_TEST_S3_ENDPOINT'),
      accessKeyId: requireEnv('CHARTLOG_TEST_S3_ACCESS_KEY_ID'),
      secretAccessKey: requireEnv('CHARTLOG_TEST_S3_SECRET_ACCESS_KEY'),
      bucket: requireEnv('CHARTLOG_TEST_S3_BUCKET'),
      region: process.env.CHARTLOG_TEST_S3_REGION ?? 'us-east-1',
    },
  };
}
