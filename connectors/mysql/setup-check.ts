import { ChartlogError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/logger.js';
import { parseMariadbGtidList } from './binlog-position.js';
import type { QueryConnection } from './schema-loader.js';

/** What the checks learned about the server, for the connector to use. */
export interface ServerInfo {
  readonly version: string;
  readonly mariadb: boolean;
  readonly serverId: number;
  /** MySQL 8.0.22+ / MariaDB: whether performance_schema.log_status can be read (MySQL snapshot path). */
  readonly logStatus: boolean;
}

export interface SetupCheckOptions {
  /** The replica server id chartlog will use to read the binlog. */
  readonly serverId: number;
  /** Captured tables, "schema.table", checked for SELECT; empty to skip. */
  readonly tables: readonly string[];
  readonly log?: Logger;
}

interface Problem {
  readonly what: string;
  readonly fix: string;
}

/**
 * Verifies the server is set up for CDC, creating nothing. Every problem found is reported at
 * once, each with the statement that fixes it, in one fatal ChartlogError('source_setup').
 */
export async function checkSource(conn: QueryConnection, options: SetupCheckOptions): Promise<ServerInfo> {
  const problems: Problem[] = [];
  const vars = await variables(conn, [
    'version', 'log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'server_id',
    'gtid_strict_mode', 'gtid_binlog_pos', 'gtid_domain_id', 'gtid_mode',
    'binlog_transaction_compression', 'binlog_row_value_options',
  ]);
  const version = vars.get('version') ?? '';
  const mariadb = /mariadb/i.test(version);
  const cnf = mariadb ? '[mariadbd]' : '[mysqld]';
  const need = (name: string, want: string, why: string): void => {
    const have = (vars.get(name) ?? '').toUpperCase();
    if (have !== want) {
      problems.push({
        what: `${name} is ${have === '' ? 'not available' : have}; chartlog needs ${want}${why}`,
        fix: `SET GLOBAL ${name} = ${want}; and add ${name}=${want} under ${cnf} in the server configuration${name === 'log_bin' ? ' (log_bin needs a restart)' : ''}`,
      });
    }
  };
  need('log_bin', 'ON', ': CDC reads the binary log');
  if ((vars.get('log_bin') ?? '').toUpperCase() === 'ON') {
    need('binlog_format', 'ROW', ': statement-based events carry no row values');
    need('binlog_row_image', 'FULL', ': updates and deletes must carry whole rows');
    need('binlog_row_metadata', 'FULL', `: without it ENUM/SET values and rows replayed across an ALTER TABLE decode wrongly without any error${vars.has('binlog_row_metadata') ? '' : ` (the setting exists from ${mariadb ? 'MariaDB 10.5' : 'MySQL 8.0.1'}: upgrade the server)`}`);
  }
  if (mariadb) {
    const domains = [...new Set(parseMariadbGtidList(vars.get('gtid_binlog_pos') ?? '').map((g) => g.domain))];
    if (domains.length > 1) {
      problems.push({
        what: `the binlog holds GTIDs of several replication domains (${domains.join(', ')}); transactions of different domains have no order, so chartlog positions need one`,
        fix: 'capture a server whose writes use a single gtid_domain_id (the same SET GLOBAL gtid_domain_id on every primary), or a replica that applies a single domain',
      });
    }
    if ((vars.get('gtid_strict_mode') ?? '').toUpperCase() !== 'ON' && (vars.get('gtid_strict_mode') ?? '') !== '1') {
      options.log?.warn({ setting: 'gtid_strict_mode' }, 'gtid_strict_mode is OFF: positions rely on GTID sequence numbers growing; SET GLOBAL gtid_strict_mode = ON is recommended');
    }
  } else {
    need('gtid_mode', 'ON', ': positions are GTIDs, so a promoted replica can be resumed from');
    // zongji cannot decode compressed transaction payloads nor partial JSON updates: their rows
    // would be skipped, so both must be off.
    if ((vars.get('binlog_transaction_compression') ?? 'OFF').toUpperCase() === 'ON') {
      problems.push({ what: 'binlog_transaction_compression is ON; compressed transactions cannot be decoded', fix: `SET GLOBAL binlog_transaction_compression = OFF; and add binlog_transaction_compression=OFF under ${cnf}` });
    }
    if ((vars.get('binlog_row_value_options') ?? '') !== '') {
      problems.push({ what: 'binlog_row_value_options is PARTIAL_JSON; partial JSON updates cannot be decoded', fix: `SET GLOBAL binlog_row_value_options = ''; and remove binlog_row_value_options from ${cnf}` });
    }
  }
  const serverId = Number(vars.get('server_id') ?? '0');
  if (options.serverId === serverId) {
    problems.push({
      what: `source.mysql.serverId ${options.serverId} is the server's own server_id`,
      fix: 'set source.mysql.serverId to an id no server or other binlog reader in this replication topology uses (or leave it unset for one derived from the source name)',
    });
  }
  const clash = await registeredReplica(conn, options.serverId);
  if (clash) {
    problems.push({
      what: `server id ${options.serverId} is already used by replica ${clash}`,
      fix: 'set source.mysql.serverId to an id no server or other binlog reader in this replication topology uses',
    });
  }
  problems.push(...(await privilegeProblems(conn, options.tables, mariadb)));
  if (problems.length > 0) {
    throw new ChartlogError('source_setup', `the ${mariadb ? 'MariaDB' : 'MySQL'} source is not ready for CDC:\n${problems.map((p) => `  - ${p.what}`).join('\n')}`, {
      hint: problems.map((p) => p.fix).join('\n  fix: '),
    });
  }
  let logStatus = false;
  if (!mariadb) {
    try {
      await conn.query('SELECT LOCAL FROM performance_schema.log_status LIMIT 0');
      logStatus = true;
    } catch {
      logStatus = false;
    }
  }
  return { version, mariadb, serverId, logStatus };
}

async function variables(conn: QueryConnection, names: readonly string[]): Promise<Map<string, string>> {
  const [rows] = await conn.query(
    `SELECT VARIABLE_NAME AS n, VARIABLE_VALUE AS v FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME IN (${names.map(() => '?').join(',')})`,
    names.map((n) => n.toUpperCase()),
  ).catch(async () => conn.query(`SHOW GLOBAL VARIABLES WHERE Variable_name IN (${names.map(() => '?').join(',')})`, [...names]));
  const out = new Map<string, string>();
  for (const r of rows as Record<string, unknown>[]) {
    const n = String(r.n ?? r.Variable_name).toLowerCase();
    out.set(n, String(r.v ?? r.Value ?? ''));
  }
  return out;
}

/** A replica registered with this server id (SHOW SLAVE HOSTS), as host:port, or null. */
async function registeredReplica(conn: QueryConnection, serverId: number): Promise<string | null> {
  try {
    const [rows] = await conn.query('SHOW SLAVE HOSTS');
    for (const r of rows as Record<string, unknown>[]) {
      if (Number(r.Server_id) === serverId) return `${String(r.Host ?? '?')}:${String(r.Port ?? '?')}`;
    }
  } catch {
    // Needs REPLICATION MASTER ADMIN on MariaDB 10.5+; the runtime clash detection still applies.
  }
  return null;
}

async function privilegeProblems(conn: QueryConnection, tables: readonly string[], mariadb: boolean): Promise<Problem[]> {
  const problems: Problem[] = [];
  const [grantRows] = await conn.query('SHOW GRANTS FOR CURRENT_USER()');
  const grants = (grantRows as Record<string, unknown>[]).map((r) => String(Object.values(r)[0] ?? '')).join('\n').toUpperCase();
  const global = grants.split('\n').filter((g) => / ON \*\.\* /.test(g) || / ON \*\.\*$/.test(g)).join('\n');
  const has = (p: string): boolean => global.includes('ALL PRIVILEGES') || global.includes(p);
  const [userRows] = await conn.query('SELECT CURRENT_USER() AS u');
  const user = String((userRows as { u: string }[])[0]?.u ?? 'the CDC user').replace(/^([^@]*)@(.*)$/, "'$1'@'$2'");
  if (!has('REPLICATION SLAVE')) {
    problems.push({ what: 'the CDC user lacks REPLICATION SLAVE (needed to read the binlog)', fix: `GRANT REPLICATION SLAVE ON *.* TO ${user}` });
  }
  if (!has('REPLICATION CLIENT') && !has('BINLOG MONITOR') && !has('SUPER')) {
    problems.push({ what: 'the CDC user lacks REPLICATION CLIENT (needed to read binlog positions)', fix: `GRANT REPLICATION CLIENT ON *.* TO ${user}` });
  }
  if (!mariadb && !has('RELOAD')) {
    problems.push({ what: 'the CDC user lacks RELOAD (a MySQL snapshot holds FLUSH TABLES WITH READ LOCK while it reads its position)', fix: `GRANT RELOAD ON *.* TO ${user}` });
  }
  const unreadable: string[] = [];
  if (!has('SELECT')) {
    for (const t of tables) {
      const [schema, table] = t.split('.') as [string, string];
      try {
        await conn.query(`SELECT 1 FROM ${quoteIdent(schema)}.${quoteIdent(table)} LIMIT 0`);
      } catch {
        unreadable.push(t);
      }
    }
    if (tables.length === 0 || unreadable.length > 0) {
      problems.push({
        what: `the CDC user cannot SELECT ${unreadable.length > 0 ? unreadable.join(', ') : 'all tables'} (needed for snapshots and schema)`,
        fix: `GRANT SELECT ON *.* TO ${user} (or GRANT SELECT on each captured table)`,
      });
    }
  }
  return problems;
}

export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/**
 * The default replica server id: derived from the source name (FNV-1a), in a range real servers
 * rarely use, so two chartlog sources on one primary get different ids without configuration.
 */
export function defaultServerId(sourceName: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(`chartlog:${sourceName}`, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return 1_000_000_000 + (h % 1_000_000_000);
}
