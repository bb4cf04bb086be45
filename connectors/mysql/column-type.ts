import type { ColumnType } from '../../src/core/table-schema.js';

/**
 * MySQL/MariaDB column types → the value model (src/core/table-schema.ts).
 *
 * Input is the type as INFORMATION_SCHEMA.COLUMNS.COLUMN_TYPE spells it ('bigint(20) unsigned',
 * "enum('a,b','it''s')", 'datetime(6)'), which is also the form zongji rebuilds from a FULL
 * binlog table map. MariaDB's JSON is a LONGTEXT with a json_valid() check, so the caller says
 * whether a column is JSON.
 */
export function columnTypeOf(columnType: string, isJson = false): ColumnType {
  const t = columnType.trim().toLowerCase();
  const base = /^[a-z0-9_]+/.exec(t)?.[0] ?? t;
  const unsigned = /\bunsigned\b/.test(t);
  const args = /^[a-z0-9_]+\s*\(([^)]*)\)/.exec(t)?.[1];
  const n = args === undefined ? undefined : Number.parseInt(args, 10);
  if (isJson || base === 'json') return { kind: 'json' };
  switch (base) {
    case 'tinyint': return { kind: 'int', bits: 8, unsigned };
    case 'smallint': return { kind: 'int', bits: 16, unsigned };
    case 'mediumint': return { kind: 'int', bits: 24, unsigned };
    case 'int': case 'integer': return { kind: 'int', bits: 32, unsigned };
    case 'bigint': return { kind: 'int', bits: 64, unsigned };
    case 'decimal': case 'numeric': case 'dec': case 'fixed': {
      const [p, s] = (args ?? '10,0').split(',').map((x) => Number.parseInt(x, 10));
      return { kind: 'decimal', precision: p ?? 10, scale: s ?? 0 };
    }
    case 'float': return { kind: 'float', bits: 32 };
    case 'double': case 'real': return { kind: 'float', bits: 64 };
    case 'date': return { kind: 'date' };
    case 'datetime': return { kind: 'timestamp' };
    case 'timestamp': return { kind: 'timestamptz' };
    case 'time': return { kind: 'time' };
    case 'year': return { kind: 'year' };
    case 'char': case 'varchar': return n === undefined ? { kind: 'string' } : { kind: 'string', length: n };
    case 'tinytext': case 'text': case 'mediumtext': case 'longtext': return { kind: 'string' };
    case 'binary': case 'varbinary': return n === undefined ? { kind: 'bytes' } : { kind: 'bytes', length: n };
    case 'tinyblob': case 'blob': case 'mediumblob': case 'longblob': case 'vector': return { kind: 'bytes' };
    case 'bit': return { kind: 'bit', length: n ?? 1 };
    case 'enum': return { kind: 'enum', values: parseValueList(columnType) };
    case 'set': return { kind: 'set', values: parseValueList(columnType) };
    case 'uuid': return { kind: 'uuid' };
    default: return { kind: 'text' }; // inet4, inet6, geometry types: their text form
  }
}

/** Fractional-second digits declared by a temporal type ('datetime(6)' → 6, 'time' → 0). */
export function fractionDigits(columnType: string): number {
  const m = /^(?:datetime|timestamp|time)\s*\((\d)\)/i.exec(columnType.trim());
  return m ? Number(m[1]) : 0;
}

/**
 * The labels of "enum('a','b')" / "set(...)": single-quoted, '' or \' for a quote, commas
 * allowed inside labels (an ENUM label may hold one; a naive split would shift every label
 * after it).
 */
export function parseValueList(columnType: string): string[] {
  const open = columnType.indexOf('(');
  const out: string[] = [];
  let i = open + 1;
  while (i < columnType.length) {
    const c = columnType[i];
    if (c === "'") {
      let label = '';
      i++;
      while (i < columnType.length) {
        const ch = columnType[i]!;
        if (ch === '\\' && i + 1 < columnType.length) {
          label += unescape(columnType[i + 1]!);
          i += 2;
        } else if (ch === "'" && columnType[i + 1] === "'") {
          label += "'";
          i += 2;
        } else if (ch === "'") {
          i++;
          break;
        } else {
          label += ch;
          i++;
        }
      }
      out.push(label);
    } else if (c === ')') {
      break;
    } else {
      i++;
    }
  }
  return out;
}

function unescape(c: string): string {
  switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case '0': return '\0';
    case 'Z': return '\x1a';
    default: return c;
  }
}
