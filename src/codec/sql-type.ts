import { ChartlogError } from '../core/errors.js';

/**
 * A column's source type as archived (`sourceType` in a schema's `chartlog.table` attribute),
 * parsed against an allow-list per engine and written back in a form safe to put in DDL.
 *
 * The archived text reaches `CREATE TABLE` in restore targets, so it is never copied there: a
 * built-in type is re-spelt from this file's own keywords and validated integers, a user type
 * (a PostgreSQL enum or domain) becomes quoted identifiers, and anything else is refused. The
 * grammar is what the connectors record: PostgreSQL's `format_type()` output, MySQL/MariaDB's
 * `COLUMN_TYPE`.
 */

export type SqlEngine = 'postgres' | 'mysql';

export interface SqlType {
  /** The DDL form: only allow-listed keywords, integers and quoted identifiers. */
  readonly ddl: string;
  /** PostgreSQL: the element type's DDL form without `[]` (what CREATE TYPE names); MySQL: the type name. */
  readonly base: string;
  /** True for a PostgreSQL user type (enum, domain, extension type): its name, quoted. */
  readonly userType: boolean;
}

/** Largest integers PostgreSQL and MySQL accept in a type modifier (varchar's 10485760; bit's 83886080 is larger still). */
const LIMIT = { pgLength: 10_485_760, pgBits: 83_886_080, numericPrecision: 1000, fraction: 6, mysqlLength: 4_294_967_295 };

/** PostgreSQL built-in names without a modifier (format_type spellings). */
const PG_PLAIN = new Set([
  'smallint', 'integer', 'bigint', 'real', 'double precision', 'boolean', 'text', 'bytea', 'date', 'uuid', 'json', 'jsonb', 'xml',
  'inet', 'cidr', 'macaddr', 'macaddr8', 'money', 'oid', 'pg_lsn', 'tsvector', 'tsquery', 'jsonpath', 'name', '"char"', 'point', 'line',
  'lseg', 'box', 'path', 'polygon', 'circle', 'int4range', 'int8range', 'numrange', 'tsrange', 'tstzrange', 'daterange', 'int4multirange',
  'int8multirange', 'nummultirange', 'tsmultirange', 'tstzmultirange', 'datemultirange', 'txid_snapshot', 'pg_snapshot', 'regclass',
  'regtype', 'regproc', 'xid', 'xid8', 'cid', 'tid',
]);
const PG_INTERVAL_FIELDS = new Set(['year', 'month', 'day', 'hour', 'minute', 'second', 'year to month', 'day to hour', 'day to minute',
  'day to second', 'hour to minute', 'hour to second', 'minute to second']);

/** MySQL/MariaDB type names (COLUMN_TYPE) and what their parentheses may hold. */
type MysqlArgs = 'none' | 'len' | 'prec' | 'frac' | 'labels';
const MYSQL_TYPES: Record<string, MysqlArgs> = {
  tinyint: 'len', smallint: 'len', mediumint: 'len', int: 'len', integer: 'len', bigint: 'len', bool: 'none', boolean: 'none',
  decimal: 'prec', numeric: 'prec', dec: 'prec', fixed: 'prec', float: 'prec', double: 'prec', 'double precision': 'prec', real: 'prec',
  bit: 'len', char: 'len', varchar: 'len', binary: 'len', varbinary: 'len', tinytext: 'none', text: 'len', mediumtext: 'none', longtext: 'none',
  tinyblob: 'none', blob: 'len', mediumblob: 'none', longblob: 'none', date: 'none', time: 'frac', datetime: 'frac', timestamp: 'frac',
  year: 'len', json: 'none', enum: 'labels', set: 'labels', uuid: 'none', inet4: 'none', inet6: 'none', geometry: 'none', point: 'none',
  vector: 'len', linestring: 'none', polygon: 'none', multipoint: 'none', multilinestring: 'none', multipolygon: 'none', geometrycollection: 'none',
};

function refuse(engine: SqlEngine, text: string, why: string): ChartlogError {
  // The text may be altered input: show a bounded, escaped prefix only.
  const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
  return new ChartlogError('integrity', `source type ${shown} is not an allowed ${engine === 'postgres' ? 'PostgreSQL' : 'MySQL'} type: ${why}`, {
    hint: 'the schema object was altered or damaged; run `chartlog verify` and restore schemas/ from an intact copy of the archive',
  });
}

function int(engine: SqlEngine, text: string, digits: string, min: number, max: number): number {
  const n = Number(digits);
  if (!/^-?\d{1,10}$/.test(digits) || n < min || n > max) throw refuse(engine, text, `${digits} is not an integer from ${min} to ${max}`);
  return n;
}

/** A PostgreSQL identifier as format_type writes it: lowercase unquoted, or double-quoted. */
const PG_IDENT = String.raw`(?:[a-z_][a-z0-9_$]*|"(?:[^"\x00-\x1f]|"")+")`;
const PG_USER_TYPE = new RegExp(`^(${PG_IDENT})(?:\\.(${PG_IDENT}))?$`);

function pgIdent(part: string): string {
  const name = part.startsWith('"') ? part.slice(1, -1).replace(/""/g, '"') : part;
  if (name.length === 0 || Buffer.byteLength(name) > 63) throw new ChartlogError('integrity', 'a PostgreSQL type name is empty or longer than 63 bytes');
  return `"${name.replace(/"/g, '""')}"`;
}

function parsePostgres(text: string): SqlType {
  const m = /^(.*?)((?:\[\])*)$/.exec(text.trim())!;
  const dims = m[2]!;
  const t = m[1]!.trim().replace(/\s+/g, ' ');
  const built = (base: string): SqlType => ({ ddl: `${base}${dims}`, base, userType: false });
  if (PG_PLAIN.has(t)) return built(t);
  let r: RegExpExecArray | null;
  if ((r = /^numeric(?:\((-?\d+)(?:,\s?(-?\d+))?\))?$/.exec(t))) {
    if (r[1] === undefined) return built('numeric');
    const p = int('postgres', text, r[1], 1, LIMIT.numericPrecision);
    const s = r[2] === undefined ? 0 : int('postgres', text, r[2], -LIMIT.numericPrecision, LIMIT.numericPrecision);
    return built(`numeric(${p},${s})`);
  }
  if ((r = /^(character varying|character|bit varying|bit)(?:\((\d+)\))?$/.exec(t))) {
    const max = r[1]!.startsWith('bit') ? LIMIT.pgBits : LIMIT.pgLength;
    return built(r[2] === undefined ? r[1]! : `${r[1]}(${int('postgres', text, r[2], 1, max)})`);
  }
  if ((r = /^(time|timestamp)(?:\((\d+)\))? (with|without) time zone$/.exec(t))) {
    const p = r[2] === undefined ? '' : `(${int('postgres', text, r[2], 0, LIMIT.fraction)})`;
    return built(`${r[1]}${p} ${r[3]} time zone`);
  }
  if ((r = /^interval(?: ([a-z ]+?))?(?:\((\d+)\))?$/.exec(t))) {
    if (r[1] !== undefined && !PG_INTERVAL_FIELDS.has(r[1])) throw refuse('postgres', text, `interval fields "${r[1]}" are not known`);
    const p = r[2] === undefined ? '' : `(${int('postgres', text, r[2], 0, LIMIT.fraction)})`;
    return built(`interval${r[1] ? ` ${r[1]}` : ''}${p}`);
  }
  if ((r = PG_USER_TYPE.exec(t))) {
    const base = [r[1]!, r[2]].filter((p): p is string => p !== undefined).map(pgIdent).join('.');
    return { ddl: `${base}${dims}`, base, userType: true };
  }
  throw refuse('postgres', text, 'neither a built-in type nor a type name');
}

/** Skips a single-quoted literal starting at `i` ('' or a backslash escapes); returns the index after it. */
function skipLiteral(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === "'") {
      if (text[j + 1] === "'") j++;
      else return j + 1;
    }
  }
  return -1;
}

function parseMysql(text: string): SqlType {
  const t = text.trim();
  const head = /^([a-z][a-z0-9]*(?: precision)?)\s*(?=\(|\s|$)/i.exec(t);
  if (!head) throw refuse('mysql', text, 'no type name');
  const name = head[1]!.toLowerCase();
  const args = MYSQL_TYPES[name];
  if (args === undefined) throw refuse('mysql', text, `${name} is not a known type`);
  let rest = t.slice(head[0].length);
  let mods = '';
  if (rest.startsWith('(')) {
    if (args === 'labels') {
      let i = 1;
      for (;;) {
        if (rest[i] !== "'") throw refuse('mysql', text, 'the value list is not quoted labels');
        i = skipLiteral(rest, i);
        if (i < 0) throw refuse('mysql', text, 'a label is not closed');
        if (rest[i] === ')') break;
        if (rest[i] !== ',') throw refuse('mysql', text, 'labels are not separated by commas');
        i++;
      }
      // Labels are written from the attribute's structured list, never from this text.
      rest = rest.slice(i + 1);
    } else {
      const close = rest.indexOf(')');
      const inner = close < 0 ? null : /^(\d+)(?:,(\d+))?$/.exec(rest.slice(1, close).replace(/\s+/g, ''));
      if (!inner || args === 'none') throw refuse('mysql', text, `${name} takes no such modifier`);
      if (args === 'prec') {
        mods = `(${int('mysql', text, inner[1]!, 0, 255)}${inner[2] === undefined ? '' : `,${int('mysql', text, inner[2], 0, 30)}`})`;
      } else {
        if (inner[2] !== undefined) throw refuse('mysql', text, `${name} takes one modifier`);
        mods = `(${int('mysql', text, inner[1]!, 0, args === 'frac' ? LIMIT.fraction : LIMIT.mysqlLength)})`;
      }
      rest = rest.slice(close + 1);
    }
  } else if (args === 'labels') {
    throw refuse('mysql', text, `${name} needs its labels`);
  }
  const flags = rest.trim().toLowerCase().split(/\s+/).filter((w) => w !== '');
  for (const f of flags) if (f !== 'unsigned' && f !== 'zerofill' && f !== 'signed') throw refuse('mysql', text, `"${f.slice(0, 20)}" is not a type attribute`);
  return { ddl: [`${name}${mods}`, ...flags].join(' '), base: name, userType: false };
}

/**
 * The archived source type `text` of an `engine` column, checked and re-spelt for DDL; throws
 * ChartlogError('integrity') naming why. MySQL enum and set labels are not in `ddl`'s
 * parentheses: the caller writes them from the column's structured labels.
 */
export function parseSqlType(engine: SqlEngine, text: string): SqlType {
  if (typeof text !== 'string' || text.length === 0 || text.length > 65_536) throw refuse(engine, String(text), 'empty or too long');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(text)) throw refuse(engine, text, 'it holds control characters');
  return engine === 'postgres' ? parsePostgres(text) : parseMysql(text);
}
