import { ChartlogError } from '../../src/core/errors.js';
import type { Lsn } from './lsn.js';

/**
 * The streaming replication sub-protocol carried in CopyData messages, as pure functions of
 * bytes: what the server sends (XLogData, primary keepalive) and the status update chartlog
 * answers with. https://www.postgresql.org/docs/current/protocol-replication.html
 *
 * Read here rather than through pg-logical-replication, whose per-message path built two LSN
 * strings, an event emission and a promise for every received message (≈ 4 % of the
 * pipeline's main thread at a 200k-row backlog, benchmarks/README.md).
 */

/** XLogData ('w'): the WAL start of this message, then its payload (a pgoutput message). */
export const XLOG_DATA = 0x77;
/** Primary keepalive ('k'): the server's WAL end, and whether it asks for an answer now. */
export const PRIMARY_KEEPALIVE = 0x6b;
/** Bytes before an XLogData payload: tag, dataStart, walEnd, sendTime. */
export const XLOG_HEADER_BYTES = 25;

/** Milliseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000;

export function readLsn(b: Uint8Array, at: number): Lsn {
  const hi = ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
  const lo = ((b[at + 4]! << 24) | (b[at + 5]! << 16) | (b[at + 6]! << 8) | b[at + 7]!) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** A primary keepalive's WAL end and reply request; throws on a short message. */
export function readKeepalive(b: Uint8Array): { walEnd: Lsn; replyRequested: boolean } {
  if (b.length < 18) throw new ChartlogError('decode', `malformed replication keepalive: ${b.length} bytes, expected 18`, { retriable: true });
  return { walEnd: readLsn(b, 1), replyRequested: b[17] === 1 };
}

/**
 * A standby status update reporting `lsn` as written, flushed and applied — exactly `lsn`: the
 * server confirms up to it (a commit's end LSN), not past it, so a transaction whose commit
 * record starts right there is sent again after a reconnect rather than skipped.
 */
export function standbyStatusUpdate(lsn: Lsn, nowMs: number, replyRequested: boolean): Buffer {
  const out = Buffer.alloc(34);
  out[0] = 0x72; // 'r'
  out.writeBigUInt64BE(lsn, 1);
  out.writeBigUInt64BE(lsn, 9);
  out.writeBigUInt64BE(lsn, 17);
  out.writeBigInt64BE(BigInt(nowMs - PG_EPOCH_MS) * 1000n, 25);
  out[33] = replyRequested ? 1 : 0;
  return out;
}
