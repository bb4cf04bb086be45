import { COMMIT_SEQ, type Position } from '../../src/core/position.js';
import { maxLsn, type Lsn } from './lsn.js';

/**
 * The two decisions the acknowledgement rule rests on (docs/architecture.md §1), as pure functions so
 * they are tested apart from any server.
 */

export interface AckProgress {
  /** Highest commit end LSN acknowledged through acknowledge(). */
  readonly ackTarget: Lsn;
  /** Highest LSN already reported to the server (it never goes back). */
  readonly confirmed: Lsn;
  /** A transaction's begin was processed and its commit not yet. */
  readonly inTx: boolean;
  /** Commit end of the newest transaction with changes received in this session. */
  readonly highestDataCommit: Lsn;
}

/**
 * The LSN a standby status update may report. Never less than what was reported before (on
 * PostgreSQL 15 a lower report moves the slot back). Normally the last acknowledged commit end;
 * the server's own position only when every received message was processed (`caughtUp`), no
 * transaction is open and every transaction with changes is acknowledged — then everything
 * up to the server's position is WAL nobody needs, and reporting it lets an idle slot advance.
 */
export function statusLsn(p: AckProgress, serverLsn: Lsn, caughtUp: boolean): Lsn {
  const lsn = maxLsn(p.confirmed, p.ackTarget);
  if (caughtUp && !p.inTx && p.highestDataCommit <= p.ackTarget && serverLsn > lsn) return serverLsn;
  return lsn;
}

/**
 * Which events of the transaction with commit part `commit` were delivered before (or are
 * older than `from`): those with seq <= the result. -1: none; COMMIT_SEQ: all of them.
 */
export function skipThrough(commit: string, resumeAfter: Position | null): number {
  if (!resumeAfter) return -1;
  if (commit < resumeAfter.commit) return COMMIT_SEQ;
  if (commit === resumeAfter.commit) return resumeAfter.seq;
  return -1;
}
