import { readFileSync, statSync } from 'node:fs';
import { usageError } from '../core/errors.js';

/**
 * The target URL with its password, which comes from the environment or a private file: a
 * command line is readable by every user of the machine (ps, /proc) and lands in shell history.
 * A password written in the URL still works, with a warning.
 */
export function targetUrl(url: string, from: { file?: string | undefined; env?: string | undefined }): string {
  if (from.file !== undefined && from.env !== undefined) {
    throw usageError('--target-password-file and CHARTLOG_TARGET_PASSWORD both give a password', 'keep one of them');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usageError('--target: not a URL', 'e.g. --target postgres://restorer@db.example:5432/clinic_restored');
  }
  const external = from.file !== undefined ? readPasswordFile(from.file) : from.env;
  if (parsed.password !== '') {
    if (external !== undefined) throw usageError('--target holds a password and another is given (environment or file)', 'remove the password from --target');
    process.stderr.write('warning: the --target URL holds a password, which other users of this machine can read on the command line; use CHARTLOG_TARGET_PASSWORD or --target-password-file\n');
    return url;
  }
  if (external === undefined) return url;
  if (parsed.username === '') throw usageError('--target has no user name for the given password', 'e.g. postgres://restorer@host/db');
  parsed.password = encodeURIComponent(external);
  return parsed.toString();
}

function readPasswordFile(path: string): string {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw usageError(`--target-password-file ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 'give a readable file holding only the password');
  }
  if ((mode & 0o077) !== 0) throw usageError(`--target-password-file ${path}: readable by group or others (mode ${(mode & 0o777).toString(8)})`, `chmod 600 ${path}`);
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw usageError(`--target-password-file ${path}: empty`, 'write the password into it');
  return password;
}
