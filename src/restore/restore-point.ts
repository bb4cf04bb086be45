import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { RestorePoint } from '../archive/replay.js';

const HINT = 'use `latest`, an ISO-8601 time with its zone (e.g. 2026-11-24T06:40:12.123456Z or 2026-11-24 07:40:12+01:00), or a position as printed by `chartlog timeline`';

// Date, 'T' or a space, time with up to 6 fraction digits (microseconds, the archive's unit), zone.
const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)$/i;
const POSITION = /^[0-9a-f]+(?:-[0-9a-f]+)*\.[0-9a-f]{8}$/;

/**
 * The `--to` of `chartlog restore`: `latest`, an ISO-8601 time (a zone is required: a wall clock
 * alone names different moments in different places), or a position `<hex commit>.<8 hex>`.
 */
export function parseRestorePoint(text: string): RestorePoint {
  const t = text.trim();
  if (t.toLowerCase() === 'latest') return { kind: 'latest' };
  if (POSITION.test(t)) return { kind: 'position', position: Position.parse(t) };
  const m = ISO.exec(t);
  if (!m) {
    const why = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/.test(t)
      ? 'a time needs its zone (Z or ±HH:MM)'
      : /\.\d{7,}/.test(t)
        ? 'at most 6 fraction digits (microseconds)'
        : 'not a time, position or `latest`';
    throw new ChartlogError('usage', `--to "${t}": ${why}`, { hint: HINT });
  }
  const [, y, mo, d, h, mi, s = '0', frac = '', zone] = m;
  const fields = { year: Number(y), month: Number(mo), day: Number(d), hour: Number(h), minute: Number(mi), second: Number(s) };
  const ms = Date.UTC(fields.year, fields.month - 1, fields.day, fields.hour, fields.minute, fields.second);
  const back = new Date(ms);
  // Date.UTC rolls 2026-02-30 over into March; a moment that does not exist is a mistake.
  if (
    fields.month < 1 || fields.month > 12 || fields.hour > 23 || fields.minute > 59 || fields.second > 59 ||
    back.getUTCFullYear() !== fields.year || back.getUTCMonth() !== fields.month - 1 || back.getUTCDate() !== fields.day
  ) {
    throw new ChartlogError('usage', `--to "${t}": no such date or time`, { hint: HINT });
  }
  let offsetMinutes = 0;
  if (zone!.toUpperCase() !== 'Z') {
    const z = zone!.replace(':', '');
    const hh = Number(z.slice(1, 3));
    const mm = z.length > 3 ? Number(z.slice(3, 5)) : 0;
    if (hh > 23 || mm > 59) throw new ChartlogError('usage', `--to "${t}": invalid zone ${zone}`, { hint: HINT });
    offsetMinutes = (z[0] === '-' ? -1 : 1) * (hh * 60 + mm);
  }
  const us = BigInt(ms) * 1000n + BigInt(frac.padEnd(6, '0') || '0') - BigInt(offsetMinutes) * 60_000_000n;
  return { kind: 'time', us };
}

/** The point for messages: `latest`, the position, or the time in UTC with microseconds. */
export function describeRestorePoint(p: RestorePoint, formatUs: (us: bigint) => string): string {
  if (p.kind === 'latest') return 'latest';
  if (p.kind === 'position') return `position ${Position.format(p.position)}`;
  return formatUs(p.us);
}
