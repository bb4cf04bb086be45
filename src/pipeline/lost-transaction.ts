import { Position } from '../core/position.js';

/**
 * Finds a transaction Kafka acknowledged but never stored whole (pure: the caller gives the
 * clock). kafkajs 2.2.4 can confirm a request whose messages the cluster never kept, when a
 * partition leader dies mid-send (tulios/kafkajs#1303): the compactor then has the END record
 * of a transaction but not all the events it counts, or an END whose predecessor never came,
 * and the settled position waits on it for good. The caller then reads the source again from
 * the compactor's checkpoint; duplicates are dropped by position. A compactor that is only slow
 * is judged lost too after `afterMs`: the re-read costs time, never data.
 *
 * Two views of the same wait:
 * - `observe` (`--role all`, the compactor in this process): the same END has been the oldest
 *   unsettled one for `afterMs` while Kafka acknowledged it (or past it) to the producer;
 * - `observeCheckpoint` (`--role capture`, which sees only the checkpoint in the object store):
 *   the checkpoint has not moved for `afterMs` while Kafka acknowledged past it. Whether a
 *   compactor runs at all is the caller's question (a stalled checkpoint without one is not a
 *   loss, and re-reading would not help).
 */
export class LostTransactionDetector {
  private watching: { key: string; since: number } | null = null;

  constructor(private readonly afterMs: number) {}

  /** Returns the END position judged lost (and starts watching afresh), or null. */
  observe(now: number, oldestUnsettled: Position | null, kafkaAcknowledged: Position | null): Position | null {
    if (oldestUnsettled === null || kafkaAcknowledged === null || Position.compare(kafkaAcknowledged, oldestUnsettled) < 0) {
      this.watching = null;
      return null;
    }
    return this.waited(now, Position.format(oldestUnsettled)) ? oldestUnsettled : null;
  }

  /**
   * True when `checkpoint` (null: none written yet) has stayed the same for `afterMs` while
   * Kafka acknowledged a transaction past it (then watching starts afresh).
   */
  observeCheckpoint(now: number, checkpoint: Position | null, kafkaAcknowledged: Position | null): boolean {
    if (kafkaAcknowledged === null || (checkpoint !== null && Position.compare(kafkaAcknowledged, checkpoint) <= 0)) {
      this.watching = null;
      return false;
    }
    return this.waited(now, checkpoint === null ? '' : Position.format(checkpoint));
  }

  private waited(now: number, key: string): boolean {
    if (this.watching === null || this.watching.key !== key) {
      this.watching = { key, since: now };
      return false;
    }
    if (now - this.watching.since < this.afterMs) return false;
    this.watching = null;
    return true;
  }
}
