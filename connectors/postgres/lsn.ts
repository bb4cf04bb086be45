import { ChartlogError } from '../../src/core/errors.js';
import { Position } from '../../src/core/position.js';

/**
 * PostgreSQL log sequence numbers as BigInt. The server writes them as "X/Y" (two unpadded hex
 * halves), so two LSN strings never compare correctly as strings; every comparison here is on
 * BigInt.
 *
 *   parseLsn('16/B374D848') === 0x16B374D848n
 *   formatLsn(0x16B374D848n) === '16/B374D848'
 *   lsnHex(0x16B374D848n) === '00000016b374d848'   (the commit part of a Position)
 */
export type Lsn = bigint;

const MAX_LSN = (1n << 64n) - 1n;

export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new ChartlogError('decode', `invalid LSN "${text}": expected X/Y in hex`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new ChartlogError('internal', `LSN out of range: ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** 16 lowercase hex digits: the fixed-width form whose string order is LSN order. */
export function lsnHex(lsn: Lsn): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new ChartlogError('internal', `LSN out of range: ${lsn}`);
  return lsn.toString(16).padStart(16, '0');
}

export function lsnFromHex(hex: string): Lsn {
  if (!/^[0-9a-f]{16}$/.test(hex)) {
    throw new ChartlogError('usage', `"${hex}" is not a PostgreSQL position`, {
      hint: 'a PostgreSQL position has 16 lowercase hex digits before the dot; it may belong to another source',
    });
  }
  return BigInt(`0x${hex}`);
}

/**
 * The LSN a position stands for. Transaction positions carry the transaction's commit END LSN
 * (see postgres-connector.ts for why), snapshot positions the slot's consistent point.
 */
export function lsnOfPosition(p: Position): Lsn {
  return lsnFromHex(p.commit);
}

export function positionOfLsn(lsn: Lsn, seq?: number): Position {
  return Position.of(lsnHex(lsn), seq);
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}

/** Commit times come from the commit record, in microseconds (the connector's commitTimeResolutionUs). */
export const POSTGRES_COMMIT_TIME_RESOLUTION_US = 1n;
