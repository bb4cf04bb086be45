import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * Log fields that can hold row values. Whatever object is logged, these paths are censored, so
 * a careless `log.info({ event }, …)` cannot write PHI. Logs carry summaries — table, op,
 * position, counts — never rows (docs/architecture.md §3).
 */
export const REDACTED_PATHS: readonly string[] = [
  'row', 'rows', 'before', 'after', 'value', 'values', 'key', 'keys', 'data', 'record', 'records',
  'event', 'events', 'batch.events', 'params', 'parameters', 'sql', 'query',
  '*.row', '*.rows', '*.before', '*.after', '*.value', '*.values', '*.data', '*.record', '*.params',
  'password', '*.password', 'secretAccessKey', '*.secretAccessKey', 'accessKeyId', '*.accessKeyId',
  'url', '*.url', 'kek', '*.kek', 'dek', '*.dek', 'keyMaterial', '*.keyMaterial',
  'err.before', 'err.after', 'err.row', 'err.value', 'err.parameters', 'err.sql',
];

/** Counts logged under these names stay readable: a number of rows is a summary, not a row. */
const COUNT_NAMES = new Set(['rows', 'records', 'events', 'values', 'keys']);

function censorValue(value: unknown, path: string[]): unknown {
  const last = path[path.length - 1];
  if (typeof value === 'number' && last !== undefined && COUNT_NAMES.has(last)) return value;
  return '[redacted]';
}

export interface LoggerSettings {
  level?: string;
  /** auto: pretty when stderr is a terminal, JSON otherwise. */
  format?: 'auto' | 'json' | 'pretty';
  /** Where JSON lines go; defaults to stderr so stdout stays for command output. */
  destination?: NodeJS.WritableStream;
}

/** The process logger: JSON lines on stderr, pretty on a TTY, row values always censored. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? process.env.CHARTLOG_LOG_LEVEL ?? 'info',
    base: { app: 'chartlog' },
    redact: { paths: [...REDACTED_PATHS], censor: censorValue },
    serializers: { err: serializeError },
  };
  const format = settings.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && !settings.destination && process.stderr.isTTY === true);
  if (pretty) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { destination: 2, colorize: true } } });
  }
  return pino(options, (settings.destination ?? pino.destination(2)) as pino.DestinationStream);
}

/**
 * Errors are logged by name, code, message and stack only: driver errors (pg, mysql2) carry the
 * failing statement's parameters and row data as properties, which must not reach a log.
 */
function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: unknown; retriable?: unknown; hint?: unknown };
  const out: Record<string, unknown> = { type: e.name, message: e.message, stack: e.stack };
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
  if (typeof e.retriable === 'boolean') out.retriable = e.retriable;
  if (typeof e.hint === 'string') out.hint = e.hint;
  if (e.cause instanceof Error) out.cause = serializeError(e.cause);
  return out;
}

let root: Logger | undefined;

/** The shared logger; `configureLogger` replaces it once the configuration is loaded. */
export function logger(): Logger {
  root ??= createLogger();
  return root;
}

export function configureLogger(settings: LoggerSettings): Logger {
  root = createLogger(settings);
  return root;
}
