import { ChartlogError } from '../../src/core/errors.js';
import { parseLsn, type Lsn } from './lsn.js';
import type { Queryable } from './type-catalog.js';

/**
 * Is this PostgreSQL database ready for chartlog? Every problem found is reported at once, each
 * with the statement that fixes it; nothing is created while any problem remains.
 */
export interface SetupNames {
  readonly slot: string;
  readonly publication: string;
  /** Configured "schema.table" names; undefined means every table (FOR ALL TABLES). */
  readonly tables: readonly string[] | undefined;
  /** "schema.table" names configured insert-only (`postgres.insertOnlyTables`): no replica identity needed. */
  readonly insertOnly?: readonly string[];
}

export interface SetupState {
  readonly slotExists: boolean;
  /** The slot's confirmed_flush_lsn, when it exists. */
  readonly slotConfirmedFlush: Lsn | null;
  readonly publicationExists: boolean;
  readonly user: string;
}

interface Problem {
  readonly what: string;
  readonly fix: string;
  /** The source is fine but the configuration asks for what cannot be captured: exit 2. */
  readonly config?: boolean;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** "schema.table" → "schema"."table". */
export function quoteTable(qualified: string): string {
  const dot = qualified.indexOf('.');
  return `${quoteIdent(qualified.slice(0, dot))}.${quoteIdent(qualified.slice(dot + 1))}`;
}

export async function checkSetup(db: Queryable, names: SetupNames): Promise<SetupState> {
  const problems: Problem[] = [];
  const settings = await db.query(
    `SELECT current_setting('wal_level') AS wal_level, current_setting('server_encoding') AS encoding,
            current_setting('max_replication_slots') AS max_slots,
            (SELECT count(*) FROM pg_replication_slots) AS used_slots,
            current_user AS usr, current_database() AS db, r.rolreplication, r.rolsuper,
            has_database_privilege(current_database(), 'CREATE') AS can_create
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const s = settings.rows[0]!;
  const user = s.usr ?? '?';
  const superuser = s.rolsuper === 't';
  if (s.wal_level !== 'logical') {
    problems.push({
      what: `wal_level is ${s.wal_level}, logical decoding needs logical`,
      fix: 'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
    });
  }
  if (s.encoding !== 'UTF8') {
    problems.push({ what: `the database encoding is ${s.encoding}`, fix: 'chartlog reads UTF8 databases only; capture a UTF8 copy' });
  }
  if (s.rolreplication !== 't' && !superuser) {
    problems.push({ what: `role ${user} may not use replication`, fix: `ALTER ROLE ${quoteIdent(user)} REPLICATION;` });
  }

  const slot = await db.query(
    `SELECT plugin, database, slot_type, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`,
    [names.slot],
  );
  const slotRow = slot.rows[0];
  if (slotRow) {
    if (slotRow.slot_type !== 'logical' || slotRow.plugin !== 'pgoutput' || slotRow.database !== s.db) {
      problems.push({
        what: `replication slot ${names.slot} exists but is not a pgoutput slot of database ${s.db}`,
        fix: `choose another source.postgres.slotName, or SELECT pg_drop_replication_slot('${names.slot}') if it is unused`,
      });
    }
  } else if (Number(s.used_slots) >= Number(s.max_slots)) {
    problems.push({
      what: `all ${s.max_slots} replication slots are in use`,
      fix: 'drop an unused slot (pg_drop_replication_slot) or raise max_replication_slots and restart',
    });
  }

  const tables = await tableFacts(db, names.tables);
  for (const name of names.tables ?? []) {
    if (!tables.some((t) => t.name === name)) {
      problems.push({ what: `table ${name} does not exist`, fix: `create it, or remove it from the source's tables` });
    }
  }
  for (const t of tables) {
    if (!t.readable) problems.push({ what: `role ${user} cannot read ${t.name}`, fix: `GRANT SELECT ON ${quoteTable(t.name)} TO ${quoteIdent(user)};` });
    const identity = identityProblem(t, names.insertOnly ?? []);
    if (identity) problems.push(identity);
  }

  problems.push(...(await partitionProblems(db, names)));

  const pub = await db.query(`SELECT puballtables FROM pg_publication WHERE pubname = $1`, [names.publication]);
  const pubRow = pub.rows[0];
  if (pubRow) {
    if (pubRow.puballtables !== 't' && names.tables) {
      const members = await db.query(
        `SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables WHERE pubname = $1`,
        [names.publication],
      );
      const have = new Set(members.rows.map((r) => r.name));
      const lacking = names.tables.filter((t) => !have.has(t));
      if (lacking.length > 0) {
        problems.push({
          what: `publication ${names.publication} lacks ${lacking.join(', ')}`,
          fix: `ALTER PUBLICATION ${quoteIdent(names.publication)} ADD TABLE ${lacking.map(quoteTable).join(', ')}; then take a new snapshot`,
        });
      }
    }
  } else if (names.tables === undefined && !superuser) {
    problems.push({
      what: `publication ${names.publication} does not exist and only a superuser may create one FOR ALL TABLES`,
      fix: `as a superuser: CREATE PUBLICATION ${quoteIdent(names.publication)} FOR ALL TABLES;  (or configure the source's tables)`,
    });
  } else if (names.tables !== undefined && !superuser) {
    const notOwned = tables.filter((t) => !t.owned).map((t) => t.name);
    if (notOwned.length > 0 || s.can_create === 'f') {
      problems.push({
        what: `publication ${names.publication} does not exist and role ${user} may not create it (it must own ${notOwned.join(', ') || 'the tables'})`,
        fix: `as the tables' owner: CREATE PUBLICATION ${quoteIdent(names.publication)} FOR TABLE ${names.tables.map(quoteTable).join(', ')};`,
      });
    }
  }

  if (problems.length > 0) {
    throw new ChartlogError(
      problems.some((p) => p.config) ? 'config' : 'source_setup',
      `PostgreSQL source is not ready for change capture:\n${problems.map((p) => `  - ${p.what}`).join('\n')}`,
      { hint: problems.map((p) => p.fix).join('\n       ') },
    );
  }
  return {
    slotExists: slotRow !== undefined,
    slotConfirmedFlush: slotRow?.confirmed_flush_lsn ? parseLsn(slotRow.confirmed_flush_lsn) : null,
    publicationExists: pubRow !== undefined,
    user,
  };
}

/**
 * A table whose updates and deletes carry no old row (REPLICA IDENTITY NOTHING, or DEFAULT
 * without a primary key, which is nothing too) cannot be replayed: refused with the statement
 * that gives it an identity, unless it is configured insert-only.
 */
export function identityProblem(t: Pick<TableFact, 'name' | 'identity' | 'hasPk'>, insertOnly: readonly string[]): Problem | null {
  if (!(t.identity === 'n' || (t.identity === 'd' && !t.hasPk))) return null;
  if (insertOnly.includes(t.name)) return null;
  const how = t.identity === 'n' ? 'replica identity NOTHING' : 'no primary key and replica identity DEFAULT';
  return {
    what: `table ${t.name} has ${how}: its updates and deletes carry no old row, so they cannot be captured (and fail on the source once it is published)`,
    fix: `ALTER TABLE ${quoteTable(t.name)} REPLICA IDENTITY ${t.hasPk ? 'DEFAULT' : 'FULL'};  (${t.hasPk ? 'its primary key then identifies rows' : 'or add a primary key, or USING INDEX <a unique index on NOT NULL columns>'}; or, if the table only ever takes inserts, list it under the source's postgres.insertOnlyTables)`,
    config: true,
  };
}

interface TableFact {
  readonly name: string;
  readonly identity: string;
  readonly hasPk: boolean;
  readonly readable: boolean;
  readonly owned: boolean;
}

async function tableFacts(db: Queryable, tables: readonly string[] | undefined): Promise<TableFact[]> {
  const filter = tables
    ? `n.nspname || '.' || c.relname = ANY($1::text[])`
    : `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`;
  const { rows } = await db.query(
    `SELECT n.nspname || '.' || c.relname AS name, c.relreplident,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
            has_table_privilege(c.oid, 'SELECT') AS readable,
            pg_has_role(c.relowner, 'USAGE') AS owned
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND ${filter}`,
    tables ? [tables] : [],
  );
  return rows.map((r) => ({
    name: r.name ?? '',
    identity: r.relreplident ?? 'd',
    hasPk: r.has_pk === 't',
    readable: r.readable === 't',
    owned: r.owned === 't',
  }));
}

/**
 * Partitioned tables are captured as their root: the publication sends partitions' changes under
 * the root (publish_via_partition_root) and the snapshot reads the root, so one history holds the
 * rows wherever they move. Refused, naming the table:
 * - an existing publication without publish_via_partition_root that sends a partitioned table's
 *   partitions: their changes would arrive under the partitions' names, which no snapshot read;
 * - a configured table that is a partition of another configured table: its changes arrive under
 *   that table, so its own history would silently stay empty (and, attached while chartlog was
 *   stopped, its rows moved with no row event the connector could have seen).
 */
async function partitionProblems(db: Queryable, names: SetupNames): Promise<Problem[]> {
  const problems: Problem[] = [];
  const { rows } = await db.query(
    `SELECT (SELECT string_agg(DISTINCT pr.nspname || '.' || pc.relname, ', ')
               FROM pg_publication_tables pt
               JOIN pg_namespace pr ON pr.nspname = pt.schemaname
               JOIN pg_class pc ON pc.relnamespace = pr.oid AND pc.relname = pt.tablename
              WHERE pt.pubname = $1 AND pc.relispartition) AS leaves,
            (SELECT NOT pubviaroot FROM pg_publication WHERE pubname = $1) AS not_via_root`,
    [names.publication],
  );
  const r = rows[0];
  if (r?.not_via_root === 't' && r.leaves) {
    problems.push({
      what: `publication ${names.publication} sends partitions (${r.leaves}) under their own names, not under their partitioned table (publish_via_partition_root is off)`,
      fix: `ALTER PUBLICATION ${quoteIdent(names.publication)} SET (publish_via_partition_root = true); then take a new snapshot`,
    });
  }
  if (names.tables) {
    const nested = await db.query(
      `SELECT n.nspname || '.' || c.relname AS name, an.nspname || '.' || ac.relname AS ancestor
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
              pg_partition_ancestors(c.oid) x JOIN pg_class ac ON ac.oid = x.relid JOIN pg_namespace an ON an.oid = ac.relnamespace
        WHERE c.relispartition AND x.relid <> c.oid AND n.nspname || '.' || c.relname = ANY($1::text[])
          AND an.nspname || '.' || ac.relname = ANY($1::text[])`,
      [names.tables],
    );
    for (const t of nested.rows) {
      problems.push({
        what: `table ${t.name} is a partition of ${t.ancestor}, which is captured too: its changes are captured under ${t.ancestor}`,
        fix: `remove ${t.name} from the source's tables (its rows are in ${t.ancestor}'s history; if it was attached while chartlog was stopped: chartlog resync --tables ${t.ancestor})`,
        config: true,
      });
    }
  }
  return problems;
}

/** Creates the publication when missing. Call only after checkSetup passed. */
export async function ensurePublication(db: Queryable, names: SetupNames, state: SetupState): Promise<void> {
  if (state.publicationExists) return;
  const target = names.tables ? `FOR TABLE ${names.tables.map(quoteTable).join(', ')}` : 'FOR ALL TABLES';
  // Changes of partitions are published under the partitioned table, as the snapshot reads it.
  try {
    await db.query(`CREATE PUBLICATION ${quoteIdent(names.publication)} ${target} WITH (publish_via_partition_root = true)`);
  } catch (err) {
    // Another process created it since checkSetup read the catalog (duplicate_object, or the
    // unique index when both inserted at once): what it holds is unchecked, so this start stops
    // here; the next attempt finds it and checks its tables like any existing publication.
    const code = (err as { code?: unknown }).code;
    if (code !== '42710' && code !== '23505') throw err;
    throw new ChartlogError('source_setup', `publication ${names.publication} was created by another process while this one was creating it`, {
      retriable: true,
      hint: 'start again: the publication that now exists is checked then (its tables and settings)',
    });
  }
}

/** "schema.table" names the publication sends, in a stable order. */
export async function publishedTables(db: Queryable, publication: string): Promise<string[]> {
  const { rows } = await db.query(
    `SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`,
    [publication],
  );
  return rows.map((r) => r.name ?? '');
}
