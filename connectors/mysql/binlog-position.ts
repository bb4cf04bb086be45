import { ChartlogError } from '../../src/core/errors.js';
import { COMMIT_SEQ, Position } from '../../src/core/position.js';

/**
 * MySQL/MariaDB commit positions (the `commit` part of a Position).
 *
 * Why GTIDs and not binlog file/offset: a file/offset pair names a byte in ONE server's binlog.
 * After a failover the promoted replica has its own files and offsets, so a file/offset position
 * means nothing there, and positions taken on the two servers would not even compare. A GTID
 * names the transaction itself and travels with it through replication (the replica logs it
 * unchanged with log_slave_updates), so the same transaction has the same position on every
 * server of the topology, duplicates across a failover compare equal, and resuming needs nothing
 * but the position: the server itself resolves a GTID to its file and offset (MariaDB
 * `@slave_connect_state`). That is why no file/offset is kept in the position.
 *
 * MariaDB — `mariadbCommit`: `<domain 8 hex>-<seq 16 hex>-<server id 8 hex>`.
 * - The sequence number is the order. Within one replication domain it only grows, on every
 *   server, across failovers (guaranteed by gtid_strict_mode, which setup-check recommends;
 *   the connector also refuses a stream whose positions go backwards).
 * - The server id is not part of the order (a seq is unique within a domain in strict mode) but
 *   is needed to resume: MariaDB looks a GTID up by domain, server id and seq.
 * - Domains are independent streams by definition (parallel, multi-source replication): no
 *   order exists between transactions of different domains, so a source must keep its captured
 *   changes in ONE domain. setup-check refuses a binlog with several domains and names them.
 * - Before any transaction has been logged the GTID position is empty; `mariadbStart(domain)`
 *   (seq 0) sorts before every real transaction of the domain and resumes from the first binlog.
 *
 * MySQL 8 — `mysqlCommit`: `<ordinal 16 hex>-<gno 16 hex>-<source uuid 32 hex>`.
 * - A MySQL GTID is uuid:gno; gno restarts at 1 under the uuid of a newly promoted primary, so
 *   neither part orders transactions across a failover. The ordinal (how many transactions the
 *   server's gtid_executed held once this one committed) grows by one per transaction and is the
 *   same on a replica that applied the same transactions in order
 *   (replica_preserve_commit_order=ON, the 8.0.27+ default).
 * - Resuming on MySQL needs the executed GTID set up to the position (COM_BINLOG_DUMP_GTID).
 *   `mysqlResumeSet` rebuilds it from the server's gtid_executed: the position's own uuid up to
 *   its gno, plus the whole history of those other uuids whose sizes add up to the ordinal.
 *   After ordinary failovers (each new primary a new uuid, old ones silent) exactly one such
 *   choice exists; when several or none do, it refuses rather than guess.
 * - MySQL 8 cannot be run on this machine; this form is unit-tested only.
 */

export interface MariadbGtid {
  readonly domain: number;
  readonly server: number;
  /** The sequence number; bigint because MariaDB's is an unsigned 64-bit integer. */
  readonly seq: bigint;
}

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;
const MARIADB_COMMIT = /^([0-9a-f]{8})-([0-9a-f]{16})-([0-9a-f]{8})$/;
const MYSQL_COMMIT = /^([0-9a-f]{16})-([0-9a-f]{16})-([0-9a-f]{32})$/;

function hex(n: number | bigint, width: number): string {
  return n.toString(16).padStart(width, '0');
}

function checkGtid(g: MariadbGtid): void {
  if (!Number.isInteger(g.domain) || g.domain < 0 || g.domain > U32_MAX) throw bad(`domain ${g.domain}`);
  if (!Number.isInteger(g.server) || g.server < 0 || g.server > U32_MAX) throw bad(`server id ${g.server}`);
  if (g.seq < 0n || g.seq > U64_MAX) throw bad(`sequence ${g.seq}`);
}

function bad(what: string): ChartlogError {
  return new ChartlogError('internal', `invalid MariaDB GTID ${what}`);
}

/** The commit string of a MariaDB GTID. */
export function mariadbCommit(g: MariadbGtid): string {
  checkGtid(g);
  return `${hex(g.domain, 8)}-${hex(g.seq, 16)}-${hex(g.server, 8)}`;
}

/** The position of a whole MariaDB transaction (seq = COMMIT_SEQ). */
export function mariadbPosition(g: MariadbGtid, eventSeq: number = COMMIT_SEQ): Position {
  return Position.of(mariadbCommit(g), eventSeq);
}

/** Before every transaction of `domain`: the position of an empty binlog. */
export function mariadbStart(domain = 0): Position {
  return mariadbPosition({ domain, server: 0, seq: 0n });
}

/** Parses the GTID text MariaDB prints ('0-1-42'). */
export function parseMariadbGtid(text: string): MariadbGtid {
  const m = /^(\d+)-(\d+)-(\d+)$/.exec(text.trim());
  if (!m) {
    throw new ChartlogError('decode', `not a MariaDB GTID: "${text}"`, { hint: 'expected domain-server-sequence, e.g. 0-1-42' });
  }
  const g = { domain: Number(m[1]), server: Number(m[2]), seq: BigInt(m[3]!) };
  checkGtid(g);
  return g;
}

/**
 * A MariaDB GTID position as printed by @@gtid_binlog_pos or BINLOG_GTID_POS(): zero or more
 * GTIDs, one per domain, comma separated.
 */
export function parseMariadbGtidList(text: string): MariadbGtid[] {
  const t = text.trim();
  if (t === '') return [];
  return t.split(',').map((part) => parseMariadbGtid(part));
}

/** The GTID a MariaDB commit string names, or null when it is not one. */
export function mariadbGtidOf(commit: string): MariadbGtid | null {
  const m = MARIADB_COMMIT.exec(commit);
  if (!m) return null;
  return { domain: Number.parseInt(m[1]!, 16), seq: BigInt(`0x${m[2]!}`), server: Number.parseInt(m[3]!, 16) };
}

/** '0-1-42': the form MariaDB accepts in @slave_connect_state; '' for a start position. */
export function formatMariadbGtid(g: MariadbGtid): string {
  return g.seq === 0n ? '' : `${g.domain}-${g.server}-${g.seq}`;
}

/** One MySQL GTID and its ordinal in gtid_executed (see the module comment). */
export interface MysqlGtid {
  readonly ordinal: bigint;
  readonly uuid: string;
  readonly gno: bigint;
}

/** The commit string of a MySQL transaction. */
export function mysqlCommit(g: MysqlGtid): string {
  const uuid = g.uuid.toLowerCase().replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/.test(uuid)) throw new ChartlogError('internal', `invalid MySQL server uuid "${g.uuid}"`);
  if (g.ordinal < 0n || g.ordinal > U64_MAX || g.gno < 0n || g.gno > U64_MAX) {
    throw new ChartlogError('internal', `invalid MySQL GTID ordinal ${g.ordinal} / gno ${g.gno}`);
  }
  return `${hex(g.ordinal, 16)}-${hex(g.gno, 16)}-${uuid}`;
}

/** Inverse of `mysqlCommit`, the uuid in its 8-4-4-4-12 form; null when not a MySQL commit. */
export function mysqlGtidOf(commit: string): MysqlGtid | null {
  const m = MYSQL_COMMIT.exec(commit);
  if (!m) return null;
  const u = m[3]!;
  return {
    ordinal: BigInt(`0x${m[1]!}`),
    gno: BigInt(`0x${m[2]!}`),
    uuid: `${u.slice(0, 8)}-${u.slice(8, 12)}-${u.slice(12, 16)}-${u.slice(16, 20)}-${u.slice(20)}`,
  };
}

/** Number of transactions in a MySQL GTID set text ('uuid:1-5:7,uuid2:1-3'): its ordinal. */
export function mysqlGtidSetSize(text: string): bigint {
  let total = 0n;
  for (const entry of text.replace(/\s/g, '').split(',')) {
    if (entry === '') continue;
    for (const part of entry.split(':').slice(1)) {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part);
      if (!m) continue; // a tag (MySQL 8.3+), which names the intervals after it
      const lo = BigInt(m[1]!);
      const hi = m[2] === undefined ? lo : BigInt(m[2]);
      total += hi - lo + 1n;
    }
  }
  return total;
}

type Intervals = [bigint, bigint][];

/** 'uuid:1-5:7,uuid2:3' → uuid → intervals. Tagged GTIDs (MySQL 8.3+) are refused. */
export function parseMysqlGtidSet(text: string): Map<string, Intervals> {
  const out = new Map<string, Intervals>();
  for (const entry of text.replace(/\s/g, '').split(',')) {
    if (entry === '') continue;
    const [uuid, ...parts] = entry.split(':');
    const list = out.get(uuid!.toLowerCase()) ?? [];
    for (const part of parts) {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part);
      if (!m) {
        throw new ChartlogError('source_setup', `GTID tags (${entry.slice(0, 60)}) are not supported`, { hint: 'write captured tables without GTID tags (gtid_next=AUTOMATIC)' });
      }
      const lo = BigInt(m[1]!);
      list.push([lo, m[2] === undefined ? lo : BigInt(m[2])]);
    }
    out.set(uuid!.toLowerCase(), list);
  }
  return out;
}

const sizeOf = (list: Intervals): bigint => list.reduce((n, [lo, hi]) => n + hi - lo + 1n, 0n);

/**
 * The executed GTID set up to and including the transaction a MySQL position names, rebuilt from
 * the server's gtid_executed (see the module comment); '' for a position before any transaction.
 */
export function mysqlResumeSet(executed: string, at: MysqlGtid): string {
  if (at.ordinal === 0n) return '';
  const all = parseMysqlGtidSet(executed);
  const uuid = at.uuid.toLowerCase();
  const own: Intervals = (all.get(uuid) ?? [])
    .filter(([lo]) => lo <= at.gno)
    .map(([lo, hi]) => [lo, hi < at.gno ? hi : at.gno]);
  if (!own.some(([lo, hi]) => lo <= at.gno && at.gno <= hi)) {
    throw new ChartlogError('source_setup', `the server has not executed ${uuid}:${at.gno}, the transaction to resume after`, {
      hint: 'point the source at a server that has applied everything the archive holds, or take a new snapshot',
    });
  }
  const need = at.ordinal - sizeOf(own);
  const others = [...all.entries()].filter(([u]) => u !== uuid);
  if (others.length > 16) {
    throw new ChartlogError('source_setup', `gtid_executed names ${others.length + 1} server uuids; the resume set cannot be rebuilt`, { hint: 'take a new snapshot' });
  }
  const matches: number[] = [];
  for (let mask = 0; mask < 1 << others.length; mask++) {
    let total = 0n;
    others.forEach(([, list], i) => {
      if (mask & (1 << i)) total += sizeOf(list);
    });
    if (total === need) matches.push(mask);
  }
  if (matches.length !== 1) {
    throw new ChartlogError('source_setup', `the GTID set to resume after ${uuid}:${at.gno} (transaction ${at.ordinal}) cannot be rebuilt from gtid_executed (${matches.length} candidates)`, {
      hint: 'take a new base snapshot from the source (chartlog snapshot --from-source), then chartlog run streams from it',
    });
  }
  const parts: string[] = [`${uuid}:${own.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(':')}`];
  others.forEach(([u, list], i) => {
    if (matches[0]! & (1 << i)) parts.push(`${u}:${list.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(':')}`);
  });
  return parts.sort().join(',');
}

/** The position of a MySQL snapshot taken when gtid_executed was `executed`. */
export function mysqlSnapshotGtid(executed: string, serverUuid: string): MysqlGtid {
  const all = parseMysqlGtidSet(executed);
  const ordinal = [...all.values()].reduce((n, l) => n + sizeOf(l), 0n);
  const own = all.get(serverUuid.toLowerCase());
  const [uuid, list] = own ? [serverUuid.toLowerCase(), own] : ([...all.entries()][0] ?? [serverUuid.toLowerCase(), []]);
  const gno = list.reduce((m, [, hi]) => (hi > m ? hi : m), 0n);
  return { ordinal, uuid, gno };
}

/**
 * Commit times come from binlog event headers, in whole seconds (MySQL 8's
 * immediate_commit_timestamp, in µs, is not read yet): restore and timeline say so, and a time
 * cut includes a transaction only when its whole second is at or before the time asked for
 * (the connector's commitTimeResolutionUs).
 */
export const MYSQL_COMMIT_TIME_RESOLUTION_US = 1_000_000n;

/**
 * Whether the transaction a commit string names had committed when the server printed `head`
 * (MariaDB: @@gtid_binlog_pos, one GTID per domain; MySQL: @@gtid_executed, a GTID set). A
 * MariaDB domain's sequence numbers grow in binlog order, so a GTID at or below its domain's
 * entry is in. A commit string of neither kind is taken as in: the caller then fails closed.
 */
export function committedBy(commit: string, head: string): boolean {
  const m = mariadbGtidOf(commit);
  if (m) return parseMariadbGtidList(head).some((g) => g.domain === m.domain && g.seq >= m.seq);
  const y = mysqlGtidOf(commit);
  if (!y) return true;
  return (parseMysqlGtidSet(head).get(y.uuid.toLowerCase()) ?? []).some(([lo, hi]) => lo <= y.gno && y.gno <= hi);
}
