import { hourStartUs, nextHour, type HourKey } from './layout.js';

export interface SealState {
  /** The newest commit time known durable with everything before it (the stream's progress). */
  durableCommitUs: bigint;
  /** Milliseconds since the epoch. */
  nowMs: number;
  /** Nothing arrived lately and nothing is pending: the source is idle, not behind. */
  quiet: boolean;
  sealGraceMs: number;
  /** Seal every open hour (shutdown of a finished stream, tests). */
  force?: boolean;
}

/**
 * The open hours that may be sealed now, oldest first: an hour closes once the durable stream
 * has moved past its end, or once the source is quiet and the clock is `sealGraceMs` past it.
 * Shared by the embedded and the Kafka compactor so both seal by the same rule.
 */
export function hoursToSeal(openHours: Iterable<HourKey>, s: SealState): HourKey[] {
  const nowUs = BigInt(s.nowMs) * 1000n;
  const out: HourKey[] = [];
  for (const hour of [...openHours].sort()) {
    const end = hourStartUs(nextHour(hour));
    const passed = s.durableCommitUs >= end || (s.quiet && nowUs >= end + BigInt(s.sealGraceMs) * 1000n);
    if (!passed && !s.force) break;
    out.push(hour);
  }
  return out;
}
