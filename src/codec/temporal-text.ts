/**
 * Canonical date/time text ↔ Avro's date (days), time-micros, local-timestamp-micros and
 * timestamp-micros. A value is mapped only when formatting the number back gives the very same
 * text; otherwise (PostgreSQL 'infinity', BC dates, years past 9999, MySQL zero dates and
 * negative or ≥ 24 h TIME, trailing fraction zeros as MySQL prints them) the caller keeps the
 * text. Canonical form: 'YYYY-MM-DD', 'HH:MM:SS', then the fraction either with trailing zeros
 * trimmed (none at all when zero) — PostgreSQL's output form, `digits` undefined — or with
 * exactly `digits` digits (none when 0) — MySQL's form for a column of declared precision.
 */

const DAY_US = 86_400_000_000n;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d];
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

export function formatDate(days: number): string | null {
  const [y, m, d] = civilFromDays(days);
  if (y < 1 || y > 9999) return null;
  return `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`;
}

/** Days since the epoch, or null when the text is not a canonical date in years 1–9999. */
export function parseDate(text: string): number | null {
  const m = DATE.exec(text);
  if (!m) return null;
  const days = daysFromCivil(Number(m[1]), Number(m[2]), Number(m[3]));
  return formatDate(days) === text ? days : null;
}

/** `digits`: undefined for trimmed fractions, 0–6 for exactly that many fraction digits. */
export function formatTime(micros: bigint, digits?: number): string | null {
  if (micros < 0n || micros >= DAY_US) return null;
  const us = Number(micros);
  const secs = Math.floor(us / 1_000_000);
  const frac = us % 1_000_000;
  const base = `${pad(Math.floor(secs / 3600), 2)}:${pad(Math.floor(secs / 60) % 60, 2)}:${pad(secs % 60, 2)}`;
  if (digits === undefined) return frac === 0 ? base : `${base}.${pad(frac, 6).replace(/0+$/, '')}`;
  const fixed = pad(frac, 6);
  if (fixed.slice(digits) !== '0'.repeat(6 - digits)) return null;
  return digits === 0 ? base : `${base}.${fixed.slice(0, digits)}`;
}

/** Microseconds since midnight, or null when not a canonical time of day below 24:00. */
export function parseTime(text: string, digits?: number): bigint | null {
  const m = TIME.exec(text);
  if (!m) return null;
  const micros =
    BigInt((Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * 1_000_000 + Number((m[4] ?? '').padEnd(6, '0')));
  return formatTime(micros, digits) === text ? micros : null;
}

/** `suffix` is '' for wall-clock timestamps and '+00' for UTC-normalised timestamptz text. */
export function formatTimestamp(micros: bigint, suffix: string, digits?: number): string | null {
  const days = micros >= 0n ? micros / DAY_US : -((-micros + DAY_US - 1n) / DAY_US);
  const date = formatDate(Number(days));
  const time = formatTime(micros - days * DAY_US, digits);
  return date === null || time === null ? null : `${date} ${time}${suffix}`;
}

export function parseTimestamp(text: string, suffix: string, digits?: number): bigint | null {
  if (!text.endsWith(suffix) || text.length < 19 + suffix.length || text[10] !== ' ') return null;
  const days = parseDate(text.slice(0, 10));
  const time = parseTime(text.slice(11, text.length - suffix.length), digits);
  if (days === null || time === null) return null;
  const micros = BigInt(days) * DAY_US + time;
  return formatTimestamp(micros, suffix, digits) === text ? micros : null;
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
