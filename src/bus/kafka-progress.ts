import { ChartlogError } from '../core/errors.js';
import { sourceTopicPrefix } from './kafka-topics.js';

/**
 * Progress records (docs/formats.md, "Progress topic"): with several active compactors
 * (`bus.kafka.scaleOut`), each one publishes, after a flush made its parts durable, which events
 * those parts hold — the commit part of each event's position, its table, and its seqs as
 * ranges. The settler counts transactions from them. Positions, table names and counts only:
 * never a row value.
 */
export interface ProgressEvent {
  commit: string;
  table: string;
  seq: number;
}

export const PROGRESS_VERSION = 1;

/** Records larger than this are split (a broker refuses a batch above message.max.bytes, 1 MiB by default). */
export const MAX_PROGRESS_BYTES = 256 * 1024;

export function progressTopic(prefix: string, source: string): string {
  return `${sourceTopicPrefix(prefix, source)}__progress`;
}

interface Wire {
  v: number;
  member: string;
  /** [commit, table, [lo, hi, lo, hi, …]] — inclusive seq ranges, ascending. */
  events: [string, string, number[]][];
}

/** The events as progress record values, each at most about `maxBytes`; duplicates collapse. Pure. */
export function encodeProgress(member: string, events: Iterable<ProgressEvent>, maxBytes = MAX_PROGRESS_BYTES): Buffer[] {
  const byTx = new Map<string, Map<string, number[]>>();
  for (const e of events) {
    let tables = byTx.get(e.commit);
    if (!tables) byTx.set(e.commit, (tables = new Map()));
    let seqs = tables.get(e.table);
    if (!seqs) tables.set(e.table, (seqs = []));
    seqs.push(e.seq);
  }
  const out: Buffer[] = [];
  let batch: Wire['events'] = [];
  let size = 0;
  const cut = () => {
    if (batch.length === 0) return;
    out.push(Buffer.from(JSON.stringify({ v: PROGRESS_VERSION, member, events: batch } satisfies Wire)));
    batch = [];
    size = 0;
  };
  for (const [commit, tables] of byTx) {
    for (const [table, seqs] of tables) {
      seqs.sort((a, b) => a - b);
      let ranges: number[] = [];
      for (const s of seqs) {
        const last = ranges.length - 1;
        if (last > 0 && s <= ranges[last]! + 1) ranges[last] = Math.max(ranges[last]!, s);
        else ranges.push(s, s);
        // A huge transaction of scattered seqs still fits: cut inside it.
        if (ranges.length >= 8192) {
          batch.push([commit, table, ranges]);
          size += ranges.length * 8 + commit.length + table.length;
          ranges = [];
          if (size >= maxBytes) cut();
        }
      }
      if (ranges.length > 0) {
        batch.push([commit, table, ranges]);
        size += ranges.length * 8 + commit.length + table.length + 16;
      }
      if (size >= maxBytes) cut();
    }
  }
  cut();
  return out;
}

/** A progress record's events. A record this version cannot read is a fatal `decode` error naming where it is. */
export function decodeProgress(value: Buffer | null, where: string): { member: string; events: ProgressEvent[] } {
  let wire: Wire;
  try {
    wire = JSON.parse((value ?? Buffer.alloc(0)).toString('utf8')) as Wire;
  } catch {
    throw new ChartlogError('decode', `${where}: a progress record that is not JSON`, { hint: 'only chartlog compactors write to the __progress topic' });
  }
  if (wire?.v !== PROGRESS_VERSION || typeof wire.member !== 'string' || !Array.isArray(wire.events)) {
    throw new ChartlogError('decode', `${where}: a progress record of version ${String(wire?.v)}; this chartlog reads version ${PROGRESS_VERSION}`, { hint: 'run the same chartlog version in every compact process of a source' });
  }
  const events: ProgressEvent[] = [];
  for (const entry of wire.events) {
    const [commit, table, ranges] = entry;
    if (typeof commit !== 'string' || typeof table !== 'string' || !Array.isArray(ranges) || ranges.length % 2 !== 0) {
      throw new ChartlogError('decode', `${where}: a malformed progress entry`, { hint: 'only chartlog compactors write to the __progress topic' });
    }
    for (let i = 0; i < ranges.length; i += 2) {
      const lo = ranges[i]!;
      const hi = ranges[i + 1]!;
      if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo > hi || lo < 0) throw new ChartlogError('decode', `${where}: a malformed seq range in a progress entry`);
      for (let s = lo; s <= hi; s++) events.push({ commit, table, seq: s });
    }
  }
  return { member: wire.member, events };
}
