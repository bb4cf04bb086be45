import { ChartlogError } from '../../core/errors.js';
import { UNCHANGED, type CellValue, type ColumnSchema, type ColumnType } from '../../core/table-schema.js';
import { floatText } from './postgres-text.js';
import type { SourceEngine } from './restore-target.js';
import { sourceTypeDdl } from './source-type-ddl.js';

/**
 * Values of the value model as MySQL/MariaDB SQL literals, and column types for MySQL targets.
 * Pure. The session that runs them must use sql_mode without NO_BACKSLASH_ESCAPES and
 * time_zone '+00:00' (MySQL TIMESTAMP values are given in UTC). From MySQL sources every value
 * goes back exactly; from PostgreSQL sources the mapping is best effort (values MySQL cannot
 * hold — infinity, BC dates, NaN — become NULL).
 */

export function quoteMysqlIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

const ESCAPES: Record<string, string> = { '\0': '\\0', '\n': '\\n', '\r': '\\r', '\x1a': '\\Z', "'": "\\'", '\\': '\\\\' };

export function mysqlString(text: string): string {
  // The characters MySQL's own mysql_real_escape_string escapes; \x1a (Ctrl-Z) ends files on Windows.
  // eslint-disable-next-line no-control-regex
  return `'${text.replace(/[\0\n\r\x1a'\\]/g, (c) => ESCAPES[c]!)}'`;
}

function hex(v: Uint8Array): string {
  return `X'${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}'`;
}

/** One value as a literal; 'NULL' for SQL NULL. */
export function mysqlLiteral(v: CellValue | undefined, col: ColumnSchema, sealed: boolean, engine: SourceEngine): string {
  if (v === undefined || v === null) return 'NULL';
  if (v === UNCHANGED) throw new ChartlogError('internal', `column ${col.name}: an unchanged value reached the target`);
  if (v instanceof Uint8Array) return hex(v);
  if (sealed) throw new ChartlogError('integrity', `column ${col.name} is sealed but holds no sealed bytes`, { hint: 'run `chartlog verify`' });
  const t = col.type;
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return 'NULL';
    // YEAR: a 4-digit string is taken as written; the number 0 would be read as 2000 by some servers.
    if (t.kind === 'year') return mysqlString(String(v).padStart(4, '0'));
    return t.kind === 'float' ? (Object.is(v, -0) ? '-0e0' : floatText(v)) : String(v);
  }
  if (Array.isArray(v)) {
    if (t.kind === 'set') return mysqlString((v as string[]).join(','));
    return mysqlString(JSON.stringify(jsonOf(v as readonly CellValue[])));
  }
  const s = v as string;
  switch (t.kind) {
    case 'bit':
      return `b'${s || '0'}'`;
    case 'timestamptz':
      if (engine === 'postgres' && !/^\d{4}-/.test(s)) return 'NULL'; // infinity
      if (/ BC$/.test(s)) return 'NULL';
      return mysqlString(s.replace(/[+-]\d{2}(:\d{2})?$/, ''));
    case 'date':
    case 'timestamp':
      if (engine === 'postgres' && (/ BC$/.test(s) || !/^\d{4}-/.test(s))) return 'NULL';
      return mysqlString(s);
    case 'decimal':
      if (engine === 'postgres' && /^[-]?[A-Za-z]/.test(s) && t.precision !== undefined) return 'NULL'; // NaN, Infinity
      return mysqlString(s);
    default:
      return mysqlString(s);
  }
}

/** Array values (PostgreSQL sources) as JSON, numbers that a double cannot hold as strings. */
function jsonOf(values: readonly CellValue[]): unknown[] {
  return values.map((e) => {
    if (e === null || e === undefined || e === UNCHANGED) return null;
    if (Array.isArray(e)) return jsonOf(e as readonly CellValue[]);
    if (typeof e === 'bigint') return e.toString();
    if (typeof e === 'number') return Number.isFinite(e) ? e : floatText(e);
    if (e instanceof Uint8Array) return Buffer.from(e).toString('base64');
    return e;
  });
}

/**
 * The column type for a MySQL target: the recorded source type when the archive came from MySQL
 * (sealed columns: bytes), otherwise a type that holds the value model's values.
 */
export function mysqlColumnType(col: ColumnSchema, sealed: boolean, engine: SourceEngine, key: boolean): string {
  if (sealed) return key ? 'varbinary(3072)' : 'longblob';
  if (engine === 'mysql') return sourceTypeDdl('mysql', col);
  return mysqlTypeOfKind(col.type, key);
}

export function mysqlTypeOfKind(t: Readonly<ColumnType>, key = false): string {
  switch (t.kind) {
    case 'boolean': return 'boolean';
    case 'int': return t.bits === 64 ? 'bigint' : t.bits === 16 ? 'smallint' : 'int';
    case 'float': return t.bits === 32 ? 'float' : 'double';
    case 'decimal':
      if (t.precision !== undefined && t.precision <= 65 && (t.scale ?? 0) <= 30) return `decimal(${t.precision},${t.scale ?? 0})`;
      return key ? 'varchar(255)' : 'longtext';
    case 'string': return t.length !== undefined && t.length <= 16383 ? `varchar(${t.length})` : key ? 'varchar(255)' : 'longtext';
    case 'bytes': return key ? 'varbinary(3072)' : 'longblob';
    case 'bit': return t.length !== undefined && t.length <= 64 ? `bit(${t.length})` : 'varchar(255)';
    case 'json': return 'json';
    case 'uuid': return 'char(36)';
    case 'date': return 'date';
    case 'time': return 'time(6)';
    case 'timetz': return 'varchar(32)';
    case 'timestamp': return 'datetime(6)';
    case 'timestamptz': return 'datetime(6)';
    case 'interval': return 'varchar(255)';
    case 'enum': return t.values && t.values.length > 0 ? `enum(${t.values.map(mysqlString).join(',')})` : 'varchar(255)';
    case 'set': return t.values && t.values.length > 0 ? `set(${t.values.map(mysqlString).join(',')})` : 'varchar(255)';
    case 'year': return 'year';
    case 'text': return key ? 'varchar(255)' : 'longtext';
    case 'array': return 'json';
  }
}
