import { availableParallelism } from 'node:os';
import { z } from 'zod';

/**
 * The one configuration schema (docs/architecture.md §6). Every field is typed, defaulted where a default
 * is safe, and described; objects are strict so a misspelt key is an error, not a silently
 * ignored setting. `load.ts` parses a file against it once and freezes the result.
 */

const tableName = z
  .string()
  .regex(/^[^.\s]+\.[^.\s]+$/, 'expected "schema.table"')
  .describe('A table as "schema.table" (PostgreSQL schema or MySQL database, then table).');

const tlsFiles = {
  ca: z.string().optional().describe('Path to a PEM file with the CA certificate(s) to trust.'),
  cert: z.string().optional().describe('Path to a PEM client certificate, for mutual TLS.'),
  key: z.string().optional().describe('Path to the PEM private key of the client certificate.'),
};

const tls = z
  .strictObject({
    mode: z
      .enum(['disable', 'require', 'verify-full'])
      .default('disable')
      .describe('disable: plaintext; require: TLS without certificate checks; verify-full: TLS, certificate and host name checked.'),
    ...tlsFiles,
  })
  .describe('TLS for this connection.');

/**
 * A source's stream carries PHI before it is sealed: TLS is tried by default (src/core/tls-settings.ts,
 * TlsPreference), and plaintext is used only when the server offers no TLS, with a warning.
 */
const sourceTls = z
  .strictObject({
    mode: z
      .enum(['prefer', 'disable', 'require', 'verify-full'])
      .default('prefer')
      .describe(
        'prefer (default): TLS when the server offers it (no certificate check), otherwise plaintext with a loud warning at every start; disable: plaintext, no warning; require: TLS without certificate checks; verify-full: TLS, certificate and host name checked (use this in production, with ca for a private CA).',
      ),
    ...tlsFiles,
  })
  .describe('TLS to the source database.');

const postgresOptions = z
  .strictObject({
    slotName: z
      .string()
      .regex(/^[a-z0-9_]{1,63}$/, 'expected lowercase letters, digits and _ (at most 63)')
      .optional()
      .describe(
        "Base of the replication slot's name. Default: chartlog_<source name>. The slot is <base>_<archive id> (the base cut to 46 characters with a hash when longer), so the slot records the archive that owns it; a slot named exactly the base (from before owners were recorded) is adopted by an archive whose store has a checkpoint.",
      ),
    publicationName: z
      .string()
      .regex(/^[a-z0-9_]{1,63}$/, 'expected lowercase letters, digits and _ (at most 63)')
      .optional()
      .describe('Publication name. Default: chartlog_<source name>.'),
    heartbeatIntervalMs: z
      .number()
      .int()
      .min(1000)
      .default(30000)
      .describe('How often an idle source gets a heartbeat message so its slot keeps advancing.'),
    slotLagWarnBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024 * 1024)
      .describe('Warn when the slot retains more WAL than this many bytes.'),
    catalogCheckIntervalMs: z
      .number()
      .int()
      .min(100)
      .default(10000)
      .describe(
        'How often the captured tables are read from the catalog to find rewrites and drops the stream does not carry (ALTER … TYPE … USING, a volatile default, VACUUM FULL, DROP TABLE). A rewrite is known to have happened only between two readings, so a restore to a moment within one interval before it is refused for that table (docs/operations.md, "Unproven windows").',
      ),
    spillThresholdBytes: z
      .number()
      .int()
      .positive()
      .default(8 * 1024 * 1024)
      .describe('A transaction larger than this is spilled to disk until its commit (decoded rows take several times their WAL size in memory).'),
    insertOnlyTables: z
      .array(tableName)
      .default([])
      .describe(
        'Tables ("schema.table") that only ever take inserts, so they may have no replica identity (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key). Any other such table is refused at start with the statement that gives it one. An update or delete on a listed table is not captured; it fails on the source while the table is published.',
      ),
  })
  .describe('PostgreSQL-only settings.');

const mysqlOptions = z
  .strictObject({
    serverId: z
      .number()
      .int()
      .min(1)
      .max(4294967295)
      .optional()
      .describe('Replica server id chartlog uses to read the binlog; must differ from every server and other reader. Default: derived from the source name.'),
    watchdogMs: z
      .number()
      .int()
      .min(1000)
      .default(30000)
      .describe('Reconnect when the binlog connection has been silent this long after a heartbeat probe.'),
    spillThresholdBytes: z
      .number()
      .int()
      .positive()
      .default(8 * 1024 * 1024)
      .describe('A transaction (or XA PREPARE) is held as decoded rows up to this many bytes (an estimate of their heap size), then serialised, in memory up to this many bytes again, then in a file encrypted with a key only the process has, until its commit; it is then published in pieces.'),
  })
  .describe('MySQL/MariaDB-only settings.');

const reconnect = z
  .strictObject({
    initialDelayMs: z
      .number()
      .int()
      .min(1)
      .default(250)
      .describe('Wait this long after the first failure in a row; the wait doubles with each further failure (less up to a quarter of it, at random, so many clients spread out).'),
    maxDelayMs: z
      .number()
      .int()
      .min(1)
      .default(30_000)
      .describe('The longest wait between two attempts.'),
    maxAttempts: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Give up after this many failed attempts in a row, the first included: the source stream stops with the last error and `chartlog run` exits 1. Default: never give up (a backup waits out an outage). Fatal errors (authentication, setup, a lost slot or purged binlog) stop at once either way.',
      ),
  })
  .refine((r) => r.maxDelayMs >= r.initialDelayMs, { message: 'maxDelayMs must be at least initialDelayMs', path: ['maxDelayMs'] })
  .describe('How the source stream reconnects after a lost connection, a silent server or a failed publish: exponential backoff with jitter, the same for every database type.');

const source = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z0-9_-]+$/, 'expected lowercase letters, digits, "_" and "-"')
      .describe('Names the source and its object-store prefix.'),
    type: z.enum(['postgres', 'mysql']).describe('Which kind of database this is.'),
    url: z
      .string()
      .regex(/^(postgres|postgresql|mysql|mariadb):\/\//, 'expected a postgres:// or mysql:// URL')
      .describe('Connection URL of the CDC user. Its password may come from CHARTLOG_SOURCE_<NAME>_PASSWORD instead.'),
    tables: z
      .array(tableName)
      .min(1)
      .optional()
      .describe('Tables to capture. Default: every table the user can read.'),
    tls: sourceTls.default({ mode: 'prefer' }),
    postgres: postgresOptions.default({
      heartbeatIntervalMs: 30000,
      slotLagWarnBytes: 1024 * 1024 * 1024,
      catalogCheckIntervalMs: 10000,
      spillThresholdBytes: 8 * 1024 * 1024,
      insertOnlyTables: [],
    }),
    mysql: mysqlOptions.default({ watchdogMs: 30000, spillThresholdBytes: 8 * 1024 * 1024 }),
    reconnect: reconnect.default({ initialDelayMs: 250, maxDelayMs: 30_000 }),
    snapshot: z
      .strictObject({
        initial: z
          .boolean()
          .default(true)
          .describe('Take a consistent snapshot when the source has none yet.'),
        chunkRows: z.number().int().min(1).default(10000).describe('Rows per primary-key chunk.'),
        connections: z
          .number()
          .int()
          .min(1)
          .max(16)
          .default(2)
          .describe(
            'PostgreSQL: connections that read a base snapshot at once, all in the same exported snapshot (a table is read in key ranges, handed on in key order). MySQL/MariaDB reads on one.',
          ),
        everyHours: z
          .number()
          .min(0)
          .default(24)
          .describe(
            'Synthesise a new base snapshot this often from the archive (no load on the source), so a restore replays at most about this many hours of changes after its snapshot; 0 turns the schedule off.',
          ),
      })
      .default({ initial: true, chunkRows: 10000, connections: 2, everyHours: 24 })
      .describe('Base snapshots.'),
    resync: z
      .strictObject({
        automatic: z
          .boolean()
          .default(true)
          .describe(
            'Let `chartlog run` re-read a table by itself (an online table resync, as `chartlog resync` does) when its connector can no longer prove it captured the table whole (a rewriting DDL). false: it only logs the `chartlog resync` command to run.',
          ),
        rowsPerSecond: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe('Rows read per second at most by a table resync of this source (automatic ones, and `chartlog resync` without --rows-per-second); 0: as fast as the source gives them.'),
      })
      .default({ automatic: true, rowsPerSecond: 0 })
      .describe('Table resyncs (online re-snapshots of chosen tables).'),
  })
  .describe('A database to capture.');

/**
 * The settings chartlog gives the topics it creates, and the floor it holds existing topics to
 * (src/bus/kafka-durability.ts): a topic with one replica, or one that accepts a write on a
 * single in-sync replica, can lose a write Kafka acknowledged (acks = all) when one broker dies —
 * and chartlog acknowledges the source on that acknowledgement.
 */
const kafkaTopics = z
  .strictObject({
    replicationFactor: z.number().int().min(1).default(3).describe('Replication factor of the topics chartlog creates; existing topics must have at least 2 replicas per partition.'),
    minInsyncReplicas: z
      .number()
      .int()
      .min(1)
      .default(2)
      .describe('min.insync.replicas of the topics chartlog creates; existing topics must have at least 2 (a write acknowledged by acks = all is then on two brokers).'),
    retentionMs: z
      .number()
      .int()
      .min(-1)
      .optional()
      .describe(
        'retention.ms of the table and transactions topics chartlog creates (-1: forever); unset: the broker default. Must exceed the longest time a compactor may be down, or unconsumed changes expire.',
      ),
    schemaHistory: z
      .strictObject({
        cleanupPolicy: z.enum(['compact', 'compact,delete']).default('compact').describe('cleanup.policy of the schema-history topic: compact keeps the newest record of every fingerprint.'),
        retentionMs: z
          .number()
          .int()
          .min(-1)
          .default(-1)
          .describe('retention.ms of the schema-history topic (-1: forever; matters with compact,delete). Schemas are in the object store too; this topic is for other consumers.'),
      })
      .default({ cleanupPolicy: 'compact', retentionMs: -1 })
      .describe('The compacted <prefix>.<source>.__schemas topic.'),
    allowUnsafeReplication: z
      .boolean()
      .default(false)
      .describe(
        'Run on topics with replication factor 1 or min.insync.replicas 1 (a one-broker test cluster): one broker failure can then lose changes already acknowledged to the source. Off: chartlog refuses to start (exit 2).',
      ),
  })
  .describe('Topic settings.');

const kafka = z
  .strictObject({
    brokers: z.array(z.string().regex(/^[^:\s]+:\d+$/, 'expected "host:port"')).min(1).describe('Bootstrap brokers.'),
    topicPrefix: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'expected letters, digits, ".", "_" and "-"')
      .default('chartlog')
      .describe('Topics are <prefix>.<source>.<schema>.<table>.'),
    clientId: z.string().default('chartlog').describe('Kafka client id.'),
    groupId: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'expected letters, digits, ".", "_" and "-"')
      .default('chartlog-compactor')
      .describe(
        "Consumer groups of the compactors: each source's compactor joins its own group, <groupId>.<source>, so that sources never take each other's partitions.",
      ),
    sourceGroupIds: z
      .record(z.string(), z.string().min(1))
      .optional()
      .describe('Per source name, a consumer group to use instead of <groupId>.<source> (an existing group, say); one group per source.'),
    sessionTimeoutMs: z
      .number()
      .int()
      .min(1000)
      .default(30_000)
      .describe('Consumer group session timeout: how long a crashed compactor holds its partitions before another takes them.'),
    scaleOut: z
      .boolean()
      .default(false)
      .describe(
        'Several active compactors per source: every `chartlog run --role compact` process stores a share of the table partitions and publishes progress records; the holder of the compactor lease settles (checkpoint, hours). Run with one --role capture process; refused with --role all.',
      ),
    maxInFlightRequests: z
      .number()
      .int()
      .min(1)
      .max(5)
      .default(1)
      .describe(
        'Produce requests the bus keeps awaiting acks = all at once (per broker connection). 1 (default): each request waits for the one before, so a partition receives its messages in send order even across client retries; more: the next requests go while earlier ones replicate (no gain measured on a 2-core machine that also runs the three brokers: 0.90× one in flight at 1M rows, quiet, docs/operations.md). An END is sent only after every message it counts was acknowledged, and the source acknowledged in order, whatever the number.',
      ),
    compression: z
      .enum(['none', 'gzip'])
      .default('none')
      .describe(
        'Producer compression. `none` (default): the Kafka path costs least CPU (gzip added ≈ 8 µs a row to chartlog and an inflate per batch to the leader broker); a topic-level `compression.type` on the brokers can still compress what they store. `gzip` (level 1): ≈ 2.3× fewer bytes sent, replicated and stored.',
      ),
    topics: kafkaTopics.default({ replicationFactor: 3, minInsyncReplicas: 2, schemaHistory: { cleanupPolicy: 'compact', retentionMs: -1 }, allowUnsafeReplication: false }),
    tls: tls.default({ mode: 'disable' }),
    sasl: z
      .strictObject({
        mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
        username: z.string(),
        password: z.string().optional().describe('Prefer CHARTLOG_KAFKA_SASL_PASSWORD.'),
      })
      .optional()
      .describe('SASL authentication.'),
  })
  .describe('Kafka settings, used when bus.type is kafka.');

const bus = z
  .strictObject({
    type: z.enum(['embedded', 'kafka']).default('embedded').describe('embedded: in-process, one machine; kafka: a Kafka cluster.'),
    maxBufferedBatches: z
      .number()
      .int()
      .min(1)
      .default(1024)
      .describe('Embedded bus: batches held before the connector is paused (backpressure).'),
    maxBufferedBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      // 8 MiB: a 1M-row transaction peaked at 283 MB RSS (32 MiB: 364 MB) and streamed faster.
      .default(8 * 1024 * 1024)
      .describe('Encoded bytes held (embedded bus) or queued for Kafka (Kafka bus) before the connector is paused; bounds memory during large transactions.'),
    kafka: kafka.optional(),
  })
  .describe('Where change records travel between the connectors and the compactor.');

const storage = z
  .strictObject({
    url: z
      .string()
      .regex(/^(file:\/\/\/|s3:\/\/[^/\s]+)/, 'expected file:///absolute/path or s3://bucket[/prefix]')
      .describe('Backup root: file:///abs/path or s3://bucket/prefix.'),
    s3: z
      .strictObject({
        endpoint: z.string().url().optional().describe('S3-compatible endpoint (radosgw, MinIO); AWS when absent.'),
        region: z.string().default('us-east-1'),
        forcePathStyle: z.boolean().default(false).describe('Path-style addressing (needed by most non-AWS stores).'),
        accessKeyId: z.string().optional().describe('Prefer CHARTLOG_S3_ACCESS_KEY_ID.'),
        secretAccessKey: z.string().optional().describe('Prefer CHARTLOG_S3_SECRET_ACCESS_KEY.'),
        ca: z.string().optional().describe('Path to a PEM CA bundle for a private endpoint.'),
      })
      .optional(),
    objectLock: z
      .strictObject({
        mode: z.enum(['governance', 'compliance']).describe('governance: a user with s3:BypassGovernanceRetention can still remove a version; compliance: nobody can until the date passes.'),
        retainDays: z.number().int().min(1).max(36_500).describe('Each immutable object version is retained this many days from its write.'),
      })
      .optional()
      .describe(
        'S3 Object Lock for the immutable archive objects (closed-hour manifests and segments, snapshot manifests and parts, schemas, the MAC key): written with this retention, so bucket write access cannot delete or overwrite those versions. Needs an s3:// bucket created with Object Lock enabled (checked at start); absent = off.',
      ),
    leaseTtlMs: z
      .number()
      .int()
      .min(1000)
      .max(600_000)
      .default(30_000)
      .describe(
        'One writer per source archive: how long the writer lease (<source>/state/lease.json) lasts unless renewed (every third of it). A second `chartlog run` waits for it; after a crash the next process takes over once it has expired. Hosts sharing an archive need clocks in sync to well within a sixth of it.',
      ),
  })
  .describe('The object store.');

const phi = z
  .strictObject({
    keyring: z
      .string()
      .regex(/^(file:\/\/\/|awskms:\/\/)/, 'expected file:///abs/path/keyring.json or awskms://<key-arn>')
      .describe('Key-encryption key: a local keyring file (mode 0600, outside the backup root) or an AWS KMS key.'),
    columns: z
      .record(tableName, z.array(z.string().min(1)))
      .default({})
      .describe('PHI columns per table; their values are sealed before leaving the connector.'),
    strict: z
      .array(tableName)
      .default([])
      .describe('Tables that fail closed: a new column that is not classified stops the table until it is.'),
    publicColumns: z
      .record(tableName, z.array(z.string().min(1)))
      .default({})
      .describe('Columns reviewed and classified as not PHI, per table: stored in clear. Every other column of a captured table that phi.columns does not name is unclassified (see phi.unclassified).'),
    unclassified: z
      .enum(['seal', 'clear'])
      .default('seal')
      .describe(
        'A column named neither in phi.columns nor in phi.publicColumns (unreviewed, or added later by DDL): seal (the default) seals it like PHI, so it is never stored in clear and the backup goes on; key columns (primary key, replica identity) stay in clear so rows can be keyed. clear stores it in clear; choose it only explicitly. Each such column is logged once, by name. Strict tables (phi.strict) refuse an unclassified column either way.',
      ),
    guard: z
      .strictObject({
        enabled: z.boolean().default(true),
        intervalMs: z.number().int().min(10).default(1000).describe('At most one value per clear column is checked in this many milliseconds.'),
      })
      .default({ enabled: true, intervalMs: 1000 })
      .describe(
        'The PHI guard in the stream: a sampled value of each column that is not sealed is checked for SSN, e-mail, phone, MRN and street-address shapes; a hit is a warning log line naming table, column and detector, never the value.',
      ),
    algorithm: z
      .enum(['xchacha20-poly1305', 'aes-256-gcm'])
      .default('xchacha20-poly1305')
      .describe(
        'The AEAD that new data keys seal PHI with; each data key records its own, so a change applies from the next key (every start makes one) and older values open as before. xchacha20-poly1305 (the default, libsodium) seals about 5x faster per value; aes-256-gcm (node:crypto/OpenSSL) for hospitals that require FIPS-approved algorithms.',
      ),
    dekRotation: z
      .strictObject({
        maxAgeHours: z.number().positive().default(24).describe('Start a new data key after this long.'),
        maxValues: z.number().int().positive().default(100_000_000).describe('Start a new data key after sealing this many values.'),
      })
      .default({ maxAgeHours: 24, maxValues: 100_000_000 }),
    cryptoThreads: z
      .number()
      .int()
      .min(0)
      .max(16)
      .default(1)
      .describe('Worker threads that seal the PHI of large transactions (run) and open it (restore) beside the main thread; 0 does everything on the main thread.'),
  })
  .describe('Which columns are PHI and how they are sealed.');

export const configSchema = z
  .strictObject({
    sources: z.array(source).min(1).describe('Databases to capture.'),
    bus: bus.default({ type: 'embedded', maxBufferedBatches: 1024, maxBufferedBytes: 8 * 1024 * 1024 }),
    storage,
    segments: z
      .strictObject({
        flushIntervalMs: z.number().int().min(50).default(1000).describe('Open-hour parts are flushed this often.'),
        maxPartBytes: z
          .number()
          .int()
          .min(1024)
          .default(4 * 1024 * 1024)
          .describe('A part is flushed early at this size (a backlog fills several a second; each is held in memory until flushed).'),
      })
      .default({ flushIntervalMs: 1000, maxPartBytes: 4 * 1024 * 1024 }),
    phi,
    restore: z
      .strictObject({
        memoryBudgetMiB: z
          .number()
          .min(1)
          .max(65536)
          .default(128)
          .describe(
            'Memory a restore, and a snapshot synthesis (`chartlog snapshot`, `snapshot.everyHours`), may fill with the collapsed changes after the base snapshot (all tables together) and with rows it sorts; past it they spill to files sealed with a key that lives only in that process.',
          ),
        spillDir: z
          .string()
          .regex(/^\//, 'expected an absolute directory path')
          .optional()
          .describe("Where a restore or a snapshot synthesis makes its private spill directory (removed when it ends); default: the system's temporary directory."),
        copyThreads: z
          .number()
          .int()
          .min(0)
          .max(16)
          .default(defaultCopyThreads)
          .describe(
            'Threads that decode, open and write base snapshot rows as COPY text for a PostgreSQL target (docs/architecture.md §5, step 8); default: none below 4 cores (on 2 cores they saved no time and cost CPU and memory), else one per core up to 4; 0: the main thread writes the blocks as COPY text itself.',
          ),
        copyThreadsFromRows: z
          .number()
          .int()
          .min(0)
          .default(100_000)
          .describe('Tables estimated at fewer rows are written from the main thread: starting the COPY threads costs more than they save on a small table.'),
      })
      .default(() => ({ memoryBudgetMiB: 128, copyThreads: defaultCopyThreads(), copyThreadsFromRows: 100_000 }))
      .describe('How `chartlog restore` uses memory and disk.'),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
        format: z.enum(['auto', 'json', 'pretty']).default('auto').describe('auto: pretty on a terminal, JSON otherwise.'),
      })
      .default({ level: 'info', format: 'auto' }),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.sources.forEach((s, i) => {
      if (seen.has(s.name)) {
        ctx.addIssue({ code: 'custom', path: ['sources', i, 'name'], message: `duplicate source name "${s.name}"; each source needs its own name` });
      }
      seen.add(s.name);
    });
    if (cfg.bus.type === 'kafka' && !cfg.bus.kafka) {
      ctx.addIssue({ code: 'custom', path: ['bus', 'kafka'], message: 'bus.type is kafka but bus.kafka is missing; add bus.kafka.brokers' });
    }
    const kafkaSettings = cfg.bus.kafka;
    if (kafkaSettings) {
      for (const name of Object.keys(kafkaSettings.sourceGroupIds ?? {})) {
        if (!seen.has(name)) {
          ctx.addIssue({ code: 'custom', path: ['bus', 'kafka', 'sourceGroupIds', name], message: `"${name}" is not a source name; use one of ${[...seen].join(', ')}` });
        }
      }
      // Two sources in one group would take each other's partitions (and a compactor that loses
      // its transactions partition stops).
      const groups = new Map<string, string>();
      for (const s of cfg.sources) {
        const group = kafkaSettings.sourceGroupIds?.[s.name] ?? `${kafkaSettings.groupId}.${s.name}`;
        const other = groups.get(group);
        if (other !== undefined) {
          ctx.addIssue({ code: 'custom', path: ['bus', 'kafka', 'sourceGroupIds', s.name], message: `sources ${other} and ${s.name} would share the consumer group "${group}"; give each source its own group` });
        }
        groups.set(group, s.name);
      }
      const t = kafkaSettings.topics;
      if (t.minInsyncReplicas > t.replicationFactor) {
        ctx.addIssue({
          code: 'custom',
          path: ['bus', 'kafka', 'topics', 'minInsyncReplicas'],
          message: `min.insync.replicas ${t.minInsyncReplicas} is above the replication factor ${t.replicationFactor}: no write with acks = all could ever be acknowledged; lower it or raise bus.kafka.topics.replicationFactor`,
        });
      }
      if (!t.allowUnsafeReplication) {
        for (const [field, value] of [['replicationFactor', t.replicationFactor], ['minInsyncReplicas', t.minInsyncReplicas]] as const) {
          if (value < 2) {
            ctx.addIssue({
              code: 'custom',
              path: ['bus', 'kafka', 'topics', field],
              message: `${value} lets one broker failure lose changes already acknowledged to the source; use 2 or more (3 replicas, min.insync.replicas 2 is the usual), or set bus.kafka.topics.allowUnsafeReplication: true on a test cluster`,
            });
          }
        }
      }
    }
    for (const t of cfg.phi.strict) {
      if (!(t in cfg.phi.columns)) {
        ctx.addIssue({
          code: 'custom',
          path: ['phi', 'strict'],
          message: `strict table ${t} has no entry in phi.columns; add "phi.columns.${t}: [...]" (an empty list if it holds no PHI)`,
        });
      }
    }
    const store = cfg.storage.url;
    if (cfg.storage.objectLock !== undefined && !store.startsWith('s3://')) {
      ctx.addIssue({
        code: 'custom',
        path: ['storage', 'objectLock'],
        message: 'needs an S3 bucket with Object Lock enabled (storage.url s3://bucket); a file:// store cannot retain objects. Remove storage.objectLock or use such a bucket',
      });
    }
    const keyring = cfg.phi.keyring;
    if (store.startsWith('file:///') && keyring.startsWith('file:///')) {
      const root = store.slice('file://'.length).replace(/\/+$/, '');
      const key = keyring.slice('file://'.length);
      if (key === root || key.startsWith(root + '/')) {
        ctx.addIssue({
          code: 'custom',
          path: ['phi', 'keyring'],
          message: 'the keyring is inside the backup root; keep it elsewhere so a copy of the backups never carries its key',
        });
      }
    }
  });

/** The configuration as parsed and defaulted; frozen by load.ts. */
export type Config = z.output<typeof configSchema>;
export type SourceConfig = Config['sources'][number];
export type TlsConfig = SourceConfig['tls'];

/**
 * restore.copyThreads when unset: none below 4 cores, else one per core up to 4. On 2 cores the
 * threads compete with the main thread and PostgreSQL for the same cores: a 200,000-row restore
 * took 0.98× the time with them, 1 s more CPU and 70 MiB more memory
 * (benchmarks/results/restore-200k-threads-vs-none-quiet.json).
 */
export function defaultCopyThreads(cores: number = availableParallelism()): number {
  return cores < 4 ? 0 : Math.min(4, cores);
}
