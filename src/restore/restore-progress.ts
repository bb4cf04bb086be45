/**
 * Progress of a restore per table (issue 15 item 6): rows and bytes written, rate, time left
 * when the table's size is known. Pure: the caller passes the clock, and the CLI decides where
 * the text goes (one updating line per table on a terminal, JSON lines with `--json`). Only
 * names and counts ever appear here, never a row value.
 */

/** What the restore tells its progress reporter (restore.ts calls these). */
export interface RestoreProgress {
  /** A table begins; `estimatedRows` is its base snapshot plus changes applied (0: unknown). */
  tableStarted(table: string, estimatedRows: number): void;
  /** `rows` more rows and `bytes` more bytes of the table reached the target. */
  advance(table: string, rows: number, bytes: number): void;
  /** The table is written (committed); `rows` is its final count. */
  tableDone(table: string, rows: number): void;
  /** The restore ended (also after a failure): draw the last state, release the terminal. */
  stop(): void;
}

/** One table's progress at a moment. */
export interface TableProgress {
  table: string;
  rows: number;
  /** 0 when unknown. */
  estimatedRows: number;
  bytes: number;
  startedMs: number;
  /** When the table was committed; null while it is being written. */
  doneMs: number | null;
}

/** The JSON form of one progress line (`--json`, on stderr). */
export interface ProgressRecord {
  progress: 'restore';
  table: string;
  state: 'writing' | 'done';
  rows: number;
  estimatedRows: number | null;
  bytes: number;
  seconds: number;
  rowsPerSecond: number;
  secondsLeft: number | null;
}

/** Counts per table, kept in the order tables started. */
export class ProgressTracker {
  readonly tables = new Map<string, TableProgress>();

  started(table: string, estimatedRows: number, nowMs: number): TableProgress {
    const t: TableProgress = { table, rows: 0, estimatedRows: Math.max(0, estimatedRows), bytes: 0, startedMs: nowMs, doneMs: null };
    this.tables.set(table, t);
    return t;
  }

  advance(table: string, rows: number, bytes: number): TableProgress | undefined {
    const t = this.tables.get(table);
    if (t) {
      t.rows += rows;
      t.bytes += bytes;
    }
    return t;
  }

  done(table: string, rows: number, nowMs: number): TableProgress | undefined {
    const t = this.tables.get(table);
    if (t) {
      t.rows = rows;
      t.doneMs = nowMs;
    }
    return t;
  }
}

/** Rate and time left of a table at `nowMs`: time left only while writing and when the size is known. */
export function progressRecord(t: TableProgress, nowMs: number): ProgressRecord {
  const end = t.doneMs ?? nowMs;
  const seconds = Math.max(0, end - t.startedMs) / 1000;
  const rate = seconds > 0 ? t.rows / seconds : 0;
  const known = t.estimatedRows > 0;
  let secondsLeft: number | null = null;
  if (t.doneMs !== null) secondsLeft = 0;
  // The estimate counts changes as rows (a delete too), so rows written can pass it: then "unknown".
  else if (known && rate > 0 && t.rows <= t.estimatedRows) secondsLeft = round1((t.estimatedRows - t.rows) / rate);
  return {
    progress: 'restore',
    table: t.table,
    state: t.doneMs === null ? 'writing' : 'done',
    rows: t.rows,
    estimatedRows: known ? t.estimatedRows : null,
    bytes: t.bytes,
    seconds: round1(seconds),
    rowsPerSecond: Math.round(rate),
    secondsLeft,
  };
}

/** One line for a terminal, e.g. `public.patients   120,000 / 202,000 rows  59%  45.2 MiB  8,100 rows/s  10 s left`. */
export function formatProgressLine(r: ProgressRecord, width = 0): string {
  const rows = r.estimatedRows !== null ? `${groupDigits(r.rows)} / ${groupDigits(r.estimatedRows)} rows` : `${groupDigits(r.rows)} rows`;
  const parts = [r.table.padEnd(width), rows];
  if (r.estimatedRows !== null && r.state === 'writing') parts.push(`${Math.min(99, Math.floor((r.rows / r.estimatedRows) * 100))}%`);
  parts.push(formatBytes(r.bytes), `${groupDigits(r.rowsPerSecond)} rows/s`);
  if (r.state === 'done') parts.push(`done in ${formatDuration(r.seconds)}`);
  else if (r.secondsLeft !== null) parts.push(`${formatDuration(r.secondsLeft)} left`);
  return parts.join('  ');
}

/** 1234567 → "1,234,567". */
export function groupDigits(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Bytes in B, KiB, MiB or GiB with one decimal above bytes. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** Seconds as "42 s", "3 min 05 s" or "2 h 07 min". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
