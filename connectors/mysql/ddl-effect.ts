/**
 * What a MySQL/MariaDB DDL statement did to the rows of the tables it names, read from its text
 * alone (the binlog carries DDL as a QUERY event, never as row events). Pure: no I/O.
 *
 * The question is whether rows the table had may now hold values no row event carries (a type
 * change that converts or rounds, a generated or AUTO_INCREMENT column filled in, a charset
 * conversion, partitions dropped). Such a table must be re-read (an automatic resync). A
 * statement is taken as harmless only when every clause of it is on the list of clauses proven
 * not to touch existing values (indexes, constraints, renames, table comments, a column's
 * default for future rows, ADD COLUMN with a constant default — whose value older rows read is
 * recorded by added-columns.ts). Everything else, a clause not recognised included, asks for a
 * resync with the reason (fail closed).
 */

export interface TableName {
  readonly schema: string;
  readonly table: string;
}

export interface DdlEffect {
  /** The table the statement changes; null when the statement could not be read at all. */
  readonly table: TableName | null;
  /** Why rows the table had may hold values no row event carries (it must be re-read); null: proven not. */
  readonly resync: string | null;
  /** `RENAME TABLE a TO b`, `ALTER TABLE a RENAME TO b`: the table's new name. */
  readonly renamedTo?: TableName;
  /** `RENAME COLUMN old TO new`, `CHANGE old new …`: new name → old name. */
  readonly renamedColumns?: ReadonlyMap<string, string>;
}

type Token = { readonly kind: 'word' | 'ident' | 'string' | 'number' | 'punct'; readonly text: string };

/** The statement as tokens; comments dropped, executable comments (`/*!50100 … *\/`, `/*M! … *\/`) kept as code. */
export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      const m = /^\/\*(?:M?!\d*)/.exec(sql.slice(i, i + 12));
      if (m && m[0].length > 2) {
        // An executable comment: its body is code the server runs; only its end marker is dropped.
        i += m[0].length;
        const end = sql.indexOf('*/', i);
        const body = end < 0 ? sql.slice(i) : sql.slice(i, end);
        out.push(...tokenize(body));
        i = end < 0 ? n : end + 2;
      } else {
        const end = sql.indexOf('*/', i + 2);
        i = end < 0 ? n : end + 2;
      }
    } else if (c === '#' || (c === '-' && sql[i + 1] === '-' && /\s/.test(sql[i + 2] ?? ' '))) {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (c === '`' || c === "'" || c === '"') {
      let j = i + 1;
      let text = '';
      for (; j < n; j++) {
        const d = sql[j]!;
        if (d === '\\' && c !== '`') {
          text += sql[j + 1] ?? '';
          j++;
        } else if (d === c) {
          if (sql[j + 1] === c) {
            text += c;
            j++;
          } else break;
        } else text += d;
      }
      out.push({ kind: c === '`' ? 'ident' : 'string', text });
      i = j + 1;
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(sql[i + 1] ?? ''))) {
      const m = /^(?:0x[0-9a-f]+|\d*\.?\d+(?:e[-+]?\d+)?)/i.exec(sql.slice(i))!;
      out.push({ kind: 'number', text: m[0] });
      i += m[0].length;
    } else if (/[A-Za-z_$\u0080-\uffff]/.test(c)) {
      const m = /^[A-Za-z0-9_$\u0080-\uffff]+/.exec(sql.slice(i))!;
      // b'0101' and x'ff' literals.
      if (/^[bx]$/i.test(m[0]) && sql[i + 1] === "'") {
        const end = sql.indexOf("'", i + 2);
        out.push({ kind: 'string', text: sql.slice(i, end < 0 ? n : end + 1) });
        i = end < 0 ? n : end + 1;
      } else {
        out.push({ kind: 'word', text: m[0] });
        i += m[0].length;
      }
    } else {
      out.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return out;
}

const up = (t: Token | undefined): string => (t && t.kind === 'word' ? t.text.toUpperCase() : '');
const isName = (t: Token | undefined): t is Token => t !== undefined && (t.kind === 'word' || t.kind === 'ident');

/** Tokens split at commas outside parentheses. */
function splitTopLevel(tokens: readonly Token[]): Token[][] {
  const parts: Token[][] = [[]];
  let depth = 0;
  for (const t of tokens) {
    if (t.kind === 'punct' && t.text === '(') depth++;
    if (t.kind === 'punct' && t.text === ')') depth--;
    if (depth === 0 && t.kind === 'punct' && t.text === ',') parts.push([]);
    else parts[parts.length - 1]!.push(t);
  }
  return parts.filter((p) => p.length > 0);
}

/** A table name at `tokens[i]` (`t`, `db.t`): the name and the index after it. */
function tableNameAt(tokens: readonly Token[], i: number, defaultSchema: string): { name: TableName; next: number } | null {
  const a = tokens[i];
  if (!isName(a)) return null;
  const dot = tokens[i + 1];
  if (dot?.kind === 'punct' && dot.text === '.' && isName(tokens[i + 2])) return { name: { schema: a.text, table: tokens[i + 2]!.text }, next: i + 3 };
  return { name: { schema: defaultSchema, table: a.text }, next: i + 1 };
}

/** Table options that change no stored value (only metadata, statistics or future rows). */
const HARMLESS_TABLE_OPTIONS = new Set([
  'COMMENT', 'AUTO_INCREMENT', 'ROW_FORMAT', 'KEY_BLOCK_SIZE', 'STATS_AUTO_RECALC', 'STATS_PERSISTENT', 'STATS_SAMPLE_PAGES',
  'PACK_KEYS', 'CHECKSUM', 'TABLE_CHECKSUM', 'DELAY_KEY_WRITE', 'PAGE_CHECKSUM', 'TRANSACTIONAL', 'MIN_ROWS', 'MAX_ROWS',
  'AVG_ROW_LENGTH', 'PAGE_COMPRESSED', 'PAGE_COMPRESSION_LEVEL', 'ENCRYPTED', 'ENCRYPTION_KEY_ID', 'IETF_QUOTES',
]);

type Clause = { resync: string | null; renamedTo?: TableName; renamedColumn?: [string, string] };

const harmless: Clause = { resync: null };

/**
 * Every effect of one DDL statement on the tables it names. Statements that change no captured
 * table's existing rows (CREATE TABLE, CREATE/DROP INDEX, DROP TABLE and TRUNCATE — those two are
 * recorded as events elsewhere) give none.
 */
export function ddlEffects(query: string, defaultSchema: string): DdlEffect[] {
  const tokens = tokenize(query);
  const head = up(tokens[0]);
  if (head === 'ALTER') return alterEffects(tokens, defaultSchema);
  if (head === 'RENAME' && (up(tokens[1]) === 'TABLE' || up(tokens[1]) === 'TABLES')) return renameTableEffects(tokens.slice(2), defaultSchema);
  if (head === 'CREATE' && up(tokens[1]) === 'OR' && up(tokens[2]) === 'REPLACE') {
    let i = 3;
    while (['TEMPORARY'].includes(up(tokens[i]))) i++;
    if (up(tokens[i]) !== 'TABLE' || up(tokens[i - 1]) === 'TEMPORARY') return [];
    const at = tableNameAt(tokens, i + 1, defaultSchema);
    return [{ table: at?.name ?? null, resync: 'CREATE OR REPLACE TABLE replaced the table and its rows' }];
  }
  return [];
}

function renameTableEffects(tokens: readonly Token[], defaultSchema: string): DdlEffect[] {
  const out: DdlEffect[] = [];
  for (const part of splitTopLevel(tokens)) {
    const from = tableNameAt(part, 0, defaultSchema);
    let i = from?.next ?? 0;
    if (up(part[i]) === 'WAIT') i += 2;
    else if (up(part[i]) === 'NOWAIT') i += 1;
    const to = up(part[i]) === 'TO' ? tableNameAt(part, i + 1, defaultSchema) : null;
    if (!from || !to || to.next !== part.length) return [{ table: from?.name ?? null, resync: 'a RENAME TABLE statement chartlog cannot read' }];
    out.push({ table: from.name, resync: null, renamedTo: to.name });
  }
  return out;
}

function alterEffects(tokens: readonly Token[], defaultSchema: string): DdlEffect[] {
  let i = 1;
  let ignore = false;
  for (;;) {
    const w = up(tokens[i]);
    if (w === 'ONLINE') i++;
    else if (w === 'IGNORE') {
      ignore = true;
      i++;
    } else break;
  }
  if (up(tokens[i]) !== 'TABLE') return []; // ALTER DATABASE, VIEW, USER, SEQUENCE, …: no table rows
  i++;
  if (up(tokens[i]) === 'IF' && up(tokens[i + 1]) === 'EXISTS') i += 2;
  const at = tableNameAt(tokens, i, defaultSchema);
  if (!at) return [{ table: null, resync: 'an ALTER TABLE statement whose table chartlog cannot read' }];
  i = at.next;
  if (up(tokens[i]) === 'WAIT' && tokens[i + 1]?.kind === 'number') i += 2;
  else if (up(tokens[i]) === 'NOWAIT') i++;
  const reasons: string[] = [];
  if (ignore) reasons.push('ALTER IGNORE deletes rows that break a new unique key, without row events');
  let renamedTo: TableName | undefined;
  const renamedColumns = new Map<string, string>();
  for (const spec of splitTopLevel(tokens.slice(i))) {
    const c = clause(spec, defaultSchema);
    if (c.resync) reasons.push(c.resync);
    if (c.renamedTo) renamedTo = c.renamedTo;
    if (c.renamedColumn) renamedColumns.set(c.renamedColumn[1], c.renamedColumn[0]);
  }
  return [
    {
      table: at.name,
      resync: reasons.length > 0 ? reasons.join('; ') : null,
      ...(renamedTo ? { renamedTo } : {}),
      ...(renamedColumns.size > 0 ? { renamedColumns } : {}),
    },
  ];
}

/** The text of a clause for a reason (names and keywords only: a DDL statement holds no row values). */
function shown(spec: readonly Token[]): string {
  const text = spec
    .slice(0, 6)
    .map((t) => (t.kind === 'string' ? "'…'" : t.text))
    .join(' ');
  return spec.length > 6 ? `${text} …` : text;
}

/** One clause (between top-level commas) of an ALTER TABLE. */
function clause(spec: readonly Token[], defaultSchema: string): Clause {
  const w0 = up(spec[0]);
  const w1 = up(spec[1]);
  const unknown: Clause = { resync: `clause "${shown(spec)}" is not one chartlog can prove leaves existing rows unchanged` };
  switch (w0) {
    case 'ADD': {
      if (['INDEX', 'KEY', 'UNIQUE', 'FULLTEXT', 'SPATIAL', 'PRIMARY', 'FOREIGN', 'CONSTRAINT', 'CHECK', 'PERIOD'].includes(w1)) return harmless;
      if (w1 === 'PARTITION') return harmless;
      if (w1 === 'SYSTEM') return { resync: 'ADD SYSTEM VERSIONING' };
      let j = w1 === 'COLUMN' ? 2 : 1;
      if (up(spec[j]) === 'IF' && up(spec[j + 1]) === 'NOT' && up(spec[j + 2]) === 'EXISTS') j += 3;
      const first = spec[j];
      if (first?.kind === 'punct' && first.text === '(') {
        // ADD (a INT, b INT): each definition inside the parentheses.
        const inner = spec.slice(j + 1, spec.length - 1);
        for (const def of splitTopLevel(inner)) {
          if (['INDEX', 'KEY', 'UNIQUE', 'FULLTEXT', 'SPATIAL', 'PRIMARY', 'FOREIGN', 'CONSTRAINT', 'CHECK'].includes(up(def[0]))) continue;
          const r = addedColumn(def.slice(1), def[0]?.text ?? '?');
          if (r) return { resync: r };
        }
        return harmless;
      }
      if (!isName(first)) return unknown;
      const r = addedColumn(spec.slice(j + 1), first.text);
      return r ? { resync: r } : harmless;
    }
    case 'DROP':
      if (['INDEX', 'KEY', 'PRIMARY', 'FOREIGN', 'CONSTRAINT', 'CHECK'].includes(w1)) return harmless;
      if (w1 === 'PARTITION') return { resync: 'DROP PARTITION deletes the partitions\' rows without row events' };
      if (w1 === 'SYSTEM' || w1 === 'PERIOD') return { resync: `DROP ${w1} ${up(spec[2])}` };
      // DROP [COLUMN] [IF EXISTS] c: the column's values go with it; the others stay.
      return isName(spec[w1 === 'COLUMN' ? 2 : 1]) ? harmless : unknown;
    case 'MODIFY':
    case 'CHANGE': {
      let j = w1 === 'COLUMN' ? 2 : 1;
      if (up(spec[j]) === 'IF' && up(spec[j + 1]) === 'EXISTS') j += 2;
      const col = spec[j]?.text ?? '?';
      const reason = `${w0} ${col}: a column redefinition may convert, round or cut existing values without row events`;
      if (w0 === 'CHANGE' && isName(spec[j]) && isName(spec[j + 1]) && spec[j]!.text !== spec[j + 1]!.text) {
        return { resync: reason, renamedColumn: [spec[j]!.text, spec[j + 1]!.text] };
      }
      return { resync: reason };
    }
    case 'ALTER': {
      // ALTER [COLUMN] c SET DEFAULT … | DROP DEFAULT: the default of future rows only.
      if (w1 === 'INDEX' || w1 === 'KEY') return harmless;
      const j = w1 === 'COLUMN' ? 2 : 1;
      const a = up(spec[j + 1]);
      const b = up(spec[j + 2]);
      if ((a === 'SET' && b === 'DEFAULT') || (a === 'DROP' && b === 'DEFAULT')) return harmless;
      if (a === 'SET' && (b === 'VISIBLE' || b === 'INVISIBLE')) return harmless;
      return unknown;
    }
    case 'RENAME': {
      if (w1 === 'INDEX' || w1 === 'KEY') return harmless;
      if (w1 === 'COLUMN') {
        if (isName(spec[2]) && up(spec[3]) === 'TO' && isName(spec[4]) && spec.length === 5) return { resync: null, renamedColumn: [spec[2].text, spec[4].text] };
        return unknown;
      }
      let j = 1;
      if (w1 === 'TO' || w1 === 'AS') j = 2;
      else if (spec[1]?.kind === 'punct' && spec[1].text === '=') j = 2;
      const to = tableNameAt(spec, j, defaultSchema);
      return to && to.next === spec.length ? { resync: null, renamedTo: to.name } : unknown;
    }
    case 'CONVERT':
      return { resync: 'CONVERT TO CHARACTER SET converts every text value' };
    case 'ALGORITHM':
    case 'LOCK':
      return spec.length <= 3 ? harmless : unknown;
    case 'FORCE':
      return spec.length === 1 ? harmless : unknown;
    case 'ORDER':
      return w1 === 'BY' ? harmless : unknown;
    case 'ENABLE':
    case 'DISABLE':
      return w1 === 'KEYS' && spec.length === 2 ? harmless : unknown;
    case 'REMOVE':
      return w1 === 'PARTITIONING' ? harmless : unknown;
    case 'ANALYZE':
    case 'CHECK':
    case 'OPTIMIZE':
    case 'REBUILD':
    case 'REPAIR':
      return w1 === 'PARTITION' ? harmless : unknown;
    case 'DISCARD':
    case 'IMPORT':
      return { resync: `${w0} TABLESPACE replaces the table's rows without row events` };
    case 'TRUNCATE':
    case 'EXCHANGE':
    case 'COALESCE':
    case 'REORGANIZE':
    case 'PARTITION':
      return { resync: `${w0} ${w1}: partition maintenance may move or delete rows without row events` };
    default:
      return tableOptions(spec) ? harmless : unknown;
  }
}

/**
 * Whether a clause is only table options that change no stored value: a table's default
 * character set and collation (for future columns; CONVERT TO is the one that converts), its
 * comment and the like. ENGINE is not among them: a rebuild into another engine can lose rows
 * (BLACKHOLE) or values.
 */
function tableOptions(spec: readonly Token[]): boolean {
  let i = 0;
  while (i < spec.length) {
    let w = up(spec[i]);
    if (w === 'DEFAULT') {
      i++;
      w = up(spec[i]);
    }
    let name = w;
    if (w === 'CHARACTER' && up(spec[i + 1]) === 'SET') {
      name = 'CHARSET';
      i++;
    }
    if (name !== 'CHARSET' && name !== 'COLLATE' && !HARMLESS_TABLE_OPTIONS.has(name)) return false;
    i++;
    if (spec[i]?.kind === 'punct' && spec[i]!.text === '=') i++;
    const v = spec[i];
    if (!v || v.kind === 'punct') return false;
    i++;
  }
  return spec.length > 0;
}

/**
 * Why the rows a table had may hold values in an added column that no constant default explains
 * (null: none; what they read is then the default, recorded by added-columns.ts). `def` is the
 * column definition after its name.
 */
export function addedColumn(def: readonly Token[], column: string): string | null {
  const type = up(def[0]);
  if (type === 'SERIAL') return `column ${column} is SERIAL: the server numbers the rows the table had`;
  for (let i = 0; i < def.length; i++) {
    const w = up(def[i]);
    if (w === 'AS' || w === 'GENERATED' || w === 'VIRTUAL' || w === 'PERSISTENT' || w === 'STORED') {
      return `column ${column} is generated: the server computes it for the rows the table had, without row events`;
    }
    if (w === 'AUTO_INCREMENT') return `column ${column} is AUTO_INCREMENT: the server numbers the rows the table had`;
    if (w === 'DEFAULT') {
      const end = constantAt(def, i + 1);
      if (end === null) return `column ${column}: its default is not a constant, so the rows the table had got values no row event shows`;
      i = end - 1;
    }
  }
  return null;
}

/** The index after a constant at `i` (a literal, NULL, TRUE/FALSE, signed, parenthesised), else null. */
function constantAt(def: readonly Token[], i: number): number | null {
  const t = def[i];
  if (!t) return null;
  if (t.kind === 'punct' && (t.text === '-' || t.text === '+')) return def[i + 1]?.kind === 'number' ? i + 2 : null;
  if (t.kind === 'punct' && t.text === '(') {
    const end = constantAt(def, i + 1);
    return end !== null && def[end]?.kind === 'punct' && def[end]!.text === ')' ? end + 1 : null;
  }
  if (t.kind === 'string' || t.kind === 'number') return i + 1;
  if (['NULL', 'TRUE', 'FALSE'].includes(up(t))) return i + 1;
  return null;
}

/**
 * The tables ("schema.table") whose columns a statement can change: those ALTER, RENAME and
 * CREATE OR REPLACE name (a rename's new name too); none for any other statement (CREATE or DROP
 * TABLE, DDL of another database). Null when a statement's table could not be read (fail closed:
 * any table may have changed).
 */
export function tablesNamed(effects: readonly DdlEffect[]): Set<string> | null {
  if (!effects.every((e) => e.table)) return null;
  const q = (t: TableName): string => `${t.schema}.${t.table}`;
  return new Set(effects.flatMap((e) => [q(e.table!), ...(e.renamedTo ? [q(e.renamedTo)] : [])]));
}

/**
 * The table a `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] name …` statement creates; null for any
 * other statement (a TEMPORARY table is never captured). The caller decides whether the table is
 * new to it (IF NOT EXISTS may create nothing).
 */
export function createdTable(query: string, defaultSchema: string): TableName | null {
  const tokens = tokenize(query);
  if (up(tokens[0]) !== 'CREATE') return null;
  let i = 1;
  if (up(tokens[i]) === 'OR' && up(tokens[i + 1]) === 'REPLACE') i += 2;
  if (up(tokens[i]) !== 'TABLE') return null;
  i++;
  if (up(tokens[i]) === 'IF' && up(tokens[i + 1]) === 'NOT' && up(tokens[i + 2]) === 'EXISTS') i += 3;
  return tableNameAt(tokens, i, defaultSchema)?.name ?? null;
}

/**
 * Whether a DDL statement names only schemas outside `capturedSchemas` (lower case): a CREATE
 * TABLE, an ALTER/RENAME whose every table is known, a DROP TABLE or TRUNCATE of named tables, or
 * a CREATE/DROP/ALTER DATABASE. Such a statement cannot change a captured table's columns, so the
 * connector reads no catalogue for it — a read then would take in later DDL of captured tables
 * already committed (another database on the same server: a replica target chartlog feeds, other
 * applications creating and dropping their databases) and count it as read ahead of its own
 * statement, re-reading those tables needlessly (a MariaDB replica, which cannot rebuild a table
 * from a base, then stopped: CI, 2026-12-05, beside a test file dropping its databases). False for
 * anything else (INDEX, a statement not understood) and when every schema may be captured
 * (null): those are read as before. Schema names compare without case, which can only make more
 * statements count as touching the capture.
 */
export function namesOnlyOtherSchemas(query: string, defaultSchema: string, capturedSchemas: ReadonlySet<string> | null): boolean {
  if (capturedSchemas === null) return false;
  const schemas = schemasNamed(query, defaultSchema);
  return schemas !== null && schemas.length > 0 && schemas.every((n) => !capturedSchemas.has(n.toLowerCase()));
}

/** The schemas a DDL statement names, when every one is read from its text; null otherwise. */
function schemasNamed(query: string, defaultSchema: string): string[] | null {
  const created = createdTable(query, defaultSchema);
  if (created) return [created.schema];
  const tokens = tokenize(query);
  const head = up(tokens[0]);
  const what = up(tokens[1]);
  if ((head === 'CREATE' || head === 'DROP' || head === 'ALTER') && (what === 'DATABASE' || what === 'SCHEMA')) {
    let i = 2;
    if (head === 'CREATE' && up(tokens[i]) === 'IF' && up(tokens[i + 1]) === 'NOT' && up(tokens[i + 2]) === 'EXISTS') i += 3;
    if (head === 'DROP' && up(tokens[i]) === 'IF' && up(tokens[i + 1]) === 'EXISTS') i += 2;
    // ALTER DATABASE without a name (its first word an option): the default one.
    const option = tokens[i]?.kind === 'word' && ['DEFAULT', 'CHARACTER', 'CHARSET', 'COLLATE', 'COMMENT', 'ENCRYPTION', 'READ', 'UPGRADE'].includes(up(tokens[i]));
    if (head === 'ALTER' && (option || !isName(tokens[i]))) return [defaultSchema];
    return isName(tokens[i]) ? [tokens[i]!.text] : null;
  }
  if (head === 'DROP' || head === 'TRUNCATE') {
    let i = 1;
    if (head === 'DROP' && up(tokens[i]) === 'TEMPORARY') i++;
    if (up(tokens[i]) === 'TABLE' || (head === 'DROP' && up(tokens[i]) === 'TABLES')) i++;
    else if (head === 'DROP') return null;
    if (head === 'DROP' && up(tokens[i]) === 'IF' && up(tokens[i + 1]) === 'EXISTS') i += 2;
    const names: string[] = [];
    for (;;) {
      const at = tableNameAt(tokens, i, defaultSchema);
      if (!at) return null;
      names.push(at.name.schema);
      i = at.next;
      if (tokens[i]?.kind === 'punct' && tokens[i]!.text === ',' && head === 'DROP') i++;
      else break;
    }
    // What may follow the names (DROP: RESTRICT, CASCADE, WAIT n, NOWAIT); anything else is not understood.
    while (i < tokens.length && head === 'DROP' && ['RESTRICT', 'CASCADE', 'NOWAIT'].includes(up(tokens[i]))) i++;
    if (head === 'DROP' && up(tokens[i]) === 'WAIT' && tokens[i + 1]?.kind === 'number') i += 2;
    return i === tokens.length ? names : null;
  }
  const effects = ddlEffects(query, defaultSchema);
  return effects.every((e) => e.table) ? effects.flatMap((e) => [e.table!.schema, ...(e.renamedTo ? [e.renamedTo.schema] : [])]) : null;
}
