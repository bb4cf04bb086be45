import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configError } from '../core/errors.js';
import { configSchema, type Config } from './schema.js';
import { maskUrl } from '../core/mask-url.js';

/**
 * Reads, validates and freezes the configuration — once, at start-up. Secrets may come from
 * the environment instead of the file:
 *   CHARTLOG_S3_ACCESS_KEY_ID, CHARTLOG_S3_SECRET_ACCESS_KEY, CHARTLOG_KAFKA_SASL_PASSWORD,
 *   CHARTLOG_SOURCE_<NAME>_PASSWORD (NAME upper-cased, "-" as "_") for a source URL's password.
 */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw configError(
      `cannot read configuration file ${path}: ${code ?? String(err)}`,
      'pass --config with the path of a readable YAML file',
    );
  }
  return parseConfig(text, path, env);
}

/** Like loadConfig, from text; `origin` names the file in messages. */
export function parseConfig(text: string, origin: string, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const [line, col] = first.linePos?.[0] ? [first.linePos[0].line, first.linePos[0].col] : [0, 0];
    throw configError(`${origin}:${line}:${col}: not valid YAML: ${first.message.split('\n')[0]}`, 'fix the YAML syntax at that line');
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw configError(`${origin}: expected a YAML mapping with "sources", "storage" and "phi"`, 'see the configuration reference in README.md');
  }
  applyEnvOverrides(raw as Record<string, unknown>, env);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => formatIssue(issue, raw));
    throw configError(`${origin}: invalid configuration\n  ${lines.join('\n  ')}`, 'correct the named fields; `chartlog config check --config FILE` validates without running');
  }
  return deepFreeze(result.data);
}

function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const storage = raw.storage as Record<string, unknown> | undefined;
  if (storage && typeof storage === 'object' && (env.CHARTLOG_S3_ACCESS_KEY_ID || env.CHARTLOG_S3_SECRET_ACCESS_KEY)) {
    const s3 = (storage.s3 ??= {}) as Record<string, unknown>;
    if (env.CHARTLOG_S3_ACCESS_KEY_ID) s3.accessKeyId = env.CHARTLOG_S3_ACCESS_KEY_ID;
    if (env.CHARTLOG_S3_SECRET_ACCESS_KEY) s3.secretAccessKey = env.CHARTLOG_S3_SECRET_ACCESS_KEY;
  }
  const bus = raw.bus as Record<string, unknown> | undefined;
  const kafka = bus?.kafka as Record<string, unknown> | undefined;
  const sasl = kafka?.sasl as Record<string, unknown> | undefined;
  if (sasl && typeof sasl === 'object' && env.CHARTLOG_KAFKA_SASL_PASSWORD) sasl.password = env.CHARTLOG_KAFKA_SASL_PASSWORD;
  if (Array.isArray(raw.sources)) {
    for (const s of raw.sources as Record<string, unknown>[]) {
      if (!s || typeof s !== 'object' || typeof s.name !== 'string' || typeof s.url !== 'string') continue;
      const password = env[`CHARTLOG_SOURCE_${s.name.toUpperCase().replace(/-/g, '_')}_PASSWORD`];
      if (password === undefined) continue;
      try {
        const u = new URL(s.url);
        u.password = encodeURIComponent(password);
        s.url = u.toString();
      } catch {
        // Left as is: the schema reports the malformed URL by field name.
      }
    }
  }
}

/** `sources[0].type: expected "postgres" | "mysql", got "postgress"` — field, value, fix. */
export function formatIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const path = formatPath(issue.path);
  const present = hasPath(raw, issue.path);
  const got = present ? describeValue(getPath(raw, issue.path), issue.path) : 'nothing';
  switch (issue.code) {
    case 'invalid_value':
      return `${path}: expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${got}`;
    case 'invalid_type':
      if (!present) return `${path}: required field is missing; add it (${issue.expected})`;
      return `${path}: expected ${issue.expected}, got ${got}`;
    case 'unrecognized_keys':
      return issue.keys
        .map((k) => `${formatPath([...issue.path, k])}: unknown field; remove it or check its spelling against the configuration reference`)
        .join('\n  ');
    case 'too_small':
    case 'too_big':
    case 'invalid_format':
      return `${path}: ${issue.message}, got ${got}`;
    default:
      return `${path}: ${issue.message}${present && issue.code !== 'custom' ? `, got ${got}` : ''}`;
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

function hasPath(obj: unknown, path: readonly PropertyKey[]): boolean {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || !(p in (cur as object))) return false;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return true;
}

function getPath(obj: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = obj;
  for (const p of path) cur = (cur as Record<PropertyKey, unknown>)[p];
  return cur;
}

const SECRET_KEY = /password|secret|accesskeyid/i;

/** The value for an error message, secrets masked so a typo'd password is not printed. */
function describeValue(value: unknown, path: readonly PropertyKey[]): string {
  const last = path[path.length - 1];
  if (typeof last === 'string' && SECRET_KEY.test(last)) return '"****"';
  if (typeof value === 'string') return JSON.stringify(typeof last === 'string' && last === 'url' ? maskUrl(value) : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/** The configuration for printing: every secret replaced by "****". */
export function maskSecrets(cfg: Readonly<Config>): unknown {
  const walk = (v: unknown, key: string): unknown => {
    if (typeof v === 'string') {
      if (SECRET_KEY.test(key)) return '****';
      return key === 'url' ? maskUrl(v) : v;
    }
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    }
    return v;
  };
  return walk(cfg, '');
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}
