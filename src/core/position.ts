import { ChartlogError } from './errors.js';

/**
 * A point in one source's change stream, totally ordered.
 *
 * `commit` is the connector's commit position in a fixed-width form whose string order is the
 * position order (PostgreSQL: the commit LSN as 16 hex digits; MySQL/MariaDB: see
 * connectors/mysql/binlog-position.ts). It is opaque outside the connector that made it:
 * the pipeline only compares, formats and parses it, never interprets it.
 *
 * `seq` is the index of an event within its transaction. A transaction's own position (the one
 * acknowledged to the source) has the commit part of its events and seq = COMMIT_SEQ, so it sorts
 * after every event of the transaction.
 *
 * Positions are plain frozen values: create them with `Position.of`, never mutate them.
 */
export interface Position {
  readonly commit: string;
  readonly seq: number;
}

/** seq of a whole transaction's position: after every event in it. */
export const COMMIT_SEQ = 0xffffffff;

const SEQ_WIDTH = 8;
const COMMIT_PATTERN = /^[0-9a-f]+(?:-[0-9a-f]+)*$/;
/** The commit text `of` checked last: a restore makes a position per record, nearly all of one transaction or snapshot. */
let lastCheckedCommit = '';

export const Position = {
  /** Makes a position, checking the commit part is a fixed-width lowercase hex form. */
  of(commit: string, seq: number = COMMIT_SEQ): Position {
    if (commit !== lastCheckedCommit) {
      if (!COMMIT_PATTERN.test(commit)) {
        throw new ChartlogError('internal', `invalid commit position "${commit}": expected lowercase hex groups`);
      }
      lastCheckedCommit = commit;
    }
    if (!Number.isInteger(seq) || seq < 0 || seq > COMMIT_SEQ) {
      throw new ChartlogError('internal', `invalid event sequence ${seq}: expected 0..${COMMIT_SEQ}`);
    }
    return Object.freeze({ commit, seq });
  },

  /** `<commit>.<seq as 8 hex digits>`: sorts as the positions do, safe in object names. */
  format(p: Position): string {
    return `${p.commit}.${p.seq.toString(16).padStart(SEQ_WIDTH, '0')}`;
  },

  /** Inverse of `format`; throws a usage error naming the bad text. */
  parse(text: string): Position {
    const dot = text.lastIndexOf('.');
    const commit = dot < 0 ? text : text.slice(0, dot);
    const seqText = dot < 0 ? 'ffffffff' : text.slice(dot + 1);
    if (!COMMIT_PATTERN.test(commit) || !/^[0-9a-f]{8}$/.test(seqText)) {
      throw new ChartlogError('usage', `invalid position "${text}"`, {
        hint: 'a position looks like <hex commit>.<8 hex digits>, as printed by `chartlog timeline`',
      });
    }
    return Position.of(commit, Number.parseInt(seqText, 16));
  },

  /** Negative, zero or positive as a sorts before, with or after b. */
  compare(a: Position, b: Position): number {
    if (a.commit !== b.commit) {
      // Fixed width per connector means plain string order is position order; a length
      // difference can only come from two connectors and is ordered by length first so the
      // comparison stays total.
      if (a.commit.length !== b.commit.length) return a.commit.length - b.commit.length;
      return a.commit < b.commit ? -1 : 1;
    }
    return a.seq - b.seq;
  },

  equals(a: Position, b: Position): boolean {
    return a.commit === b.commit && a.seq === b.seq;
  },

  /** The transaction-level position for an event position (seq = COMMIT_SEQ). */
  commitOf(p: Position): Position {
    return p.seq === COMMIT_SEQ ? p : Position.of(p.commit, COMMIT_SEQ);
  },

  max(a: Position, b: Position): Position {
    return Position.compare(a, b) >= 0 ? a : b;
  },
};
