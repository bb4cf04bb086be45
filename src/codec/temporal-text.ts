/**
 * Canonical date/time text ↔ Avro's date (days), time-micros, local-timestamp-micros and
 * timestamp-micros. A value is mapped only when formatting the number back gives the very same
 * text; otherwise (PostgreSQL 'infinity', BC dates, years past 9999, MySQL zero dates and
 * negative or ≥ 24 h TIME, trailing fraction zeros as MySQL prints them) the caller keeps the
 * text. Canonical form: 'YYYY-MM-DD', 'HH:MM:SS', then the fraction either with trailing zeros
 * trimmed (none at all when zero) — PostgreSQL's output form, `digits` undefined — or with
 * exactly `digits` digits (none when 0) — MySQL's form for a column of declared precision.
 */

import { civilFromDays } from '../core/civil-date.js';

const DAY_US = 86_400_000_000n;
const DAY_US_NUMBER = 86_400_000_000;
const TWO_POW_53 = 2n ** 53n;
/** Days within which day × DAY_US stays below 2^53: plain numbers suffice (years 1697–2243). */
const SAFE_DAYS = 100_000;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');
/** '00'…'99': hours, minutes, seconds, months and days without a padStart per field (restore formats every timestamp). */
const TWO_DIGITS: readonly string[] = Array.from({ length: 100 }, (_, i) => pad(i, 2));

/**
 * Dates formatted lately, by day: a table's dates repeat (a snapshot's timestamps fall on a few
 * thousand days), and a lookup is a fraction of the calendar arithmetic. Cleared when full.
 */
const DATE_MEMO = new Map<number, string | null>();
const DATE_MEMO_SIZE = 8192;

export function formatDate(days: number): string | null {
  let text = DATE_MEMO.get(days);
  if (text !== undefined) return text;
  const [y, m, d] = civilFromDays(days);
  text = y < 1 || y > 9999 ? null : `${pad(y, 4)}-${TWO_DIGITS[m]}-${TWO_DIGITS[d]}`;
  if (DATE_MEMO.size >= DATE_MEMO_SIZE) DATE_MEMO.clear();
  DATE_MEMO.set(days, text);
  return text;
}

/** The `n` ASCII digits of `text` at `at` as a number, or -1 when one is not a digit. */
function digitsAt(text: string, at: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(at + i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

/**
 * Days since the epoch of the canonical date 'YYYY-MM-DD' at `at`, or null. Canonical means
 * formatDate gives the text back: years 1–9999 and a day that exists in its month.
 */
function dateAt(text: string, at: number): number | null {
  if (text.charCodeAt(at + 4) !== 45 || text.charCodeAt(at + 7) !== 45) return null; // '-'
  const y = digitsAt(text, at, 4);
  const m = digitsAt(text, at + 5, 2);
  const d = digitsAt(text, at + 8, 2);
  if (y < 1 || m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m)) return null;
  return daysFromCivil(y, m, d);
}

/** Days since the epoch, or null when the text is not a canonical date in years 1–9999. */
export function parseDate(text: string): number | null {
  return text.length === 10 ? dateAt(text, 0) : null;
}

/** `digits`: undefined for trimmed fractions, 0–6 for exactly that many fraction digits. */
export function formatTime(micros: bigint, digits?: number): string | null {
  if (micros < 0n || micros >= DAY_US) return null;
  return timeOfDay(Number(micros), digits);
}

/** formatTime of 0 ≤ us < one day. */
function timeOfDay(us: number, digits: number | undefined): string | null {
  const secs = Math.floor(us / 1_000_000);
  const frac = us % 1_000_000;
  const base = `${TWO_DIGITS[Math.floor(secs / 3600)]}:${TWO_DIGITS[Math.floor(secs / 60) % 60]}:${TWO_DIGITS[secs % 60]}`;
  if (digits === undefined) {
    if (frac === 0) return base;
    // The fraction without its trailing zeros: drop them from the number, keep the leading ones.
    let f = frac;
    let width = 6;
    while (f % 10 === 0) {
      f /= 10;
      width--;
    }
    return `${base}.${pad(f, width)}`;
  }
  const fixed = pad(frac, 6);
  if (fixed.slice(digits) !== '0'.repeat(6 - digits)) return null;
  return digits === 0 ? base : `${base}.${fixed.slice(0, digits)}`;
}

const FRACTION_SCALE = [1, 100_000, 10_000, 1_000, 100, 10, 1];

/**
 * Microseconds since midnight of the canonical time 'HH:MM:SS[.f…]' in text[at, end), or -1.
 * Canonical means formatTime(micros, digits) gives the text back: below 24:00, minutes and
 * seconds below 60, and the fraction trimmed (no trailing zero, none when zero; `digits`
 * undefined) or of exactly `digits` digits (none when 0).
 */
function timeAt(text: string, at: number, end: number, digits: number | undefined): number {
  const n = end - at;
  if (n < 8 || text.charCodeAt(at + 2) !== 58 || text.charCodeAt(at + 5) !== 58) return -1; // ':'
  const h = digitsAt(text, at, 2);
  const mi = digitsAt(text, at + 3, 2);
  const s = digitsAt(text, at + 6, 2);
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59) return -1;
  let fraction = 0;
  const fd = n > 8 ? n - 9 : 0;
  if (n > 8) {
    if (text.charCodeAt(at + 8) !== 46 || fd < 1 || fd > 6) return -1; // '.'
    const f = digitsAt(text, at + 9, fd);
    if (f < 0) return -1;
    fraction = f * FRACTION_SCALE[fd]!;
  }
  if (digits === undefined ? fd > 0 && text.charCodeAt(end - 1) === 48 : fd !== digits) return -1;
  return (h * 3600 + mi * 60 + s) * 1_000_000 + fraction;
}

/** Microseconds since midnight, or null when not a canonical time of day below 24:00. */
export function parseTime(text: string, digits?: number): bigint | null {
  const micros = timeAt(text, 0, text.length, digits);
  return micros < 0 ? null : BigInt(micros);
}

/** `suffix` is '' for wall-clock timestamps and '+00' for UTC-normalised timestamptz text. */
export function formatTimestamp(micros: bigint, suffix: string, digits?: number): string | null {
  let date: string | null;
  let time: string | null;
  if (micros > -TWO_POW_53 && micros < TWO_POW_53) {
    // Plain numbers are exact here (day multiples of 86_400_000_000 even beyond 2^53).
    const us = Number(micros);
    const days = Math.floor(us / DAY_US_NUMBER);
    date = formatDate(days);
    time = timeOfDay(us - days * DAY_US_NUMBER, digits);
  } else {
    const days = micros >= 0n ? micros / DAY_US : -((-micros + DAY_US - 1n) / DAY_US);
    date = formatDate(Number(days));
    time = formatTime(micros - days * DAY_US, digits);
  }
  return date === null || time === null ? null : `${date} ${time}${suffix}`;
}

/** Canonical 'date time' + suffix: both halves canonical, so formatTimestamp gives the text back. */
export function parseTimestamp(text: string, suffix: string, digits?: number): bigint | null {
  if (!text.endsWith(suffix) || text.length < 19 + suffix.length || text.charCodeAt(10) !== 32) return null; // ' '
  const days = dateAt(text, 0);
  if (days === null) return null;
  const time = timeAt(text, 11, text.length - suffix.length, digits);
  if (time < 0) return null;
  return days > -SAFE_DAYS && days < SAFE_DAYS ? BigInt(days * DAY_US_NUMBER + time) : BigInt(days) * DAY_US + BigInt(time);
}

/**
 * Fraction digits a column's values carry at fixed width: a source type ending in "(n)" —
 * MySQL's time(n), datetime(n), timestamp(n), whose values are printed with exactly n digits.
 * PostgreSQL's names end in "time zone" and its values are trimmed. Only a hint for choosing
 * the logical branch: a value that does not match it still travels exactly, as text.
 */
export function fixedFractionDigits(sourceType: string | undefined): number | undefined {
  const m = sourceType === undefined ? null : /\(([0-6])\)\s*$/.exec(sourceType);
  return m ? Number(m[1]) : undefined;
}
