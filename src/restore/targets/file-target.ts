import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { basename, dirname, join, resolve } from 'node:path';
import { ChartlogError, usageError } from '../../core/errors.js';
import { UNCHANGED, type CellValue, type ColumnSchema, type Row } from '../../core/table-schema.js';
import { createTableSqlMysql, MYSQL_SESSION } from './mysql-target.js';
import { mysqlLiteral, quoteMysqlIdent } from './mysql-text.js';
import { createTableSql } from './postgres-target.js';
import { arrayLiteral, enumOf, floatText, pgColumnType, pgText, pgTypeOfKind, qualifiedIdent, quoteIdent, sqlLiteral } from './postgres-text.js';
import { eachRow, type RestoreTarget, type RowSource, type TablePlan } from './restore-target.js';

export type FileFormat = 'sql' | 'csv' | 'jsonl';
export const FILE_FORMATS: readonly FileFormat[] = ['sql', 'csv', 'jsonl'];

const ROWS_PER_INSERT = 500;

/**
 * Restored tables as files in a directory that must be empty or absent: one
 * `<schema>.<table>.<format>` per table, beside it (csv, jsonl) `<schema>.<table>.schema.json`
 * with the columns, their source types and which are sealed, and `restore.json` describing the
 * restore. Everything is written into a temporary directory next to DIR, renamed into place at
 * the end, so DIR never holds a partial restore.
 *
 * Value forms (exact, per the value model):
 * - sql: the source engine's dialect, CREATE TABLE + multi-row INSERTs; PostgreSQL files set
 *   their session (UTC, ISO dates) first; load with psql -f or mysql < file.
 * - csv: RFC 4180 with a header; NULL is an empty unquoted field, '' is `""`; booleans
 *   true/false; bytes (sealed PHI too) base64; arrays PostgreSQL array literals; SET members
 *   joined by ','; floats NaN/Infinity/-Infinity/-0 spelt out; everything else its exact text.
 * - jsonl: one object per row; 64-bit integers, decimals and non-finite or negative-zero floats
 *   as strings; bytes base64; JSON columns as their source text (a string, so big integers stay
 *   exact); arrays and SET members as arrays.
 */
export class FileTarget implements RestoreTarget {
  readonly description: string;
  private readonly dir: string;
  private temp: string | null = null;

  constructor(dir: string, private readonly format: FileFormat) {
    this.dir = resolve(dir);
    this.description = `${this.dir} (${format})`;
  }

  async check(): Promise<void> {
    const s = await stat(this.dir).catch(() => null);
    if (s && !s.isDirectory()) throw usageError(`--out ${this.dir} is a file`, 'give a directory that is empty or does not exist yet');
    if (s && (await readdir(this.dir)).length > 0) throw usageError(`--out ${this.dir} is not empty`, 'give a directory that is empty or does not exist yet');
  }

  async prepare(): Promise<void> {
    await mkdir(dirname(this.dir), { recursive: true });
    this.temp = await mkdtemp(join(dirname(this.dir), `.chartlog-restore-${basename(this.dir)}-`));
  }

  async writeTable(plan: TablePlan, rows: RowSource, progress: (rows: number, bytes?: number) => void): Promise<number> {
    if (!this.temp) throw new ChartlogError('internal', 'file target not prepared');
    const base = join(this.temp, fileNameOf(plan.name));
    if (this.format !== 'sql') await writeFile(`${base}.schema.json`, `${JSON.stringify(schemaFile(plan), null, 2)}\n`);
    const out = createWriteStream(`${base}.${this.format}`);
    const closed = once(out, 'close');
    let count = 0;
    let reported = 0;
    const counted = (async function* (): AsyncGenerator<Row> {
      for await (const r of eachRow(rows)) {
        count++;
        yield r;
      }
    })();
    try {
      const lines = this.format === 'csv' ? csvLines(plan, counted) : this.format === 'jsonl' ? jsonLines(plan, counted) : sqlLines(plan, counted);
      let buf = '';
      for await (const line of lines) {
        buf += line;
        if (buf.length >= 256 * 1024) {
          await write(out, buf);
          progress(count - reported, Buffer.byteLength(buf));
          buf = '';
          reported = count;
        }
      }
      if (buf) await write(out, buf);
      out.end();
      await closed;
      progress(count - reported, Buffer.byteLength(buf));
      return count;
    } catch (err) {
      out.destroy();
      throw err;
    }
  }

  async finish(meta: Record<string, unknown> = {}): Promise<void> {
    if (!this.temp) return;
    await writeFile(join(this.temp, 'restore.json'), `${JSON.stringify({ format: this.format, ...meta }, null, 2)}\n`);
    if (await stat(this.dir).catch(() => null)) await rmdir(this.dir); // empty, checked before
    await rename(this.temp, this.dir);
    this.temp = null;
  }

  async abort(): Promise<void> {
    if (this.temp) await rm(this.temp, { recursive: true, force: true });
    this.temp = null;
  }

  async close(): Promise<void> {}
}

async function write(out: WriteStream, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

/** A file name for a table: its "schema.table", with characters unsafe in file names escaped. */
export function fileNameOf(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, (c) => `%${c.codePointAt(0)!.toString(16).padStart(2, '0')}`);
}

function schemaFile(plan: TablePlan): unknown {
  return {
    table: plan.name,
    sourceEngine: plan.sourceEngine,
    primaryKey: plan.table.primaryKey,
    columns: plan.table.columns.map((c) => ({ name: c.name, sourceType: c.sourceType, type: c.type, nullable: c.nullable, sealed: plan.sealed.has(c.name) })),
  };
}

// ---- CSV ----------------------------------------------------------------------------------

function csvField(text: string | null): string {
  if (text === null) return '';
  return text === '' || /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One value as CSV text (null for NULL). */
export function csvText(v: CellValue | undefined, col: ColumnSchema, sealed: boolean, plan: TablePlan): string | null {
  if (v === undefined || v === null) return null;
  if (v === UNCHANGED) throw new ChartlogError('internal', `column ${col.name}: an unchanged value reached the target`);
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  if (sealed) throw new ChartlogError('integrity', `column ${col.name} is sealed but holds no sealed bytes`);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return col.type.kind === 'float' ? floatText(v) : String(v);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) {
    if (col.type.kind === 'set') return (v as string[]).join(',');
    return arrayLiteral(v as readonly CellValue[], col.type.element ?? { kind: 'text' }, plan.sourceEngine);
  }
  return v as string;
}

async function* csvLines(plan: TablePlan, rows: AsyncIterable<Row>): AsyncGenerator<string> {
  const cols = plan.table.columns;
  yield `${cols.map((c) => csvField(c.name)).join(',')}\n`;
  for await (const row of rows) yield `${cols.map((c) => csvField(csvText(row[c.name], c, plan.sealed.has(c.name), plan))).join(',')}\n`;
}

// ---- JSON lines ---------------------------------------------------------------------------

/** One value as JSON (see the class comment for the forms). */
export function jsonValue(v: CellValue | undefined, col: { type: ColumnSchema['type'] }, sealed: boolean): unknown {
  if (v === undefined || v === null) return null;
  if (v === UNCHANGED) throw new ChartlogError('internal', 'an unchanged value reached the target');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
  if (sealed) throw new ChartlogError('integrity', 'a sealed column holds no sealed bytes');
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0) ? v : floatText(v);
  if (Array.isArray(v)) return (v as readonly CellValue[]).map((e) => jsonValue(e, { type: col.type.element ?? { kind: 'string' } }, false));
  return v;
}

async function* jsonLines(plan: TablePlan, rows: AsyncIterable<Row>): AsyncGenerator<string> {
  const cols = plan.table.columns;
  for await (const row of rows) {
    const o: Record<string, unknown> = {};
    for (const c of cols) Object.defineProperty(o, c.name, { value: jsonValue(row[c.name], c, plan.sealed.has(c.name)), enumerable: true });
    yield `${JSON.stringify(o)}\n`;
  }
}

// ---- SQL ----------------------------------------------------------------------------------

/** Built-in PostgreSQL type names (typmods and [] removed); other types need a definition. */
const PG_BUILTIN = new Set([
  'smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision', 'boolean', 'text', 'character varying', 'character', '"char"', 'name',
  'bytea', 'date', 'time without time zone', 'time with time zone', 'timestamp without time zone', 'timestamp with time zone', 'interval',
  'uuid', 'json', 'jsonb', 'inet', 'cidr', 'macaddr', 'macaddr8', 'bit', 'bit varying', 'money', 'xml', 'oid', 'pg_lsn', 'tsvector', 'tsquery',
  'int4range', 'int8range', 'numrange', 'tsrange', 'tstzrange', 'daterange', 'int4multirange', 'int8multirange', 'nummultirange',
  'tsmultirange', 'tstzmultirange', 'datemultirange', 'point', 'line', 'lseg', 'box', 'path', 'polygon', 'circle', 'jsonpath',
]);

function pgFileType(c: ColumnSchema, plan: TablePlan): string {
  const sealed = plan.sealed.has(c.name);
  const t = pgColumnType(c, sealed, plan.sourceEngine);
  if (sealed || plan.sourceEngine !== 'postgres' || enumOf(c)) return t;
  const base = t.replace(/(\[\])+$/, '').replace(/\(\s*[\d,\s]+\)/g, '').trim();
  return PG_BUILTIN.has(base) ? t : pgTypeOfKind(c.type);
}

async function* sqlLines(plan: TablePlan, rows: AsyncIterable<Row>): AsyncGenerator<string> {
  const cols = plan.table.columns;
  const sealed = cols.map((c) => plan.sealed.has(c.name));
  yield `-- chartlog restore of ${plan.name}\n`;
  let head: string;
  let literal: (row: Row, i: number) => string;
  if (plan.sourceEngine === 'postgres') {
    yield "SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nSET TimeZone = 'UTC';\nSET DateStyle = 'ISO';\nSET IntervalStyle = 'postgres';\n";
    yield `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(plan.table.schema)};\n`;
    for (const c of cols) {
      const e = sealed[cols.indexOf(c)] ? null : enumOf(c);
      if (e) {
        // Another table's file may have created it already.
        yield `DO $$ BEGIN CREATE TYPE ${e.name} AS ENUM (${e.labels.map((l) => sqlLiteral(l)).join(', ')}); EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n`;
      }
    }
    yield `${createTableSql(plan, cols.map((c) => pgFileType(c, plan)))};\n`;
    head = `INSERT INTO ${qualifiedIdent(plan.table.schema, plan.table.table)} (${cols.map((c) => quoteIdent(c.name)).join(', ')}) VALUES\n`;
    literal = (row, i) => sqlLiteral(pgText(row[cols[i]!.name], cols[i]!, sealed[i]!, plan.sourceEngine));
  } else {
    yield `${MYSQL_SESSION.join(';\n')};\n`;
    yield `${createTableSqlMysql(plan)};\n`;
    head = `INSERT INTO ${quoteMysqlIdent(plan.table.table)} (${cols.map((c) => quoteMysqlIdent(c.name)).join(', ')}) VALUES\n`;
    literal = (row, i) => mysqlLiteral(row[cols[i]!.name], cols[i]!, sealed[i]!, plan.sourceEngine);
  }
  let n = 0;
  for await (const row of rows) {
    const values = cols.map((_, i) => literal(row, i)).join(', ');
    yield `${n % ROWS_PER_INSERT === 0 ? head : ',\n'}(${values})`;
    n++;
    if (n % ROWS_PER_INSERT === 0) yield ';\n';
  }
  if (n % ROWS_PER_INSERT !== 0) yield ';\n';
  if (plan.sourceEngine === 'postgres' && plan.table.primaryKey.length > 0) {
    yield `ALTER TABLE ${qualifiedIdent(plan.table.schema, plan.table.table)} ADD PRIMARY KEY (${plan.table.primaryKey.map(quoteIdent).join(', ')});\n`;
  }
}
