import type { ChangeBatch } from '../core/change-event.js';
import { Position } from '../core/position.js';
import { qualifiedName, type TableSchema } from '../core/table-schema.js';
import type { ResyncRequest } from '../core/resync-request.js';
import { SEALED_MISSING_REASON } from '../codec/avro-schema.js';
import type { RegisteredSchema } from '../codec/schema-store.js';

/**
 * ADD COLUMN with a constant default on a sealed (PHI) column: the value rows older than the
 * column read is PHI, so it is never stored in the schema (avro-schema.ts SEALED_MISSING_REASON)
 * and a restore past the DDL refuses the table until its rows are re-read. The connector cannot
 * tell (it knows nothing of the PHI policy), so the pipeline looks at each table version a
 * batch brings, as archived, and asks for that re-read itself: a version with a sealed column
 * whose older rows' value is withheld, that column new since the table's previous version.
 *
 * The previous version is the one this watch saw last; for the first version of a table seen by
 * this process (after a start), the column counts as new only when the version itself is new to
 * the archive (stored by this process): a version already stored was handled before a restart,
 * or is older than a resync. Pure state; `registeredOf` and `storedHere` come from the codec.
 */
export class SealedMissingWatch {
  /** "schema.table" → the columns of the last version seen. */
  private readonly columns = new Map<string, ReadonlySet<string>>();
  private readonly checked = new WeakSet<TableSchema>();

  constructor(
    private readonly o: {
      registeredOf: (table: TableSchema) => Promise<RegisteredSchema>;
      storedHere: (fingerprint: bigint) => boolean;
    },
  ) {}

  /** The resync requests the batch's table versions call for (at most one per table). */
  async requests(batch: ChangeBatch): Promise<ResyncRequest[]> {
    const versions: TableSchema[] = [];
    const see = (t: TableSchema): void => {
      if (!this.checked.has(t) && !versions.includes(t)) versions.push(t);
    };
    for (const t of batch.schemaChanges ?? []) see(t);
    // Without an array of every event's schema: this runs for every batch of the stream.
    let last: TableSchema | null = null;
    for (const e of batch.events) {
      if (e.schema === last) continue;
      last = e.schema;
      see(e.schema);
    }
    const out: ResyncRequest[] = [];
    for (const table of versions) {
      this.checked.add(table);
      const registered = await this.o.registeredOf(table);
      const name = qualifiedName(table);
      const previous = this.columns.get(name);
      const withheld = registered.version.table.columns
        .filter((c) => c.missing && 'unknown' in c.missing && c.missing.unknown === SEALED_MISSING_REASON)
        .map((c) => c.name);
      this.columns.set(name, new Set(table.columns.map((c) => c.name)));
      const added = previous ? withheld.filter((c) => !previous.has(c)) : this.o.storedHere(registered.fingerprint) ? withheld : [];
      if (added.length === 0) continue;
      const commit = batch.position.commit;
      out.push({
        tables: [name],
        reason: `column ${added.join(', ')} was added with a default and is sealed (PHI): the value older rows read is not stored, so they are read again`,
        // The version applies from this transaction on (MariaDB/MySQL: the DDL's own; PostgreSQL:
        // the first change after the DDL, which brings the version to the stream).
        window: { from: Position.of(commit, 0), fromCommitTsUs: batch.commitTsUs, seenAt: Position.of(commit) },
      });
    }
    return out;
  }
}
