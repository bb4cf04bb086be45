import { hourStartUs, nextHour, type HourKey } from '../archive/layout.js';

export interface CloseState {
  /** The newest commit time known durable with everything before it (the stream's progress). */
  durableCommitUs: bigint;
  /** Milliseconds since the epoch. */
  nowMs: number;
  /** Nothing arrived lately and nothing is pending: the source is idle, not behind. */
  quiet: boolean;
  closeGraceMs: number;
  /** Close every open hour (shutdown of a finished stream, tests). */
  force?: boolean;
}

/**
 * The open hours that may be closed now, oldest first: an hour closes once the durable stream
 * has moved past its end, or once the source is quiet and the clock is `closeGraceMs` past it.
 * Shared by the embedded and the Kafka compactor so both close hours by the same rule.
 */
export function hoursToClose(openHours: Iterable<HourKey>, s: CloseState): HourKey[] {
  const nowUs = BigInt(s.nowMs) * 1000n;
  const out: HourKey[] = [];
  for (const hour of [...openHours].sort()) {
    const end = hourStartUs(nextHour(hour));
    const passed = s.durableCommitUs >= end || (s.quiet && nowUs >= end + BigInt(s.closeGraceMs) * 1000n);
    if (!passed && !s.force) break;
    out.push(hour);
  }
  return out;
}
