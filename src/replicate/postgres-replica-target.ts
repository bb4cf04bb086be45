import pg from 'pg';
import { ChartlogError, usageError } from '../core/errors.js';
import { maskUrl } from '../core/mask-url.js';
import { Position } from '../core/position.js';
import { UNCHANGED, type CellValue, type ColumnSchema, type Row, type TableSchema, hasRowKey, identityColumns } from '../core/table-schema.js';
import { PG_SESSION_OPTIONS, createTableSql } from '../restore/targets/postgres-target.js';
import { pgColumnType, pgText, pgTypeOfKind, qualifiedIdent, quoteIdent, sqlLiteral } from '../restore/targets/postgres-text.js';
import { scrubMessage, type SourceEngine } from '../restore/targets/restore-target.js';
import { BATCH_ROWS, batchChanges, keyImage, type ChangeBatch } from './change-batches.js';
import { olderRowsValue, sameColumns, shapeSteps } from './schema-evolution.js';
import { REPLICA_BASES_TABLE, REPLICA_TABLE, logApplied, type PhiMode, type ReplicaChange, type ReplicaRecord, type ReplicaTarget, type ReplicaTransaction, type TableReplacement, type TargetInspection } from './replica-target.js';

const POSITION_TABLE = `public.${quoteIdent(REPLICA_TABLE)}`;
const BASES_TABLE = `public.${quoteIdent(REPLICA_BASES_TABLE)}`;

/** SQL text sent in one round trip at most; a larger transaction goes in several (still one transaction). */
const ROUND_TRIP_CHARS = 8 * 1024 * 1024;

/**
 * A PostgreSQL database as a replica (the ReplicaTarget contract in replica-target.ts). Values go
 * in PostgreSQL's text input form (postgres-text.ts, as restore writes them) as string literals,
 * typed by the column they meet. Each source transaction is one target transaction, sent in one
 * round trip (several past ROUND_TRIP_CHARS), that first moves the position row (which also locks
 * it: a second replicator on the same target waits, then finds the position moved and stops),
 * then applies the changes batched (change-batches.ts): one multi-row INSERT, one UPDATE joined to
 * a VALUES list, or one DELETE … USING a VALUES list per run of same-kind changes of a table — a
 * statement per row costed the server a parse and plan per row. A table or column the target
 * lacks (a new table in scope, an added column) is created inside that same transaction.
 */
export class PostgresReplicaTarget implements ReplicaTarget {
  readonly description: string;
  private client: pg.Client | null = null;
  /** Columns of each target table and their types, as far as known ("schema.table" → name → type). */
  private readonly columns = new Map<string, Map<string, string>>();

  /** `batchRows`: rows per batched statement (1: one statement per row, as before batching; benchmarks compare). */
  constructor(
    private readonly url: string,
    private readonly engine: SourceEngine,
    private readonly batchRows = BATCH_ROWS,
  ) {
    this.description = maskUrl(url);
  }

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({ connectionString: this.url, options: PG_SESSION_OPTIONS, connectionTimeoutMillis: 15_000, application_name: 'chartlog-replicate' });
    client.on('error', () => undefined); // a dropped connection surfaces on the next query
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw new ChartlogError('connection', `cannot connect to the replica ${this.description}: ${scrubMessage((err as Error).message)}`, {
        retriable: true,
        hint: 'check --target; the database must exist and be reachable',
      });
    }
    // Values go as standard string literals (sqlLiteral): backslashes must be plain characters.
    await client.query('SET standard_conforming_strings = on');
    this.client = client;
    return client;
  }

  /** Forgets the connection after a failure, so the next call reconnects. */
  private async drop(): Promise<void> {
    const c = this.client;
    this.client = null;
    this.columns.clear();
    await c?.end().catch(() => undefined);
  }

  async inspect(): Promise<TargetInspection> {
    let client: pg.Client;
    try {
      client = await this.connect();
    } catch (err) {
      // At start, an unreachable target is a usage problem: exit 2, nothing written.
      throw usageError((err as Error).message, 'check --target; the database must exist (CREATE DATABASE …) and be reachable');
    }
    const { rows: tables } = await client.query<{ name: string }>(
      `SELECT table_schema || '.' || table_name AS name FROM information_schema.tables
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema NOT LIKE 'pg\\_%'
          AND NOT (table_schema = 'public' AND table_name IN ($1, $2)) ORDER BY 1`,
      [REPLICA_TABLE, REPLICA_BASES_TABLE],
    );
    const { rows: has } = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [POSITION_TABLE]);
    const hasReplicaTable = has[0]?.t != null;
    const replicas: ReplicaRecord[] = [];
    if (hasReplicaTable) {
      const { rows } = await client.query<{ source: string; state: string; position: string; commit_ts_us: string; phi: string; tables: string | null }>(
        `SELECT source, state, position, commit_ts_us::text, phi, tables FROM ${POSITION_TABLE}`,
      );
      for (const r of rows) {
        replicas.push({
          source: r.source,
          state: r.state === 'following' ? 'following' : 'loading',
          position: Position.parse(r.position),
          commitTsUs: BigInt(r.commit_ts_us),
          phi: r.phi as PhiMode,
          tables: r.tables === null ? null : r.tables.split(','),
        });
      }
    }
    return { tables: tables.map((t) => t.name), hasReplicaTable, replicas };
  }

  async beginLoad(r: ReplicaRecord): Promise<void> {
    const client = await this.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `CREATE TABLE ${POSITION_TABLE} (
          source text PRIMARY KEY,
          state text NOT NULL,
          position text NOT NULL,
          commit_ts_us bigint NOT NULL,
          phi text NOT NULL,
          tables text,
          transactions bigint NOT NULL DEFAULT 0,
          updated_at timestamptz NOT NULL DEFAULT now())`,
      );
      await client.query(`INSERT INTO ${POSITION_TABLE} (source, state, position, commit_ts_us, phi, tables) VALUES ($1, 'loading', $2, $3, $4, $5)`, [
        r.source,
        Position.format(r.position),
        r.commitTsUs.toString(),
        r.phi,
        r.tables === null ? null : r.tables.join(','),
      ]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw describe(err, 'recording the replica');
    }
  }

  async finishLoad(source: string, position: Position, commitTsUs: bigint): Promise<void> {
    const client = await this.connect();
    const { rowCount } = await client.query(`UPDATE ${POSITION_TABLE} SET state = 'following', position = $2, commit_ts_us = $3, updated_at = now() WHERE source = $1 AND state = 'loading'`, [
      source,
      Position.format(position),
      commitTsUs.toString(),
    ]);
    if (rowCount !== 1) throw new ChartlogError('internal', `the replica row of ${source} was not in state loading after the load`);
  }

  async apply(source: string, tx: ReplicaTransaction, from: Position, phi: PhiMode): Promise<{ rows: number }> {
    const started = Date.now();
    const client = await this.connect();
    // One round trip per transaction: the statements go as one simple query, and the checks that
    // must hold (the position row still at `from`, each update or delete meeting exactly one row)
    // are made by the server, which aborts the transaction when one fails.
    const rows = tx.changes.filter((c) => c.op !== 't').length;
    const shapeKnown = tx.changes.every((c) => c.op === 'x' || sameColumns(this.columns.get(c.table), c.schema));
    try {
      let sent = false;
      if (!shapeKnown) {
        await client.query('BEGIN');
        for (const change of tx.changes) if (change.op !== 'x') await this.ensureShape(client, change, phi);
        sent = true;
      }
      const statements = [positionSql(source, tx.position, tx.commitTsUs, from, tx.transactions ?? 1), ...batchChanges(tx.changes, this.batchRows, KEYED_BATCH_ROWS).map((b) => batchSql(b, phi, this.engine, this.columns.get(b.table)))];
      let text = sent ? '' : 'BEGIN';
      for (const st of statements) {
        if (text.length + st.length > ROUND_TRIP_CHARS && text !== '') {
          await client.query(text);
          text = '';
        }
        text += `${text ? ';\n' : ''}${st}`;
      }
      await client.query(`${text};\nCOMMIT`);
      logApplied(this.description, tx, rows, statements.length, started);
      // A dropped table's columns are no longer known: a table created again under its name is read anew.
      for (const c of tx.changes) if (c.op === 'x') this.columns.delete(c.table);
      return { rows };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      const e = describeApplyError(err, source, tx.position, from, this.description);
      if (e.retriable) await this.drop();
      else this.columns.clear(); // DDL of the rolled-back transaction is gone
      throw e;
    }
  }

  async takenBases(source: string): Promise<Map<string, Position>> {
    const client = await this.connect();
    const { rows: has } = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [BASES_TABLE]);
    if (has[0]?.t == null) return new Map();
    const { rows } = await client.query<{ table_name: string; position: string }>(`SELECT table_name, position FROM ${BASES_TABLE} WHERE source = $1`, [source]);
    return new Map(rows.map((r) => [r.table_name, Position.parse(r.position)]));
  }

  async recordBases(source: string, bases: ReadonlyMap<string, Position>): Promise<void> {
    const client = await this.connect();
    try {
      await client.query(`BEGIN;\n${basesSql(source, bases)};\nCOMMIT`);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw describe(err, 'recording the replica\'s table bases');
    }
  }

  /**
   * One target transaction: checks (and locks) the position row, drops the table, creates it
   * from the base's version, loads the base's rows, applies the table's later changes, records
   * the base. PostgreSQL's DDL is transactional, so a reader sees the old table until the commit
   * (its DROP holds an ACCESS EXCLUSIVE lock: readers wait) and a kill leaves the old one.
   */
  async replaceTable(source: string, r: TableReplacement, phi: PhiMode): Promise<{ rows: number }> {
    const client = await this.connect();
    let rows = 0;
    try {
      await client.query('BEGIN');
      // The position row stays, locked: a second replicator waits, then finds it moved or not.
      await client.query(`WITH p AS (SELECT 1 FROM ${POSITION_TABLE} WHERE source = ${sqlLiteral(source)} AND position = ${sqlLiteral(Position.format(r.position))} AND state = 'following' FOR UPDATE) ${expectOne('p', 'chartlog-replica-position-moved')}`);
      await client.query(`DROP TABLE IF EXISTS ${qualifiedIdent(r.schema.schema, r.schema.table)}`);
      this.columns.delete(r.table);
      const shape: ReplicaChange = { op: 'r', table: r.table, schema: r.schema, before: null, after: null, position: r.basePosition, phiColumns: r.phiColumns };
      await this.ensureShape(client, shape, phi);
      for await (const batch of r.rows) {
        for (const b of batchChanges(batch, this.batchRows, KEYED_BATCH_ROWS)) await client.query(batchSql(b, phi, this.engine, this.columns.get(b.table)));
        rows += batch.length;
      }
      for (const change of r.later) if (change.op !== 'x') await this.ensureShape(client, change, phi);
      for (const b of batchChanges(r.later, this.batchRows, KEYED_BATCH_ROWS)) await client.query(batchSql(b, phi, this.engine, this.columns.get(b.table)));
      await client.query(`${basesSql(source, new Map([[r.table, r.basePosition]]))};\nCOMMIT`);
      return { rows: rows + r.later.length };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      const e = describeApplyError(err, source, r.position, r.position, this.description);
      if (e.retriable) await this.drop();
      else this.columns.clear();
      throw e;
    }
  }

  /** Creates a table the target lacks, or adds the columns it lacks, inside the applying transaction. */
  private async ensureShape(client: pg.Client, change: ReplicaChange, phi: PhiMode): Promise<void> {
    let known = this.columns.get(change.table);
    if (!known) {
      const { rows } = await client.query<{ c: string; t: string }>(
        'SELECT attname AS c, format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped',
        [qualifiedIdent(change.schema.schema, change.schema.table)],
      );
      if (rows.length > 0) known = new Map(rows.map((r) => [r.c, r.t]));
    }
    if (!known) {
      const types: string[] = [];
      for (const c of change.schema.columns) types.push(await this.columnType(client, c, change, phi));
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(change.schema.schema)}`);
      const table: TableSchema = { ...change.schema, columns: change.schema.columns.map((c) => (change.phiColumns.has(c.name) && phi === 'omit' ? { ...c, nullable: true } : c)) };
      await client.query(createTableSql({ name: change.table, table, sealed: new Set(), sourceEngine: this.engine }, types));
      if (table.primaryKey.length > 0) {
        await client.query(`ALTER TABLE ${qualifiedIdent(table.schema, table.table)} ADD PRIMARY KEY (${table.primaryKey.map(quoteIdent).join(', ')})`);
      }
      known = new Map(change.schema.columns.map((c, i) => [c.name, types[i]!]));
    } else {
      const ident = qualifiedIdent(change.schema.schema, change.schema.table);
      for (const step of shapeSteps(new Set(known.keys()), change.schema)) {
        if (step.kind === 'rename') {
          // Renamed at the source (renamedFrom): the same column, its values kept.
          await client.query(`ALTER TABLE ${ident} RENAME COLUMN ${quoteIdent(step.from)} TO ${quoteIdent(step.column)}`);
          known.set(step.column, known.get(step.from)!);
          known.delete(step.from);
        } else if (step.kind === 'drop') {
          await client.query(`ALTER TABLE ${ident} DROP COLUMN IF EXISTS ${quoteIdent(step.column)}`);
          known.delete(step.column);
        } else {
          // Added at the source: added here, nullable (rows before it hold NULL, as at the source).
          // Rows it already holds read what the source's older rows read (the version's `missing`).
          const c = change.schema.columns.find((col) => col.name === step.column)!;
          const type = await this.columnType(client, c, change, phi);
          const older = replicaValue(olderRowsValue(change.table, c), c, change.phiColumns, phi, this.engine);
          await client.query(`ALTER TABLE ${ident} ADD COLUMN ${quoteIdent(c.name)} ${type}${older === null ? '' : ` DEFAULT ${sqlLiteral(older)}`}`);
          if (older !== null) await client.query(`ALTER TABLE ${ident} ALTER COLUMN ${quoteIdent(c.name)} DROP DEFAULT`);
          known.set(c.name, type);
        }
      }
    }
    this.columns.set(change.table, known);
  }

  private async columnType(client: pg.Client, c: ColumnSchema, change: ReplicaChange, phi: PhiMode): Promise<string> {
    const sealed = phi === 'sealed' && change.phiColumns.has(c.name);
    const wanted = pgColumnType(c, sealed, this.engine);
    if (sealed || this.engine !== 'postgres') return wanted;
    // A type the target lacks (a domain, an extension's type): the built-in type of its values, as restore does.
    await client.query('SAVEPOINT chartlog_type');
    const { rows } = await client.query<{ t: string | null }>('SELECT to_regtype($1)::text AS t', [wanted]).catch(() => ({ rows: [{ t: null }] }));
    await client.query('ROLLBACK TO SAVEPOINT chartlog_type');
    return rows[0]?.t ? wanted : pgTypeOfKind(c.type);
  }

  async close(): Promise<void> {
    await this.drop();
  }
}

/** The value a replica column receives (pure): PHI per mode, everything else exactly as restore writes it. */
export function replicaValue(v: CellValue | undefined, c: ColumnSchema, phiColumns: ReadonlySet<string>, phi: PhiMode, engine: SourceEngine): string | null {
  if (!phiColumns.has(c.name) || phi === 'open') return pgText(v, c, false, engine);
  if (phi === 'omit') return null;
  return pgText(v, c, true, engine);
}

/** Creates the bases table when absent and upserts `bases` (table → base position) for `source`. */
function basesSql(source: string, bases: ReadonlyMap<string, Position>): string {
  const create = `CREATE TABLE IF NOT EXISTS ${BASES_TABLE} (source text NOT NULL, table_name text NOT NULL, position text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (source, table_name))`;
  const values = [...bases].map(([t, p]) => `(${sqlLiteral(source)}, ${sqlLiteral(t)}, ${sqlLiteral(Position.format(p))})`);
  if (values.length === 0) return create;
  return `${create};\nINSERT INTO ${BASES_TABLE} (source, table_name, position) VALUES ${values.join(', ')} ON CONFLICT (source, table_name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`;
}

/**
 * A failure the server raises on purpose: the text cast to an integer fails with this text in its
 * message (no value: a table name and a position). The CASE keeps it from being folded at plan time.
 */
function expectOne(countOf: string, failure: string): string {
  return `SELECT (CASE WHEN count(*) = 1 THEN '1' ELSE ${sqlLiteral(failure)} END)::int FROM ${countOf}`;
}

/** Moves the position row from `from` to the transaction's position, or fails (another replicator moved it). */
export function positionSql(source: string, position: Position, commitTsUs: bigint, from: Position, transactions = 1): string {
  return `WITH p AS (UPDATE ${POSITION_TABLE} SET position = ${sqlLiteral(Position.format(position))}, commit_ts_us = ${commitTsUs.toString()}, transactions = transactions + ${Math.trunc(transactions)}, updated_at = now() WHERE source = ${sqlLiteral(source)} AND position = ${sqlLiteral(Position.format(from))} AND state = 'following' RETURNING 1) ${expectOne('p', 'chartlog-replica-position-moved')}`;
}

/**
 * Rows per UPDATE or DELETE batch on PostgreSQL at most. A batch is joined to the target by its
 * key; past a few hundred rows the planner prefers a hash join over a sequential scan of the
 * whole table to one index probe per row (seen on pgbench_accounts, 100 000 rows: 1 000 rows took
 * 24 ms hashed against about 2 ms probed), so keyed batches stay below that.
 */
export const KEYED_BATCH_ROWS = 200;

/**
 * One column of a batch as ONE text[] literal (pure): `'{"v1","v2",NULL}'::text[]`. The server
 * parses an array constant in one pass, where a VALUES list of the same rows cost it a parse and
 * type resolution per row and value (planning a 1 000-row VALUES join took 19 ms, the array
 * form 0.1 ms); each element is cast to the column's type in the statement, which reads it
 * with the type's input function — the same text a literal would give, so values stay exact.
 */
export function textArrayLiteral(texts: readonly (string | null)[]): string {
  let out = "'{";
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i];
    if (i > 0) out += ',';
    if (t === null || t === undefined) {
      out += 'NULL';
      continue;
    }
    // Inside the array: backslash and double quote escaped; inside the SQL literal: ' doubled.
    let e = /["\\]/.test(t) ? t.replace(/["\\]/g, '\\$&') : t;
    if (e.includes("'")) e = e.replace(/'/g, "''");
    out += `"${e}"`;
  }
  return `${out}}'::text[]`;
}

/**
 * One batch as one statement (pure). Inserts are a multi-row INSERT of literals. Updates and
 * deletes join the target to `unnest` of one text[] literal per column (textArrayLiteral), each
 * element cast to the target column's type (`types`: format_type of the target columns), and fail
 * unless every row of the batch meets exactly one row of the target (the batch's keys are
 * distinct: change-batches.ts).
 */
export function batchSql(b: ChangeBatch, phi: PhiMode, engine: SourceEngine, types: ReadonlyMap<string, string> | undefined): string {
  if (b.kind === 'single' || b.changes.length === 1) return changeSql(b.changes[0]!, phi, engine);
  const first = b.changes[0]!;
  refusePhiKey(first, phi);
  const ident = qualifiedIdent(first.schema.schema, first.schema.table);
  const byName = new Map(first.schema.columns.map((c) => [c.name, c]));
  const text = (ch: ReplicaChange, row: Row, name: string) => replicaValue(row[name], byName.get(name)!, ch.phiColumns, phi, engine);
  const typeOf = (name: string) => {
    const t = types?.get(name);
    if (!t) throw new ChartlogError('internal', `${b.table}: the type of column ${name} in the replica is not known`);
    return t;
  };
  /** `unnest(…) AS v (k0, …, c0, …)`: one array per column, the key's from each change's key image. */
  const unnested = (key: readonly string[], columns: readonly string[], images: readonly Row[] = b.changes.map((ch) => keyImage(ch, key))) => {
    const arrays = [...key.map((k) => textArrayLiteral(b.changes.map((ch, i) => text(ch, images[i]!, k)))), ...columns.map((c) => textArrayLiteral(b.changes.map((ch) => text(ch, ch.after!, c))))];
    return `unnest(${arrays.join(', ')}) AS v (${[...key.map((_, i) => `k${i}`), ...columns.map((_, i) => `c${i}`)].join(', ')})`;
  };
  const diverged = `chartlog-replica-diverged ${b.table} ${Position.format(first.position)}`;
  const expectAll = (cte: string) => `SELECT (CASE WHEN count(*) = ${b.changes.length} THEN '1' ELSE ${sqlLiteral(diverged)} END)::int FROM ${cte}`;
  const match = (key: readonly string[]) => key.map((k, i) => `t.${quoteIdent(k)} = v.k${i}::${typeOf(k)}`).join(' AND ');
  switch (b.kind) {
    case 'insert':
      return `INSERT INTO ${ident} (${b.columns.map(quoteIdent).join(', ')}) VALUES ${b.changes.map((ch) => `(${b.columns.map((c) => sqlLiteral(text(ch, ch.after!, c))).join(', ')})`).join(', ')}`;
    case 'delete':
      return `WITH d AS (DELETE FROM ${ident} t USING ${unnested(b.key, [])} WHERE ${match(b.key)} RETURNING 1) ${expectAll('d')}`;
    case 'update': {
      if (b.columns.length === 0) return `SELECT 1`;
      // A key no change of the batch moves (each row found by its after-image's key, as an update
      // without a before-image is, or by a before-image with the same key) is not set to itself:
      // one array and one cast per row fewer to build, send and run.
      const images = b.changes.map((ch) => keyImage(ch, b.key));
      const rest = b.columns.filter((c) => !b.key.includes(c));
      const kept = rest.length > 0 && b.changes.every((ch, i) => images[i] === ch.after || b.key.every((k) => text(ch, images[i]!, k) === text(ch, ch.after!, k)));
      const columns = kept ? rest : b.columns;
      const set = columns.map((c, i) => `${quoteIdent(c)} = v.c${i}::${typeOf(c)}`).join(', ');
      return `WITH u AS (UPDATE ${ident} t SET ${set} FROM ${unnested(b.key, columns, images)} WHERE ${match(b.key)} RETURNING 1) ${expectAll('u')}`;
    }
  }
}

function refusePhiKey(ch: ReplicaChange, phi: PhiMode): void {
  const key = hasRowKey(ch.schema) ? identityColumns(ch.schema) : [];
  if (phi !== 'open' && key.some((k) => ch.phiColumns.has(k))) {
    throw new ChartlogError('phi_policy', `${ch.table}: a primary-key column is PHI, so with --phi ${phi} its rows cannot be found again in the replica`, {
      hint: `replicate it with --phi open, or leave it out with --tables`,
    });
  }
}

/** One change as SQL with literal values (pure); updates and deletes fail unless they meet exactly one row. */
export function changeSql(ch: ReplicaChange, phi: PhiMode, engine: SourceEngine): string {
  const ident = qualifiedIdent(ch.schema.schema, ch.schema.table);
  const cols = ch.schema.columns;
  refusePhiKey(ch, phi);
  const literal = (row: Row, c: ColumnSchema) => sqlLiteral(replicaValue(row[c.name], c, ch.phiColumns, phi, engine));
  const present = (row: Row) => cols.filter((c) => row[c.name] !== undefined && row[c.name] !== UNCHANGED);
  const diverged = `chartlog-replica-diverged ${ch.table} ${Position.format(ch.position)}`;
  switch (ch.op) {
    case 't':
      return `TRUNCATE ${ident}`;
    case 'x':
      return `DROP TABLE IF EXISTS ${ident}`;
    case 'c':
    case 'r': {
      const set = present(ch.after!);
      return `INSERT INTO ${ident} (${set.map((c) => quoteIdent(c.name)).join(', ')}) VALUES (${set.map((c) => literal(ch.after!, c)).join(', ')})`;
    }
    case 'd':
      return `WITH d AS (DELETE FROM ${ident} WHERE ${matchRow(ch, phi, engine)} RETURNING 1) ${expectOne('d', diverged)}`;
    case 'u': {
      const set = present(ch.after!);
      const assignments = set.map((c) => `${quoteIdent(c.name)} = ${literal(ch.after!, c)}`);
      if (assignments.length === 0) return `SELECT 1`;
      return `WITH u AS (UPDATE ${ident} SET ${assignments.join(', ')} WHERE ${matchRow(ch, phi, engine)} RETURNING 1) ${expectOne('u', diverged)}`;
    }
  }
}

/**
 * The condition that finds the changed row: by primary key (from the before-image when it
 * carries the key, which an update of the key does; else the after-image), or, for a table
 * without one, by the whole before-image, one row of identical ones (ctid).
 */
function matchRow(ch: ReplicaChange, phi: PhiMode, engine: SourceEngine): string {
  const cols = ch.schema.columns;
  const byName = new Map(cols.map((c) => [c.name, c]));
  // A replica identity index (PostgreSQL USING INDEX) is what key-only old images carry.
  const key = hasRowKey(ch.schema) ? identityColumns(ch.schema) : [];
  const usable = (row: Row | null, c: string) => row !== null && row[c] !== undefined && row[c] !== UNCHANGED;
  if (key.length > 0) {
    const image = key.every((k) => usable(ch.before, k)) ? ch.before! : ch.after;
    if (!image || !key.every((k) => usable(image, k))) throw new ChartlogError('integrity', `${ch.table}: a change at ${Position.format(ch.position)} carries no key`, { hint: 'run `chartlog verify`' });
    return key.map((k) => `${quoteIdent(k)} = ${sqlLiteral(replicaValue(image[k], byName.get(k)!, ch.phiColumns, phi, engine))}`).join(' AND ');
  }
  const before = ch.before;
  if (!before) {
    throw new ChartlogError('integrity', `${ch.table} has no primary key and the change at ${Position.format(ch.position)} carries no before-image`, {
      hint: 'give the source table a primary key (or REPLICA IDENTITY FULL on PostgreSQL)',
    });
  }
  // PHI columns are not compared unless opened: sealed bytes are sealed anew per message, omitted ones are NULL.
  const compared = cols.filter((c) => usable(before, c.name) && (phi === 'open' || !ch.phiColumns.has(c.name)));
  const conditions = compared.map((c) => {
    const column = c.type.kind === 'json' ? `${quoteIdent(c.name)}::text` : quoteIdent(c.name);
    return `${column} IS NOT DISTINCT FROM ${sqlLiteral(replicaValue(before[c.name], c, ch.phiColumns, phi, engine))}`;
  });
  const ident = qualifiedIdent(ch.schema.schema, ch.schema.table);
  return `ctid = (SELECT ctid FROM ${ident} WHERE ${conditions.join(' AND ') || 'TRUE'} LIMIT 1)`;
}

/** The server's on-purpose failures as what they mean; anything else through `describe`. */
function describeApplyError(err: unknown, source: string, position: Position, from: Position, target: string): ChartlogError {
  const message = (err as { message?: string }).message ?? '';
  if (message.includes('chartlog-replica-position-moved')) {
    return new ChartlogError('lease', `the replica position of ${source} in ${target} is no longer ${Position.format(from)}: another chartlog replicate moved it`, {
      hint: 'run one chartlog replicate per target; stop the other one',
    });
  }
  const diverged = /chartlog-replica-diverged (\S+) ([0-9a-f.-]+)/.exec(message);
  if (diverged) {
    return new ChartlogError('integrity', `${diverged[1]}: the change at ${diverged[2]} does not meet exactly one row of the replica: the replica no longer equals the source; transaction ${Position.format(position)} was not applied`, {
      hint: 'was the replica written to by something else? Rebuild it into an empty database',
    });
  }
  return describe(err, `applying transaction ${Position.format(position)}`);
}

/** A driver error without the row data drivers attach; lost connections are retriable. */
function describe(err: unknown, what: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const e = err as { message?: string; code?: string };
  const lost = !e.code || /^(08|57P)/.test(e.code) || /terminat|ECONNRE|EPIPE|Connection/i.test(e.message ?? '');
  return new ChartlogError(lost ? 'connection' : 'storage', `${what} in the replica failed: ${e.code ? `[${e.code}] ` : ''}${scrubMessage(e.message ?? String(err))}`, {
    retriable: lost,
    hint: lost ? 'the replica reconnects and applies the transaction again (it was rolled back)' : 'the transaction was rolled back; fix the cause and start chartlog replicate again',
  });
}
