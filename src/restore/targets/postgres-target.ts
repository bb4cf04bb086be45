import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { ChartlogError, usageError } from '../../core/errors.js';
import { availableParallelism } from 'node:os';
import { CopyTextBuffer, writeCopyRow } from './copy-text-buffer.js';
import { CopyBlockThreads } from './copy-block-threads.js';
import { renderInline } from './copy-block-renderer.js';
import type { TableBlocks } from '../../archive/streaming-replay.js';
import { enumOf, pgColumnType, pgTypeOfKind, qualifiedIdent, quoteIdent, sqlLiteral } from './postgres-text.js';
import { maskUrl } from '../../core/mask-url.js';
import { eachBatch, scrubMessage, type RestoreTarget, type RowSource, type TablePlan } from './restore-target.js';

/** Session settings under which the text forms of postgres-text.ts mean what they say (replicas use them too). */
export const PG_SESSION_OPTIONS = '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c client_encoding=UTF8';
const CHUNK_BYTES = 256 * 1024;

/**
 * A PostgreSQL database as restore target. Tables are created from the recorded schemas
 * (exact source types for PostgreSQL archives; enum types created; a type the target lacks,
 * such as a domain, falls back to the built-in type of its values) and filled with COPY FROM
 * STDIN in text format, one transaction per table (CREATE TABLE, COPY, primary key), so a
 * failed table leaves nothing behind; `abort` drops the tables already committed.
 */
export class PostgresTarget implements RestoreTarget {
  readonly description: string;
  readonly rowOrder = 'any';
  private admin: pg.Client | null = null;
  private readonly created = { tables: [] as string[], types: [] as string[], schemas: [] as string[] };
  /** Turns base snapshot blocks into COPY text (writeBlocks); started with the first such table. */
  private threads: CopyBlockThreads | null = null;
  /** Resolved column types per table, decided in `prepare`. */
  private readonly types = new Map<string, string[]>();

  /** `copyThreads`: COPY threads for writeBlocks (default one per core, up to 4; 0: none, blocks rendered on this thread). */
  constructor(
    private readonly url: string,
    private readonly options: { copyThreads?: number } = {},
  ) {
    this.description = maskUrl(url);
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url, options: PG_SESSION_OPTIONS, connectionTimeoutMillis: 15_000, application_name: 'chartlog-restore' });
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw new ChartlogError('usage', `cannot connect to the target ${this.description}: ${(err as Error).message}`, {
        hint: 'check --target; the database must exist, be reachable and empty (CREATE DATABASE …)',
      });
    }
    client.on('error', () => undefined); // a dropped idle connection surfaces on the next query
    return client;
  }

  async check(tables: readonly { schema: string; table: string }[]): Promise<void> {
    this.admin ??= await this.connect();
    const names = tables.map((t) => qualifiedIdent(t.schema, t.table));
    const { rows } = await this.admin.query<{ name: string }>(`SELECT n AS name FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL`, [names]);
    if (rows.length > 0) {
      throw usageError(
        `the target ${this.description} is not empty: ${rows.map((r) => r.name).join(', ')} already exist${rows.length === 1 ? 's' : ''}`,
        'restore into an empty database (CREATE DATABASE …), or drop those tables first',
      );
    }
  }

  async prepare(plans: readonly TablePlan[]): Promise<void> {
    const admin = (this.admin ??= await this.connect());
    // Decide everything first, create afterwards: a refusal must leave nothing behind.
    const enums = new Map<string, readonly string[]>();
    for (const plan of plans) {
      if (plan.sourceEngine !== 'postgres') continue;
      for (const c of plan.table.columns) {
        const e = plan.sealed.has(c.name) ? null : enumOf(c);
        if (e) enums.set(e.name, e.labels);
      }
    }
    const newEnums: [string, readonly string[]][] = [];
    for (const [name, labels] of enums) {
      const { rows } = await admin.query<{ labels: string[] | null; found: string | null }>(
        `SELECT to_regtype($1)::text AS found, (SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = to_regtype($1)) AS labels`,
        [name],
      );
      const found = rows[0];
      if (!found?.found) newEnums.push([name, labels]);
      else if (JSON.stringify(found.labels ?? []) !== JSON.stringify(labels)) {
        throw usageError(`the target ${this.description} already has a type ${name} that is not the archive's enum`, 'restore into an empty database');
      }
    }
    const known = new Set(newEnums.map(([n]) => n));
    for (const plan of plans) {
      const out: string[] = [];
      for (const c of plan.table.columns) {
        const sealed = plan.sealed.has(c.name);
        const wanted = pgColumnType(c, sealed, plan.sourceEngine);
        if (sealed || plan.sourceEngine !== 'postgres' || known.has(wanted.replace(/(\[\])+$/, ''))) {
          out.push(wanted);
          continue;
        }
        const { rows } = await admin.query<{ t: string | null }>('SELECT to_regtype($1)::text AS t', [wanted]).catch(() => ({ rows: [{ t: null }] }));
        out.push(rows[0]?.t ? wanted : pgTypeOfKind(c.type));
      }
      this.types.set(plan.name, out);
    }
    const schemas = [...new Set(plans.map((p) => p.table.schema))];
    for (const s of schemas) {
      const { rows } = await admin.query<{ n: string | null }>('SELECT to_regnamespace($1)::text AS n', [quoteIdent(s)]);
      if (!rows[0]?.n) {
        await admin.query(`CREATE SCHEMA ${quoteIdent(s)}`);
        this.created.schemas.push(quoteIdent(s));
      }
    }
    for (const [name, labels] of newEnums) {
      await admin.query(`CREATE TYPE ${name} AS ENUM (${labels.map((l) => sqlLiteral(l)).join(', ')})`);
      this.created.types.push(name);
    }
  }

  async writeTable(plan: TablePlan, rows: RowSource, progress: (rows: number, bytes?: number) => void): Promise<number> {
    return this.copyTable(plan, (count) => copyChunks(plan, rows, count, progress));
  }

  /**
   * The table from its base snapshot's blocks, turned into COPY text (copy-block-renderer.ts) on
   * the COPY threads (copy-block-threads.ts) when `threads` and there are any, else on this
   * thread, and streamed into COPY here in block order; the rows held back go to the merge as
   * they come (TableBlocks.hold: to its spill files when the changes spilled), and what it gives
   * back and then the rest (TableBlocks.rest) are written as `writeTable` does.
   */
  async writeBlocks(plan: TablePlan, blocks: TableBlocks, progress: (rows: number, bytes?: number) => void, threaded = true): Promise<number> {
    const count = this.options.copyThreads ?? copyThreadCount();
    const threads = threaded && count > 0 ? (this.threads ??= new CopyBlockThreads(count)) : null;
    return this.copyTable(plan, async function* (count) {
      for await (const r of threads ? threads.render(blocks, plan) : renderInline(blocks, plan)) {
        if (r.rows > 0) {
          count.rows += r.rows;
          yield r.bytes;
          progress(r.rows, r.bytes.length);
        }
        if (r.held) {
          const now = await blocks.hold(r.held);
          if (now.length > 0) yield* copyChunks(plan, now, count, progress);
        }
      }
      yield* copyChunks(plan, blocks.rest(), count, progress);
    });
  }

  /** CREATE TABLE, COPY of the chunks, primary key, in one transaction; the rows written. */
  private async copyTable(plan: TablePlan, chunks: (count: { rows: number }) => AsyncIterable<Buffer>): Promise<number> {
    const types = this.types.get(plan.name);
    if (!types) throw new ChartlogError('internal', `${plan.name} was not prepared`);
    const client = await this.connect();
    const ident = qualifiedIdent(plan.table.schema, plan.table.table);
    const count = { rows: 0 };
    try {
      await client.query('BEGIN');
      await client.query(createTableSql(plan, types));
      const columnList = plan.table.columns.map((c) => quoteIdent(c.name)).join(', ');
      await pipeline(Readable.from(chunks(count), { objectMode: false }), client.query(copyFrom(`COPY ${ident} (${columnList}) FROM STDIN`)));
      if (plan.table.primaryKey.length > 0) {
        await client.query(`ALTER TABLE ${ident} ADD PRIMARY KEY (${plan.table.primaryKey.map(quoteIdent).join(', ')})`);
      }
      await client.query('COMMIT');
      this.created.tables.push(ident);
      return count.rows;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw describeDriverError(err, plan.name);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async finish(): Promise<void> {}

  async abort(): Promise<void> {
    const admin = this.admin;
    if (!admin) return;
    for (const t of this.created.tables.splice(0)) await admin.query(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
    for (const t of this.created.types.splice(0)) await admin.query(`DROP TYPE IF EXISTS ${t}`).catch(() => undefined);
    for (const s of this.created.schemas.splice(0)) await admin.query(`DROP SCHEMA IF EXISTS ${s}`).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.admin?.end().catch(() => undefined);
    this.admin = null;
    await this.threads?.close();
    this.threads = null;
  }
}

/**
 * Rows as COPY text in chunks of about CHUNK_BYTES, written as bytes (CopyTextBuffer): no string
 * per row or chunk. `count.rows` grows by the rows written.
 */
async function* copyChunks(plan: TablePlan, rows: RowSource, count: { rows: number }, progress: (rows: number, bytes?: number) => void): AsyncGenerator<Buffer> {
  const cols = plan.table.columns;
  const sealed = cols.map((c) => plan.sealed.has(c.name));
  const out = new CopyTextBuffer(CHUNK_BYTES);
  let pending = 0;
  for await (const batch of eachBatch(rows)) {
    for (const row of batch) {
      writeCopyRow(out, row, cols, sealed, plan.sourceEngine);
      pending++;
      count.rows++;
      if (out.length >= CHUNK_BYTES) {
        const bytes = out.take();
        yield bytes;
        progress(pending, bytes.length);
        pending = 0;
      }
    }
  }
  if (out.length > 0) {
    const bytes = out.take();
    yield bytes;
    progress(pending, bytes.length);
  }
}

/**
 * COPY threads: one per core, up to 4. The calling thread only reads blocks and streams text,
 * so the threads can have every core (PostgreSQL's COPY shares them).
 */
function copyThreadCount(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** CREATE TABLE with the chosen types; the primary key is added after the rows (faster). */
export function createTableSql(plan: TablePlan, types: readonly string[]): string {
  const cols = plan.table.columns.map((c, i) => `${quoteIdent(c.name)} ${types[i]}${c.nullable ? '' : ' NOT NULL'}`);
  return `CREATE TABLE ${qualifiedIdent(plan.table.schema, plan.table.table)} (${cols.join(', ')})`;
}

/**
 * A driver error as a ChartlogError without the row data drivers attach (`detail` of a
 * constraint violation quotes values): message, SQL state and the table only.
 */
function describeDriverError(err: unknown, table: string): ChartlogError {
  if (err instanceof ChartlogError) return err;
  const e = err as { message?: string; code?: string; column?: string };
  const where = e.column ? ` (column ${e.column})` : '';
  return new ChartlogError('storage', `writing ${table} into the target failed: ${e.code ? `[${e.code}] ` : ''}${scrubMessage(e.message ?? String(err))}${where}`, {
    hint: 'nothing of this restore is left in the target; fix the cause and run it again',
  });
}
