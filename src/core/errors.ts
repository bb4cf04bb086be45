/**
 * The one error type of chartlog (after Debezium's ErrorHandler): every failure says whether
 * retrying can help. Retriable errors restart the failing stage with backoff; fatal errors stop
 * it with a message that tells the operator what to do.
 *
 * Messages and hints must never contain row values (PHI): name tables, columns, positions and
 * counts, never data.
 */
export type ErrorCode =
  /** Bad command line or configuration: exit code 2, nothing written. */
  | 'usage'
  | 'config'
  /** The source database is not set up for CDC (wal_level, binlog format, privileges…). */
  | 'source_setup'
  /** Connection to a source, broker or store failed or was lost. */
  | 'connection'
  /** Authentication or authorization refused. */
  | 'auth'
  /** An object that must exist does not. */
  | 'not_found'
  /** A create-if-absent write found the object already there. */
  | 'already_exists'
  /** Stored data failed a checksum, signature or authentication tag. */
  | 'integrity'
  /** A PHI policy refused to let data through (e.g. an unclassified column on a strict table). */
  | 'phi_policy'
  /** Decoding a change from the source failed. */
  | 'decode'
  /** A storage operation failed. */
  | 'storage'
  /** The operation timed out. */
  | 'timeout'
  /** Another process holds (or took over) the writer lease of a source archive. */
  | 'lease'
  /** A bug: an invariant did not hold. */
  | 'internal';

export interface ChartlogErrorOptions {
  /** True when the same operation may succeed if tried again (network blip, 5xx, restart). */
  retriable?: boolean;
  /** What the operator should do, e.g. "run ALTER TABLE public.t REPLICA IDENTITY FULL". */
  hint?: string;
  cause?: unknown;
}

export class ChartlogError extends Error {
  override readonly name = 'ChartlogError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: ChartlogErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.hint = options.hint;
  }

  /** Exit code for the CLI: 2 for bad usage or configuration, 1 for everything else. */
  get exitCode(): 1 | 2 {
    return this.code === 'usage' || this.code === 'config' ? 2 : 1;
  }

  /** The message with its hint, as shown to an operator. */
  describe(): string {
    return this.hint ? `${this.message}\n  fix: ${this.hint}` : this.message;
  }
}

export function usageError(message: string, hint?: string): ChartlogError {
  return new ChartlogError('usage', message, { hint });
}

export function configError(message: string, hint?: string): ChartlogError {
  return new ChartlogError('config', message, { hint });
}

/** True when `err` is a ChartlogError that says retrying may help. */
/** `op`'s result, or null when it fails with 'not_found' (an object that may not exist yet); any other failure is thrown. */
export async function nullIfNotFound<T>(op: Promise<T>): Promise<T | null> {
  try {
    return await op;
  } catch (err) {
    if (err instanceof ChartlogError && err.code === 'not_found') return null;
    throw err;
  }
}

export function isRetriable(err: unknown): boolean {
  return err instanceof ChartlogError && err.retriable;
}

/**
 * Wraps anything thrown into a ChartlogError, keeping an existing one as it is. Unknown errors
 * are fatal unless the caller says otherwise: guessing "retriable" can loop forever.
 */
export function toChartlogError(
  err: unknown,
  code: ErrorCode = 'internal',
  retriable = false,
): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ChartlogError(code, message, { retriable, cause: err });
}
