import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { readAvroContainer } from '../archive/avro-container.js';
import type { EnvelopeReader } from '../archive/envelope-reader.js';
import { schemaKey, TRANSACTIONS_TABLE } from '../archive/layout.js';
import { sha256Hex } from '../archive/manifest.js';
import { ArchiveReader, type StoredRecord } from '../archive/archive-reader.js';
import { RecordsOutOfOrder } from '../archive/position-merge.js';
import { tablesOf, type ArchiveIndex } from '../archive/archive-index.js';
import { authenticateArchive } from '../archive/archive-auth.js';
import { SchemaStore } from '../codec/schema-store.js';
import type { SqlEngine } from '../codec/sql-type.js';
import type { ArchiveMac } from '../phi/archive-mac.js';

export interface VerifyProblem {
  /** The object at fault, when there is one. */
  object?: string;
  kind: 'missing' | 'checksum' | 'unreadable' | 'chain' | 'gap' | 'count' | 'schema' | 'mac' | 'truncated';
  message: string;
}

export interface VerifyReport {
  source: string;
  ok: boolean;
  checked: { objects: number; manifests: number; snapshots: number; transactions: number; events: number; schemas: number };
  problems: VerifyProblem[];
  /**
   * False when the archive has no archive-MAC key (written only before archive MACs): its
   * objects were checked against their sha256 chain, which anyone who can write to the bucket
   * can recompute. Absent when verify was not asked to authenticate.
   */
  authenticated?: boolean;
  /**
   * Transactions after the checkpoint that are not whole in the store yet: what a stop without
   * a final flush (kill -9, a crash) leaves. Not restorable (restore cuts at the checkpoint) and
   * not lost: the next run reads them from the source again and completes them.
   */
  pending: { transaction: string; message: string }[];
}

/**
 * Checks a source's archive from the store alone: every object against the sha256 its
 * manifest recorded, the manifest hash chain, the transaction chain (each transaction names
 * the one before it, so a missing one is a gap), every transaction's event counts against the
 * records stored, and every referenced schema. Reads only; never repairs.
 */
export async function verifyArchive(
  store: ObjectStore,
  index: ArchiveIndex,
  envelopes: EnvelopeReader,
  /** Authenticate with the archive's MAC key (null: the archive has none) and check schemas for this engine. */
  auth?: { mac: ArchiveMac | null; engine: SqlEngine },
): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  if (auth) problems.push(...authenticateArchive(index, auth.mac));
  const checked = { objects: 0, manifests: index.hours.length, snapshots: index.snapshots.length, transactions: 0, events: 0, schemas: 0 };
  const fingerprints = new Set<string>();

  for (const u of index.unreadable) problems.push({ object: u.key, kind: 'unreadable', message: u.reason });

  /** `sha256` is a manifest's whole hash, or the prefix a part's name carries. */
  const checkObject = async (key: string, sha256: string) => {
    checked.objects++;
    let bytes: Uint8Array;
    try {
      bytes = await store.get(key);
    } catch (err) {
      if (err instanceof ChartlogError && err.code === 'not_found') {
        problems.push({ object: key, kind: 'missing', message: 'listed in a manifest, absent from the store' });
        return;
      }
      throw err;
    }
    if (!sha256Hex(bytes).startsWith(sha256)) problems.push({ object: key, kind: 'checksum', message: 'sha256 differs from the one recorded for it' });
  };

  index.hours.forEach((h, i) => {
    const before = i > 0 ? index.hours[i - 1]! : null;
    const prev = h.manifest.previous;
    if (before && (prev?.hour !== before.hour || prev.sha256 !== before.sha256)) {
      problems.push({
        object: h.key,
        kind: 'chain',
        message: prev?.hour === before.hour ? `previous manifest ${before.hour} was altered (hash differs)` : `names ${prev?.hour ?? 'no'} previous manifest, but ${before.hour} precedes it`,
      });
    }
    if (!before && prev) problems.push({ object: h.key, kind: 'chain', message: `names previous manifest ${prev.hour}, which is missing` });
  });
  for (const h of index.hours) {
    for (const o of h.manifest.objects) {
      await checkObject(o.key, o.sha256);
      if (o.table !== TRANSACTIONS_TABLE) fingerprints.add(o.fingerprint);
    }
  }
  for (const s of index.snapshots) {
    for (const t of Object.values(s.tables)) {
      fingerprints.add(t.fingerprint);
      for (const p of t.parts) {
        await checkObject(p.key, p.sha256);
        fingerprints.add(p.fingerprint);
      }
    }
  }
  for (const p of index.openParts) {
    if (p.sha256) await checkObject(p.key, p.sha256);
    if (p.sections) {
      // A flush part: its table of contents names each section's writer schema.
      for (const s of p.sections) if (s.table !== TRANSACTIONS_TABLE) fingerprints.add(s.fingerprint);
      continue;
    }
    if (p.table === TRANSACTIONS_TABLE) continue;
    try {
      const fp = readAvroContainer(await store.get(p.key), p.key).header.metadata['chartlog.fingerprint'];
      if (fp) fingerprints.add(fp);
    } catch (err) {
      problems.push({ object: p.key, kind: 'unreadable', message: err instanceof Error ? err.message : String(err) });
    }
  }
  for (const fp of fingerprints) {
    checked.schemas++;
    const key = schemaKey(index.source, fp);
    if (!auth) {
      if (!(await store.head(key))) problems.push({ object: key, kind: 'schema', message: 'schema referenced by stored records is missing' });
      continue;
    }
    let bytes: Uint8Array;
    try {
      bytes = await store.get(key);
    } catch (err) {
      if (!(err instanceof ChartlogError && err.code === 'not_found')) throw err;
      problems.push({ object: key, kind: 'schema', message: 'schema referenced by stored records is missing' });
      continue;
    }
    // Its MAC, its attribute checked strictly (what restore writes into DDL), its fingerprint.
    try {
      const s = SchemaStore.parse(Buffer.from(bytes).toString('utf8'), key, auth.mac ? { mac: auth.mac, sha256: sha256Hex(bytes) } : undefined, auth.engine);
      if (s.fingerprintHex !== fp) problems.push({ object: key, kind: 'schema', message: `holds the schema with fingerprint ${s.fingerprintHex}` });
    } catch (err) {
      const message = err instanceof Error ? err.message.replace(`schema object ${key}: `, '') : String(err);
      problems.push({ object: key, kind: /MAC/.test(message) ? 'mac' : 'schema', message });
    }
  }

  // Transactions and their event counts need readable objects; skip them when some are damaged.
  const authenticated = auth ? { authenticated: auth.mac !== null } : {};
  if (problems.some((p) => p.kind === 'missing' || p.kind === 'checksum' || p.kind === 'unreadable' || p.kind === 'schema' || p.kind === 'mac')) {
    return { source: index.source, ok: false, checked, problems, ...authenticated, pending: [] };
  }
  const reader = new ArchiveReader(store, index, envelopes);
  const txs = await reader.transactions(null);
  checked.transactions = txs.length;
  const expected = new Map<string, Map<string, number>>();
  // A connector snapshot taken while no stream ran restarts the stream at its position: the
  // next transaction names the snapshot, which holds everything up to it. That break is whole.
  const sourceSnapshots = new Set(index.snapshots.filter((s) => s.origin === 'source').map((s) => s.position));
  const restartsAtSnapshot = (previous: string | null, prev: string) =>
    previous !== null && sourceSnapshots.has(previous) && Position.compare(Position.parse(previous), Position.parse(prev)) >= 0;
  txs.forEach((tx, i) => {
    const prev = i > 0 ? txs[i - 1]!.pos : null;
    if (i > 0 && tx.previous !== prev && !restartsAtSnapshot(tx.previous, prev!)) {
      problems.push({ kind: 'gap', message: `transaction ${tx.pos} follows ${tx.previous ?? 'nothing'}, but the archive's previous transaction is ${prev}` });
    }
    const commit = Position.parse(tx.pos).commit;
    const counts = expected.get(commit) ?? new Map<string, number>();
    for (const [table, n] of Object.entries(tx.tables)) counts.set(table, (counts.get(table) ?? 0) + Number(n));
    expected.set(commit, counts);
  });
  const first = txs[0] ? Position.parse(txs[0].pos) : null;
  const settled = index.checkpoint ? index.checkpoint.position.commit : null;
  const pending: VerifyReport['pending'] = [];
  /** A count that does not add up after the checkpoint is a transaction still in flight. */
  const countProblem = (commit: string, message: string) => {
    if (settled !== null && commit > settled) pending.push({ transaction: commit, message });
    else problems.push({ kind: 'count', message });
  };
  for (const table of tablesOf(index)) {
    const actual = new Map<string, number>();
    let events = 0;
    const count = (records: readonly StoredRecord[]): void => {
      for (const r of records) {
        events++;
        actual.set(r.position.commit, (actual.get(r.position.commit) ?? 0) + 1);
      }
    };
    try {
      // Streamed a block at a time: memory holds counts per transaction, not the table's history.
      for await (const batch of reader.tableRecordBatches(table, null)) count(batch);
    } catch (err) {
      if (!(err instanceof RecordsOutOfOrder)) throw err;
      actual.clear();
      events = 0;
      count(await reader.tableRecords(table, null)); // an object out of order: the whole-table read
    }
    checked.events += events;
    for (const [commit, counts] of expected) {
      const want = counts.get(table) ?? 0;
      const got = actual.get(commit) ?? 0;
      if (want !== got) countProblem(commit, `transaction ${commit}: ${want} events of ${table} logged, ${got} stored`);
    }
    for (const [commit, got] of actual) {
      if (!expected.has(commit) && (!first || commit >= first.commit)) {
        countProblem(commit, `${got} events of ${table} at ${commit} belong to no logged transaction`);
      }
    }
  }
  return { source: index.source, ok: problems.length === 0, checked, problems, ...authenticated, pending };
}

export function renderVerifyReport(r: VerifyReport): string {
  const c = r.checked;
  const lines = [
    `source ${r.source}: ${r.ok ? 'OK' : `${r.problems.length} problem(s)`}`,
    `  checked ${c.objects} objects, ${c.manifests} manifests, ${c.snapshots} snapshots, ${c.transactions} transactions, ${c.events} events, ${c.schemas} schemas`,
  ];
  if (r.authenticated === false) {
    lines.push('  not authenticated: the archive has no archive-MAC key (written before archive MACs); sha256 chains only, which a writer to the bucket can recompute. The next `chartlog run` creates the key.');
  }
  for (const p of r.problems) lines.push(`  ${p.kind.padEnd(10)} ${p.object ? `${p.object}: ` : ''}${p.message}`);
  const inFlight = new Set(r.pending.map((p) => p.transaction)).size;
  if (inFlight > 0) {
    lines.push(`  ${inFlight} transaction(s) after the checkpoint are still in flight (a stop without a final flush): not restorable yet, completed by the next run`);
    for (const p of r.pending) lines.push(`  ${'pending'.padEnd(10)} ${p.message}`);
  }
  return `${lines.join('\n')}\n`;
}
