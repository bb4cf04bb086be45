import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { ChartlogError } from '../core/errors.js';
import type { ObjectStore } from '../storage/object-store.js';

/**
 * The PHI audit log (docs/architecture.md §5: every opening of PHI is recorded). One immutable object per
 * record, `<source>/audit/<UTC time>-<random>.json`, created with putIfAbsent, so the log is
 * append-only on every store: records are added, never replaced. Records name who, when, what
 * (source, tables, columns, moment) and where to — never a value.
 */
export interface AuditRecord {
  version: 1;
  /** ISO-8601 UTC, when PHI was opened. */
  at: string;
  /** restore: one restore; replicate: one `chartlog replicate` session (again when new PHI columns appear). */
  action: 'restore' | 'replicate';
  /** The operating-system user (and the sudo caller, when there is one) and host. */
  who: { user: string; uid: number | null; sudoUser: string | null; host: string; pid: number };
  source: string;
  /** Tables restored, each with the PHI columns that were opened. */
  tables: { table: string; phiColumns: string[] }[];
  /** The moment asked for (--to as given) and the one restored to. */
  requested: string;
  restoredTo: { position: string; commitTime: string };
  /** Where the plaintext went: a database URL without password, or a directory. */
  target: string;
}

export function auditPrefix(source: string): string {
  return `${source}/audit/`;
}

/** Who is running this process, from the operating system. */
export function currentUser(): AuditRecord['who'] {
  let user = process.env.USER ?? process.env.LOGNAME ?? 'unknown';
  let uid: number | null = typeof process.getuid === 'function' ? process.getuid() : null;
  try {
    const info = userInfo();
    user = info.username;
    uid = info.uid >= 0 ? info.uid : uid;
  } catch {
    // No passwd entry (some containers): keep the environment's name and the numeric uid.
  }
  return { user, uid, sudoUser: process.env.SUDO_USER ?? null, host: hostname(), pid: process.pid };
}

/** Appends one record; returns its key. Fails (nothing opened reaches a target) when the store refuses. */
export async function appendAuditRecord(store: ObjectStore, record: AuditRecord): Promise<string> {
  const stamp = record.at.replace(/[-:]/g, '');
  const body = Buffer.from(`${JSON.stringify(record, null, 2)}\n`, 'utf8');
  for (let attempt = 0; attempt < 5; attempt++) {
    const key = `${auditPrefix(record.source)}${stamp}-${randomBytes(6).toString('hex')}.json`;
    if (await store.putIfAbsent(key, body, { contentType: 'application/json' })) return key;
  }
  throw new ChartlogError('storage', `could not append to the audit log of ${record.source}`, { retriable: true, hint: 'check the object store and run the restore again' });
}

/** Every record of a source's audit log, oldest first. */
export async function readAuditLog(store: ObjectStore, source: string): Promise<{ key: string; record: AuditRecord }[]> {
  const out: { key: string; record: AuditRecord }[] = [];
  for await (const o of store.listAll(auditPrefix(source))) {
    if (!o.key.endsWith('.json')) continue;
    out.push({ key: o.key, record: JSON.parse(Buffer.from(await store.get(o.key)).toString('utf8')) as AuditRecord });
  }
  return out;
}
