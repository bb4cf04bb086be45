import { ChartlogError, nullIfNotFound } from '../core/errors.js';
import { withRetry } from '../core/retry.js';
import type { ObjectStore } from '../storage/object-store.js';

/**
 * What a running `chartlog replicate` last said about itself: `<source>/state/replicas/<name>.json`
 * (docs/formats.md), replaced every status interval, at start and at stop. It lets `chartlog
 * timeline` show every replica's position and lag from the store alone, without the replicas'
 * credentials. Informational only: nothing reads it to decide what to apply (the replica's own
 * `chartlog_replica` row is its position), so it is not authenticated and a lost write is harmless.
 * It holds no credentials (no user name, no password) and no row values.
 */
export interface ReplicaState {
  version: 1;
  /** [a-z0-9_-]{1,64}: `chartlog replicate --name`, by default derived from the target. */
  name: string;
  source: string;
  target: { kind: 'postgres' | 'mysql'; host: string; port: number | null; database: string };
  phi: 'open' | 'sealed' | 'omit';
  /** running: following (or loading); stopped: ended by SIGINT/SIGTERM; failed: stopped by an error. */
  status: 'running' | 'stopped' | 'failed';
  /** For `failed`: chartlog's own message when the archive refused (a gap, a verify failure); else the error's kind only. */
  reason?: string;
  /** The last source transaction applied. */
  position: string;
  commitTime: string;
  lagSeconds: number;
  lagTransactions: number;
  /** Seconds between writes of this state (the replicator's --status-interval), for staleness. */
  intervalSeconds: number;
  updatedAt: string;
}

export const REPLICA_NAME = /^[a-z0-9_-]{1,64}$/;

export function replicaStatesPrefix(source: string): string {
  return `${source}/state/replicas/`;
}

export function replicaStateKey(source: string, name: string): string {
  if (!REPLICA_NAME.test(name)) throw new ChartlogError('internal', `replica name ${JSON.stringify(name)} is not [a-z0-9_-]{1,64}`);
  return `${replicaStatesPrefix(source)}${name}.json`;
}

/** Replaces the replica's state object (a plain put: the object is informational and per replica). */
export async function writeReplicaState(store: ObjectStore, state: ReplicaState, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(`${JSON.stringify(state, null, 2)}\n`, 'utf8');
  await withRetry(() => store.put(replicaStateKey(state.source, state.name), body, { contentType: 'application/json' }), { maxAttempts: 3, ...(signal ? { signal } : {}) });
}

/**
 * Every replica state of a source, by name. An object that cannot be parsed is reported as
 * unreadable rather than dropped, so a damaged one is seen.
 */
export async function readReplicaStates(store: ObjectStore, source: string): Promise<{ states: ReplicaState[]; unreadable: { key: string; reason: string }[] }> {
  const states: ReplicaState[] = [];
  const unreadable: { key: string; reason: string }[] = [];
  const prefix = replicaStatesPrefix(source);
  for await (const o of store.listAll(prefix)) {
    if (!o.key.endsWith('.json')) continue;
    const bytes = await nullIfNotFound(withRetry(() => store.get(o.key), { maxAttempts: 5 }));
    if (!bytes) continue; // replaced or removed between the listing and the read
    try {
      states.push(parseReplicaState(bytes, source, o.key.slice(prefix.length, -'.json'.length)));
    } catch (err) {
      unreadable.push({ key: o.key, reason: (err as Error).message });
    }
  }
  states.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { states, unreadable };
}

export function parseReplicaState(bytes: Uint8Array, source: string, name: string): ReplicaState {
  let s: Partial<ReplicaState>;
  try {
    s = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<ReplicaState>;
  } catch {
    throw new Error('not JSON');
  }
  const bad = (field: string) => new Error(`field ${field} is missing or invalid`);
  if (s.version !== 1) throw bad('version');
  if (s.name !== name) throw bad('name (it must match the object name)');
  if (s.source !== source) throw bad('source');
  const t = s.target;
  if (!t || (t.kind !== 'postgres' && t.kind !== 'mysql') || typeof t.host !== 'string' || typeof t.database !== 'string' || !(t.port === null || Number.isInteger(t.port))) throw bad('target');
  if (s.phi !== 'open' && s.phi !== 'sealed' && s.phi !== 'omit') throw bad('phi');
  if (s.status !== 'running' && s.status !== 'stopped' && s.status !== 'failed') throw bad('status');
  for (const f of ['position', 'commitTime', 'updatedAt'] as const) if (typeof s[f] !== 'string') throw bad(f);
  if (Number.isNaN(Date.parse(s.updatedAt!))) throw bad('updatedAt');
  for (const f of ['lagSeconds', 'lagTransactions', 'intervalSeconds'] as const) if (typeof s[f] !== 'number' || !(s[f] >= 0)) throw bad(f);
  if (s.reason !== undefined && typeof s.reason !== 'string') throw bad('reason');
  return s as ReplicaState;
}
