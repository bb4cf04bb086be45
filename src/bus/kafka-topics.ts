import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { gzip, unzip } from 'node:zlib';
import type { IHeaders, KafkaConfig, LogEntry } from 'kafkajs';
import { CompressionCodecs, CompressionTypes, Kafka, logLevel } from './kafkajs.js';
import type { Config } from '../config/schema.js';
import { ChartlogError } from '../core/errors.js';
import { logger } from '../core/logger.js';
import { Position } from '../core/position.js';
import type { TransactionRecord } from '../archive/transaction-log.js';

/**
 * Kafka names and message framing shared by the producer (kafka-bus.ts) and the compactor's
 * consumer (kafka-compactor.ts). Everything here but `createKafka` and `TopicCreator` is a pure
 * function, tested on constructed values.
 *
 * Topics of a source:
 *   <prefix>.<source>.<schema>.<table>   one per table; key = encoded primary key
 *   <prefix>.<source>.__transactions     BEGIN/END per transaction, all in partition 0 (one order)
 *   <prefix>.<source>.__schemas          key = fingerprint, value = Avro schema JSON (compacted)
 */
export type KafkaSettings = NonNullable<Config['bus']['kafka']>;

/** Kafka allows [A-Za-z0-9._-] and at most 249 characters in a topic name. */
const MAX_TOPIC_LENGTH = 249;

/**
 * A schema or table name as a topic name part: letters, digits, '_' and '-' pass; every other
 * byte (the '.' too, so the parts stay apart) becomes `__xx` (hex of the UTF-8 byte). The topic
 * is only a route: the exact table name travels in the `table` header.
 */
export function topicPart(name: string): string {
  let out = '';
  for (const ch of name) {
    if (/^[A-Za-z0-9_-]$/.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `__${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

function bounded(topic: string): string {
  if (topic.length <= MAX_TOPIC_LENGTH) return topic;
  // Still deterministic and distinct: cut, then add a hash of the whole name.
  const hash = createHash('sha256').update(topic).digest('hex').slice(0, 16);
  return `${topic.slice(0, MAX_TOPIC_LENGTH - 17)}-${hash}`;
}

/** `<prefix>.<source>.` — every topic of a source starts with it. */
export function sourceTopicPrefix(prefix: string, source: string): string {
  return `${prefix}.${source}.`;
}

/** The topic of a table, given as "schema.table" (the first '.' splits). */
export function tableTopic(prefix: string, source: string, table: string): string {
  const dot = table.indexOf('.');
  if (dot <= 0) throw new ChartlogError('internal', `table name "${table}" is not "schema.table"`);
  return bounded(`${sourceTopicPrefix(prefix, source)}${topicPart(table.slice(0, dot))}.${topicPart(table.slice(dot + 1))}`);
}

export function transactionsTopic(prefix: string, source: string): string {
  return `${sourceTopicPrefix(prefix, source)}__transactions`;
}

export function schemasTopic(prefix: string, source: string): string {
  return `${sourceTopicPrefix(prefix, source)}__schemas`;
}

/** True for the table topics of a source (not its transactions or schema topics). */
export function isTableTopic(prefix: string, source: string, topic: string): boolean {
  const p = sourceTopicPrefix(prefix, source);
  // topicPart escapes '.', so a table topic has exactly one '.' after the prefix; the two
  // metadata topics have none.
  return topic.startsWith(p) && topic !== transactionsTopic(prefix, source) && topic !== schemasTopic(prefix, source) && topic.slice(p.length).includes('.');
}

/**
 * The consumer group of a source's compactor: its own per source (`<groupId>.<source>`, or
 * `sourceGroupIds[source]`). A group shared by sources would assign partitions only among the
 * topics its leader subscribed to: another source's topics went unconsumed.
 */
export function compactorGroupId(settings: Pick<KafkaSettings, 'groupId' | 'sourceGroupIds'>, source: string): string {
  return settings.sourceGroupIds?.[source] ?? `${settings.groupId}.${source}`;
}

/**
 * The consumer group of the compactor that settles a source's transactions and writes its
 * checkpoint: the compactor's own group, or with `scaleOut` the settler's group of its own
 * (`<compactor group>.settler`, kept to one process by the compactor lease).
 */
export function settlerGroupId(settings: Pick<KafkaSettings, 'groupId' | 'sourceGroupIds' | 'scaleOut'>, source: string): string {
  return compactorGroupId(settings, source) + (settings.scaleOut ? SETTLER_GROUP_SUFFIX : '');
}

/** Appended to the compactor group for the settler's own group (`bus.kafka.scaleOut`). */
export const SETTLER_GROUP_SUFFIX = '.settler';

/** The partition every BEGIN/END record goes to: one partition, one order. */
export const TRANSACTIONS_PARTITION = 0;

// ---------------------------------------------------------------------------------------------
// Headers of table messages

/** What a table message carries beside its key and value. No row values, ever. */
export interface MessageHeaders {
  /** "schema.table", exact (the topic name may be escaped). */
  table: string;
  fingerprint: string;
  position: Position;
  txId: string | null;
  commitTsUs: bigint;
}

export const HEADER = {
  /** Table messages since metadata format 1: the whole of `MessageHeaders` in one binary value (`encodeHeaders`). */
  meta: 'chartlog',
  // Format 0 (before it): one text header per field. Still read; no longer written.
  table: 'table',
  fingerprint: 'fingerprint',
  position: 'position',
  txId: 'txId',
  commitTsUs: 'commitTsUs',
  /** On __transactions records: BEGIN or END. */
  status: 'status',
} as const;

/**
 * The first byte of the `chartlog` header. Format 1, big-endian:
 *   0      version (1)
 *   1..8   fingerprint (8 bytes)
 *   9..16  commitTsUs (uint64)
 *   17..20 seq of the position (uint32)
 *   21     flags: bit 0 = a txId follows
 *   then   table, commit part of the position, txId (when flagged): each a uint16 length and UTF-8
 * One header instead of five: kafkajs encodes and decodes every header of every message field by
 * field, which took about a fifth of the producer's time (issue 16).
 */
export const META_VERSION = 1;
const META_FIXED = 22;

/** The headers of a table message: one `chartlog` header of format 1. */
export function encodeHeaders(h: MessageHeaders): Record<string, Buffer> {
  const table = Buffer.byteLength(h.table);
  const commit = Buffer.byteLength(h.position.commit);
  const txId = h.txId === null ? -1 : Buffer.byteLength(h.txId);
  const b = Buffer.allocUnsafe(META_FIXED + 2 + table + 2 + commit + (txId >= 0 ? 2 + txId : 0));
  b[0] = META_VERSION;
  // allocUnsafe: every byte must be written; a fingerprint that is not 16 hex digits would leave some as they were.
  if (!/^[0-9a-f]{16}$/.test(h.fingerprint) || b.write(h.fingerprint, 1, 8, 'hex') !== 8) throw new ChartlogError('internal', `fingerprint "${h.fingerprint}" is not 16 hex digits`);
  b.writeBigUInt64BE(h.commitTsUs, 9);
  b.writeUInt32BE(h.position.seq, 17);
  b[21] = txId >= 0 ? 1 : 0;
  let at = META_FIXED;
  at = b.writeUInt16BE(table, at);
  at += b.write(h.table, at, 'utf8');
  at = b.writeUInt16BE(commit, at);
  at += b.write(h.position.commit, at, 'latin1');
  if (h.txId !== null) {
    at = b.writeUInt16BE(txId, at);
    b.write(h.txId, at, 'utf8');
  }
  return { [HEADER.meta]: b };
}

function headerValue(headers: IHeaders | undefined, name: string): Buffer | string | undefined {
  const v = headers?.[name];
  return Array.isArray(v) ? v[0] : v;
}

function headerText(headers: IHeaders | undefined, name: string): string | undefined {
  const one = headerValue(headers, name);
  if (one === undefined) return undefined;
  return typeof one === 'string' ? one : one.toString('utf8');
}

function requiredHeader(headers: IHeaders | undefined, name: string, where: string): string {
  const v = headerText(headers, name);
  if (v === undefined) {
    throw new ChartlogError('decode', `${where}: the "${name}" header is missing`, {
      hint: 'only chartlog should publish to chartlog topics; check topicPrefix is not shared with another producer',
    });
  }
  return v;
}

/**
 * Inverse of `encodeHeaders`; `where` names the topic/partition/offset in errors. Reads format 1
 * (the `chartlog` header) and format 0 (five text headers, written before it) alike: a topic
 * may hold both across an upgrade.
 */
export function decodeHeaders(headers: IHeaders | undefined, where: string): MessageHeaders {
  const meta = headerValue(headers, HEADER.meta);
  if (meta !== undefined) return decodeMeta(typeof meta === 'string' ? Buffer.from(meta, 'latin1') : meta, where);
  return decodeTextHeaders(headers, where);
}

function decodeMeta(b: Buffer, where: string): MessageHeaders {
  const bad = (what: string) => new ChartlogError('decode', `${where}: the "${HEADER.meta}" header ${what}`, { hint: 'only chartlog should publish to chartlog topics; check topicPrefix is not shared with another producer' });
  if (b.length < 1) throw bad('is empty');
  if (b[0] !== META_VERSION) {
    throw new ChartlogError('decode', `${where}: the "${HEADER.meta}" header is of format ${b[0]}, this chartlog reads format ${META_VERSION}`, { hint: 'a newer chartlog wrote it: run the compactor with the same or a newer chartlog than the capture process' });
  }
  if (b.length < META_FIXED) throw bad('is truncated');
  let at = META_FIXED;
  const text = (encoding: 'utf8' | 'latin1'): string => {
    if (at + 2 > b.length) throw bad('is truncated');
    const n = b.readUInt16BE(at);
    if (at + 2 + n > b.length) throw bad('is truncated');
    const s = b.toString(encoding, at + 2, at + 2 + n);
    at += 2 + n;
    return s;
  };
  const flags = b[21]!;
  if ((flags & ~1) !== 0) throw bad(`has unknown flags ${flags}`);
  const table = text('utf8');
  const commit = text('latin1');
  const txId = flags & 1 ? text('utf8') : null;
  if (at !== b.length) throw bad('has bytes after its fields');
  let position: Position;
  try {
    position = Position.of(commit, b.readUInt32BE(17));
  } catch (err) {
    throw new ChartlogError('decode', `${where}: the "${HEADER.meta}" header holds no valid position`, { cause: err });
  }
  return { table, fingerprint: b.toString('hex', 1, 9), position, txId, commitTsUs: b.readBigUInt64BE(9) };
}

/** Format 0: one text header per field. */
function decodeTextHeaders(headers: IHeaders | undefined, where: string): MessageHeaders {
  const fingerprint = requiredHeader(headers, HEADER.fingerprint, where);
  if (!/^[0-9a-f]{16}$/.test(fingerprint)) throw new ChartlogError('decode', `${where}: the fingerprint header is not 16 hex digits`);
  const ts = requiredHeader(headers, HEADER.commitTsUs, where);
  if (!/^\d+$/.test(ts)) throw new ChartlogError('decode', `${where}: the commitTsUs header is not a decimal integer`);
  return {
    table: requiredHeader(headers, HEADER.table, where),
    fingerprint,
    position: Position.parse(requiredHeader(headers, HEADER.position, where)),
    txId: headerText(headers, HEADER.txId) ?? null,
    commitTsUs: BigInt(ts),
  };
}

// ---------------------------------------------------------------------------------------------
// Transaction metadata records (Debezium's field names where they exist)

export type TransactionStatus = 'BEGIN' | 'END';

interface TransactionMessageJson {
  status: TransactionStatus;
  id: string | null;
  pos: string;
  previous: string | null;
  commitTsUs: string;
  event_count?: number;
  data_collections?: { data_collection: string; event_count: number }[];
}

/** The JSON value of a BEGIN or END record; END carries per-table event counts. */
export function encodeTransactionMessage(status: TransactionStatus, r: TransactionRecord): Buffer {
  const json: TransactionMessageJson = { status, id: r.txId, pos: r.pos, previous: r.previous, commitTsUs: String(r.commitTsUs) };
  if (status === 'END') {
    const tables = Object.entries(r.tables).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    json.event_count = tables.reduce((n, [, c]) => n + c, 0);
    json.data_collections = tables.map(([data_collection, event_count]) => ({ data_collection, event_count }));
  }
  return Buffer.from(JSON.stringify(json), 'utf8');
}

export function decodeTransactionMessage(value: Buffer | null, where: string): { status: TransactionStatus; record: TransactionRecord } {
  let j: TransactionMessageJson;
  try {
    j = JSON.parse((value ?? Buffer.alloc(0)).toString('utf8')) as TransactionMessageJson;
  } catch (err) {
    throw new ChartlogError('decode', `${where}: not a transaction record`, { cause: err });
  }
  if ((j.status !== 'BEGIN' && j.status !== 'END') || typeof j.pos !== 'string' || !/^\d+$/.test(j.commitTsUs ?? '')) {
    throw new ChartlogError('decode', `${where}: not a transaction record`);
  }
  Position.parse(j.pos);
  const tables: Record<string, number> = {};
  for (const d of j.data_collections ?? []) tables[d.data_collection] = d.event_count;
  return { status: j.status, record: { pos: j.pos, previous: j.previous ?? null, txId: j.id ?? null, commitTsUs: Number(j.commitTsUs), tables } };
}

// ---------------------------------------------------------------------------------------------
// Client and topic creation

/** kafkajs logs go to our logger as warnings, message and error text only (no payloads). */
function logCreator() {
  return ({ namespace, level, log }: LogEntry) => {
    if (level > logLevel.WARN) return;
    const error = typeof log.error === 'string' ? log.error : undefined;
    logger().warn({ kafka: namespace, error }, `kafka: ${log.message}`);
  };
}

const gzipAsync = promisify(gzip);
const unzipAsync = promisify(unzip);
/**
 * zlib level 1 instead of kafkajs's default (6) for `compression: gzip`. On the bus's records (PHI
 * sealed, so high-entropy in part) level 1 deflates 2.11× against 2.14× at 63% of the CPU (a
 * 2 MiB table-topic segment, 512 KiB chunks: 10.6 against 16.9 ms per MiB, loaded machine);
 * the output is ordinary gzip, read by any consumer. kafkajs keeps codecs in one registry per
 * process: this sets it for every client chartlog makes (set on import, before any is made).
 *
 * Each side works in one output buffer as large as its result (`zlibChunkSize`): with zlib's
 * default 16 KiB chunks a 512 KiB record batch came back to the main thread chunk by chunk, a
 * callback, a thread-pool round trip and a buffer each (≈ 20 % of the codec's CPU).
 */
CompressionCodecs[CompressionTypes.GZIP] = () => ({
  compress: async (encoder: { buffer: Buffer }) => await gzipAsync(encoder.buffer, { level: 1, chunkSize: zlibChunkSize(deflateBound(encoder.buffer.length)) }),
  decompress: async (buffer: Buffer) => await unzipAsync(buffer, { chunkSize: zlibChunkSize(gzipInflatedSize(buffer)) }),
});

/** Bytes gzip can need for `n` bytes, at most (zlib's deflateBound, rounded up): stored blocks and header/trailer included. */
export function deflateBound(n: number): number {
  return n + (n >>> 8) + 64;
}

/**
 * The size a gzip member says it inflates to (ISIZE, its last 4 bytes: the size mod 2^32), plus
 * room for zlib to see the end without a second round: a hint only — a wrong one (a stream of
 * several members, or damage) costs an extra round or a larger buffer, never a wrong result.
 */
export function gzipInflatedSize(gz: Buffer): number {
  return gz.length >= 18 ? gz.readUInt32LE(gz.length - 4) + 64 : 64;
}

/** A zlib output chunk size for an expected output of `n` bytes: zlib's minimum 64, and 16 MiB at most (the hint comes from the data). */
export function zlibChunkSize(n: number): number {
  return Math.min(Math.max(n, 64), 16 * 1024 * 1024);
}

/** A kafkajs client from the configuration (TLS files read now; SASL password from config/env). */
export function createKafka(settings: KafkaSettings, clientSuffix = ''): Kafka {
  const cfg: KafkaConfig = {
    clientId: `${settings.clientId}${clientSuffix}`,
    brokers: settings.brokers,
    logLevel: logLevel.WARN,
    logCreator,
  };
  const tls = settings.tls;
  if (tls.mode !== 'disable') {
    cfg.ssl = {
      rejectUnauthorized: tls.mode === 'verify-full',
      ...(tls.ca ? { ca: [readFileSync(tls.ca, 'utf8')] } : {}),
      ...(tls.cert ? { cert: readFileSync(tls.cert, 'utf8') } : {}),
      ...(tls.key ? { key: readFileSync(tls.key, 'utf8') } : {}),
    };
  }
  if (settings.sasl) {
    const { mechanism, username, password } = settings.sasl;
    if (password === undefined) {
      throw new ChartlogError('config', 'bus.kafka.sasl.password is not set', { hint: 'set CHARTLOG_KAFKA_SASL_PASSWORD' });
    }
    cfg.sasl = { mechanism, username, password } as KafkaConfig['sasl'];
  }
  return new Kafka(cfg);
}
