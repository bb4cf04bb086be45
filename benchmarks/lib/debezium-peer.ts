/**
 * Debezium as a peer in the CDC benchmarks (issue 17): the small Java program of
 * benchmarks/debezium/ (the Debezium embedded engine, every change event serialised as JSON by
 * Debezium's JsonConverter and written as a line to a local file, offsets in a file) run as a
 * process against the same server and backlog as `chartlog run`. A test tool only: chartlog never
 * depends on it, and it is skipped (with a note) where Java 17 or Maven is missing.
 *
 * Like chartlog, Debezium first runs once on the table holding one row — its snapshot, slot,
 * offsets and schema history made, like a deployment that already runs — and then, timed, once
 * after the backlog: it resumes from its offsets and stops when it has written the backlog's
 * last row.
 */
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measurement, ratio, type BenchRun, type Measurement } from './bench-report.js';
import { onCleanup } from './cdc-bench.js';

const DIR = fileURLToPath(new URL('../debezium/', import.meta.url));
const JAVA_HOME = process.env.JAVA_HOME ?? (existsSync('/usr/lib/jvm/java-17-openjdk-amd64/bin/java') ? '/usr/lib/jvm/java-17-openjdk-amd64' : '');
const JAVA = JAVA_HOME ? join(JAVA_HOME, 'bin', 'java') : 'java';
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;

export type DebeziumConnector = 'postgres' | 'mariadb';

export interface DebeziumBuild {
  /** The jar for each connector: Debezium 3.6.1 (PostgreSQL), 3.5.0 (MariaDB): see benchmarks/debezium/pom.xml. */
  jars: Record<DebeziumConnector, string>;
  /** Debezium's version per connector, from the jar names in lib/. */
  versions: Record<DebeziumConnector, string>;
  java: string;
}

/**
 * Builds the peer (benchmarks/debezium/build.sh: idempotent, offline after the first build).
 * Returns the reason instead when Java or Maven is missing, so the benchmark runs without it.
 */
export function buildDebezium(): DebeziumBuild | { skipped: string } {
  let out: string;
  try {
    out = execFileSync('bash', [join(DIR, 'build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 900_000 });
  } catch (err) {
    const e = err as { status?: number; stderr?: string };
    const why = (e.stderr ?? String(err)).trim().split('\n').slice(-3).join(' ');
    if (e.status === 3) return { skipped: why };
    throw new Error(`benchmarks/debezium/build.sh failed (exit ${e.status}): ${why}`, { cause: err });
  }
  const [postgres, mariadb] = out.trim().split('\n').slice(-2);
  const debeziumVersion = (jar: string): string => {
    const embedded = readdirSync(join(jar, '..', 'lib')).find((n) => n.startsWith('debezium-embedded-'));
    return embedded ? embedded.replace(/^debezium-embedded-(.*)\.jar$/, '$1') : 'unknown';
  };
  return {
    jars: { postgres: postgres!, mariadb: mariadb! },
    versions: { postgres: debeziumVersion(postgres!), mariadb: debeziumVersion(mariadb!) },
    java: javaRuntimeVersion(),
  };
}

function javaRuntimeVersion(): string {
  try {
    // `java -version` prints on stderr.
    const r = execFileSync('bash', ['-c', `"${JAVA}" -version 2>&1 | head -2 | tail -1`], { encoding: 'utf8' });
    return r.trim();
  } catch {
    return 'unknown';
  }
}

export interface DebeziumRunOptions {
  jar: string;
  connector: DebeziumConnector;
  host: string;
  port: string;
  user: string;
  password?: string;
  database: string;
  /** schema.table (PostgreSQL) or database.table (MariaDB). */
  table: string;
  /** Offsets, schema history and the events file; the same directory for the set-up and the timed run. */
  workDir: string;
  /** Stop after this many change events of the table. */
  rows: number;
  /** The id the last event's key must carry (the backlog's last row). */
  lastId: number;
  slot?: string;
  publication?: string;
  serverId?: number;
  /** JsonConverter with the schema in every event (Debezium's default) or without. */
  jsonSchemas: boolean;
  timeoutMs: number;
  /** Debezium's stderr (warnings) goes here. */
  logFile: string;
}

export interface DebeziumTiming {
  /** Spawn → the last event written (file flushed and fsynced), seconds. */
  seconds: number;
  /** Spawn → the connector task started (JVM start, engine and connector set-up, checks, offsets read), seconds. */
  startupSeconds: number;
  /** Task started → the last event written, seconds. */
  streamingSeconds: number;
  /** Peak resident set of the JVM (VmHWM), MiB. */
  peakRssMiB: number;
  /** Bytes of JSON written. */
  bytes: number;
}

interface PeerLine {
  rows: number;
  bytes: number;
  taskStartedEpochMs: number;
  lastEventEpochMs: number;
  peakRssKiB: number;
  /** The last event's key: {"id":…}, or {"schema":…,"payload":{"id":…}} with --json-schemas. */
  lastKey: { id?: unknown; payload?: { id?: unknown } } | null;
  error?: string;
}

/** Runs the peer to its end; throws unless it wrote exactly `rows` events ending with `lastId`. */
export function runDebezium(o: DebeziumRunOptions): Promise<DebeziumTiming> {
  mkdirSync(o.workDir, { recursive: true });
  const args = [
    '-jar', o.jar, '--connector', o.connector, '--host', o.host, '--port', o.port, '--user', o.user, '--database', o.database,
    '--table', o.table, '--rows', String(o.rows), '--work-dir', o.workDir, '--json-schemas', String(o.jsonSchemas),
    '--timeout-s', String(Math.ceil(o.timeoutMs / 1000)),
    ...(o.slot ? ['--slot', o.slot] : []), ...(o.publication ? ['--publication', o.publication] : []),
    ...(o.serverId !== undefined ? ['--server-id', String(o.serverId)] : []),
  ];
  const env = { ...process.env, ...(o.password ? { DEBEZIUM_BENCH_PASSWORD: o.password } : {}) };
  return new Promise((resolve, reject) => {
    const [command, argv] = setpriv ? [setpriv, ['--pdeathsig', 'TERM', JAVA, ...args]] : [JAVA, args];
    const spawnedAt = Date.now();
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
    onCleanup(() => void (child.exitCode === null && child.kill('SIGKILL')));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs + 60_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8');
      // Appended, so the set-up run's warnings stay next to the timed run's.
      appendFileSync(o.logFile, stderr);
      const lines = Buffer.concat(out).toString('utf8').trim().split('\n');
      let r: PeerLine;
      try {
        r = JSON.parse(lines[lines.length - 1]!) as PeerLine;
      } catch {
        reject(new Error(`Debezium (${o.connector}) exited with ${code ?? signal} without its result line; see ${o.logFile}`));
        return;
      }
      const key = r.lastKey?.payload ?? r.lastKey;
      if (code !== 0 || r.rows !== o.rows || key?.id !== o.lastId) {
        reject(new Error(`Debezium (${o.connector}) exited with ${code ?? signal} after ${r.rows} of ${o.rows} events (last key ${JSON.stringify(r.lastKey)}, expected id ${o.lastId})${r.error ? `: ${r.error}` : ''}; see ${o.logFile}`));
        return;
      }
      resolve({
        seconds: (r.lastEventEpochMs - spawnedAt) / 1000,
        startupSeconds: (r.taskStartedEpochMs - spawnedAt) / 1000,
        streamingSeconds: (r.lastEventEpochMs - r.taskStartedEpochMs) / 1000,
        peakRssMiB: r.peakRssKiB / 1024,
        bytes: r.bytes,
      });
    });
  });
}

/**
 * Debezium's figures in a benchmark's report, and the chartlog / Debezium ratios of issue 17:
 * throughput ≥ 1.5× (with and without start-up), at lower peak RSS.
 */
export function reportDebezium(
  run: BenchRun,
  o: {
    rows: number;
    version: string;
    /** chartlog's throughput measurement (already added) and its label in the ratio names. */
    chartlog: Measurement;
    label: string;
    /** chartlog's rows/s without process start-up per repetition, if measured. */
    chartlogStreaming: number[] | null;
    /** chartlog's peak RSS per repetition (MiB), if read. */
    chartlogRssMiB: (number | null)[];
    debezium: DebeziumTiming[];
  },
): void {
  const rate = (secs: number[]) => secs.map((s) => o.rows / s);
  const name = `Debezium ${o.version} embedded (JSON → file)`;
  const dbz = run.add(measurement(name, 'rows/s', 'higher', 'peer', rate(o.debezium.map((d) => d.seconds))));
  const dbzStreaming = run.add(measurement(`${name}, without JVM start-up`, 'rows/s', 'higher', 'detail', rate(o.debezium.map((d) => d.streamingSeconds))));
  run.add(measurement('Debezium JVM + engine start-up (spawn → connector task started)', 's', 'lower', 'detail', o.debezium.map((d) => d.startupSeconds)));
  run.addRatio(ratio(o.chartlog, dbz, 1.5, `${o.label} / Debezium`));
  if (o.chartlogStreaming) {
    const ours = measurement(`${o.label}, without process start-up`, 'rows/s', 'higher', 'detail', o.chartlogStreaming);
    run.addRatio(ratio(ours, dbzStreaming, undefined, `${o.label} / Debezium, both without start-up`));
  }
  const dbzRss = run.add(measurement('Debezium peak RSS (VmHWM of the JVM)', 'MiB', 'lower', 'peer', o.debezium.map((d) => d.peakRssMiB)));
  const rss = o.chartlogRssMiB;
  if (rss.every((x): x is number => x !== null)) {
    const ourRss = run.add(measurement(`${o.label} peak RSS`, 'MiB', 'lower', 'chartlog', rss));
    run.addRatio(ratio(ourRss, dbzRss, 1, `peak RSS: Debezium / ${o.label} (goal: chartlog lower)`));
  }
}

/** The note every benchmark with Debezium carries: how it ran and what its time covers. */
export function debeziumNote(version: string, java: string, jsonSchemas: boolean, setup: string): string {
  return (
    `Debezium: ${version} embedded engine on ${java}, default JVM heap; ${setup}; its time runs from spawning the JVM until the backlog's last event is written to its JSON file ` +
    `(flushed and fsynced), start-up included; "without JVM start-up" runs from the connector task started. Its events carry no PHI sealing (chartlog seals 4 columns). ` +
    `JSON ${jsonSchemas ? 'with' : 'without'} the schema in every event (Debezium's JsonConverter default is with; without is faster, so the ratio is the conservative one)`
  );
}
