import type { IHeaders } from 'kafkajs';
import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { BusMessage } from '../codec/bus-message.js';
import { decodeHeaders, HEADER } from './kafka-topics.js';

/**
 * The Kafka record of a table topic. Since metadata format 2 one record carries several change
 * events: consecutive events of one transaction, one table and one partition. Per event, kafkajs
 * built, encoded, compressed, decoded and handed over a record of its own — most of the Kafka
 * bus's CPU (issue 16: 76.7 µs per row against 20.4 on the embedded bus). Formats 0 and 1 (one
 * event per record, metadata in headers: kafka-topics.ts) are still read; a topic may hold all
 * three across an upgrade.
 *
 * Format 2. The `chartlog` header, big-endian:
 *   0      version (2)
 *   1..8   commitTsUs (uint64)
 *   9      flags: bit 0 = a txId follows
 *   10..13 event count (uint32, at least 1)
 *   then   table, commit part of the positions, txId (when flagged): each a uint16 length and UTF-8
 * The value, per event in position order:
 *   seq (uint32), fingerprint (8 bytes), key length (int32, -1: no key) and key, value length
 *   (uint32) and value (Avro single-object encoding, PHI sealed).
 * The record's Kafka key is the event's key when it holds one event, otherwise none: the producer
 * places it in the partition its events' keys hash to (kafka-bus.ts), so every key still has one
 * partition and its changes stay in order there.
 */
export const BATCH_VERSION = 2;
const BATCH_FIXED = 14;
const EVENT_FIXED = 4 + 8 + 4 + 4;

/** One change event of a table record. */
export interface TableEvent {
  position: Position;
  fingerprint: string;
  key: Buffer | null;
  value: Buffer;
}

/** A table record decoded: what its events share, and the events in position order. */
export interface TableRecord {
  /** "schema.table", exact (the topic name may be escaped). */
  table: string;
  txId: string | null;
  commitTsUs: bigint;
  events: TableEvent[];
}

/** Bytes of `m` in a format 2 value. */
export function eventBytes(m: BusMessage): number {
  return EVENT_FIXED + (m.key?.byteLength ?? 0) + m.value.byteLength;
}

/**
 * The headers and value of one format 2 record holding `messages`: events of one transaction
 * (`txId`, `commitTsUs`) and one table, in position order, sharing the commit part of their
 * position.
 */
export function encodeTableRecord(messages: readonly BusMessage[], txId: string | null, commitTsUs: bigint): { headers: Record<string, Buffer>; value: Buffer } {
  const first = messages[0];
  if (!first) throw new ChartlogError('internal', 'a table record without events');
  const table = Buffer.byteLength(first.table);
  const commit = Buffer.byteLength(first.position.commit);
  const tx = txId === null ? -1 : Buffer.byteLength(txId);
  const h = Buffer.allocUnsafe(BATCH_FIXED + 2 + table + 2 + commit + (tx >= 0 ? 2 + tx : 0));
  h[0] = BATCH_VERSION;
  h.writeBigUInt64BE(commitTsUs, 1);
  h[9] = tx >= 0 ? 1 : 0;
  h.writeUInt32BE(messages.length, 10);
  let at = BATCH_FIXED;
  at = h.writeUInt16BE(table, at);
  at += h.write(first.table, at, 'utf8');
  at = h.writeUInt16BE(commit, at);
  at += h.write(first.position.commit, at, 'latin1');
  if (txId !== null) {
    at = h.writeUInt16BE(tx, at);
    h.write(txId, at, 'utf8');
  }
  let size = 0;
  for (const m of messages) size += eventBytes(m);
  // allocUnsafe: every byte is written below (lengths, then the bytes they count).
  const v = Buffer.allocUnsafe(size);
  at = 0;
  // Most events of a record share their schema: its 8 bytes are copied from the last event's
  // rather than checked and parsed from hex again.
  let fingerprint = '';
  let fingerprintAt = -1;
  for (const m of messages) {
    if (m.table !== first.table || m.position.commit !== first.position.commit) {
      throw new ChartlogError('internal', `a table record mixes ${first.table} at ${first.position.commit} with ${m.table} at ${m.position.commit}`);
    }
    at = v.writeUInt32BE(m.position.seq, at);
    if (fingerprintAt >= 0 && m.fingerprint === fingerprint) v.copyWithin(at, fingerprintAt, fingerprintAt + 8);
    else if (!/^[0-9a-f]{16}$/.test(m.fingerprint) || v.write(m.fingerprint, at, 8, 'hex') !== 8) throw new ChartlogError('internal', `fingerprint "${m.fingerprint}" is not 16 hex digits`);
    fingerprint = m.fingerprint;
    fingerprintAt = at;
    at += 8;
    if (m.key) {
      at = v.writeInt32BE(m.key.byteLength, at);
      v.set(m.key, at);
      at += m.key.byteLength;
    } else at = v.writeInt32BE(-1, at);
    at = v.writeUInt32BE(m.value.byteLength, at);
    v.set(m.value, at);
    at += m.value.byteLength;
  }
  return { headers: { [HEADER.meta]: h }, value: v };
}

/**
 * The events of a table record of any format (0, 1: one event; 2: several); `where` names the
 * topic/partition/offset in errors. The keys and values are views of the record's value.
 */
export function decodeTableRecord(m: { headers?: IHeaders | undefined; key: Buffer | null; value: Buffer | null }, where: string): TableRecord {
  const meta = m.headers?.[HEADER.meta];
  const one = Array.isArray(meta) ? meta[0] : meta;
  const b = typeof one === 'string' ? Buffer.from(one, 'latin1') : one;
  // No `chartlog` header: format 0.
  const version = b === undefined ? 0 : (b[0] ?? 0);
  if (version > BATCH_VERSION) {
    throw new ChartlogError('decode', `${where}: a table record of format ${version}, this chartlog reads formats 0 to ${BATCH_VERSION}`, { hint: 'a newer chartlog wrote it: run the compactor with the same or a newer chartlog than the capture process' });
  }
  if (version !== BATCH_VERSION) {
    const h = decodeHeaders(m.headers, where);
    if (!m.value) throw new ChartlogError('decode', `${where}: a table message without a value`);
    return { table: h.table, txId: h.txId, commitTsUs: h.commitTsUs, events: [{ position: h.position, fingerprint: h.fingerprint, key: m.key, value: m.value }] };
  }
  return decodeBatch(b!, m.value, where);
}

function decodeBatch(h: Buffer, v: Buffer | null, where: string): TableRecord {
  const bad = (what: string) => new ChartlogError('decode', `${where}: a table record of format ${BATCH_VERSION} ${what}`, { hint: 'only chartlog should publish to chartlog topics; check topicPrefix is not shared with another producer' });
  if (h.length < BATCH_FIXED) throw bad('has a truncated header');
  let at = BATCH_FIXED;
  const text = (encoding: 'utf8' | 'latin1'): string => {
    if (at + 2 > h.length) throw bad('has a truncated header');
    const n = h.readUInt16BE(at);
    if (at + 2 + n > h.length) throw bad('has a truncated header');
    const s = h.toString(encoding, at + 2, at + 2 + n);
    at += 2 + n;
    return s;
  };
  const flags = h[9]!;
  if ((flags & ~1) !== 0) throw bad(`has unknown flags ${flags}`);
  const count = h.readUInt32BE(10);
  if (count === 0) throw bad('counts no events');
  const table = text('utf8');
  const commit = text('latin1');
  const txId = flags & 1 ? text('utf8') : null;
  if (at !== h.length) throw bad('has bytes after its header fields');
  if (!v) throw bad('has no value');
  // Checked once: Position.of below then only adds the seq.
  try {
    Position.of(commit, 0);
  } catch (err) {
    throw new ChartlogError('decode', `${where}: a table record of format ${BATCH_VERSION} holds no valid position`, { cause: err });
  }
  const events: TableEvent[] = [];
  let fingerprint = '';
  let fingerprintAt = -1;
  at = 0;
  for (let i = 0; i < count; i++) {
    if (at + EVENT_FIXED > v.length) throw bad(`is truncated in event ${i}`);
    const seq = v.readUInt32BE(at);
    // Most events of a record share their schema: the text of the last fingerprint is reused.
    if (fingerprintAt < 0 || v.compare(v, fingerprintAt, fingerprintAt + 8, at + 4, at + 12) !== 0) fingerprint = v.toString('hex', at + 4, at + 12);
    fingerprintAt = at + 4;
    at += 12;
    const keyLength = v.readInt32BE(at);
    at += 4;
    if (keyLength < -1 || at + Math.max(0, keyLength) + 4 > v.length) throw bad(`is truncated in event ${i}`);
    const key = keyLength >= 0 ? v.subarray(at, at + keyLength) : null;
    at += Math.max(0, keyLength);
    const valueLength = v.readUInt32BE(at);
    at += 4;
    if (at + valueLength > v.length) throw bad(`is truncated in event ${i}`);
    events.push({ position: Position.of(commit, seq), fingerprint, key, value: v.subarray(at, at + valueLength) });
    at += valueLength;
  }
  if (at !== v.length) throw bad('has bytes after its events');
  return { table, txId, commitTsUs: h.readBigUInt64BE(1), events };
}
