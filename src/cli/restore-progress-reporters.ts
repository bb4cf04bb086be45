import { formatProgressLine, ProgressTracker, progressRecord, type RestoreProgress } from '../restore/restore-progress.js';

/** Where progress text goes (process.stderr, or a fake in tests). */
interface TextOut {
  write(text: string): unknown;
}

/**
 * `--json`: one JSON line per table being written every `intervalMs`, and one when it is done
 * (`"state":"done"`), on stderr beside the logs (told apart by `"progress":"restore"`). Names and
 * counts only: never a row value.
 */
export function jsonProgress(out: TextOut, intervalMs = 2000, now: () => number = Date.now): RestoreProgress {
  const tracker = new ProgressTracker();
  const emit = (table: string): void => {
    const t = tracker.tables.get(table);
    if (t) out.write(`${JSON.stringify(progressRecord(t, now()))}\n`);
  };
  let timer: NodeJS.Timeout | null = null;
  return {
    tableStarted(table, estimatedRows) {
      tracker.started(table, estimatedRows, now());
      timer ??= setInterval(() => {
        for (const t of tracker.tables.values()) if (t.doneMs === null) emit(t.table);
      }, intervalMs).unref();
    },
    advance(table, rows, bytes) {
      tracker.advance(table, rows, bytes);
    },
    tableDone(table, rows) {
      tracker.done(table, rows, now());
      emit(table);
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}

/**
 * A terminal: one updating line per table being written (rows, bytes, rate, time left when the
 * table's size is known), redrawn at most every `redrawMs`; a table's last line stays when it is done.
 */
export function terminalProgress(out: TextOut, redrawMs = 200, now: () => number = Date.now): RestoreProgress {
  const tracker = new ProgressTracker();
  const finished: string[] = [];
  let live = 0;
  let timer: NodeJS.Timeout | null = null;
  const width = (): number => Math.max(0, ...[...tracker.tables.keys()].map((n) => n.length));
  const draw = (): void => {
    const at = now();
    let text = live > 0 ? `\x1b[${live}A\r\x1b[J` : '';
    for (const name of finished.splice(0)) text += `${formatProgressLine(progressRecord(tracker.tables.get(name)!, at), width())}\n`;
    const writing = [...tracker.tables.values()].filter((t) => t.doneMs === null);
    for (const t of writing) text += `${formatProgressLine(progressRecord(t, at), width())}\n`;
    live = writing.length;
    if (text) out.write(text);
  };
  return {
    tableStarted(table, estimatedRows) {
      tracker.started(table, estimatedRows, now());
      timer ??= setInterval(draw, redrawMs).unref();
    },
    advance(table, rows, bytes) {
      tracker.advance(table, rows, bytes);
    },
    tableDone(table, rows) {
      tracker.done(table, rows, now());
      finished.push(table);
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      draw();
    },
  };
}
