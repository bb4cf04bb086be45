import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatDate, formatTime, formatTimestamp, parseDate, parseTime, parseTimestamp } from '../../../src/codec/temporal-text.js';

/**
 * The parsers take a value's logical branch only for canonical text. They are written by hand
 * for speed; these reference parsers are the definition they replaced (a regular expression,
 * then "formatting the number gives the very same text"), and both must agree on every input.
 */

const DAY_US = 86_400_000_000n;

function referenceDate(text: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return null;
  // Days from civil, as temporal-text.ts computes them (checked against formatDate below).
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  const yy = mo <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  const days = era * 146097 + doe - 719468;
  return formatDate(days) === text ? days : null;
}

function referenceTime(text: string, digits?: number): bigint | null {
  const m = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) return null;
  const micros = BigInt((Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * 1_000_000 + Number((m[4] ?? '').padEnd(6, '0')));
  return formatTime(micros, digits) === text ? micros : null;
}

function referenceTimestamp(text: string, suffix: string, digits?: number): bigint | null {
  if (!text.endsWith(suffix) || text.length < 19 + suffix.length || text[10] !== ' ') return null;
  const days = referenceDate(text.slice(0, 10));
  const time = referenceTime(text.slice(11, text.length - suffix.length), digits);
  if (days === null || time === null) return null;
  const micros = BigInt(days) * DAY_US + time;
  return formatTimestamp(micros, suffix, digits) === text ? micros : null;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const digit = fc.constantFrom(...'0123456789');
const digits = (min: number, max: number) => fc.array(digit, { minLength: min, maxLength: max }).map((d) => d.join(''));
const junk = fc.constantFrom('１９', 'ab', '-1', ' 1', '+1', '٣', '');
/** Mostly canonical pieces, some just out of range, some of the wrong width or characters. */
const field = (width: number, min: number, max: number) =>
  fc.oneof(
    { weight: 12, arbitrary: fc.integer({ min, max }).map((n) => pad(n, width)) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 10 ** width - 1 }).map((n) => pad(n, width)) },
    { weight: 1, arbitrary: digits(width - 1, width + 1) },
    { weight: 1, arbitrary: junk },
  );
const sep = (good: string, bad: string) => fc.oneof({ weight: 12, arbitrary: fc.constant(good) }, { weight: 1, arbitrary: fc.constant(bad) });
const date = fc.tuple(field(4, 1, 9999), sep('-', '/'), field(2, 1, 12), field(2, 1, 31)).map(([y, s, m, d]) => `${y}${s}${m}-${d}`);
const fraction = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  { weight: 8, arbitrary: digits(1, 6).map((f) => `.${f}`) },
  { weight: 1, arbitrary: digits(0, 7).map((f) => `.${f}`) },
  { weight: 1, arbitrary: fc.constantFrom('.', ',5', '.5 ', '.a') },
);
const time = fc.tuple(field(2, 0, 23), sep(':', '.'), field(2, 0, 59), field(2, 0, 59), fraction).map(([h, s, m, sec, f]) => `${h}${s}${m}:${sec}${f}`);
const digitsOption = fc.constantFrom(undefined, 0, 1, 3, 6);

test('parseDate agrees with the regex-and-round-trip definition', () => {
  fc.assert(fc.property(date, (t) => assert.equal(parseDate(t), referenceDate(t), t)), { numRuns: 20_000 });
  for (const t of ['0001-01-01', '9999-12-31', '2000-02-29', '1900-02-29', '2024-02-29', '2023-02-29', '2020-04-31', '0000-01-01', '1970-01-01\n', ' 1970-01-01', '1970-1-01']) {
    assert.equal(parseDate(t), referenceDate(t), t);
  }
});

test('parseTime agrees with the regex-and-round-trip definition, trimmed or of fixed width', () => {
  fc.assert(fc.property(time, digitsOption, (t, d) => assert.equal(parseTime(t, d), referenceTime(t, d), `${t} ${d}`)), { numRuns: 20_000 });
  for (const t of ['00:00:00', '23:59:59.999999', '24:00:00', '12:00:00.0', '12:00:00.50', '12:00:00.000000', '12:00:00.5', '-00:00:01', '100:00:00']) {
    for (const d of [undefined, 0, 1, 6]) assert.equal(parseTime(t, d), referenceTime(t, d), `${t} ${d}`);
  }
});

test('parseTimestamp agrees with the regex-and-round-trip definition for both suffixes', () => {
  const timestamp = fc.tuple(date, sep(' ', 'T'), time, fc.constantFrom('', '', '+00', '+00', '+01', '+0')).map(([d, s, t, z]) => `${d}${s}${t}${z}`);
  fc.assert(
    fc.property(timestamp, fc.constantFrom('', '+00'), digitsOption, (t, suffix, d) => assert.equal(parseTimestamp(t, suffix, d), referenceTimestamp(t, suffix, d), `${t} ${suffix} ${d}`)),
    { numRuns: 20_000 },
  );
  // Far from the epoch (beyond plain-number arithmetic) and around it.
  for (const t of ['0001-01-01 00:00:00', '9999-12-31 23:59:59.999999', '1969-12-31 23:59:59.999999', '1970-01-01 00:00:00', '1697-01-01 00:00:00.5', '2243-12-31 12:00:00']) {
    for (const suffix of ['', '+00']) assert.equal(parseTimestamp(t + suffix, suffix), referenceTimestamp(t + suffix, suffix), t);
  }
});

test('formatTimestamp agrees with whole-bigint arithmetic on both sides of 2^53 µs', () => {
  const reference = (micros: bigint, suffix: string, digits?: number): string | null => {
    const days = micros >= 0n ? micros / DAY_US : -((-micros + DAY_US - 1n) / DAY_US);
    const date = formatDate(Number(days));
    const time = formatTime(micros - days * DAY_US, digits);
    return date === null || time === null ? null : `${date} ${time}${suffix}`;
  };
  const edge = 2n ** 53n;
  const micros = fc.oneof(
    fc.bigInt({ min: -62_135_596_800_000_000n, max: 253_402_300_799_999_999n }),
    fc.bigInt({ min: -edge - DAY_US, max: -edge + DAY_US }),
    fc.bigInt({ min: edge - DAY_US, max: edge + DAY_US }),
    fc.bigInt({ min: -DAY_US, max: DAY_US }),
  );
  fc.assert(
    fc.property(micros, fc.constantFrom('', '+00'), digitsOption, (m, suffix, d) => {
      const text = formatTimestamp(m, suffix, d);
      assert.equal(text, reference(m, suffix, d));
      if (text !== null) assert.equal(parseTimestamp(text, suffix, d), m);
    }),
    { numRuns: 20_000 },
  );
});

test('formatDate and formatTime agree with Date and plain arithmetic, past the memo of recent days and again', () => {
  // More distinct days than formatDate keeps, twice: every answer, memoised or not, is the calendar's.
  for (let round = 0; round < 2; round++) {
    for (let days = -20_000; days < 20_000; days++) {
      assert.equal(formatDate(days), new Date(days * 86_400_000).toISOString().slice(0, 10));
    }
  }
  assert.equal(formatDate(-719_162), '0001-01-01');
  assert.equal(formatDate(-719_163), null);
  assert.equal(formatDate(2_932_896), '9999-12-31');
  assert.equal(formatDate(2_932_897), null);
  for (const [us, text] of [
    [0n, '00:00:00'],
    [1n, '00:00:00.000001'],
    [120_000n, '00:00:00.12'],
    [100_000n, '00:00:00.1'],
    [86_399_999_999n, '23:59:59.999999'],
    [45_296_000_010n, '12:34:56.00001'],
  ] as const) {
    assert.equal(formatTime(us), text);
  }
});
