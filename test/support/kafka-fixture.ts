import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { FileKeyring } from '../../src/phi/keyring/file-keyring.js';
import { loadConfig } from '../../src/config/load.js';
import { openObjectStore } from '../../src/storage/open-object-store.js';
import { readArchiveIndex } from '../../src/archive/archive-index.js';
import { ArchiveReader } from '../../src/archive/archive-reader.js';
import { openArchiveCodec } from '../../src/archive/archive-codec.js';
import { Position } from '../../src/core/position.js';
import { ChartlogRun, runChartlog } from './chartlog-process.js';
import { Proc } from './chartlog-proc.js';
import { requireEnv } from './env.js';
import { kafkaTablePositions, positionSetDiff } from './kafka-positions.js';
import { capturePg, createPgDatabase, diffCaptures, type TestDatabase } from './restore-engines.js';
import { postgresEngine, type Engine } from './run-harness.js';

/**
 * What the Kafka integration tests share: `chartlog run` on the real 3-node cluster of
 * scripts/services.sh with fresh topics and a fresh consumer group per test (the cluster keeps
 * state for its lifetime), PostgreSQL sources, a file:// archive, a keyring, the Kafka admin
 * client, the source's replication slot as a measure of what chartlog acknowledged, and a
 * teardown that stops and drops all of it even when an assertion failed midway.
 */

/** `<tag>-<8 hex>`: the unique part of a test's topic prefix (`t-…`) and group (`g-…`). */
export function uniqueKafkaName(tag: string): string {
  return `${tag}-${randomBytes(4).toString('hex')}`;
}

/** The `bus:` line of a configuration on the test cluster; `extra` goes inside `bus.kafka` (e.g. `scaleOut: true`). */
export function kafkaBusLine(unique: string, extra = ''): string {
  const brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
  return `bus: { type: kafka, kafka: { brokers: ${JSON.stringify(brokers)}, topicPrefix: "t-${unique}", groupId: "g-${unique}", sessionTimeoutMs: 6000${extra ? `, ${extra}` : ''} } }`;
}

/**
 * Puts a configuration written for the embedded bus (RunHarness) on the Kafka bus: the child reads
 * the file at start, the last `bus:` wins. Returns the topic prefix.
 */
export function appendKafkaBus(configFile: string, tag: string): string {
  const unique = uniqueKafkaName(tag);
  appendFileSync(configFile, `\n${kafkaBusLine(unique)}\n`);
  return `t-${unique}`;
}

export interface KafkaFixtureOptions {
  /** Short tag in topic and group names. */
  tag: string;
  /** In the work folder's name (`chartlog-<label>-…`); default the tag. */
  label?: string;
  /** One PostgreSQL database per source; default `clinic` alone. */
  sources?: readonly string[];
  /** Settings inside `bus.kafka` after the common ones (see kafkaBusLine). */
  bus?: string;
}

export class KafkaFixture {
  readonly work: string;
  readonly unique: string;
  readonly prefix: string;
  readonly brokers = requireEnv('CHARTLOG_TEST_KAFKA_BROKERS').split(',');
  readonly keyring: string;
  readonly configFile: string;
  readonly backup: string;
  readonly kafka: Kafka;
  readonly admin: Admin;
  /** Changes made by numberedTransaction, each one event: the distinct positions Kafka must hold. */
  changes = 0;
  private readonly runs: ChartlogRun[] = [];
  private readonly procs: Proc[] = [];
  private readonly targets: TestDatabase[] = [];

  /** A fresh database per source with no tables yet, the keyring and the configuration written, the admin client connected. */
  static async open(options: KafkaFixtureOptions): Promise<KafkaFixture> {
    const engines: Record<string, Engine> = {};
    for (const s of options.sources ?? ['clinic']) engines[s] = await postgresEngine();
    const f = new KafkaFixture(options, engines);
    await f.admin.connect();
    return f;
  }

  private constructor(
    private readonly options: KafkaFixtureOptions,
    readonly engines: Record<string, Engine>,
  ) {
    this.work = mkdtempSync(join(tmpdir(), `chartlog-${options.label ?? options.tag}-`));
    this.unique = uniqueKafkaName(options.tag);
    this.prefix = `t-${this.unique}`;
    this.keyring = join(this.work, 'keys', 'keyring.json');
    mkdirSync(join(this.work, 'keys'), { mode: 0o700 });
    FileKeyring.create(this.keyring);
    this.configFile = join(this.work, 'chartlog.yaml');
    this.backup = join(this.work, 'backup');
    this.writeConfig();
    this.kafka = new Kafka({ clientId: 'chartlog-test', brokers: this.brokers, logLevel: logLevel.NOTHING });
    this.admin = this.kafka.admin();
  }

  /** The first source's database. */
  get engine(): Engine {
    return Object.values(this.engines)[0]!;
  }

  /** The configured slot name of a source; `chartlog run` names its slot `<this>_<archive id>`. */
  slotOf(source = 'clinic'): string {
    return `chartlog_${this.engines[source]!.db}`;
  }

  get slot(): string {
    return this.slotOf(Object.keys(this.engines)[0]);
  }

  /** (Re)writes the configuration: PHI full_name and ssn, patients strict, 200 ms flushes, JSON logs. */
  writeConfig(bus = this.options.bus ?? ''): void {
    writeFileSync(
      this.configFile,
      [
        'sources:',
        ...Object.entries(this.engines).map(
          ([s, e]) => `  - { name: ${s}, type: postgres, url: "${e.url}", tables: [public.patients, public.visits], postgres: { slotName: ${this.slotOf(s)}, publicationName: ${this.slotOf(s)} } }`,
        ),
        kafkaBusLine(this.unique, bus),
        `storage: { url: "file://${this.backup}" }`,
        'segments: { flushIntervalMs: 200 }',
        'phi:',
        `  keyring: "file://${this.keyring}"`,
        '  columns: { public.patients: [full_name, ssn] }',
        '  strict: [public.patients]',
        '  publicColumns: { public.patients: [id, note, visits_count] }',
        `log: { level: ${process.env.ROLES_LOG ?? 'info'}, format: json }`,
      ].join('\n'),
    );
  }

  /** `chartlog run` (role all) logging to `<work>/chartlog.log`; stopped by close(). */
  run(): ChartlogRun {
    const run = new ChartlogRun(this.configFile, join(this.work, 'chartlog.log'));
    this.runs.push(run);
    return run;
  }

  /** `chartlog run --role <role>` in the background, logging to `<work>/<name>.log`; killed by close(). */
  start(role: string, name: string): Proc {
    const p = new Proc(['run', '--config', this.configFile, '--role', role], join(this.work, `${name}.log`));
    this.procs.push(p);
    return p;
  }

  /** A fresh, empty database to restore into; dropped by close(). */
  async target(prefix: string): Promise<TestDatabase> {
    const t = await createPgDatabase(prefix);
    this.targets.push(t);
    return t;
  }

  /**
   * Transaction i of a numbered workload, counted in `changes`: patient i+10 and visit i in one
   * transaction; every third also an update of patient i+9; with `deletes`, every fifth also a
   * delete of visit i−1. PHI columns carry canaries.
   */
  async numberedTransaction(i: number, deletes = false): Promise<void> {
    const engine = this.engine;
    await engine.exec(`BEGIN; INSERT INTO patients (id, full_name, ssn, note) VALUES (${i + 10}, 'CANARY-NAME-${i}', 'CANARY-SSN-${i}', 'n${i}'); INSERT INTO visits (id, patient_id, reason) VALUES (${i}, ${i + 10}, 'intake'); COMMIT`);
    this.changes += 2;
    if (i % 3 === 0) {
      await engine.exec(`UPDATE patients SET note = 'u${i}', visits_count = visits_count + 1 WHERE id = ${i + 9}`);
      this.changes += 1;
    }
    if (deletes && i % 5 === 0) {
      await engine.exec(`DELETE FROM visits WHERE id = ${i - 1}`);
      this.changes += 1;
    }
  }

  /** The source server's WAL position now. */
  async currentLsn(source = 'clinic'): Promise<string> {
    const [{ lsn }] = (await this.engines[source]!.query('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    return lsn;
  }

  /** What the source's slot has confirmed (null: no slot yet). */
  async confirmedLsn(source = 'clinic'): Promise<string | null> {
    const rows = (await this.engines[source]!.query(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE starts_with(slot_name, '${this.slotOf(source)}_')`)) as { lsn: string | null }[];
    return rows[0]?.lsn ?? null;
  }

  /** True when the source's slot has confirmed `lsn`. */
  async slotConfirmed(lsn: string, source = 'clinic'): Promise<boolean> {
    const rows = (await this.engines[source]!.query(`SELECT confirmed_flush_lsn >= '${lsn}'::pg_lsn AS done FROM pg_replication_slots WHERE starts_with(slot_name, '${this.slotOf(source)}_')`)) as { done: boolean }[];
    return rows[0]?.done === true;
  }

  /** Waits up to `timeoutMs` for the slot to confirm `lsn`: true if it did. */
  async waitSlotConfirmed(lsn: string, timeoutMs: number, source = 'clinic'): Promise<boolean> {
    for (const deadline = Date.now() + timeoutMs; ; await sleep(200)) {
      if (await this.slotConfirmed(lsn, source)) return true;
      if (Date.now() >= deadline) return false;
    }
  }

  /** Waits until the slot has confirmed everything the server wrote up to now (the archive has it all); fails with the slot's state. */
  async slotCaughtUp(timeoutMs: number, source = 'clinic'): Promise<void> {
    const lsn = await this.currentLsn(source);
    if (await this.waitSlotConfirmed(lsn, timeoutMs, source)) return;
    const slot = this.slotOf(source);
    const state = await this.engines[source]!.query(`SELECT slot_name, active, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE starts_with(slot_name, '${slot}_')`);
    assert.fail(`slot ${slot} did not confirm ${lsn}: ${JSON.stringify(state)}`);
  }

  /** `chartlog restore --to latest` of `source` into `target`: both tables equal the source database value by value. */
  async assertRestoresExactly(target: TestDatabase, source = 'clinic'): Promise<void> {
    const r = await runChartlog(['restore', '--config', this.configFile, '--source', source, '--to', 'latest', '--target', target.url]);
    assert.equal(r.code, 0, `${source}: restore exited ${r.code}: ${r.stderr.slice(0, 2000)}`);
    for (const table of ['public.patients', 'public.visits']) {
      const expected = await capturePg(this.engines[source]!.url, table);
      const diff = diffCaptures(await capturePg(target.url, table), expected, `${source} restore --to latest ${table}`);
      assert.equal(diff, null, diff ?? '');
    }
  }

  /** `chartlog verify`: the one source is whole, and more than `transactions` transactions were checked. */
  async assertVerifies(transactions: number): Promise<void> {
    const verified = await runChartlog(['verify', '--config', this.configFile, '--json']);
    assert.equal(verified.code, 0, verified.stdout.slice(0, 2000) + verified.stderr.slice(0, 2000));
    const reports = JSON.parse(verified.stdout) as { source: string; ok: boolean; problems: unknown[]; checked: { transactions: number } }[];
    assert.equal(reports.length, 1);
    assert.deepEqual([reports[0]!.source, reports[0]!.ok, reports[0]!.problems], ['clinic', true, []]);
    assert.ok(reports[0]!.checked.transactions > transactions, `verify checked the writer's transactions (${reports[0]!.checked.transactions})`);
  }

  /** The archive holds exactly the positions Kafka holds (after dedup): none missing, none extra; Kafka holds more than `changes`. */
  async assertArchiveHoldsKafka(changes: number): Promise<void> {
    const config = loadConfig(this.configFile);
    const store = openObjectStore(config.storage);
    try {
      const index = await readArchiveIndex(store, 'clinic');
      const codec = openArchiveCodec(config, config.sources[0]!, store, false);
      const reader = new ArchiveReader(store, index, codec.envelopes);
      const archived = new Set<string>();
      for (const table of ['public.patients', 'public.visits']) for (const r of await reader.tableRecords(table, null)) archived.add(Position.format(r.position));
      const inKafka = new Set(await kafkaTablePositions(this.kafka, this.admin, `${this.prefix}.`, 60_000));
      assert.ok(inKafka.size > changes, `Kafka holds the writer's changes (${inKafka.size})`);
      const diff = positionSetDiff(archived, inKafka);
      assert.deepEqual({ missing: diff.missing.length, extra: diff.extra.length }, { missing: 0, extra: 0 }, `archive vs Kafka: ${JSON.stringify(diff).slice(0, 500)}`);
    } finally {
      await store.close();
    }
  }

  /** Kills what is still running, then drops targets and sources and removes the work folder (kept with KEEP=1). */
  async close(): Promise<void> {
    for (const p of this.procs) await p.stop('SIGKILL');
    for (const r of this.runs) await r.close();
    await this.admin.disconnect();
    for (const t of this.targets) await t.drop();
    for (const e of Object.values(this.engines)) await e.close();
    if (!process.env.KEEP) rmSync(this.work, { recursive: true, force: true });
  }
}
