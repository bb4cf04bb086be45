import { Position } from '../core/position.js';

/**
 * Finds a transaction Kafka acknowledged but never stored whole (pure: the caller gives the
 * clock). kafkajs 2.2.4 can confirm a request whose messages the cluster never kept, when a
 * partition leader dies mid-send (tulios/kafkajs#1303): the compactor then has the END record
 * of a transaction but not all the events it counts, or an END whose predecessor never came,
 * and the settled position waits on it for good. Judged lost: the same END has been the oldest
 * unsettled one for `afterMs` while Kafka acknowledged it (or past it) to the producer. The
 * caller then reads the source again from the compactor's checkpoint; duplicates are dropped by
 * position. A compactor that is only slow is judged lost too after `afterMs`: the re-read costs
 * time, never data.
 */
export class LostTransactionDetector {
  private watching: { tx: Position; since: number } | null = null;

  constructor(private readonly afterMs: number) {}

  /** Returns the END position judged lost (and starts watching afresh), or null. */
  observe(now: number, oldestUnsettled: Position | null, kafkaAcknowledged: Position | null): Position | null {
    if (oldestUnsettled === null || kafkaAcknowledged === null || Position.compare(kafkaAcknowledged, oldestUnsettled) < 0) {
      this.watching = null;
      return null;
    }
    if (this.watching === null || !Position.equals(this.watching.tx, oldestUnsettled)) {
      this.watching = { tx: oldestUnsettled, since: now };
      return null;
    }
    if (now - this.watching.since < this.afterMs) return null;
    this.watching = null;
    return oldestUnsettled;
  }
}
