import { ChartlogError } from '../core/errors.js';

/**
 * Object keys shared by every backend, so a key that works on `file://` works on `s3://` and
 * back: '/'-separated, relative, at most 1024 UTF-8 bytes (the S3 limit), each segment at
 * most 255 bytes (the file-system NAME_MAX), no '.' or '..' segments (they would escape the
 * root on a file system), no empty segments, no control characters (S3 XML listings cannot
 * carry them), and no segment that starts with TEMP_MARKER (the file backend's in-flight
 * writes, which listing hides).
 */
export const TEMP_MARKER = '.chartlog-tmp-';

const MAX_KEY_BYTES = 1024;
const MAX_SEGMENT_BYTES = 255;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/** A lone UTF-16 surrogate has no UTF-8 form: stored, it would come back as U+FFFD. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `key` is not a valid object key, or undefined when it is. */
export function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'it is empty';
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `it is longer than ${MAX_KEY_BYTES} bytes`;
  if (LONE_SURROGATE.test(key)) return 'it is not well-formed Unicode (a lone surrogate)';
  if (key.startsWith('/')) return "it starts with '/' (keys are relative)";
  if (key.endsWith('/')) return "it ends with '/' (that names a folder, not an object)";
  return segmentsProblem(key.split('/'));
}

/**
 * Why `prefix` is not a valid listing prefix, or undefined. A prefix is a key's beginning:
 * empty, ending in '/', or ending in part of a segment ('clinic/segments/public.pa').
 */
export function prefixProblem(prefix: string): string | undefined {
  if (typeof prefix !== 'string') return 'it is not a string';
  if (prefix === '') return undefined;
  if (Buffer.byteLength(prefix, 'utf8') > MAX_KEY_BYTES) return `it is longer than ${MAX_KEY_BYTES} bytes`;
  if (LONE_SURROGATE.test(prefix)) return 'it is not well-formed Unicode (a lone surrogate)';
  if (prefix.startsWith('/')) return "it starts with '/' (keys are relative)";
  const segments = prefix.split('/');
  const last = segments.pop()!;
  if (CONTROL.test(last)) return 'it contains a control character';
  // A trailing '.' could still grow into '.x'; only whole segments are checked for '.'/'..'.
  return segments.length === 0 ? undefined : segmentsProblem(segments);
}

function segmentsProblem(segments: string[]): string | undefined {
  for (const s of segments) {
    if (s === '') return "it has an empty segment ('//')";
    if (s === '.' || s === '..') return `it has a '${s}' segment`;
    if (CONTROL.test(s)) return 'it contains a control character';
    if (Buffer.byteLength(s, 'utf8') > MAX_SEGMENT_BYTES) return `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
    if (s.startsWith(TEMP_MARKER)) return `a segment starts with '${TEMP_MARKER}', which is reserved for in-flight writes`;
  }
  return undefined;
}

/** Throws ChartlogError('usage') naming the problem when `key` is not a valid object key. */
export function validateKey(key: string): string {
  const problem = keyProblem(key);
  if (problem !== undefined) {
    throw new ChartlogError('usage', `invalid object key ${JSON.stringify(key)}: ${problem}`, {
      hint: "object keys are relative '/'-separated paths such as 'clinic/segments/public.patients/x.avro', without '..', '.', empty segments or control characters",
    });
  }
  return key;
}

/** Throws ChartlogError('usage') naming the problem when `prefix` is not a valid listing prefix. */
export function validatePrefix(prefix: string): string {
  const problem = prefixProblem(prefix);
  if (problem !== undefined) {
    throw new ChartlogError('usage', `invalid object key prefix ${JSON.stringify(prefix)}: ${problem}`, {
      hint: "a prefix is the beginning of an object key, such as 'clinic/segments/', without a leading '/', '..' or empty segments",
    });
  }
  return prefix;
}

/** Compares strings in UTF-8 byte order, the order S3 lists keys in (not UTF-16 order). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Cursors are opaque to callers; these encode the last key returned. */
export function encodeCursor(lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (keyProblem(key) !== undefined || encodeCursor(key) !== cursor) {
    throw new ChartlogError('usage', 'invalid listing cursor', { hint: 'pass the cursor returned by the previous list() call unchanged' });
  }
  return key;
}

/** Range arguments checked the same way by every backend. */
export function validateRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new ChartlogError('usage', `invalid byte range [${start}, ${end}): expected integers with 0 <= start <= end`, {
      hint: 'getRange takes a start offset and an exclusive end offset',
    });
  }
}
