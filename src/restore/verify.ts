import { ChartlogError } from '../core/errors.js';
import { Position } from '../core/position.js';
import type { ObjectStore } from '../storage/object-store.js';
import { readAvroContainer } from '../archive/avro-container.js';
import type { EnvelopeReader } from '../archive/envelope-reader.js';
import { schemaKey, TRANSACTIONS_TABLE } from '../archive/layout.js';
import { sha256Hex } from '../archive/manifest.js';
import { ArchiveReader, type StoredRecord } from '../archive/archive-reader.js';
import type { TransactionRecord } from '../archive/transaction-log.js';
import { RecordsOutOfOrder } from '../archive/position-merge.js';
import { tablesOf, type ArchiveIndex } from '../archive/archive-index.js';
import { authenticateArchive } from '../archive/archive-auth.js';
import { SchemaStore } from '../codec/schema-store.js';
import type { SqlEngine } from '../codec/sql-type.js';
import type { ArchiveMac } from '../phi/archive-mac.js';

export interface VerifyProblem {
  /** The object at fault, when there is one. */
  object?: string;
  kind: 'missing' | 'checksum' | 'unreadable' | 'chain' | 'gap' | 'count' | 'schema' | 'mac' | 'truncated' | 'order';
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
  // Each base's block seals in order (sealed format 5: a block reordered, repeated or dropped in
  // a part whose sha256 was recomputed). Read a container block at a time; no PHI is opened.
  for (const s of [...index.snapshots, ...(index.tableSnapshots ?? [])]) {
    for (const table of Object.keys(s.tables)) {
      try {
        for await (const _block of reader.snapshotBlocks(s, table));
      } catch (err) {
        if (!(err instanceof ChartlogError && err.code === 'integrity')) throw err;
        problems.push({ kind: 'order', message: err.message });
      }
    }
  }
  // The transaction log is read as a stream, once for the chain and once per group of tables for
  // the counts: memory holds a block of it, not the log (a busy archive has millions of
  // transactions). Only an object out of order (a reordered delivery) makes it read whole.
  let wholeLog: TransactionRecord[] | null = null;
  const transactions = (): Batches<TransactionRecord> => (wholeLog ? [wholeLog] : reader.transactionBatches(null));
  // A connector snapshot taken while no stream ran restarts the stream at its position: the
  // next transaction names the snapshot, which holds everything up to it. That break is whole.
  const sourceSnapshots = new Set(index.snapshots.filter((s) => s.origin === 'source').map((s) => s.position));
  const restartsAtSnapshot = (previous: string | null, prev: string) =>
    previous !== null && sourceSnapshots.has(previous) && Position.compare(Position.parse(previous), Position.parse(prev)) >= 0;
  let first: Position | null = null;
  const chain = async (): Promise<VerifyProblem[]> => {
    const gaps: VerifyProblem[] = [];
    let prev: string | null = null;
    checked.transactions = 0;
    first = null;
    for await (const batch of transactions()) {
      for (const tx of batch) {
        if (prev !== null && tx.previous !== prev && !restartsAtSnapshot(tx.previous, prev)) {
          gaps.push({ kind: 'gap', message: `transaction ${tx.pos} follows ${tx.previous ?? 'nothing'}, but the archive's previous transaction is ${prev}` });
        }
        first ??= Position.parse(tx.pos);
        prev = tx.pos;
        checked.transactions++;
      }
    }
    return gaps;
  };
  let gaps: VerifyProblem[];
  try {
    gaps = await chain();
  } catch (err) {
    if (!(err instanceof RecordsOutOfOrder)) throw err;
    wholeLog = await reader.transactions(null);
    gaps = await chain();
  }
  problems.push(...gaps);

  const settled = index.checkpoint ? index.checkpoint.position.commit : null;
  const pending: VerifyReport['pending'] = [];
  /** A count that does not add up after the checkpoint is a transaction still in flight. */
  const countProblem = (commit: string, message: string) => {
    if (settled !== null && commit > settled) pending.push({ transaction: commit, message });
    else problems.push({ kind: 'count', message });
  };
  const firstCommit = (first as Position | null)?.commit ?? null;
  const tables = tablesOf(index);
  for (let i = 0; i < tables.length; i += TABLES_PER_PASS) {
    const group = tables.slice(i, i + TABLES_PER_PASS);
    let tallies = await countPass(group.map((table) => ({ table, records: reader.tableRecordBatches(table, null) })), transactions());
    const outOfOrder = tallies.filter((t) => t.outOfOrder).map((t) => t.table);
    for (const table of outOfOrder) {
      // An object out of order: this table's records read whole, then counted the same way.
      const [again] = await countPass([{ table, records: [await reader.tableRecords(table, null)] }], transactions());
      tallies = tallies.map((t) => (t.table === table ? again! : t));
    }
    for (const t of tallies) {
      checked.events += t.events;
      for (const m of t.mismatched) countProblem(m.commit, `transaction ${m.commit}: ${m.want} events of ${t.table} logged, ${m.got} stored`);
      for (const o of t.orphans) {
        if (firstCommit === null || o.commit >= firstCommit) countProblem(o.commit, `${o.got} events of ${t.table} at ${o.commit} belong to no logged transaction`);
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

/** Records a batch at a time: a stream from the archive, or one whole batch (the fallback for an object out of order). */
type Batches<T> = AsyncIterable<readonly T[]> | Iterable<readonly T[]>;

/** Tables whose records one pass over the transaction log counts: each holds an object of its own while the pass runs. */
const TABLES_PER_PASS = 8;

interface Tally {
  table: string;
  events: number;
  /** Logged transactions whose count of this table's records differs, in log order. */
  mismatched: { commit: string; want: number; got: number }[];
  /** Commits of this table's records that no logged transaction names, in position order. */
  orphans: { commit: string; got: number }[];
  /** Its stream met an object out of order: the tally is partial, the table is counted again whole. */
  outOfOrder: boolean;
}

/** Commit order of two commits, as Position.compare orders them (length first, then text). */
const compareCommits = (a: string, b: string): number => (a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0);

/** A table's records in position order, read one at a time. */
class RecordCursor {
  private batch: readonly StoredRecord[] = [];
  private at = 0;
  private done = false;
  private readonly it: AsyncIterator<readonly StoredRecord[]>;
  constructor(records: Batches<StoredRecord>) {
    const source = Symbol.asyncIterator in records ? records : (async function* () { yield* records; })();
    this.it = source[Symbol.asyncIterator]();
  }
  /** The commit of the next record, or null at the end. */
  async commit(): Promise<string | null> {
    while (this.at >= this.batch.length) {
      if (this.done) return null;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return null;
      }
      this.batch = r.value;
      this.at = 0;
    }
    return this.batch[this.at]!.position.commit;
  }
  /** Skips the records of `commit` (the next ones); returns how many. */
  async take(commit: string): Promise<number> {
    let n = 0;
    while ((await this.commit()) === commit) {
      this.at++;
      n++;
    }
    return n;
  }
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/**
 * Counts the records of each table against the transaction log in one merge of the streams (both
 * are in position order, and a transaction's records lie together): a logged transaction whose
 * count differs, and a commit of records that no transaction names. Memory holds a block of each
 * stream and the findings, never a table's history or the log.
 */
async function countPass(
  tables: { table: string; records: Batches<StoredRecord> }[],
  log: Batches<TransactionRecord>,
): Promise<Tally[]> {
  const open = tables.map((t) => ({ tally: { table: t.table, events: 0, mismatched: [], orphans: [], outOfOrder: false } as Tally, cursor: new RecordCursor(t.records) }));
  /** Runs a step of one table's count; an object out of order ends that table's part in this pass. */
  const step = async (o: (typeof open)[number], fn: () => Promise<void>) => {
    if (o.tally.outOfOrder) return;
    try {
      await fn();
    } catch (err) {
      if (!(err instanceof RecordsOutOfOrder)) throw err;
      o.tally.outOfOrder = true;
    }
  };
  /** Records before `commit` (null: all that are left) belong to no logged transaction. */
  const orphansBefore = async (o: (typeof open)[number], commit: string | null) => {
    for (let c = await o.cursor.commit(); c !== null && (commit === null || compareCommits(c, commit) < 0); c = await o.cursor.commit()) {
      const got = await o.cursor.take(c);
      o.tally.events += got;
      o.tally.orphans.push({ commit: c, got });
    }
  };
  try {
    // A commit's transactions (rarely more than one) lie together in the log: summed, then counted.
    let commit: string | null = null;
    let want = new Map<string, number>();
    const settle = async () => {
      if (commit === null) return;
      const c = commit;
      for (const o of open) {
        await step(o, async () => {
          await orphansBefore(o, c);
          const got = await o.cursor.take(c);
          o.tally.events += got;
          const w = want.get(o.tally.table) ?? 0;
          if (w !== got) o.tally.mismatched.push({ commit: c, want: w, got });
        });
      }
    };
    for await (const batch of log) {
      for (const tx of batch) {
        const c = Position.parse(tx.pos).commit;
        if (c !== commit) {
          await settle();
          commit = c;
          want = new Map();
        }
        for (const [table, n] of Object.entries(tx.tables)) want.set(table, (want.get(table) ?? 0) + Number(n));
      }
    }
    await settle();
    for (const o of open) await step(o, () => orphansBefore(o, null));
  } finally {
    for (const o of open) await o.cursor.close();
  }
  return open.map((o) => o.tally);
}
